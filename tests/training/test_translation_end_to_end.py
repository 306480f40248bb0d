"""Translation smoke test: a tiny synthetic English-German corpus; train, export (with its
whole-dev verification), translate through the service's predictor, evaluate and plot from the
command line."""

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import training.tasks.translation as translation
from service.predictors.translator import Translator
from service.runtime.manifest import load_manifest
from service.runtime.session import OnnxSession, SessionConfig
from service.text.truecase import Truecaser
from training.cli import main
from training.verify import VerificationError

SUBJECTS = [("A man", "Ein Mann"), ("A woman", "Eine Frau"), ("A dog", "Ein Hund")]
SUBJECTS += [("A child", "Ein Kind"), ("Two men", "Zwei Männer")]
VERBS = [("runs", "läuft"), ("sits", "sitzt"), ("plays", "spielt"), ("sleeps", "schläft")]
PLACES = [("in the park", "im Park"), ("on the street", "auf der Straße")]
PLACES += [("at the beach", "am Strand"), ("in the snow", "im Schnee")]


def _pair(rng: random.Random) -> tuple[str, str]:
    (se, sd), (ve, vd), (pe, pd) = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(PLACES)
    if se == "Two men":
        ve, vd = (
            ve[:-1],
            {"läuft": "laufen", "sitzt": "sitzen", "spielt": "spielen"}.get(vd, "schlafen"),
        )
    return f"{se} {ve} {pe}.", f"{sd} {vd} {pd}."


def write_tiny_multi30k(root: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    (root / "multi30k").mkdir(parents=True)
    for split, count in [("train", 400), ("val", 30)]:
        pairs = [_pair(rng) for _ in range(count)]
        if split == "train":  # the TAB quirk of the real train.de
            pairs[7] = (pairs[7][0], pairs[7][1].replace(" ", "\t", 1))
        for lang, index in [("en", 0), ("de", 1)]:
            text = "\n".join(p[index] for p in pairs) + "\n"
            (root / f"multi30k/{split}.{lang}").write_text(text, "utf-8")
    return root


@pytest.fixture(scope="module")
def tiny_multi30k(tmp_path_factory) -> Path:
    return write_tiny_multi30k(tmp_path_factory.mktemp("mt-datasets"))


def overrides(root: Path) -> list[str]:
    settings = [
        f"data.datasets_dir={root}",
        "vocab.source_size=80",
        "vocab.target_size=90",
        "data.batch_tokens=400",
        "data.max_batch_size=32",
        "trainer.threads=1",
        "trainer.lr=0.01",
        "model.embedding_dim=24",
        "model.encoder_hidden=24",
        "model.decoder_hidden=32",
        "model.dropout=0.0",
        "decoding.beam_size=3",
    ]
    return [a for s in settings for a in ("--set", s)]


@pytest.fixture(scope="module")
def trained(tiny_multi30k, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("mt-run")
    args = ["train", "translation", "--run-dir", str(run_dir), "--set", "trainer.epochs=4"]
    args += ["--set", "trainer.keep_epochs=true"]
    assert main(args + overrides(tiny_multi30k)) == 0
    return run_dir


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mt-model") / "translation"
    args = ["export", "translation", "--checkpoint", str(trained / "best.pt"), "--out", str(out)]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def translator(exported) -> Translator:
    manifest = load_manifest(exported)
    sessions = {
        name: OnnxSession(exported / spec.file, spec, SessionConfig())
        for name, spec in manifest.graphs.items()
    }
    return Translator.from_artifact(exported, manifest, sessions)


def test_run_folder_records_dev_bleu_per_epoch(trained):
    for name in ["config.json", "train.log", "metrics.jsonl", "learning_curve.png", "best.pt"]:
        assert (trained / name).is_file(), name
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert {"dev_bleu_greedy", "dev_chrf_greedy", "train_loss"} <= records[0].keys()
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert max(r["dev_chrf_greedy"] for r in records) > 30  # it learns something


def test_resume_continues_from_the_last_checkpoint(trained, tiny_multi30k):
    args = ["train", "translation", "--run-dir", str(trained), "--resume"]
    args += ["--set", "trainer.keep_epochs=true"]  # the run's settings, but for epochs
    assert main([*args, "--set", "trainer.epochs=5", *overrides(tiny_multi30k)]) == 0
    records = (trained / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in records] == [1, 2, 3, 4, 5]


def test_init_from_continues_with_the_checkpoints_weights_and_subword_models(
    trained, tiny_multi30k, tmp_path
):
    import torch

    # A different vocabulary size in the overrides would not fit the checkpoint's weights:
    # the subword models must come from the checkpoint, not be trained again.
    args = ["train", "translation", "--run-dir", str(tmp_path), "--set", "trainer.epochs=1"]
    args += [*overrides(tiny_multi30k), "--set", "vocab.source_size=60"]
    assert main([*args, "--set", f"init_from={trained / 'best.pt'}"]) == 0
    start = torch.load(trained / "best.pt", weights_only=True)
    continued = torch.load(tmp_path / "best.pt", weights_only=True)
    assert continued["source_spm"] == start["source_spm"]
    assert continued["target_spm"] == start["target_spm"]
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert record["dev_chrf_greedy"] > 30  # it starts from a trained model


def test_averaged_epochs_have_the_mean_weights_and_export(trained, tmp_path):
    import torch

    checkpoints = [str(trained / "epoch-1.pt"), str(trained / "epoch-4.pt")]
    averaged = tmp_path / "avg.pt"
    assert main(["average", *checkpoints, "--out", str(averaged)]) == 0
    first, last, avg = (torch.load(p, weights_only=True) for p in [*checkpoints, averaged])
    for name, value in avg["model"].items():
        assert torch.allclose(value, (first["model"][name] + last["model"][name]) / 2), name
    assert "optimizer" not in avg and avg["source_spm"] == last["source_spm"]
    out = tmp_path / "translation"
    assert main(["export", "translation", "--checkpoint", str(averaged), "--out", str(out)]) == 0
    metrics = load_manifest(out).metrics
    assert {"dev_bleu_greedy", "dev_chrf_greedy"} <= metrics.keys()  # verified and measured


def test_export_writes_two_graphs_and_the_subword_models(exported):
    manifest = load_manifest(exported)
    assert manifest.task == "translation"
    assert set(manifest.files) == {
        "encoder.onnx",
        "decoder_step.onnx",
        "source.model",
        "target.model",
        "truecase.json",
        "MODEL_CARD.md",
    }
    assert manifest.preprocessing["truecaser"] == "truecase.json"
    assert set(manifest.graphs) == {"encoder", "decoder_step"}
    assert [t.name for t in manifest.graphs["encoder"].inputs] == ["src_ids", "src_lengths"]
    assert [t.name for t in manifest.graphs["decoder_step"].outputs] == [
        "log_probs",
        "next_hidden",
        "next_input_feed",
        "attention",
    ]
    assert {"dev_bleu_greedy", "dev_bleu_beam", "dev_chrf_beam"} <= manifest.metrics.keys()
    assert manifest.preprocessing["beam_size"] == 3
    assert sum(p.stat().st_size for p in exported.iterdir()) < 40e6
    assert [(d.name, d.split, d.source) for d in manifest.training_data] == [
        ("multi30k", "train", "multi30k/train.en, multi30k/train.de"),
        ("multi30k", "val", "multi30k/val.en, multi30k/val.de"),
    ]


def test_export_needs_only_the_dev_files(trained, tiny_multi30k, tmp_path):
    """The training files may be gone by export time: it verifies on the dev set alone."""
    dev_only = tmp_path / "datasets"
    (dev_only / "multi30k").mkdir(parents=True)
    for name in ("val.en", "val.de"):
        shutil.copy(tiny_multi30k / "multi30k" / name, dev_only / "multi30k" / name)
    args = ["export", "translation", "--checkpoint", str(trained / "best.pt")]
    assert main([*args, "--out", str(tmp_path / "out"), "--datasets-dir", str(dev_only)]) == 0


def test_the_truecaser_is_fitted_on_the_training_sources_and_exported(
    trained, tiny_multi30k, exported
):
    import torch

    sources = (tiny_multi30k / "multi30k" / "train.en").read_text("utf-8").splitlines()
    tables = torch.load(trained / "best.pt", weights_only=True)["truecase"]
    assert tables == Truecaser.fit(sources).tables()
    assert Truecaser.from_json(exported / "truecase.json").tables() == tables


def test_a_checkpoint_without_a_truecaser_exports_one_fitted_on_its_training_sources(
    trained, tiny_multi30k, tmp_path, capsys
):
    """Checkpoints trained before truecasers: export fits one where the training data is, and
    exports none (texts are read as written) where it is not."""
    import torch

    datasets = tmp_path / "datasets"
    shutil.copytree(tiny_multi30k, datasets)
    with (datasets / "multi30k" / "train.en").open("a", encoding="utf-8") as sources:
        sources.write("Then they meet Anna in Berlin.\n")  # capitals inside a sentence
    state = torch.load(trained / "best.pt", weights_only=True)
    del state["truecase"]
    state["config"]["data"]["datasets_dir"] = str(datasets)
    torch.save(state, tmp_path / "old.pt")
    args = ["export", "translation", "--checkpoint", str(tmp_path / "old.pt")]

    assert main([*args, "--out", str(tmp_path / "fitted")]) == 0
    fitted = Truecaser.from_json(tmp_path / "fitted" / "truecase.json")
    assert fitted.forms == {"anna": "Anna", "berlin": "Berlin"}

    (datasets / "multi30k" / "train.en").unlink()
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "none")]) == 0
    assert not (tmp_path / "none" / "truecase.json").exists()
    assert load_manifest(tmp_path / "none").preprocessing["truecaser"] is None
    assert "the model will read texts as written" in capsys.readouterr().err


def test_the_service_translates_with_attention_rows_summing_to_one(translator):
    texts = ["A dog sleeps in the snow.", "Two men play at the beach."]
    for beam in (1, 3):
        predictions = translator.predict_batch(texts, beam_size=beam, return_attention=True)
        for text, prediction in zip(texts, predictions, strict=True):
            assert isinstance(prediction.translation, str) and prediction.score <= 0
            attention = prediction.attention
            weights = np.array(attention.weights)
            assert attention.source_tokens[-1] == "</s>" and attention.target_tokens[-1] == "</s>"
            assert weights.shape == (len(attention.target_tokens), len(attention.source_tokens))
            np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
            (alone,) = translator.predict_batch([text], beam_size=beam)
            assert alone.translation == prediction.translation


def test_max_length_caps_the_output(translator):
    (prediction,) = translator.predict_batch(
        ["A man runs in the park."], max_length=2, return_attention=True
    )
    assert len(prediction.attention.target_tokens) <= 2


def test_evaluate_prints_bleu_equal_to_the_manifest(exported, tiny_multi30k, capsys):
    root = tiny_multi30k / "multi30k"
    args = ["evaluate", "translation", "--src", str(root / "val.en"), "--ref", str(root / "val.de")]
    assert main([*args, "--model", str(exported)]) == 0
    out = capsys.readouterr().out
    bleu = float(re.search(r"^BLEU = ([\d.]+)", out, re.MULTILINE).group(1))
    assert "tok:13a" in out and "case:mixed" in out
    assert re.search(r"^chrF2 = [\d.]+", out, re.MULTILINE)
    assert bleu == pytest.approx(load_manifest(exported).metrics["dev_bleu_beam"], abs=0.006)
    assert main([*args, "--model", str(exported), "--beam-size", "1"]) == 0
    greedy = float(re.search(r"^BLEU = ([\d.]+)", capsys.readouterr().out, re.M).group(1))
    assert greedy == pytest.approx(load_manifest(exported).metrics["dev_bleu_greedy"], abs=0.006)


def test_evaluate_rewrites_the_sources_case_and_scores_case_insensitively(
    exported, tiny_multi30k, capsys
):
    """The tiny corpus has capitals on first words only, so its truecaser restores every source
    in capitals or small letters exactly: each scores what the sources as written score. (In
    title case, its short sentences often look like sentences of names, read as written.)"""
    root = tiny_multi30k / "multi30k"
    args = ["evaluate", "translation", "--src", str(root / "val.en"), "--ref", str(root / "val.de")]
    scores = {}
    for case in ("as-written", "upper", "lower"):
        assert main([*args, "--model", str(exported), "--source-case", case]) == 0
        out = capsys.readouterr().out
        assert f"source case: {case}, scored case-insensitively" in out and "case:lc" in out
        scores[case] = float(re.search(r"^BLEU = ([\d.]+)", out, re.MULTILINE).group(1))
    assert len(set(scores.values())) == 1, scores


def test_evaluate_scores_a_blank_source_line_as_translated_to_nothing(exported, tmp_path, capsys):
    (tmp_path / "src.en").write_text("A dog runs.\n\u200b\n", "utf-8")
    (tmp_path / "ref.de").write_text("Ein Hund rennt.\nEin Hund.\n", "utf-8")
    args = ["evaluate", "translation", "--src", str(tmp_path / "src.en")]
    assert main([*args, "--ref", str(tmp_path / "ref.de"), "--model", str(exported)]) == 0
    assert re.search(r"^BLEU = [\d.]+", capsys.readouterr().out, re.MULTILINE)


def test_evaluate_takes_a_length_penalty_to_choose_it_on_dev_data(exported, tiny_multi30k, capsys):
    root = tiny_multi30k / "multi30k"
    args = ["evaluate", "translation", "--src", str(root / "val.en"), "--ref", str(root / "val.de")]
    penalty = load_manifest(exported).preprocessing["length_penalty"]
    assert main([*args, "--model", str(exported), "--length-penalty", str(penalty)]) == 0
    out = capsys.readouterr().out
    assert f"length penalty {penalty:g}" in out
    bleu = float(re.search(r"^BLEU = ([\d.]+)", out, re.MULTILINE).group(1))
    assert bleu == pytest.approx(load_manifest(exported).metrics["dev_bleu_beam"], abs=0.006)


def test_plot_attention_writes_a_png(exported, tmp_path):
    out = tmp_path / "attention.png"
    args = ["plot-attention", "--text", "A woman sits on the street.", "--out", str(out)]
    assert main([*args, "--model", str(exported)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_attention_refuses_an_image_format_it_cannot_write(tmp_path, capsys):
    out = tmp_path / "attention.txt"
    assert main(["plot-attention", "--text", "A dog.", "--out", str(out)]) == 2  # no traceback
    assert f"error: --out {out}: name an image file ending in .png" in capsys.readouterr().err
    assert not out.exists()


def test_a_failed_export_writes_no_manifest_and_keeps_the_previous_model(
    trained, exported, tmp_path, monkeypatch
):
    def fail(*args, **kwargs):
        raise VerificationError("dev sentence 0: ONNX Runtime greedy gives 'x', PyTorch 'y'")

    monkeypatch.setattr(translation, "verify_greedy", fail)
    export = ["export", "translation", "--checkpoint", str(trained / "best.pt"), "--out"]
    with pytest.raises(VerificationError):
        main([*export, str(tmp_path / "new")])
    assert list(tmp_path.iterdir()) == []  # no unverified model for the service to load

    out = Path(shutil.copytree(exported, tmp_path / "translation"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(VerificationError):
        main([*export, str(out)])

    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["translation"]


def test_export_reads_the_dev_data_from_datasets_dir(
    trained, tiny_multi30k, moved_checkpoint, tmp_path, capsys
):
    def export(checkpoint: Path, out: str, *extra: str) -> int:
        args = ["export", "translation", "--checkpoint", str(checkpoint)]
        return main([*args, "--out", str(tmp_path / out), *extra])

    assert export(trained / "best.pt", "here") == 0
    moved = moved_checkpoint(trained / "best.pt")
    assert export(moved, "out") == 2  # "error: ...", no traceback
    assert "no-such-datasets" in capsys.readouterr().err

    assert export(moved, "out", "--datasets-dir", str(tiny_multi30k)) == 0

    metrics = load_manifest(tmp_path / "out").metrics
    assert metrics == load_manifest(tmp_path / "here").metrics  # measured on the same dev data


def test_dry_run_trains_a_few_batches(tiny_multi30k, tmp_path):
    args = ["train", "translation", "--dry-run", "--run-dir", str(tmp_path)]
    assert main([*args, *overrides(tiny_multi30k)]) == 0
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


LIMIT = 22  # some of the tiny pairs are longer, in subwords, some are not


def test_training_pairs_over_the_length_limit_are_counted_or_refused(
    tiny_multi30k, tmp_path, capsys
):
    args = ["train", "translation", "--dry-run", *overrides(tiny_multi30k)]

    def train(run: str, limit: int) -> int:
        return main(
            [*args, "--run-dir", str(tmp_path / run), "--set", f"data.max_train_tokens={limit}"]
        )

    assert train("a", LIMIT) == 0
    logged = capsys.readouterr().err
    assert f" of 400 training pairs are longer than data.max_train_tokens={LIMIT}" in logged

    assert train("b", 1) == 2
    assert (
        "error: every training pair is longer than data.max_train_tokens=1"
        in capsys.readouterr().err
    )


def test_empty_parallel_files_are_refused_by_name(tiny_multi30k, tmp_path, capsys):
    for lang in ("en", "de"):
        (tmp_path / f"empty.{lang}").write_text("", "utf-8")
    empty = [
        "--set",
        f"data.dev_src={tmp_path / 'empty.en'}",
        "--set",
        f"data.dev_tgt={tmp_path / 'empty.de'}",
    ]
    args = ["train", "translation", "--dry-run", "--run-dir", str(tmp_path / "run")]
    assert main([*args, *overrides(tiny_multi30k), *empty]) == 2
    assert (
        f"error: {tmp_path / 'empty.en'} and {tmp_path / 'empty.de'} hold no sentences"
        in capsys.readouterr().err
    )
