"""The NER task: CoNLL-2003 (IOB2) -> a BiLSTM-CNN-CRF tagger; export, verification, evaluation.

Training reads ``conll2003/train.txt``; ``valid.txt`` serves model selection and early
stopping only. The export writes the emission network as one ONNX graph plus JSON (words,
characters, tags, CRF scores) and checks, on the whole dev set, that ONNX Runtime emissions
decoded by the service's numpy Viterbi give PyTorch's tags for every sentence.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from seqeval.metrics import classification_report
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2

from service.predictors.ner import NerPredictor
from service.predictors.viterbi import CrfParameters, viterbi_decode
from service.runtime.manifest import (
    GraphSpec,
    Manifest,
    TensorSpec,
    file_hashes,
    load_manifest,
)
from service.runtime.registry import open_sessions
from service.runtime.session import SessionConfig
from service.text import Vocab
from service.text.constants import (
    CHARS_FILE,
    CRF_FILE,
    LABELS_FILE,
    MODEL_GRAPH_FILE,
    TRUECASE_FILE,
    VOCAB_FILE,
)
from service.text.features import (
    CASE_FEATURES,
    EMISSIONS,
    NER_INPUT_NAMES,
    NerEncoder,
    NerFeatures,
    NerPreprocessing,
    pad_ner_batch,
)
from service.text.tokenize import normalize_unicode
from service.text.truecase import Truecaser
from training import data
from training.batching import token_budget_batches
from training.casing import SOURCE_CASES
from training.config import NerConfig, from_dict, to_dict
from training.embeddings import embedding_matrix, glove_file, glove_words
from training.export import OPSET, export_onnx, export_truecaser
from training.models.ner import NerEmissions, NerTagger
from training.models.rnn import length_mask
from training.quantize import DevEvaluation, graph_sessions
from training.trainer import Trainer, TrainingTask, read_checkpoint
from training.verify import VerificationError, assert_close

log = logging.getLogger(__name__)

Example = tuple[NerFeatures, list[int]]  # model inputs, gold tag ids
EVAL_BATCH_TOKENS = 4000


@dataclass
class NerData:
    train: list[data.TaggedSentence]
    dev: list[data.TaggedSentence]
    tags: list[str]  # the model's outputs, in order
    sources: list[dict]  # for the manifest's training_data


def load_data(config: NerConfig) -> NerData:
    """Shuffled training sentences, the dev sentences (file order) and the tag set."""
    files = config.data
    train = data.read_conll(
        data.dataset_file(files.datasets_dir, files.train_file, "data.train_file")
    )
    found = sorted({tag[2:] for sentence in train for _, tag in sentence if tag != "O"})
    if not found:
        raise data.DataError(f"{files.train_file}: no entities (every tag is O): nothing to learn")
    kinds = files.entity_types or found  # a list of distinct names (training.config.EntityTypes)
    tags = data.iob2_tags(kinds)
    _require_tags(train, tags, files.train_file)
    dev = load_dev(config, tags)
    sources = [
        dict(name=files.name, split="train", examples=len(train), source=files.train_file),
        dict(name=files.name, split="valid", examples=len(dev), source=files.dev_file),
    ]
    random.Random(config.trainer.seed).shuffle(train)
    if files.limit_train is not None:
        train = train[: files.limit_train]
    return NerData(train=train, dev=dev, tags=tags, sources=sources)


def load_dev(config: NerConfig, tags: Sequence[str]) -> list[data.TaggedSentence]:
    """The dev sentences (file order), whose tags must be among the model's ``tags`` (export
    and quantize read only these, not the training file)."""
    dev = data.read_conll(
        data.dataset_file(config.data.datasets_dir, config.data.dev_file, "data.dev_file")
    )
    _require_tags(dev, tags, config.data.dev_file)
    return dev if config.data.limit_dev is None else dev[: config.data.limit_dev]


def _require_tags(sentences: Sequence[data.TaggedSentence], tags: Sequence[str], file: str) -> None:
    unknown = {tag for sentence in sentences for _, tag in sentence} - set(tags)
    if unknown:
        raise data.DataError(
            f"{file} has tags {sorted(unknown)} outside the model's {list(tags)}: list every "
            "entity type in data.entity_types (or set it to null to take the training file's)"
        )


def preprocessing(config: NerConfig, truecased: bool = False) -> NerPreprocessing:
    """The preprocessing the model is trained with and served with (the manifest records it);
    ``truecased``: the artifact has a truecaser (the service's, for sentences in small
    letters)."""
    return NerPreprocessing(
        lowercase_words=True,
        max_word_chars=config.max_word_chars,
        max_tokens=config.max_tokens,
        split_sentences=True,
        case_features=list(CASE_FEATURES),
        truecaser=TRUECASE_FILE if truecased else None,
    )


def sentences_of(tagged: Iterable[data.TaggedSentence]) -> Iterator[str]:
    """Tagged sentences as text: their words joined by spaces (what a truecaser is fitted on)."""
    return (" ".join(word for word, _ in sentence) for sentence in tagged)


def build_vocabs(
    config: NerConfig, sentences: Sequence[data.TaggedSentence]
) -> tuple[Vocab, Vocab, int]:
    """``(words, chars, trained)``. Words: lower-cased training words (the first ``trained``
    entries, special tokens included), then frequent GloVe words up to ``max_size``.
    Characters: training characters, case kept."""
    # In the form the encoder looks tokens up in (NFC), whatever the training file's.
    sentences = [[(normalize_unicode(token), tag) for token, tag in s] for s in sentences]
    counts = Counter(token.lower() for sentence in sentences for token, _ in sentence)
    glove = glove_file(config.data.datasets_dir, config.vocab.glove_path)
    fill = config.vocab.glove_fill and glove is not None
    extra = glove_words(glove, config.vocab.max_size) if fill else []
    words = Vocab.build(
        counts, min_freq=config.vocab.min_freq, max_size=config.vocab.max_size, extra=extra
    )
    trained = 2 + sum(1 for t in words.tokens[2:] if counts[t] >= config.vocab.min_freq)
    char_counts = Counter(c for sentence in sentences for token, _ in sentence for c in token)
    chars = Vocab.build(char_counts, min_freq=config.vocab.char_min_freq)
    return words, chars, trained


def encode(
    encoder: NerEncoder, sentences: Sequence[data.TaggedSentence], tags: Sequence[str]
) -> list[Example]:
    """Model inputs and gold tag ids (indices into ``tags``) of each sentence."""
    tag_index = {tag: i for i, tag in enumerate(tags)}
    return [
        (encoder.encode([token for token, _ in s]), [tag_index[tag] for _, tag in s])
        for s in sentences
    ]


def to_tensors(
    examples: Sequence[Example], indices: Sequence[int]
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """``(inputs in graph order, tags (batch, tokens))`` for the examples at ``indices``."""
    feeds = pad_ner_batch([examples[i][0] for i in indices])
    inputs = tuple(torch.from_numpy(feeds[name]) for name in NER_INPUT_NAMES)
    tags = torch.zeros(feeds["word_ids"].shape, dtype=torch.int64)
    for row, index in enumerate(indices):
        tags[row, : len(examples[index][1])] = torch.tensor(examples[index][1])
    return inputs, tags


def eval_batches(examples: Sequence[Example]) -> list[list[int]]:
    """Deterministic batches of similar length for evaluation and verification."""
    return token_budget_batches([len(f) for f, _ in examples], EVAL_BATCH_TOKENS, 256, rng=None)


def predict_tags(model: NerTagger, examples: Sequence[Example]) -> list[list[int]]:
    """PyTorch Viterbi tag ids of every example, in order (eval mode)."""
    out: list[list[int]] = [[] for _ in examples]
    model.eval()
    with torch.no_grad():
        for batch in eval_batches(examples):
            inputs, _ = to_tensors(examples, batch)
            for index, tags in zip(batch, model.decode(inputs), strict=True):
                out[index] = tags
    return out


def entity_metrics(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Entity-level precision/recall/F1 in percent (seqeval, strict IOB2): overall and per type."""
    report = classification_report(
        list(map(list, gold)),
        list(map(list, predicted)),
        mode="strict",
        scheme=IOB2,
        output_dict=True,
        zero_division=0,
    )
    overall = report["micro avg"]
    metrics = {
        "dev_precision": 100 * overall["precision"],
        "dev_recall": 100 * overall["recall"],
        "dev_f1": 100 * overall["f1-score"],
    }
    for kind in sorted(k for k in report if not k.endswith(" avg")):
        metrics[f"dev_f1_{kind}"] = 100 * report[kind]["f1-score"]
    return {k: float(v) for k, v in metrics.items()}


def tag_names(ids: Sequence[Sequence[int]], tags: Sequence[str]) -> list[list[str]]:
    """Tag ids -> tag strings, sentence by sentence."""
    return [[tags[i] for i in row] for row in ids]


def build_model(
    config: NerConfig, vocab_size: int, num_chars: int, trained_words: int, tags: Sequence[str]
) -> NerTagger:
    """The tagger over ``tags``; ``trained_words`` vocabulary entries are fine-tuned (2, the
    special tokens, with ``freeze_embeddings``)."""
    model_args = to_dict(config.model)
    constrain = model_args.pop("constrain_transitions")
    trainable = 2 if model_args.pop("freeze_embeddings") else trained_words
    emissions = NerEmissions(
        vocab_size,
        num_chars,
        len(CASE_FEATURES),
        len(tags),
        trainable_words=trainable,
        **model_args,
    )
    return NerTagger(emissions, list(tags), constrain_transitions=constrain)


def train(config: NerConfig, run_dir: Path, resume: bool = False) -> dict[str, float]:
    """Train with early stopping on dev entity F1; returns the best epoch's record."""
    torch.manual_seed(config.trainer.seed)
    torch.set_num_threads(config.trainer.threads)
    corpus = load_data(config)
    log.info("training sentences: %d; dev: %d", len(corpus.train), len(corpus.dev))
    words, chars, trained_words = build_vocabs(config, corpus.train)
    log.info(
        "vocabulary: %d words (%d from training), %d characters",
        len(words),
        trained_words,
        len(chars),
    )
    encoder = NerEncoder(words, chars, preprocessing(config))
    log.info("tags: %s", corpus.tags)
    train_examples = encode(encoder, corpus.train, corpus.tags)
    dev_examples = encode(encoder, corpus.dev, corpus.tags)
    dev_gold = [[tag for _, tag in s] for s in corpus.dev]

    model = build_model(config, len(words), len(chars), trained_words, corpus.tags)
    glove = glove_file(config.data.datasets_dir, config.vocab.glove_path)
    if glove is not None:  # else the words' vectors start random
        weights = embedding_matrix(words, glove, config.model.word_dim, setting="model.word_dim")
        model.emissions.words.load_vectors(torch.from_numpy(weights))
    lengths = [len(features) for features, _ in train_examples]

    def batches(epoch: int) -> Iterator:
        rng = random.Random(config.trainer.seed * 1000 + epoch)
        for indices in token_budget_batches(lengths, 10**9, config.data.batch_size, rng):
            yield to_tensors(train_examples, indices)

    def loss(model: NerTagger, batch) -> torch.Tensor:
        inputs, tags = batch
        return model.loss(inputs, tags)

    def evaluate(model: NerTagger) -> dict[str, float]:
        return entity_metrics(dev_gold, tag_names(predict_tags(model, dev_examples), corpus.tags))

    task = TrainingTask(
        batches=batches,
        loss=loss,
        evaluate=evaluate,
        select="dev_f1",
        checkpoint_extra={
            "task": "ner",
            "config": to_dict(config),
            "vocab": words.tokens,
            "chars": chars.tokens,
            "trained_words": trained_words,
            "labels": corpus.tags,
            "truecase": Truecaser.fit(sentences_of(corpus.train)).tables(),
            "training_data": corpus.sources,
        },
    )
    return Trainer(model, task, config.trainer, run_dir).fit(resume=resume)


# --- export -------------------------------------------------------------------------------------

GRAPH_INPUT_SHAPES = {
    "word_ids": ["batch", "tokens"],
    "case_ids": ["batch", "tokens"],
    "char_ids": ["batch", "tokens", "chars"],
    "lengths": ["batch"],
}


def load_checkpoint(path: Path) -> tuple[NerTagger, dict]:
    """Rebuild the tagger from a checkpoint, which carries its config and vocabularies."""
    state = read_checkpoint(path, "ner")
    config = from_dict("ner", state["config"])
    model = build_model(
        config, len(state["vocab"]), len(state["chars"]), state["trained_words"], state["labels"]
    )
    model.load_state_dict(state["model"])
    model.eval()
    return model, state


def crf_parameters(model: NerTagger, tags: Sequence[str]) -> CrfParameters:
    """The CRF's effective scores (forbidden transitions included) as written to ``crf.json``."""
    transitions, start, end = (t.detach().double().numpy() for t in model.crf.scores())
    return CrfParameters(tuple(tags), transitions, start, end)


def ort_emissions(
    session, examples: Sequence[Example], batch: Sequence[int]
) -> dict[str, np.ndarray]:
    """``lengths (batch,)`` and ONNX Runtime ``emissions (batch, tokens, tags)`` of a batch."""
    feeds = pad_ner_batch([examples[i][0] for i in batch])
    return {"lengths": feeds["lengths"], EMISSIONS: session.run([EMISSIONS], feeds)[0]}


def verify_tags(
    model: NerTagger, session, crf: CrfParameters, examples: Sequence[Example]
) -> float:
    """ORT emissions + numpy Viterbi give PyTorch's tags for every example; returns the max
    emission difference over real tokens. Raises :class:`VerificationError` otherwise."""
    worst = 0.0
    with torch.no_grad():
        for batch in eval_batches(examples):
            inputs, _ = to_tensors(examples, batch)
            torch_emissions = model(*inputs)
            reference = model.crf.decode(
                torch_emissions, length_mask(inputs[-1], torch_emissions.shape[1])
            )
            out = ort_emissions(session, examples, batch)
            decoded = viterbi_decode(out[EMISSIONS], out["lengths"], crf)
            for row, index in enumerate(batch):
                length = len(examples[index][0])
                worst = max(
                    worst,
                    assert_close(
                        torch_emissions[row, :length].numpy(),
                        out[EMISSIONS][row, :length],
                        1e-4,
                        f"ONNX Runtime vs PyTorch emissions of dev sentence {index}",
                    ),
                )
                if decoded[row].tolist() != reference[row]:
                    raise VerificationError(
                        f"dev sentence {index}: numpy Viterbi over ONNX emissions gives "
                        f"{decoded[row].tolist()}, PyTorch gives {reference[row]}"
                    )
    return worst


def check_batch_invariance(
    session, crf: CrfParameters, examples: Sequence[Example], count: int = 16
) -> float:
    """Short sentences tag and score the same alone and padded into a batch with the longest
    sentences and the longest words; returns the max emission difference."""
    by_length = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    longest_word = max(range(len(examples)), key=lambda i: max(map(len, examples[i][0].char_ids)))
    short, long = by_length[:count], [*by_length[-count:], longest_word]
    worst = 0.0
    batched = ort_emissions(session, examples, short + long)
    batched_tags = viterbi_decode(batched[EMISSIONS], batched["lengths"], crf)
    for row, index in enumerate(short):
        alone = ort_emissions(session, examples, [index])
        length = len(examples[index][0])
        worst = max(
            worst,
            assert_close(
                alone[EMISSIONS][0, :length],
                batched[EMISSIONS][row, :length],
                1e-5,
                f"emissions of dev sentence {index} alone vs in a padded batch",
            ),
        )
        if (
            viterbi_decode(alone[EMISSIONS], alone["lengths"], crf)[0].tolist()
            != batched_tags[row].tolist()
        ):
            raise VerificationError(
                f"dev sentence {index} tags differently alone and in a padded batch"
            )
    return worst


def _example_inputs(encoder: NerEncoder) -> tuple[torch.Tensor, ...]:
    feeds = pad_ner_batch(
        [encoder.encode(["EU", "rejects", "German", "call"]), encoder.encode(["Peter"])]
    )
    return tuple(torch.from_numpy(feeds[name]) for name in NER_INPUT_NAMES)


def build_artifact(
    folder: Path, model: NerTagger, state: dict, config: NerConfig, version: str
) -> Manifest:
    """Write the graph and JSON files into ``folder``, check on the dev set that they tag as
    PyTorch does and return their manifest (with the dev metrics of the service's predictor)."""
    words, chars, tags = Vocab(state["vocab"]), Vocab(state["chars"]), list(state["labels"])
    words.to_json(folder / VOCAB_FILE)
    chars.to_json(folder / CHARS_FILE)
    (folder / LABELS_FILE).write_text(json.dumps(tags), "utf-8")
    crf = crf_parameters(model, tags)
    crf.to_json(folder / CRF_FILE)
    train_file = Path(config.data.datasets_dir) / config.data.train_file
    truecased = export_truecaser(
        state, folder, train_file, lambda path: sentences_of(data.read_conll(path))
    )

    encoder = NerEncoder(words, chars, preprocessing(config))
    axes = {name: dict(enumerate(shape)) for name, shape in GRAPH_INPUT_SHAPES.items()}
    axes["lengths"] = {0: "batch"}
    export_onnx(
        model.emissions,
        _example_inputs(encoder),
        folder / MODEL_GRAPH_FILE,
        input_names=list(NER_INPUT_NAMES),
        output_names=[EMISSIONS],
        dynamic_axes={**axes, EMISSIONS: {0: "batch", 1: "tokens"}},
    )
    session = ort.InferenceSession(
        str(folder / MODEL_GRAPH_FILE), providers=["CPUExecutionProvider"]
    )

    dev = load_dev(config, tags)
    dev_examples = encode(encoder, dev, tags)
    diff = verify_tags(model, session, crf, dev_examples)
    log.info(
        "parity: equal tags on all %d dev sentences; max emission difference %.2e",
        len(dev_examples),
        diff,
    )
    invariance = check_batch_invariance(session, crf, dev_examples)
    log.info("batch invariance: equal tags, max emission difference %.2e", invariance)

    manifest = Manifest(
        task="ner",
        name="ner",
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        opset=OPSET,
        graphs={
            "model": GraphSpec(
                file=MODEL_GRAPH_FILE,
                inputs=[
                    TensorSpec(name=n, dtype="int64", shape=s)
                    for n, s in GRAPH_INPUT_SHAPES.items()
                ],
                outputs=[
                    TensorSpec(
                        name=EMISSIONS, dtype="float32", shape=["batch", "tokens", len(tags)]
                    )
                ],
            )
        },
        labels=tags,
        preprocessing=preprocessing(config, truecased).model_dump(),
        training_data=state["training_data"],
        metrics={},
        training_config=state["config"],
        framework={"torch": torch.__version__, "onnxruntime": ort.__version__},
        files=file_hashes(folder),  # the predictor opens listed files only
    )
    served = open_sessions(folder, manifest, SessionConfig())
    metrics = predictor_dev_metrics(NerPredictor.from_artifact(folder, manifest, served), dev)
    log.info("dev metrics (ONNX Runtime + numpy Viterbi): %s", metrics)
    return manifest.model_copy(update={"metrics": metrics})


def predictor_dev_metrics(
    predictor: NerPredictor, sentences: Sequence[data.TaggedSentence]
) -> dict[str, float]:
    """The manifest's dev metrics: they come from the served path, NerPredictor (numpy CRF)
    over ONNX Runtime emissions (export and quantize)."""
    predicted = predictor.predict_tokens([[w for w, _ in s] for s in sentences])
    return entity_metrics(
        [[t for _, t in s] for s in sentences], [[t.tag for t in p.tokens] for p in predicted]
    )


def dev_evaluation(folder: Path, manifest: Manifest, config: NerConfig) -> DevEvaluation:
    """Dev metrics of any graph file of the artifact in ``folder`` (its int8 variant, say),
    computed as at export; the dev sentences, joined by spaces, are the speed texts."""
    sentences = load_dev(config, manifest.labels)

    def metrics(graphs: Mapping[str, Path], threads: int) -> dict[str, float]:
        sessions = graph_sessions(manifest, graphs, threads)
        predictor = NerPredictor.from_artifact(folder, manifest, sessions)
        return predictor_dev_metrics(predictor, sentences)

    return DevEvaluation(metrics=metrics, texts=[" ".join(w for w, _ in s) for s in sentences])


# --- evaluation of an exported model ------------------------------------------------------------


def evaluate_file(
    model_dir: Path,
    data_file: Path,
    threads: int = 1,
    as_text: bool = False,
    source_case: str | None = None,
) -> tuple[str, dict[str, float]]:
    """Score the exported model in ``model_dir`` on a CoNLL file, through the service's code.

    Returns seqeval's report (strict IOB2, per type and overall) and the metrics as a dict
    (``dev_`` prefix dropped: the file need not be the dev set). With ``as_text``, each
    sentence's tokens are joined by spaces and sent as text instead (see :func:`text_metrics`).
    ``source_case`` (a key of ``training.casing.SOURCE_CASES``) rewrites every word first, as a
    user may type it.
    """
    manifest = load_manifest(model_dir, verify=True, task="ner")
    sessions = open_sessions(model_dir, manifest, SessionConfig(intra_op_threads=threads))
    predictor = NerPredictor.from_artifact(model_dir, manifest, sessions)
    sentences = data.read_conll(data_file)
    if source_case is not None:  # each sentence as a whole: headline case depends on the place
        rewrite = SOURCE_CASES[source_case]
        sentences = [
            list(zip(rewrite(" ".join(w for w, _ in s)).split(" "), [t for _, t in s], strict=True))
            for s in sentences
        ]
    unknown = {tag for s in sentences for _, tag in s} - set(manifest.labels)
    if unknown:
        log.warning(
            "%s has tags %s that %s never predicts (its labels: %s): their entities count as "
            "missed",
            data_file,
            sorted(unknown),
            model_dir,
            manifest.labels,
        )
    if not any(tag != "O" for s in sentences for _, tag in s):
        raise data.DataError(f"{data_file}: no entities (every tag is O): nothing to score")
    if as_text:
        return text_metrics(predictor, sentences)
    predicted = predictor.predict_tokens([[w for w, _ in s] for s in sentences])
    gold = [[t for _, t in s] for s in sentences]
    tags = [[t.tag for t in p.tokens] for p in predicted]
    report = classification_report(
        gold, tags, mode="strict", scheme=IOB2, digits=4, zero_division=0
    )
    metrics = {k.removeprefix("dev_"): v for k, v in entity_metrics(gold, tags).items()}
    return report, metrics


def text_metrics(
    predictor: NerPredictor, sentences: Sequence[Sequence[tuple[str, str]]]
) -> tuple[str, dict[str, float]]:
    """Entity precision/recall/F1 (percent, overall and per type) of ``sentences`` given as
    text: each one's tokens joined by spaces, which the service then tokenizes and splits into
    sentences itself, as it does for ``POST /v1/ner`` ``texts``. An entity counts when its
    character span and type are exactly a gold entity's; the gold entities are the tags' (IOB2)
    spans in the joined text. Returns a table of the scores and the scores."""
    texts, gold = [], set()
    for index, sentence in enumerate(sentences):
        words = [word for word, _ in sentence]
        starts = np.cumsum([0] + [len(word) + 1 for word in words[:-1]]).tolist()
        texts.append(" ".join(words))
        for kind, first, last in get_entities([tag for _, tag in sentence]):
            gold.add((index, starts[first], starts[last] + len(words[last]), kind))
    predicted = {
        (index, entity.start, entity.end, entity.type)
        for index, prediction in enumerate(predictor.predict_batch(texts))
        for entity in prediction.entities
    }
    rows = {}
    for kind in [*sorted({e[3] for e in gold | predicted}), None]:
        wanted = {e for e in gold if kind in (None, e[3])}
        found = {e for e in predicted if kind in (None, e[3])}
        right = len(wanted & found)
        precision = 100 * right / len(found) if found else 0.0
        recall = 100 * right / len(wanted) if wanted else 0.0
        f1 = 2 * precision * recall / (precision + recall) if right else 0.0
        rows[kind or "all"] = (precision, recall, f1, len(wanted))
    report = "\n".join(
        [f"{'':>6} {'precision':>10} {'recall':>10} {'f1':>10} {'support':>8}"]
        + [f"{k:>6} {p:10.2f} {r:10.2f} {f:10.2f} {n:8d}" for k, (p, r, f, n) in rows.items()]
    )
    precision, recall, f1, _ = rows.pop("all")
    metrics = {"precision": precision, "recall": recall, "f1": f1}
    metrics |= {f"f1_{kind}": values[2] for kind, values in rows.items()}
    return report, metrics
