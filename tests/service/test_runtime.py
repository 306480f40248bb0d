"""ONNX Runtime sessions, provider choice, the sentiment predictor and model discovery."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service import REGISTRY_KEY
from service.predictors.sentiment import SentimentPredictor
from service.runtime import session as session_module
from service.runtime.batcher import InlineBatches
from service.runtime.manifest import ArtifactError, discover_models, load_manifest
from service.runtime.registry import open_sessions
from service.runtime.session import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    OnnxSession,
    ProviderError,
    SessionConfig,
    resolve_providers,
)
from service.text.encoding import PROBABILITIES
from tests.service.conftest import REAL_MODEL_DIR

CPU_ONLY = ["AzureExecutionProvider", CPU_PROVIDER]
WITH_CUDA = [CUDA_PROVIDER, CPU_PROVIDER]


@pytest.mark.parametrize(
    ("choice", "available", "expected"),
    [
        ("auto", CPU_ONLY, (CPU_PROVIDER,)),
        ("auto", WITH_CUDA, (CUDA_PROVIDER, CPU_PROVIDER)),
        ("cpu", WITH_CUDA, (CPU_PROVIDER,)),
        ("cuda", WITH_CUDA, (CUDA_PROVIDER, CPU_PROVIDER)),
    ],
)
def test_provider_choice(choice: str, available: list[str], expected: tuple[str, ...]) -> None:
    assert resolve_providers(choice, available) == expected


def test_cuda_without_a_gpu_build_is_refused_with_the_fix() -> None:
    with pytest.raises(ProviderError, match="install onnxruntime-gpu"):
        resolve_providers("cuda", CPU_ONLY)


def sentiment_folder(model_dir: Path) -> Path:
    return model_dir / "sentiment"


def graph_spec(model_dir: Path):
    return load_manifest(sentiment_folder(model_dir)).graphs["model"]


def test_session_runs_named_inputs_and_reports_its_providers(tiny_model_dir: Path) -> None:
    session = OnnxSession(
        sentiment_folder(tiny_model_dir) / "model.onnx", graph_spec(tiny_model_dir), SessionConfig()
    )

    outputs = session.run(
        {"token_ids": np.array([[2, 0]], np.int64), "lengths": np.array([1], np.int64)}
    )

    assert session.providers == [CPU_PROVIDER]
    assert list(outputs) == ["probabilities"]
    assert outputs["probabilities"].shape == (1, 2)


@pytest.mark.parametrize(
    ("inter_op", "mode"),
    [(1, ort.ExecutionMode.ORT_SEQUENTIAL), (2, ort.ExecutionMode.ORT_PARALLEL)],
)
def test_inter_op_threads_take_effect(tiny_model_dir: Path, inter_op: int, mode) -> None:
    # ONNX Runtime ignores the inter-op pool under sequential execution.
    config = SessionConfig(inter_op_threads=inter_op)
    session = OnnxSession(
        sentiment_folder(tiny_model_dir) / "model.onnx", graph_spec(tiny_model_dir), config
    )

    options = session._session.get_session_options()
    assert (options.inter_op_num_threads, options.execution_mode) == (inter_op, mode)


@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")
def test_the_cuda_libraries_are_preloaded_only_for_the_cuda_provider(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    monkeypatch.setattr(ort, "preload_dlls", lambda: calls.append(1), raising=False)
    session_module._preload_cuda_libraries.cache_clear()
    path, spec = sentiment_folder(tiny_model_dir) / "model.onnx", graph_spec(tiny_model_dir)

    OnnxSession(path, spec, SessionConfig(providers=(CPU_PROVIDER,)))
    assert calls == []
    # On a CPU build the CUDA provider falls back to the CPU (a warning under auto).
    OnnxSession(path, spec, SessionConfig(providers=(CUDA_PROVIDER, CPU_PROVIDER)))
    OnnxSession(path, spec, SessionConfig(providers=(CUDA_PROVIDER, CPU_PROVIDER)))
    assert calls == [1]  # once per process
    session_module._preload_cuda_libraries.cache_clear()


# A provider name no onnxruntime build has, so the fallback happens on any machine.
MISSING_PROVIDER = "NoSuchExecutionProvider"
fallback_warning = pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")


@fallback_warning
def test_a_provider_that_does_not_start_is_refused_when_strict(tiny_model_dir: Path) -> None:
    config = SessionConfig(providers=(MISSING_PROVIDER, CPU_PROVIDER), strict=True)

    with pytest.raises(ProviderError, match=f"{MISSING_PROVIDER} was requested"):
        OnnxSession(
            sentiment_folder(tiny_model_dir) / "model.onnx", graph_spec(tiny_model_dir), config
        )


@fallback_warning
def test_a_provider_that_does_not_start_is_a_warning_under_auto(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = SessionConfig(providers=(MISSING_PROVIDER, CPU_PROVIDER), strict=False)

    with caplog.at_level(logging.WARNING, logger="service"):
        session = OnnxSession(
            sentiment_folder(tiny_model_dir) / "model.onnx", graph_spec(tiny_model_dir), config
        )

    assert session.providers == [CPU_PROVIDER]
    assert f"{MISSING_PROVIDER} could not start" in caplog.text


def test_a_file_that_is_not_a_graph_is_an_artifact_error(tiny_model_dir, tmp_path) -> None:
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"not a protobuf")

    with pytest.raises(ArtifactError, match=f"{garbage}: ONNX Runtime cannot load the graph"):
        OnnxSession(garbage, graph_spec(tiny_model_dir), SessionConfig())


def tiny_predictor(model_dir: Path, max_batch_size: int) -> SentimentPredictor:
    folder = sentiment_folder(model_dir)
    manifest = load_manifest(folder)
    predictor = SentimentPredictor.from_artifact(
        folder, manifest, open_sessions(folder, manifest, SessionConfig())
    )
    predictor.scheduler = InlineBatches("sentiment", predictor.run_rows, max_batch_size)
    return predictor


TEXTS = [
    "great",
    "bad bad movie the the the",
    "awful",
    "the movie was good",
    "good good bad",
    "movie",
    "great great great great awful awful awful awful",
    "the the",
] * 3


def test_batched_results_equal_one_by_one_results_in_request_order(tiny_model_dir) -> None:
    predictor = tiny_predictor(tiny_model_dir, max_batch_size=5)

    batched = predictor.predict_batch(TEXTS)
    alone = [predictor.predict_batch([text])[0] for text in TEXTS]

    assert [p.label for p in batched] == [p.label for p in alone]
    for together, single in zip(batched, alone, strict=True):
        assert together.scores == pytest.approx(single.scores, abs=1e-6)


def test_requests_run_in_length_sorted_batches_of_at_most_max_batch_size(
    tiny_model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = tiny_predictor(tiny_model_dir, max_batch_size=5)
    shapes: list[tuple[int, int]] = []
    run = predictor.session.run

    def recording_run(feeds):
        shapes.append(feeds["token_ids"].shape)
        return run(feeds)

    monkeypatch.setattr(predictor.session, "run", recording_run)
    predictor.predict_batch(TEXTS)

    assert [rows for rows, _ in shapes] == [5, 5, 5, 5, 4]
    widths = [width for _, width in shapes]
    assert widths == sorted(widths)  # short texts are padded together, long ones together


def test_discovery_finds_folders_with_a_manifest(tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{}")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "manifest.json").write_text("{}")
    (tmp_path / ".a-old").mkdir()  # what an export parks while it swaps a new folder in
    (tmp_path / ".a-old" / "manifest.json").write_text("{}")

    assert discover_models(tmp_path) == ("a", "b")
    assert discover_models(tmp_path / "missing") == ()
    assert discover_models(tiny_model_dir) == ("sentiment",)


def test_a_long_text_is_not_batched_with_short_ones(
    tiny_model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = sentiment_folder(tiny_model_dir)
    manifest = load_manifest(folder)
    predictor = SentimentPredictor.from_artifact(
        folder, manifest, open_sessions(folder, manifest, SessionConfig())
    )
    widths: list[int] = []
    run = predictor.session.run

    def recording_run(feeds):
        widths.append(feeds["token_ids"].shape[1])
        return run(feeds)

    monkeypatch.setattr(predictor.session, "run", recording_run)
    texts = ["good", "great " * 8, "bad", "awful"]  # the tiny model reads at most 8 tokens
    together = predictor.predict_batch(texts)

    assert widths == [1, 8]  # the one-word texts are not padded to 8 tokens
    for text, result in zip(texts, together, strict=True):
        assert result.scores == pytest.approx(predictor.predict_batch([text])[0].scores, abs=1e-6)


def test_each_model_gets_its_default_fill_unless_overridden(app_factory, tiny_model_dir) -> None:
    def min_fill(app) -> float:
        return app.extensions[REGISTRY_KEY].models["sentiment"].predictor.scheduler.policy.min_fill

    assert min_fill(app_factory(tiny_model_dir)) == SentimentPredictor.min_batch_fill == 0.8
    overridden = app_factory(tiny_model_dir, batch_overrides={"sentiment": {"min_fill": 0}})
    assert min_fill(overridden) == 0.0


def test_an_override_for_a_model_not_served_is_a_warning(app_factory, tiny_model_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="service.runtime.registry"):
        app_factory(tiny_model_dir, batch_overrides={"sentimnt": {"min_fill": 0}})

    expected = "BATCH_OVERRIDES names sentimnt, which is not among the models served here"
    assert f"{expected}: sentiment" in caplog.text


def test_a_variant_must_replace_every_graph() -> None:
    # A half-quantized translator (int8 encoder, fp32 decoder) was never verified.
    manifest = load_manifest(REAL_MODEL_DIR / "translation")
    half = manifest.variants["int8"].model_copy(
        update={"graphs": {"encoder": manifest.variants["int8"].graphs["encoder"]}}
    )
    data = manifest.model_dump() | {"variants": {"int8": half.model_dump()}}

    with pytest.raises(ValueError, match=r"variant 'int8' has graphs \['encoder'\], the model"):
        type(manifest).model_validate(data)


def test_a_graph_answering_another_number_of_labels_fails_at_warm_up(tiny_model_dir) -> None:
    predictor = tiny_predictor(tiny_model_dir, max_batch_size=4)
    session = predictor.session

    class ThreeColumns:  # e.g. a graph exported for three labels, listed with two
        path = session.path

        def run(self, feeds):
            probabilities = session.run(feeds)[PROBABILITIES]
            return {PROBABILITIES: np.concatenate([probabilities, probabilities[:, :1]], axis=1)}

    predictor.session = ThreeColumns()
    with pytest.raises(ArtifactError, match=r"probabilities has shape \(1, 3\), expected \(1, 2\)"):
        predictor.warm_up()
