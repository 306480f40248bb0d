"""Language-model pre-training of the sentiment encoder: the loss, the run, and a classifier
that starts from it."""

import json

import pytest
import torch

from tests.training.conftest import as_set_options, tiny_sentiment_settings
from training import data
from training.cli import main
from training.config import load_config
from training.errors import ConfigError
from training.models.sentiment import BidirectionalLanguageModel, SentimentClassifier
from training.tasks.sentiment import build_model, classifier_weights, unlabelled_texts


@pytest.fixture(scope="module")
def pretrained(tiny_datasets, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lm")
    overrides = [
        *tiny_sentiment_settings(tiny_datasets),
        "language_model.enabled=true",
        "language_model.window=20",
        "trainer.epochs=3",
        "trainer.lr=0.01",
    ]
    assert main(["train", "sentiment", "--run-dir", str(run_dir), *as_set_options(overrides)]) == 0
    return run_dir


def _language_model(vocab_size: int = 40, cutoffs=(10, 20)) -> BidirectionalLanguageModel:
    torch.manual_seed(0)
    classifier = SentimentClassifier(vocab_size, hidden_size=8, embedding_dim=6)
    return BidirectionalLanguageModel(classifier, vocab_size, cutoffs).eval()


def test_pretraining_lowers_the_dev_perplexity(pretrained):
    lines = (pretrained / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    perplexity = [r["dev_perplexity"] for r in records]
    assert len(perplexity) == 3
    assert perplexity[-1] < perplexity[0]
    assert {"dev_sst2_perplexity", "dev_imdb_perplexity"} <= records[0].keys()
    checkpoint = torch.load(pretrained / "best.pt", weights_only=True)
    assert checkpoint["objective"] == "language_model"
    assert checkpoint["model"].keys() >= {"next_token.head.weight", "classifier.rnn.weight_ih_l0"}


def test_pretraining_text_leaves_out_the_held_out_reviews(tiny_datasets):
    config = load_config("sentiment", None, tiny_sentiment_settings(tiny_datasets))
    texts, sources = unlabelled_texts(config)
    reviews = data.read_imdb_tsv(tiny_datasets / "imdb/train.tsv")
    kept, held_out = data.split_holdout(reviews, 20, 1234)
    sst = data.read_sst_trees_binary(tiny_datasets / "sst/trees/train.txt")
    assert sorted(texts) == sorted([r.text for r in kept] + [r.text for r in sst])
    assert not {r.text for r in held_out} & set(texts)
    assert [s["source"] for s in sources] == ["sst/trees/train.txt", "imdb/train.tsv"]


def test_a_classifier_starts_from_the_pretrained_encoder(pretrained, tiny_datasets, tmp_path):
    checkpoint = torch.load(pretrained / "best.pt", weights_only=True)
    config = load_config("sentiment", None, tiny_sentiment_settings(tiny_datasets))
    classifier = build_model(config, len(checkpoint["vocab"]))
    classifier.load_state_dict(classifier_weights(checkpoint))
    assert torch.equal(
        classifier.rnn.weight_hh_l0_reverse,
        checkpoint["model"]["classifier.rnn.weight_hh_l0_reverse"],
    )

    overrides = [
        *tiny_sentiment_settings(tiny_datasets),
        f"init_from={pretrained / 'best.pt'}",
        "trainer.epochs=1",
    ]
    assert main(["train", "sentiment", "--run-dir", str(tmp_path), *as_set_options(overrides)]) == 0
    tuned = torch.load(tmp_path / "best.pt", weights_only=True)
    assert tuned["vocab"] == checkpoint["vocab"]
    assert "objective" not in tuned
    splits = [d["split"] for d in tuned["training_data"]]
    assert any("language-model pre-training" in split for split in splits)
    assert any(split == "train" for split in splits)  # the labelled SST-2 phrases


def test_a_pretraining_checkpoint_is_not_exported_as_a_classifier(pretrained, tmp_path, capsys):
    args = ["export", "sentiment", "--checkpoint", str(pretrained / "best.pt")]
    assert main([*args, "--out", str(tmp_path / "model")]) == 2  # no traceback
    assert "is a language-model pre-training checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_padding_does_not_change_the_loss():
    model = _language_model()
    texts = [[3, 4, 5, 6, 7, 8], [9, 10, 30], [11, 25, 12, 13]]
    alone = [model(torch.tensor([t]), torch.tensor([len(t)])) for t in texts]
    pairs = torch.tensor([len(t) - 1 for t in texts], dtype=torch.float32)
    expected = (torch.stack(alone) * pairs).sum() / pairs.sum()
    ids = torch.zeros(3, 6, dtype=torch.long)
    for row, text in enumerate(texts):
        ids[row, : len(text)] = torch.tensor(text)
    batched = model(ids, torch.tensor([len(t) for t in texts]))
    assert batched.item() == pytest.approx(expected.item(), abs=1e-5)


def test_each_direction_predicts_from_its_own_side_only():
    model = _language_model()
    ids = torch.tensor([[3, 4, 5, 6]])
    states = {}

    def keep(name):
        def hook(module, args, output):
            states[name] = args[0].detach().clone()

        return hook

    model.next_token.register_forward_hook(keep("next"))
    model.previous_token.register_forward_hook(keep("previous"))
    model(ids, torch.tensor([4]))
    first_next, first_previous = states["next"], states["previous"]
    model(torch.tensor([[3, 4, 5, 29]]), torch.tensor([4]))  # the last token changes
    # forward states at 0..2 predict tokens 1..3 and never saw token 3
    assert torch.equal(states["next"], first_next)
    # backward states at 1..3 predict tokens 0..2: all of them read token 3
    assert not torch.allclose(states["previous"], first_previous)


def test_a_deeper_rnn_is_refused_as_it_would_see_the_tokens_it_predicts():
    # Above the first layer, the forward state at t reads the backward state at t, which has
    # read token t + 1: the loss would reward copying it.
    classifier = SentimentClassifier(40, hidden_size=8, embedding_dim=6, num_layers=2)
    with pytest.raises(ValueError, match="one-layer RNN"):
        BidirectionalLanguageModel(classifier, 40)
    with pytest.raises(ConfigError, match=r"needs model\.num_layers=1"):
        load_config("sentiment", None, ["language_model.enabled=true", "model.num_layers=2"])
    # Either alone is fine.
    assert load_config("sentiment", None, ["model.num_layers=2"]).model.num_layers == 2
    assert load_config("sentiment", None, ["language_model.enabled=true"]).language_model.enabled


def test_cutoffs_outside_the_vocabulary_are_dropped():
    model = _language_model(vocab_size=15, cutoffs=(10, 2000))
    assert model.next_token.cutoffs == [10, 15]
    loss = model(torch.tensor([[3, 4, 14, 12]]), torch.tensor([4]))
    assert torch.isfinite(loss)


def test_the_trainer_keeps_the_lowest_perplexity_when_lower_is_better(tmp_path):
    from training.config import TrainerConfig
    from training.trainer import Trainer, TrainingTask

    model = torch.nn.Linear(2, 1)
    perplexities = iter([30.0, 10.0, 20.0])
    task = TrainingTask(
        batches=lambda epoch: [torch.ones(1, 2)],
        loss=lambda model, batch: model(batch).sum(),
        evaluate=lambda model: {"dev_perplexity": next(perplexities)},
        select="dev_perplexity",
        lower_is_better=True,
    )
    best = Trainer(model, task, TrainerConfig(epochs=3, patience=3), tmp_path).fit()
    assert best["epoch"] == 2
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["best"] for line in lines] == [1.0, 1.0, 0.0]
