"""Adversarial training on the word vectors (adversarial.epsilon)."""

import pytest
import torch
from torch.nn import functional as F

from tests.training.conftest import as_set_options, tiny_sentiment_settings
from training.cli import main
from training.config import SentimentAdversarialConfig
from training.models.sentiment import SentimentClassifier
from training.tasks.sentiment import classification_loss

IDS = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 0, 0, 0]])
LENGTHS = torch.tensor([5, 2])
LABELS = torch.tensor([1, 0])


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SentimentClassifier(12, hidden_size=8, embedding_dim=6).eval()  # no dropout


def test_without_epsilon_it_is_the_cross_entropy(model):
    plain = F.cross_entropy(model(IDS, LENGTHS), LABELS)
    loss = classification_loss(model, IDS, LENGTHS, LABELS, SentimentAdversarialConfig())
    assert torch.allclose(loss, plain)


def test_the_moved_texts_cost_more_than_the_texts_themselves(model):
    plain = F.cross_entropy(model(IDS, LENGTHS), LABELS)
    config = SentimentAdversarialConfig(epsilon=0.5, weight=1.0)
    moved = classification_loss(model, IDS, LENGTHS, LABELS, config) - plain
    assert moved > plain  # the step goes uphill
    # Twice the weight adds the moved texts' loss twice.
    doubled = classification_loss(
        model, IDS, LENGTHS, LABELS, config.model_copy(update={"weight": 2.0})
    )
    assert torch.allclose(doubled - plain, 2 * moved)


def test_each_text_is_moved_on_its_own_whatever_shares_its_batch(model):
    # The step is normalised per text and padding has no gradient: a text's loss is the same
    # alone or padded next to a longer one.
    config = SentimentAdversarialConfig(epsilon=2.0)
    batch = classification_loss(model, IDS, LENGTHS, LABELS, config)
    alone = []
    for i in range(2):
        text, length, label = IDS[i : i + 1, : LENGTHS[i]], LENGTHS[i : i + 1], LABELS[i : i + 1]
        alone.append(classification_loss(model, text, length, label, config))
    assert torch.allclose(batch, sum(alone) / 2, atol=1e-6)


def test_its_gradient_reaches_every_weight(model):
    config = SentimentAdversarialConfig(epsilon=1.0)
    classification_loss(model, IDS, LENGTHS, LABELS, config).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_frozen_word_vectors_are_moved_and_stay_as_they_were():
    torch.manual_seed(0)
    model = SentimentClassifier(12, hidden_size=8, embedding_dim=6, freeze_embeddings=True).eval()
    before = model.embedding.weight.detach().clone()
    plain = F.cross_entropy(model(IDS, LENGTHS), LABELS)
    config = SentimentAdversarialConfig(epsilon=0.5)
    loss = classification_loss(model, IDS, LENGTHS, LABELS, config)
    loss.backward()
    assert loss - plain > plain
    assert model.embedding.weight.grad is None
    assert torch.equal(model.embedding.weight, before)


def test_language_model_pre_training_refuses_it(capsys):
    args = ["train", "sentiment", "--print-config", "--set", "adversarial.epsilon=1"]
    assert main([*args, "--set", "language_model.enabled=true"]) == 2
    assert "adversarial.epsilon applies to classifier training" in capsys.readouterr().err


def test_a_negative_epsilon_is_refused(capsys):
    assert main(["train", "sentiment", "--set", "adversarial.epsilon=-1", "--print-config"]) == 2
    assert "adversarial.epsilon" in capsys.readouterr().err


def test_a_run_records_its_setting(tiny_datasets, tmp_path):
    run_dir = tmp_path / "run"
    settings = [
        *tiny_sentiment_settings(tiny_datasets),
        "trainer.epochs=1",
        "adversarial.epsilon=1.5",
    ]
    assert main(["train", "sentiment", "--run-dir", str(run_dir), *as_set_options(settings)]) == 0
    state = torch.load(run_dir / "best.pt", weights_only=True)
    assert state["config"]["adversarial"] == {"epsilon": 1.5, "weight": 1.0}
