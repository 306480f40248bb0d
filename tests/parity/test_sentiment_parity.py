"""The committed sentiment model: ONNX vs PyTorch parity, batch invariance, reproducible metrics."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.runtime.manifest import load_manifest
from service.text import Vocab, WordEncoder, pad_batch
from service.text.encoding import WordEncoderConfig
from training.config import DATASETS, from_dict
from training.tasks import sentiment

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "exported_models" / "sentiment"
CHECKPOINT = ROOT / "training" / "checkpoints" / "sentiment" / "best.pt"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(ARTIFACT)


@pytest.fixture(scope="module")
def session():
    return ort.InferenceSession(str(ARTIFACT / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def encoder(manifest):
    return WordEncoder(
        Vocab.from_json(ARTIFACT / "vocab.json"), WordEncoderConfig(**manifest.preprocessing)
    )


@pytest.fixture(scope="module")
def dev(manifest, encoder):
    config = from_dict("sentiment", manifest.training_config)
    config.data.datasets_dir = str(DATASETS)  # the checkout's ../shared, wherever it was trained
    corpus = sentiment.load_data(config)
    return {name: sentiment.encode(encoder, records) for name, records in corpus.dev.items()}


def run(session, sequences):
    ids, lengths = pad_batch(sequences)
    return session.run(["probabilities"], {"token_ids": ids, "lengths": lengths})[0]


def test_checkpoint_matches_the_artifact(manifest):
    _model, state = sentiment.load_checkpoint(CHECKPOINT)
    assert state["vocab"] == Vocab.from_json(ARTIFACT / "vocab.json").tokens
    assert state["labels"] == manifest.labels
    assert state["config"] == manifest.training_config


def test_onnx_matches_pytorch_on_dev_batches(session, dev):
    model, _ = sentiment.load_checkpoint(CHECKPOINT)
    examples = dev["sst2"] + dev["imdb"][:300]
    reference = sentiment.predict_probabilities(model, examples)
    candidate = sentiment.ort_probabilities(session, examples)
    assert np.abs(reference - candidate).max() <= 1e-4


def test_a_text_scores_the_same_alone_and_in_a_padded_batch(session, dev):
    short = [ids for ids, _ in dev["sst2"][:32]]
    long = sorted((ids for ids, _ in dev["imdb"]), key=len)[-8:]
    alone = np.concatenate([run(session, [ids]) for ids in short])
    batched = run(session, short + long)[: len(short)]
    assert max(len(ids) for ids in long) > 10 * max(len(ids) for ids in short)
    assert np.abs(alone - batched).max() <= 1e-5


def test_dev_metrics_in_the_manifest_are_reproduced(session, dev, manifest):
    measured = sentiment.accuracy_metrics(lambda ex: sentiment.ort_probabilities(session, ex), dev)
    for key, value in measured.items():
        assert value == pytest.approx(manifest.metrics[key], abs=1e-6), key


def test_artifact_stays_under_25_mb():
    assert sum(p.stat().st_size for p in ARTIFACT.iterdir()) < 25e6
