"""``python -m training quantize``: int8 graphs verified on the dev set, recorded only if they
pay off, on the tiny sentiment artifact and the tiny data sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import training.quantize as quantize
from service.runtime.manifest import load_manifest
from service.runtime.registry import load_model, open_sessions
from service.runtime.session import SessionConfig
from tests.service.tiny_artifact import build_tiny_artifact
from tests.service.tiny_translation_artifact import build_tiny_translation_artifact
from training.cli import main
from training.quantize import QuantizationReport, Timing, judge

QUICK = ["--speed-texts", "8", "--repeats", "3"]


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    return build_tiny_artifact(tmp_path / "sentiment")


@pytest.fixture(scope="module")
def trained_translation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained translation artifact (two graphs), built once: copy it to modify it."""
    work_dir = tmp_path_factory.mktemp("translation")
    return build_tiny_translation_artifact(work_dir / "translation", work_dir)


@pytest.fixture
def translation_artifact(trained_translation: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_translation, tmp_path / "translation"))


def fake_speed(fp32_ms: float, int8_ms: float):
    """A stand-in for :func:`training.quantize.measure_speed` with fixed timings: the tiny
    graph is too small for real ones to be meaningful (its own test is below)."""

    def measure(folder, manifest, precisions, texts, timing):
        return {size: {"fp32": fp32_ms / 1000, "int8": int8_ms / 1000} for size in (1, 32)}

    return measure


def quantize_cli(artifact: Path, datasets: Path, *extra: str) -> int:
    args = ["quantize", "sentiment", "--model-dir", str(artifact), "--datasets-dir", str(datasets)]
    return main([*args, *QUICK, *extra])


def test_a_qualifying_variant_is_recorded_and_served(
    artifact: Path, tiny_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "measure_speed", fake_speed(2.0, 1.0))

    assert quantize_cli(artifact, tiny_datasets) == 0

    manifest = load_manifest(artifact)  # verifies every sha256, the int8 file's included
    variant = manifest.variants["int8"]
    assert variant.graphs == {"model": "model.int8.onnx"}
    assert "model.int8.onnx" in manifest.files
    card = (artifact / "MODEL_CARD.md").read_text("utf-8")  # its sha256 checked too
    assert "| metric | fp32 | int8 |" in card and "`MODEL_PRECISION=int8`" in card
    assert variant.qualified and variant.quantization["failures"] == []
    assert variant.speedup == {"batch_1": 2.0, "batch_32": 2.0}
    assert set(variant.metrics) == {"dev_sst2_accuracy", "dev_imdb_accuracy", "dev_mean_accuracy"}
    fp32 = variant.quantization["fp32_metrics"]
    assert all(abs(fp32[k] - variant.metrics[k]) <= 0.5 for k in fp32)
    model = load_model("sentiment", artifact, SessionConfig(), "int8")
    assert model.precision == "int8"
    assert model.predictor.session.path.name == "model.int8.onnx"


def test_a_variant_that_cannot_be_recorded_leaves_the_fp32_model_whole(
    artifact: Path, tiny_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "measure_speed", fake_speed(2.0, 1.0))
    real_seal = quantize.seal

    def seal_fails_with_int8(folder, manifest):
        result = real_seal(folder, manifest)
        if manifest.variants:  # written, then the disk fills (the card, say): undone
            raise OSError("disk full")
        return result

    monkeypatch.setattr(quantize, "seal", seal_fails_with_int8)

    assert quantize_cli(artifact, tiny_datasets) == 2

    manifest = load_manifest(artifact)  # every sha256 checked, the card's included
    assert manifest.variants == {} and not (artifact / "model.int8.onnx").exists()
    assert set(manifest.files) == {p.name for p in artifact.iterdir()} - {"manifest.json"}


def test_a_failure_while_verifying_leaves_no_int8_file(
    artifact: Path, tiny_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Else an unlisted model.int8.onnx stays, and model-card --write refuses the folder.
    def speed_fails(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(quantize, "measure_speed", speed_fails)
    before = (artifact / "manifest.json").read_bytes()

    with pytest.raises(RuntimeError, match="interrupted"):
        quantize.quantize_model(artifact, datasets_dir=tiny_datasets)

    assert not (artifact / "model.int8.onnx").exists()
    assert (artifact / "manifest.json").read_bytes() == before


def test_a_slow_variant_is_removed_and_the_numbers_are_given(
    artifact: Path,
    tiny_datasets: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr(quantize, "measure_speed", fake_speed(1.0, 1.0))
    before = (artifact / "manifest.json").read_text("utf-8")

    assert quantize_cli(artifact, tiny_datasets) == 1

    error = capsys.readouterr().err
    assert "does not qualify" in error
    assert "batch_1 only 1.00x faster (needs 1.3x)" in error
    assert "batch_32: 1.000 ms fp32 -> 1.000 ms int8 (1.00x)" in error
    assert "dev_sst2_accuracy:" in error
    assert not (artifact / "model.int8.onnx").exists()
    assert (artifact / "manifest.json").read_text("utf-8") == before


def test_a_rejected_rerun_drops_the_earlier_variant(
    artifact: Path, tiny_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "measure_speed", fake_speed(2.0, 1.0))
    assert quantize_cli(artifact, tiny_datasets) == 0
    monkeypatch.setattr(quantize, "measure_speed", fake_speed(1.0, 1.0))

    assert quantize_cli(artifact, tiny_datasets) == 1

    manifest = load_manifest(artifact)  # still a complete, verified artifact
    assert manifest.variants == {}
    assert "model.int8.onnx" not in manifest.files
    assert "int8" not in (artifact / "MODEL_CARD.md").read_text("utf-8")


def test_force_records_a_variant_marked_as_not_qualified(
    artifact: Path, tiny_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quantize, "measure_speed", fake_speed(1.0, 1.0))

    assert quantize_cli(artifact, tiny_datasets, "--force") == 0

    variant = load_manifest(artifact).variants["int8"]
    assert not variant.qualified
    assert variant.quantization["failures"][0].startswith("batch_1 only 1.00x")


def test_the_task_named_must_be_the_artifact_s(
    artifact: Path, tiny_datasets: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["quantize", "ner", "--model-dir", str(artifact), "--datasets-dir", str(tiny_datasets)]

    assert main(args) == 2  # "error: ...", no traceback
    assert "holds a 'sentiment' model, not a 'ner' model" in capsys.readouterr().err


def report(fp32: dict[str, float], int8: dict[str, float], speedup: float) -> QuantizationReport:
    ms = {"fp32": speedup, "int8": 1.0}
    return QuantizationReport("m", {}, fp32, int8, {"batch_1": ms, "batch_32": ms})


def test_losing_more_than_half_a_point_on_any_metric_fails() -> None:
    fp32 = {"dev_f1": 90.0, "dev_f1_LOC": 95.0}

    assert judge(report(fp32, {"dev_f1": 89.5, "dev_f1_LOC": 96.0}, 1.3), quantize.Criteria()) == []
    failures = judge(report(fp32, {"dev_f1": 89.6, "dev_f1_LOC": 94.4}, 2.0), quantize.Criteria())
    assert failures == ["dev_f1_LOC loses 0.60 points (at most 0.5 allowed)"]
    assert judge(report(fp32, {"dev_f1": 90.0}, 2.0), quantize.Criteria()) == [
        "dev_f1_LOC loses inf points (at most 0.5 allowed)"
    ]


def test_every_batch_size_must_be_fast_enough() -> None:
    # 2x at batch 1 but no faster at batch 32 (where a batching server runs) does not qualify.
    fp32 = {"dev_accuracy": 90.0}
    times = {"batch_1": {"fp32": 2.0, "int8": 1.0}, "batch_32": {"fp32": 1.0, "int8": 1.0}}
    uneven = QuantizationReport("m", {}, fp32, fp32, times)

    assert judge(uneven, quantize.Criteria()) == ["batch_32 only 1.00x faster (needs 1.3x)"]


def test_speed_is_measured_on_the_graph_calls_of_real_dev_batches(
    artifact: Path, tiny_datasets: Path
) -> None:
    manifest = load_manifest(artifact)
    evaluation = quantize.task_evaluation(artifact, manifest, tiny_datasets)
    files = quantize.write_int8_graphs(artifact, manifest)
    fp32 = {"model": artifact / "model.onnx"}
    int8 = {"model": artifact / files["model"]}
    sessions = open_sessions(artifact, manifest, SessionConfig())
    batches = [evaluation.texts[:32], evaluation.texts[32:40]]
    calls = quantize.record_graph_calls(artifact, manifest, sessions, batches)
    seconds = quantize.measure_speed(
        artifact, manifest, {"fp32": fp32, "int8": int8}, evaluation.texts, Timing(texts=40)
    )

    assert [len(batch) for batch in calls] == [1, 1]  # one padded graph call per batch
    assert [call[1]["token_ids"].shape[0] for call in calls[0] + calls[1]] == [32, 8]
    assert set(seconds) == {1, 32}
    assert all(s > 0 for per in seconds.values() for s in per.values())


def test_a_two_graph_model_gets_both_graphs_quantized_and_verified(
    translation_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = translation_artifact
    monkeypatch.setattr(quantize, "measure_speed", fake_speed(2.0, 1.0))

    assert main(["quantize", "translation", "--model-dir", str(folder), *QUICK]) == 0

    manifest = load_manifest(folder)
    variant = manifest.variants["int8"]
    assert variant.graphs == {
        "encoder": "encoder.int8.onnx",
        "decoder_step": "decoder_step.int8.onnx",
    }
    assert {"dev_bleu_greedy", "dev_bleu_beam"} <= set(variant.metrics)
    model = load_model("translation", folder, SessionConfig(), "int8")
    assert model.precision == "int8"
    (prediction,) = model.predictor.predict_batch(["A man is walking."])
    assert isinstance(prediction.translation, str)


def test_speed_replays_every_graph_call_of_a_two_graph_model(trained_translation: Path) -> None:
    folder = trained_translation
    manifest = load_manifest(folder)
    evaluation = quantize.task_evaluation(folder, manifest, None)
    sessions = open_sessions(folder, manifest, SessionConfig())

    (calls,) = quantize.record_graph_calls(folder, manifest, sessions, [evaluation.texts[:4]])

    graphs = [graph for graph, _ in calls]
    assert graphs[0] == "encoder" and graphs.count("encoder") == 1
    assert graphs.count("decoder_step") >= 1  # one call per decoding step
