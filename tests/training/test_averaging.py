"""Checkpoint averaging on hand-made checkpoints."""

from pathlib import Path

import pytest
import torch

from training.averaging import average_checkpoints
from training.cli import main


def save(path: Path, weight: float, config: dict | None = None) -> Path:
    state = {
        "model": {"w": torch.full((2, 2), weight), "steps": torch.tensor(int(weight))},
        "task": "translation",
        "config": config or {"model": {"hidden": 2}},
        "optimizer": {"state": {}},
        "epoch": int(weight),
    }
    torch.save(state, path)
    return path


def test_the_mean_of_the_weights_and_the_last_checkpoints_rest(tmp_path):
    paths = [save(tmp_path / f"epoch-{i}.pt", float(i)) for i in (1, 2, 6)]

    averaged = average_checkpoints(paths)

    assert torch.equal(averaged["model"]["w"], torch.full((2, 2), 3.0))
    assert averaged["model"]["steps"].item() == 6  # integer buffers are not averaged
    assert "optimizer" not in averaged and "epoch" not in averaged
    assert averaged["averaged_from"] == [str(p) for p in paths]


def test_checkpoints_of_another_config_are_refused(tmp_path):
    one = save(tmp_path / "a.pt", 1.0)
    other = save(tmp_path / "b.pt", 2.0, config={"model": {"hidden": 3}})

    with pytest.raises(ValueError, match="another model config"):
        average_checkpoints([one, other])


def test_the_cli_refuses_checkpoints_of_other_models_without_a_traceback(tmp_path, capsys):
    one = save(tmp_path / "a.pt", 1.0)
    other = tmp_path / "b.pt"
    torch.save({"model": {"w": torch.zeros(2, 2)}, "task": "ner"}, other)

    assert main(["average", str(one), str(other), "--out", str(tmp_path / "mean.pt")]) == 2
    assert f"error: {one} is not a checkpoint of the same model" in capsys.readouterr().err
    assert not (tmp_path / "mean.pt").exists()
