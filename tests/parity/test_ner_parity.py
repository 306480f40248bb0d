"""The committed NER model: on the whole CoNLL-2003 dev set, ONNX Runtime emissions decoded by
the service's numpy Viterbi give PyTorch's tags for every sentence; a sentence tags the same
alone and in a padded batch; the manifest's dev metrics are reproduced through the service code.
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.predictors.viterbi import CrfParameters
from service.runtime.manifest import load_manifest
from service.text import Vocab
from service.text.features import NerEncoder, NerPreprocessing
from training.config import DATASETS, from_dict
from training.tasks import ner

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "exported_models" / "ner"
CHECKPOINT = ROOT / "training" / "checkpoints" / "ner" / "best.pt"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Small batches: one thread is as fast, and far faster when the cores are busy (OpenMP
    # threads waiting on each other made this module 20x slower next to a training run).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(ARTIFACT)


@pytest.fixture(scope="module")
def checkpoint():
    return ner.load_checkpoint(CHECKPOINT)


@pytest.fixture(scope="module")
def session():
    return ort.InferenceSession(str(ARTIFACT / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def crf():
    return CrfParameters.from_json(ARTIFACT / "crf.json")


@pytest.fixture(scope="module")
def dev_file(manifest) -> Path:
    # The checkout's datasets folder, not the absolute path recorded at training time.
    return DATASETS / from_dict("ner", manifest.training_config).data.dev_file


@pytest.fixture(scope="module")
def dev(manifest, dev_file):
    encoder = NerEncoder(
        Vocab.from_json(ARTIFACT / "vocab.json"),
        Vocab.from_json(ARTIFACT / "chars.json"),
        NerPreprocessing(**manifest.preprocessing),
    )
    sentences = ner.data.read_conll(dev_file)
    assert len(sentences) == 3250
    return ner.encode(encoder, sentences, manifest.labels)


def test_checkpoint_matches_the_artifact(manifest, checkpoint, crf):
    model, state = checkpoint
    assert state["vocab"] == Vocab.from_json(ARTIFACT / "vocab.json").tokens
    assert state["chars"] == Vocab.from_json(ARTIFACT / "chars.json").tokens
    assert state["labels"] == manifest.labels == list(crf.tags)
    assert state["config"] == manifest.training_config
    expected = ner.crf_parameters(model, state["labels"])
    np.testing.assert_array_equal(crf.transitions, expected.transitions)
    np.testing.assert_array_equal(crf.start, expected.start)
    np.testing.assert_array_equal(crf.end, expected.end)


def test_onnx_and_numpy_viterbi_give_pytorch_tags_on_the_whole_dev_set(
    checkpoint, session, crf, dev
):
    model, _ = checkpoint
    assert ner.verify_tags(model, session, crf, dev) <= 1e-4  # raises on any differing tag


def test_a_sentence_tags_the_same_alone_and_in_a_padded_batch(session, crf, dev):
    assert ner.check_batch_invariance(session, crf, dev, count=32) <= 1e-5


def test_dev_metrics_in_the_manifest_are_reproduced_through_the_service(manifest, dev_file):
    _, measured = ner.evaluate_file(ARTIFACT, dev_file)
    for key, value in measured.items():
        assert value == pytest.approx(manifest.metrics[f"dev_{key}"], abs=1e-6), key


def test_quality_bar(manifest):
    assert manifest.metrics["dev_f1"] >= 94.0


def test_artifact_stays_under_25_mb():
    assert sum(p.stat().st_size for p in ARTIFACT.iterdir()) < 25e6
