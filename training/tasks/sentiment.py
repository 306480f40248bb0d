"""The sentiment task: SST-2 phrases, IMDB reviews and/or your own labelled texts -> a binary
text classifier."""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from torch.nn import functional as F

from service.predictors.sentiment import SentimentPredictor
from service.runtime.manifest import (
    GraphSpec,
    Manifest,
    TensorSpec,
    file_hashes,
    load_manifest,
)
from service.runtime.registry import open_sessions
from service.runtime.session import SessionConfig
from service.text import Vocab, WordEncoder, pad_batch
from service.text.constants import LABELS_FILE, MODEL_GRAPH_FILE, VOCAB_FILE
from service.text.encoding import LENGTHS, PROBABILITIES, TOKEN_IDS, WordEncoderConfig
from training import data
from training.batching import token_budget_batches
from training.config import (
    SentimentAdversarialConfig,
    SentimentConfig,
    from_dict,
    to_dict,
    with_datasets_dir,
)
from training.embeddings import embedding_matrix, glove_file, glove_words
from training.errors import CheckpointError
from training.export import OPSET, export_onnx
from training.models.sentiment import (
    BidirectionalLanguageModel,
    ProbabilityHead,
    SentimentClassifier,
)
from training.quantize import DevEvaluation, cpu_session
from training.trainer import Trainer, TrainingTask, read_checkpoint, start_from
from training.verify import assert_close

log = logging.getLogger(__name__)


SST_TRAIN, SST_DEV = "sst/sst2_glue/train.tsv", "sst/sst2_glue/dev.tsv"
IMDB_TRAIN = "imdb/train.tsv"
# Dev set names of the built-in data and of the selection metric (dev_<name>_accuracy).
RESERVED_NAMES = {"sst2", "imdb", "mean"}


@dataclass
class SentimentData:
    train: list[data.LabeledText]
    dev: dict[str, list[data.LabeledText]]  # name -> examples
    sources: list[dict]  # for the manifest's training_data


def load_data(config: SentimentConfig, *, with_train: bool = True) -> SentimentData:
    """Training texts and the dev sets (SST-2 dev, IMDB held-out reviews, your own). Without
    ``with_train`` (export and quantize verify on dev only) no training file is read, except
    IMDB's, which holds the held-out dev reviews too."""
    root, files = Path(config.data.datasets_dir), config.data
    train: list[data.LabeledText] = []
    dev: dict[str, list[data.LabeledText]] = {}
    sources: list[dict] = []

    def source(name: str, split: str, records: list, file: str, *, dev: bool = False) -> list:
        if dev and not records:  # it would score NaN, and no epoch would be the best
            raise data.DataError(f"{file}: no labelled texts (the {name} {split} set)")
        sources.append(dict(name=name, split=split, examples=len(records), source=file))
        return records

    if files.use_sst:
        if with_train:
            sst_train = data.read_sst2_tsv(_under(root, SST_TRAIN))
            train += source("sst2_glue", "train", sst_train, SST_TRAIN)
        sst_dev = data.read_sst2_tsv(_under(root, SST_DEV))
        dev["sst2"] = source("sst2_glue", "dev", sst_dev, SST_DEV, dev=True)
    if files.use_imdb:
        imdb_train, imdb_dev = data.split_holdout(
            data.read_imdb_tsv(_under(root, IMDB_TRAIN)), files.imdb_holdout, files.holdout_seed
        )
        if files.train_imdb:
            split = f"train minus held-out (seed {files.holdout_seed})"
            train += source("imdb", split, imdb_train, IMDB_TRAIN)
        split = f"held-out dev (seed {files.holdout_seed})"
        dev["imdb"] = source("imdb", split, imdb_dev, IMDB_TRAIN, dev=True)
    if files.train_file is not None or files.dev_file is not None:
        name = files.name
        valid = isinstance(name, str) and re.fullmatch(r"[a-z][a-z0-9_]*", name)
        if not valid or name in RESERVED_NAMES:
            raise data.DataError(
                f"data.name {name!r} must be lower-case letters, digits and _, and not one of "
                f"{sorted(RESERVED_NAMES)}: the dev metric is named dev_<name>_accuracy"
            )
        if files.train_file is not None and with_train:
            own = data.read_labeled_texts(
                data.dataset_file(root, files.train_file, "data.train_file")
            )
            train += source(name, "train", own, files.train_file)
        if files.dev_file is not None:
            own = data.read_labeled_texts(data.dataset_file(root, files.dev_file, "data.dev_file"))
            dev[name] = source(name, "dev", own, files.dev_file, dev=True)
    if not dev or (with_train and not train):
        raise data.DataError(
            "no training data or no dev data: use SST (data.use_sst), IMDB (data.use_imdb, "
            "data.train_imdb) or your own files (data.train_file, data.dev_file)"
        )
    random.Random(config.trainer.seed).shuffle(train)
    if files.limit_train is not None:
        train = train[: files.limit_train]
    if files.limit_dev is not None:
        dev = {name: records[: files.limit_dev] for name, records in dev.items()}
    return SentimentData(train=train, dev=dev, sources=sources)


def encoder_config(config: SentimentConfig, *, training: bool) -> WordEncoderConfig:
    max_tokens = config.data.max_train_tokens if training else config.max_tokens
    return WordEncoderConfig(
        lowercase=True,
        strip_markup=True,
        max_tokens=max_tokens,
        lowercase_first=config.text.lowercase_first,
        fold_apostrophes=config.text.fold_apostrophes,
    )


def build_vocab(config: SentimentConfig, texts: Sequence[str]) -> Vocab:
    """Training words seen ``min_freq`` times, then frequent GloVe words up to ``max_size``."""
    words = WordEncoder(Vocab.build(Counter()), encoder_config(config, training=False))
    counts = Counter(w for text in texts for w in words.words(text))
    glove = glove_file(config.data.datasets_dir, config.vocab.glove_path)
    fill = config.vocab.glove_fill and glove is not None
    extra = glove_words(glove, config.vocab.max_size) if fill else []
    return Vocab.build(
        counts, min_freq=config.vocab.min_freq, max_size=config.vocab.max_size, extra=extra
    )


def encode(
    encoder: WordEncoder, records: Sequence[data.LabeledText]
) -> list[tuple[list[int], int]]:
    return [(encoder.encode(r.text).ids, r.label) for r in records]


def to_tensors(examples: Sequence[tuple[list[int], int]], indices: Sequence[int]):
    ids, lengths = pad_batch([examples[i][0] for i in indices])
    labels = torch.tensor([examples[i][1] for i in indices])
    return torch.from_numpy(ids), torch.from_numpy(lengths), labels


def predict_probabilities(
    model: nn.Module, examples: Sequence[tuple[list[int], int]], batch_tokens: int = 20000
) -> np.ndarray:
    """Class probabilities for every example, in order (PyTorch, eval mode)."""
    lengths = [len(ids) for ids, _ in examples]
    out = np.zeros((len(examples), 2), dtype=np.float32)
    model.eval()
    with torch.no_grad():
        for batch in token_budget_batches(lengths, batch_tokens, 256, rng=None):
            ids, lens, _ = to_tensors(examples, batch)
            out[batch] = torch.softmax(model(ids, lens), dim=-1).numpy()
    return out


def accuracy_metrics(
    predict: Callable[[Sequence[tuple[list[int], int]]], np.ndarray],
    dev: dict[str, Sequence[tuple[list[int], int]]],
) -> dict[str, float]:
    """``dev_<name>_accuracy`` per dev set (in percent) and their mean."""
    metrics = {}
    for name, examples in dev.items():
        probs = predict(examples)
        gold = np.array([label for _, label in examples])
        metrics[f"dev_{name}_accuracy"] = float((probs.argmax(1) == gold).mean() * 100)
    metrics["dev_mean_accuracy"] = float(np.mean(list(metrics.values())))
    return metrics


def build_model(config: SentimentConfig, vocab_size: int) -> SentimentClassifier:
    return SentimentClassifier(vocab_size, len(data.SENTIMENT_LABELS), **to_dict(config.model))


def train(config: SentimentConfig, run_dir: Path, resume: bool = False) -> dict[str, float]:
    if config.language_model.enabled:
        return pretrain(config, run_dir, resume)
    torch.manual_seed(config.trainer.seed)
    torch.set_num_threads(config.trainer.threads)
    corpus = load_data(config)
    log.info(
        "training examples: %d; dev: %s",
        len(corpus.train),
        {k: len(v) for k, v in corpus.dev.items()},
    )
    start = None
    if config.init_from:
        start = read_checkpoint(Path(config.init_from), "sentiment")
        vocab = Vocab(start["vocab"])
        # The earlier stage's data is part of this model's history.
        earlier = start["training_data"]
        corpus.sources = earlier + [s for s in corpus.sources if s not in earlier]
    else:
        vocab = build_vocab(config, [r.text for r in corpus.train])
    log.info("vocabulary: %d entries", len(vocab))
    train_examples = encode(WordEncoder(vocab, encoder_config(config, training=True)), corpus.train)
    dev_encoder = WordEncoder(vocab, encoder_config(config, training=False))
    dev_examples = {name: encode(dev_encoder, records) for name, records in corpus.dev.items()}

    model = build_model(config, len(vocab))
    if start is not None:
        start_from(model, classifier_weights(start), start, config)
    else:
        init_embeddings(model, vocab, config)
    lengths = [len(ids) for ids, _ in train_examples]

    def batches(epoch: int) -> Iterator:
        rng = random.Random(config.trainer.seed * 1000 + epoch)
        for indices in token_budget_batches(
            lengths, config.data.batch_tokens, config.data.max_batch_size, rng
        ):
            yield to_tensors(train_examples, indices)

    def loss(model: nn.Module, batch) -> torch.Tensor:
        ids, lens, labels = batch
        return classification_loss(model, ids, lens, labels, config.adversarial)

    def evaluate(model: nn.Module) -> dict[str, float]:
        return accuracy_metrics(lambda ex: predict_probabilities(model, ex), dev_examples)

    task = TrainingTask(
        batches=batches,
        loss=loss,
        evaluate=evaluate,
        select="dev_mean_accuracy",
        checkpoint_extra={
            "task": "sentiment",
            "config": to_dict(config),
            "vocab": vocab.tokens,
            "labels": data.SENTIMENT_LABELS,
            "training_data": corpus.sources,
        },
    )
    return Trainer(model, task, config.trainer, run_dir).fit(resume=resume)


def classification_loss(
    model: SentimentClassifier,
    ids: torch.Tensor,
    lengths: torch.Tensor,
    labels: torch.Tensor,
    adversarial: SentimentAdversarialConfig,
) -> torch.Tensor:
    """Cross-entropy of a batch, plus ``adversarial.weight`` times the cross-entropy of the same
    texts with their word vectors moved by ``adversarial.epsilon`` along the loss's gradient
    (normalised per text; padding has no gradient, so it is never moved)."""
    if adversarial.epsilon == 0:
        return F.cross_entropy(model(ids, lengths), labels)
    embedded = model.embed(ids)
    if not embedded.requires_grad:  # frozen embeddings: the step still needs their gradient
        embedded.requires_grad_()
    loss = F.cross_entropy(model.classify(embedded, lengths), labels)
    (gradient,) = torch.autograd.grad(loss, embedded, retain_graph=True)
    norms = gradient.flatten(1).norm(dim=1).clamp_min(1e-12)
    step = adversarial.epsilon * gradient / norms[:, None, None]
    moved = F.cross_entropy(model.classify(embedded + step, lengths), labels)
    return loss + adversarial.weight * moved


def init_embeddings(model: SentimentClassifier, vocab: Vocab, config: SentimentConfig) -> None:
    """GloVe rows for the vocabulary's words (none without a GloVe file: random)."""
    glove = glove_file(config.data.datasets_dir, config.vocab.glove_path)
    if glove is not None:
        weights = embedding_matrix(
            vocab, glove, config.model.embedding_dim, setting="model.embedding_dim"
        )
        model.embedding.weight.data.copy_(torch.from_numpy(weights))


def classifier_weights(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """A classifier's weights from a sentiment checkpoint or a language-model pre-training one
    (whose classifier layer is untrained)."""
    if checkpoint.get("objective") != LANGUAGE_MODEL:
        return checkpoint["model"]
    prefix = "classifier."
    weights = checkpoint["model"].items()
    return {k.removeprefix(prefix): v for k, v in weights if k.startswith(prefix)}


def _under(root: Path, path: str) -> Path:
    """One of the shared data sets' files (SST, IMDB) under ``root``: missing, data.datasets_dir
    is likely not their folder."""
    full = root / path
    if not full.is_file():
        raise data.DataError(
            f"{full} is not a file: data.datasets_dir={str(root)!r} must be the folder of the "
            "shared data sets, or turn them off (data.use_sst=false, data.use_imdb=false) to "
            "use your own files alone"
        )
    return full


# --- language-model pre-training ----------------------------------------------------------------

LANGUAGE_MODEL = "language_model"


def unlabelled_texts(config: SentimentConfig) -> tuple[list[str], list[dict]]:
    """Pre-training text: SST training sentences, IMDB training reviews minus the held-out
    ones and your own training texts (labels unused), with their manifest entries."""
    root = Path(config.data.datasets_dir)
    texts: list[str] = []
    sources = []
    if config.data.use_sst:
        sentences = [
            r.text for r in data.read_sst_trees_binary(_under(root, "sst/trees/train.txt"))
        ]
        texts += sentences
        sources.append(
            dict(
                name="sst_trees",
                split="train sentences, unlabelled (language-model pre-training)",
                examples=len(sentences),
                source="sst/trees/train.txt",
            )
        )
    if config.data.use_imdb:
        reviews, _ = data.split_holdout(
            data.read_imdb_tsv(_under(root, IMDB_TRAIN)),
            config.data.imdb_holdout,
            config.data.holdout_seed,
        )
        texts += [r.text for r in reviews]
        sources.append(
            dict(
                name="imdb",
                split=f"train minus held-out (seed {config.data.holdout_seed}), unlabelled "
                "(language-model pre-training)",
                examples=len(reviews),
                source=IMDB_TRAIN,
            )
        )
    if config.data.train_file is not None:
        own = [
            r.text
            for r in data.read_labeled_texts(
                data.dataset_file(root, config.data.train_file, "data.train_file")
            )
        ]
        texts += own
        sources.append(
            dict(
                name=config.data.name,
                split="train, unlabelled (language-model pre-training)",
                examples=len(own),
                source=config.data.train_file,
            )
        )
    random.Random(config.trainer.seed).shuffle(texts)
    if config.data.limit_train is not None:
        texts = texts[: config.data.limit_train]
    return texts, sources


def pretrain(config: SentimentConfig, run_dir: Path, resume: bool = False) -> dict[str, float]:
    """Train the classifier's embedding and RNN as a bidirectional language model; select on
    the perplexity of the dev texts (SST-2 dev sentences, IMDB held-out reviews)."""
    torch.manual_seed(config.trainer.seed)
    torch.set_num_threads(config.trainer.threads)
    texts, sources = unlabelled_texts(config)
    dev = load_data(config, with_train=False).dev
    dev_texts = {name: [r.text for r in records] for name, records in dev.items()}
    vocab = build_vocab(config, texts)
    log.info("pre-training texts: %d; vocabulary: %d entries", len(texts), len(vocab))
    encoder = WordEncoder(vocab, encoder_config(config, training=True))

    window = config.language_model.window

    def encode_texts(batch: Sequence[str]) -> list[list[int]]:
        """Token ids in pieces of at most ``window``; a piece needs two tokens to predict one."""
        pieces = []
        for text in batch:
            ids = encoder.encode(text).ids
            pieces += [ids[i : i + window] for i in range(0, len(ids), window)]
        return [piece for piece in pieces if len(piece) > 1]

    train_ids = encode_texts(texts)
    dev_ids = {name: encode_texts(batch) for name, batch in dev_texts.items()}
    classifier = build_model(config, len(vocab))
    init_embeddings(classifier, vocab, config)
    model = BidirectionalLanguageModel(
        classifier, len(vocab), config.language_model.cutoffs, config.language_model.div_value
    )

    def tensors(examples: Sequence[list[int]], indices: Sequence[int]):
        ids, lengths = pad_batch([examples[i] for i in indices])
        return torch.from_numpy(ids), torch.from_numpy(lengths)

    train_lengths = [len(ids) for ids in train_ids]

    def batches(epoch: int) -> Iterator:
        rng = random.Random(config.trainer.seed * 1000 + epoch)
        for indices in token_budget_batches(
            train_lengths, config.data.batch_tokens, config.data.max_batch_size, rng
        ):
            yield tensors(train_ids, indices)

    def loss(model: nn.Module, batch) -> torch.Tensor:
        return model(*batch)

    def evaluate(model: nn.Module) -> dict[str, float]:
        metrics, total, pairs = {}, 0.0, 0
        for name, examples in dev_ids.items():
            name_total, name_pairs = 0.0, 0
            lengths = [len(ids) for ids in examples]
            for indices in token_budget_batches(lengths, 20000, 256, rng=None):
                count = sum(lengths[i] - 1 for i in indices)
                name_total += model(*tensors(examples, indices)).item() * count
                name_pairs += count
            metrics[f"dev_{name}_perplexity"] = math.exp(name_total / name_pairs)
            total, pairs = total + name_total, pairs + name_pairs
        metrics["dev_perplexity"] = math.exp(total / pairs)
        return metrics

    task = TrainingTask(
        batches=batches,
        loss=loss,
        evaluate=evaluate,
        select="dev_perplexity",
        lower_is_better=True,
        checkpoint_extra={
            "task": "sentiment",
            "objective": LANGUAGE_MODEL,
            "config": to_dict(config),
            "vocab": vocab.tokens,
            "labels": data.SENTIMENT_LABELS,
            "training_data": sources,
        },
    )
    return Trainer(model, task, config.trainer, run_dir).fit(resume=resume)


# --- export -------------------------------------------------------------------------------------

GRAPH_INPUTS = [(TOKEN_IDS, ["batch", "tokens"]), (LENGTHS, ["batch"])]
GRAPH_OUTPUT = PROBABILITIES


def load_checkpoint(path: Path) -> tuple[SentimentClassifier, dict]:
    """Rebuild the model from a checkpoint, which carries its config and vocabulary."""
    state = read_checkpoint(path, "sentiment")
    if state.get("objective") == LANGUAGE_MODEL:
        raise CheckpointError(
            f"{path} is a language-model pre-training checkpoint: train a classifier from it "
            f"(--set init_from={path}) and export that run's best.pt"
        )
    config = from_dict("sentiment", state["config"])
    model = build_model(config, len(state["vocab"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, state


def ort_probabilities(
    session, examples: Sequence[tuple[list[int], int]], batch_tokens: int = 20000
) -> np.ndarray:
    """Class probabilities from an ONNX Runtime session, batched like
    :func:`predict_probabilities`."""
    lengths = [len(ids) for ids, _ in examples]
    out = np.zeros((len(examples), 2), dtype=np.float32)
    for batch in token_budget_batches(lengths, batch_tokens, 256, rng=None):
        ids, lens = pad_batch([examples[i][0] for i in batch])
        out[batch] = session.run([GRAPH_OUTPUT], {TOKEN_IDS: ids, LENGTHS: lens})[0]
    return out


def encode_dev(
    config: SentimentConfig, vocab: Vocab, corpus: SentimentData
) -> dict[str, list[tuple[list[int], int]]]:
    """The dev sets encoded as served (no training-time truncation)."""
    dev_encoder = WordEncoder(vocab, encoder_config(config, training=False))
    return {name: encode(dev_encoder, records) for name, records in corpus.dev.items()}


def ort_dev_metrics(session, dev: dict[str, Sequence[tuple[list[int], int]]]) -> dict[str, float]:
    """The manifest's dev metrics of a graph run by ONNX Runtime (export and quantize)."""
    return accuracy_metrics(lambda examples: ort_probabilities(session, examples), dev)


def dev_evaluation(folder: Path, manifest: Manifest, config: SentimentConfig) -> DevEvaluation:
    """Dev metrics of any graph file of the artifact in ``folder`` (its int8 variant, say),
    computed as at export; SST-2 dev sentences (else IMDB reviews) are the speed texts."""
    vocab = Vocab.from_json(Path(folder) / VOCAB_FILE)
    corpus = load_data(config, with_train=False)
    dev = encode_dev(config, vocab, corpus)

    def metrics(graphs: Mapping[str, Path], threads: int) -> dict[str, float]:
        return ort_dev_metrics(cpu_session(graphs["model"], threads), dev)

    texts = [r.text for r in corpus.dev.get("sst2") or next(iter(corpus.dev.values()))]
    return DevEvaluation(metrics=metrics, texts=texts)


def build_artifact(
    folder: Path, model: SentimentClassifier, state: dict, config: SentimentConfig, version: str
) -> Manifest:
    """Write the graph and JSON files into ``folder``, check them against PyTorch on dev data
    and return their manifest (with the dev metrics measured through ONNX Runtime)."""
    vocab = Vocab(state["vocab"])
    vocab.to_json(folder / VOCAB_FILE)
    (folder / LABELS_FILE).write_text(json.dumps(state["labels"]), "utf-8")

    head = ProbabilityHead(model).eval()
    example = (torch.tensor([[5, 6, 7], [8, 9, 0]]), torch.tensor([3, 2]))
    export_onnx(
        head,
        example,
        folder / MODEL_GRAPH_FILE,
        input_names=[name for name, _ in GRAPH_INPUTS],
        output_names=[GRAPH_OUTPUT],
        dynamic_axes={
            TOKEN_IDS: {0: "batch", 1: "tokens"},
            LENGTHS: {0: "batch"},
            GRAPH_OUTPUT: {0: "batch"},
        },
    )
    session = ort.InferenceSession(
        str(folder / MODEL_GRAPH_FILE), providers=["CPUExecutionProvider"]
    )

    dev_examples = encode_dev(config, vocab, load_data(config, with_train=False))
    probe = [ex for examples in dev_examples.values() for ex in examples[:256]]
    diff = assert_close(
        predict_probabilities(model, probe),
        ort_probabilities(session, probe),
        1e-4,
        "ONNX Runtime vs PyTorch probabilities on dev batches",
    )
    log.info("parity: max abs difference %.2e over %d dev texts", diff, len(probe))
    invariance = check_batch_invariance(session, probe)
    log.info("batch invariance: max abs difference %.2e", invariance)
    metrics = ort_dev_metrics(session, dev_examples)
    log.info("dev metrics (ONNX Runtime): %s", metrics)

    return Manifest(
        task="sentiment",
        name="sentiment",
        version=version,
        created_at=utc_now(),
        opset=OPSET,
        graphs={
            "model": GraphSpec(
                file=MODEL_GRAPH_FILE,
                inputs=[TensorSpec(name=n, dtype="int64", shape=s) for n, s in GRAPH_INPUTS],
                outputs=[
                    TensorSpec(
                        name=GRAPH_OUTPUT, dtype="float32", shape=["batch", len(state["labels"])]
                    )
                ],
            )
        },
        labels=state["labels"],
        preprocessing=encoder_config(config, training=False).model_dump(),
        training_data=state["training_data"],
        metrics=metrics,
        training_config=state["config"],
        framework={"torch": torch.__version__, "onnxruntime": ort.__version__},
        files=file_hashes(folder),  # the predictor opens listed files only
    )


def evaluate_file(
    model_dir: Path, data_file: Path, threads: int = 1
) -> tuple[str, dict[str, float]]:
    """Score the exported model in ``model_dir`` on a file of labelled texts
    (:func:`training.data.read_labeled_texts`), through the service's predictor.

    Returns scikit-learn's report (precision, recall and F1 per label, accuracy) and the
    accuracy in percent.
    """
    manifest = load_manifest(model_dir, verify=True, task="sentiment")
    records = data.read_labeled_texts(data_file)
    if not records:
        raise data.DataError(f"{data_file}: no labelled texts")
    return _score(_served_predictor(model_dir, manifest, threads), manifest, records)


def evaluate_dev(
    model_dir: Path, threads: int = 1, datasets_dir: Path | None = None
) -> dict[str, tuple[str, dict[str, float]]]:
    """Score the exported model in ``model_dir`` on the dev sets of the training configuration
    its manifest records (SST-2 dev, the IMDB reviews held out with the recorded seed, your
    own), read from ``datasets_dir`` if given, through the service's predictor: the manifest's
    dev metrics, measured again. Returns :func:`evaluate_file`'s pair per dev set."""
    manifest = load_manifest(model_dir, verify=True, task="sentiment")
    config = with_datasets_dir(from_dict("sentiment", manifest.training_config), datasets_dir)
    corpus = load_data(config, with_train=False)
    predictor = _served_predictor(model_dir, manifest, threads)
    return {name: _score(predictor, manifest, records) for name, records in corpus.dev.items()}


def _served_predictor(model_dir: Path, manifest: Manifest, threads: int) -> SentimentPredictor:
    sessions = open_sessions(model_dir, manifest, SessionConfig(intra_op_threads=threads))
    return SentimentPredictor.from_artifact(model_dir, manifest, sessions)


def _score(
    predictor: SentimentPredictor, manifest: Manifest, records: Sequence[data.LabeledText]
) -> tuple[str, dict[str, float]]:
    # Here, not at the top: scikit-learn takes seconds to import, which training and export
    # would pay for nothing.
    from sklearn.metrics import accuracy_score, classification_report

    gold = [data.SENTIMENT_LABELS[r.label] for r in records]
    predicted = [p.label for p in predictor.predict_batch([r.text for r in records])]
    report = classification_report(gold, predicted, labels=manifest.labels, digits=4)
    return report, {"accuracy": accuracy_score(gold, predicted) * 100}


def check_batch_invariance(
    session, examples: Sequence[tuple[list[int], int]], count: int = 16
) -> float:
    """A text scores the same alone and padded into a batch with the longest texts."""
    by_length = sorted(examples, key=lambda ex: len(ex[0]))
    short, long = by_length[:count], by_length[-count:]
    alone = np.concatenate([ort_probabilities(session, [ex]) for ex in short])
    ids, lens = pad_batch([ex[0] for ex in short + long])
    batched = session.run([GRAPH_OUTPUT], {TOKEN_IDS: ids, LENGTHS: lens})[0][: len(short)]
    return assert_close(alone, batched, 1e-5, "probabilities alone vs in a padded batch")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
