"""The committed sentiment int8 variant: it qualifies, its recorded dev metrics are reproduced,
and it labels the SST-2 dev sentences as the fp32 graph does (within the recorded change)."""

from pathlib import Path

import numpy as np
import pytest

from service.runtime.manifest import load_manifest
from service.runtime.registry import load_model
from service.runtime.session import SessionConfig
from service.text import Vocab
from training.config import DATASETS, from_dict
from training.quantize import Criteria, cpu_session
from training.tasks import sentiment

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "exported_models" / "sentiment"


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(ARTIFACT)


@pytest.fixture(scope="module")
def variant(manifest):
    assert "int8" in manifest.variants, "run `python -m training quantize sentiment` first"
    return manifest.variants["int8"]


@pytest.fixture(scope="module")
def config(manifest):
    config = from_dict("sentiment", manifest.training_config)
    config.data.datasets_dir = str(DATASETS)  # the checkout's ../shared, wherever it was trained
    return config


def test_the_variant_met_the_criteria_when_it_was_recorded(manifest, variant):
    criteria = Criteria()

    assert variant.qualified and variant.quantization["failures"] == []
    assert set(variant.speedup) == {"batch_1", "batch_32"}
    assert min(variant.speedup.values()) >= criteria.min_speedup
    assert variant.quantization["fp32_metrics"] == pytest.approx(manifest.metrics)
    for key, value in manifest.metrics.items():
        assert value - variant.metrics[key] <= criteria.max_loss_points, key


def test_the_recorded_int8_dev_metrics_are_reproduced(manifest, variant, config):
    evaluation = sentiment.dev_evaluation(ARTIFACT, manifest, config)

    measured = evaluation.metrics({"model": ARTIFACT / variant.graphs["model"]}, 1)

    assert measured == pytest.approx(variant.metrics, abs=1e-9)


def test_int8_labels_agree_with_fp32_on_sst2_dev(manifest, variant, config):
    vocab = Vocab.from_json(ARTIFACT / "vocab.json")
    dev = sentiment.encode_dev(config, vocab, sentiment.load_data(config))["sst2"]
    fp32 = sentiment.ort_probabilities(cpu_session(ARTIFACT / "model.onnx"), dev)
    int8 = sentiment.ort_probabilities(cpu_session(ARTIFACT / variant.graphs["model"]), dev)

    disagree = int((fp32.argmax(1) != int8.argmax(1)).sum())
    # The accuracy change recorded for SST-2 bounds how many labels can have flipped.
    change = abs(manifest.metrics["dev_sst2_accuracy"] - variant.metrics["dev_sst2_accuracy"])
    assert disagree <= max(1, round(change / 100 * len(dev))) + 2
    assert float(np.abs(fp32 - int8).max()) < 0.1


def test_the_service_serves_the_int8_graph(variant):
    model = load_model("sentiment", ARTIFACT, SessionConfig(), "int8")

    (prediction,) = model.predictor.predict_batch(["A moving, beautifully acted film."])

    assert model.predictor.session.path.name == variant.graphs["model"]
    assert model.metrics == variant.metrics
    assert prediction.label == "positive"
