"""``python -m training``: ``train --resume`` continues the run in --run-dir with the run's own
settings, or refuses with the reason (it never silently starts over); a file that is not a
checkpoint of the task is refused with ``error: ...``."""

import json
import re
from pathlib import Path

import pytest
import torch

import training.tasks.sentiment as sentiment
from training.cli import main
from training.config import load_config, to_dict

SETTINGS = ["trainer.lr=0.01", "model.hidden_size=16", "trainer.epochs=2"]


def sets(settings: list[str]) -> list[str]:
    return [a for s in settings for a in ("--set", s)]


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Stand in for the sentiment training (no data, no model); records each call."""
    calls: list[dict] = []

    def train(config, run_dir: Path, resume: bool = False) -> dict[str, float]:
        calls.append({"config": to_dict(config), "run_dir": run_dir, "resume": resume})
        return {"epoch": 1}

    monkeypatch.setattr(sentiment, "train", train)
    return calls


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder as an interrupted run leaves it: its config.json and a last.pt."""
    folder = tmp_path / "run"
    folder.mkdir()
    config = to_dict(load_config("sentiment", None, SETTINGS))
    (folder / "config.json").write_text(json.dumps(config, indent=2), "utf-8")
    (folder / "last.pt").write_bytes(b"a checkpoint")
    return folder


def resume(run_dir: Path | None, settings: list[str]) -> int:
    folder = ["--run-dir", str(run_dir)] if run_dir is not None else []
    return main(["train", "sentiment", *folder, "--resume", *sets(settings)])


def test_resume_continues_with_more_epochs_and_patience_on_other_cores(run_dir, runs):
    more = [*SETTINGS, "trainer.epochs=5", "trainer.patience=9", "trainer.threads=1"]

    assert resume(run_dir, more) == 0

    (call,) = runs
    assert call["resume"] and call["run_dir"] == run_dir
    trainer = call["config"]["trainer"]
    assert (trainer["epochs"], trainer["patience"], trainer["threads"]) == (5, 9, 1)


def test_resume_continues_a_run_saved_before_settings_were_added(run_dir, runs):
    """A run's config.json from an older version lacks later settings (data.name, ...) and
    holds GloVe's path absolute: the same settings still resume it."""
    saved = json.loads((run_dir / "config.json").read_text("utf-8"))
    for key in ("name", "train_file", "dev_file"):
        del saved["data"][key]
    saved["vocab"]["glove_path"] = f"{saved['data']['datasets_dir']}/glove/glove.6B.50d.txt.gz"
    (run_dir / "config.json").write_text(json.dumps(saved), "utf-8")

    assert resume(run_dir, [*SETTINGS, "trainer.epochs=3"]) == 0
    assert len(runs) == 1


def test_resume_refuses_other_settings_naming_them(run_dir, runs, capsys):
    before = (run_dir / "config.json").read_text("utf-8")

    assert resume(run_dir, [*SETTINGS, "model.hidden_size=32", "trainer.lr=0.5"]) == 2
    assert re.search(
        r"differs .* in model\.hidden_size: 16 -> 32; trainer", capsys.readouterr().err
    )

    assert runs == []
    assert (run_dir / "config.json").read_text("utf-8") == before  # the run's record is kept


def test_resume_without_the_settings_of_the_run_is_refused(run_dir, runs, capsys):
    # The command line alone rebuilds the configuration: leaving out --set changes it.
    assert resume(run_dir, []) == 2
    assert re.search(r"model\.hidden_size: 16 -> 150", capsys.readouterr().err)
    assert runs == []


def test_resume_needs_a_run_dir(tmp_path, monkeypatch, runs, capsys):
    monkeypatch.chdir(tmp_path)

    assert resume(None, SETTINGS) == 2
    assert re.search("--resume needs --run-dir", capsys.readouterr().err)

    assert runs == [] and not (tmp_path / "runs").exists()


def test_resume_needs_the_run_s_last_checkpoint(run_dir, runs, capsys):
    (run_dir / "last.pt").unlink()

    assert resume(run_dir, SETTINGS) == 2
    assert re.search(r"last\.pt does not exist, so there is no run", capsys.readouterr().err)

    assert runs == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"task": "ner", "model": {}}, "is a 'ner' checkpoint, not a 'sentiment' one"),
        ({"weights": [1.0]}, "is not a checkpoint written by a training run"),
        (b"not a checkpoint", "is not a checkpoint: "),
        (b"", "is not a checkpoint: "),
        (b"cnot_a_module_xyz\nC\n.", "is not a checkpoint: "),  # another program's pickle
    ],
)
def test_export_refuses_a_file_that_is_not_a_checkpoint_of_the_task(
    tmp_path, capsys, content, message
):
    path = tmp_path / "best.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    out = tmp_path / "model"

    assert main(["export", "sentiment", "--checkpoint", str(path), "--out", str(out)]) == 2
    assert f"error: {path} {message}" in capsys.readouterr().err
    assert not out.exists()


def test_export_names_the_checkpoint_whose_settings_do_not_read(tmp_path, capsys):
    path = tmp_path / "best.pt"
    torch.save({"task": "sentiment", "model": {}, "config": {"model": {"cell": "lstn"}}}, path)

    assert main(["export", "sentiment", "--checkpoint", str(path), "--out", str(tmp_path)]) == 2
    assert f"error: {path}: its configuration: model.cell='lstn'" in capsys.readouterr().err


def test_print_config_shows_every_setting_as_resolved_and_trains_nothing(
    tmp_path, monkeypatch, capsys, runs
):
    """``train TASK --print-config`` prints the settings a run would use (the TOML file, then
    ``--set`` over the defaults), the keys ``--set`` accepts, and starts no run."""
    monkeypatch.chdir(tmp_path)
    toml = tmp_path / "sentiment.toml"
    toml.write_text("[model]\nhidden_size = 32\n[trainer]\nlr = 0.5\n", "utf-8")
    args = ["train", "sentiment", "--config", str(toml), "--print-config"]

    assert main([*args, "--set", "trainer.lr=0.01"]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert printed == to_dict(load_config("sentiment", toml, ["trainer.lr=0.01"]))
    assert printed["model"]["hidden_size"] == 32 and printed["trainer"]["lr"] == 0.01
    assert runs == [] and not (tmp_path / "runs").exists()


class _TouchesAFileWhenLoaded:
    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


def test_a_checkpoint_never_runs_code_when_it_loads(tmp_path, capsys):
    touched = tmp_path / "touched"
    path = tmp_path / "best.pt"
    torch.save({"task": "sentiment", "model": _TouchesAFileWhenLoaded(touched)}, path)

    assert (
        main(["export", "sentiment", "--checkpoint", str(path), "--out", str(tmp_path / "m")]) == 2
    )
    assert f"error: {path} is not a checkpoint: " in capsys.readouterr().err
    assert not touched.exists()


def test_a_new_run_never_replaces_a_run_s_checkpoints(run_dir, runs, capsys):
    (run_dir / "best.pt").write_bytes(b"a trained model")
    before = (run_dir / "config.json").read_text("utf-8")

    assert main(["train", "sentiment", "--run-dir", str(run_dir), *sets(SETTINGS)]) == 2

    error = capsys.readouterr().err
    assert f"error: {run_dir} holds a run (last.pt, best.pt): continue it with --resume" in error
    assert runs == [] and (run_dir / "config.json").read_text("utf-8") == before
    assert (run_dir / "best.pt").read_bytes() == b"a trained model"


@pytest.mark.parametrize(
    "command",
    [
        ["quantize", "sentiment", "--repeats", "0"],
        ["quantize", "sentiment", "--speed-texts", "-1"],
        ["evaluate", "translation", "--beam-size", "x"],
    ],
)
def test_counts_must_be_whole_numbers_of_at_least_1(command, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(command)
    assert stopped.value.code == 2  # argparse's usage error, before anything runs
    assert "is not a whole number of at least 1" in capsys.readouterr().err
