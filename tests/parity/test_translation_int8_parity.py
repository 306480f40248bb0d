"""The committed translation int8 variant (both graphs): it met the criteria when it was
recorded, and its recorded dev BLEU and chrF (greedy and beam) are reproduced.

ONNX Runtime's int8 matrix products are not bit-identical across CPUs (AVX2 multiplies u8 x s8
pairs with int16 saturation, AVX-512 VNNI does not), and a search magnifies a changed logit
into a changed word, so on another CPU the scores are reproduced within the quantization
criteria's tolerance rather than exactly."""

from pathlib import Path

import pytest

from service.runtime.manifest import load_manifest
from training.config import DATASETS, from_dict
from training.quantize import Criteria
from training.tasks import translation

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "exported_models" / "translation"


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(ARTIFACT)


@pytest.fixture(scope="module")
def variant(manifest):
    assert "int8" in manifest.variants, "run `python -m training quantize translation` first"
    return manifest.variants["int8"]


def test_the_variant_met_the_criteria_when_it_was_recorded(manifest, variant):
    criteria = Criteria()

    assert variant.qualified and variant.quantization["failures"] == []
    assert set(variant.graphs) == set(manifest.graphs) == {"encoder", "decoder_step"}
    assert min(variant.speedup.values()) >= criteria.min_speedup
    for key, value in manifest.metrics.items():
        assert value - variant.metrics[key] <= criteria.max_loss_points, key


def test_the_recorded_int8_dev_scores_are_reproduced(manifest, variant):
    config = from_dict("translation", manifest.training_config)
    config.data.datasets_dir = str(DATASETS)  # the checkout's ../shared, wherever it was trained
    evaluation = translation.dev_evaluation(ARTIFACT, manifest, config)

    graphs = {name: ARTIFACT / file for name, file in variant.graphs.items()}
    measured = evaluation.metrics(graphs, 1)

    tolerance = Criteria().max_loss_points
    assert measured == pytest.approx(variant.metrics, abs=tolerance)
    for key, value in manifest.metrics.items():  # still within the criteria against fp32
        assert value - measured[key] <= tolerance, key
