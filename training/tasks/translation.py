"""The translation task: Multi30k English -> German with sentencepiece subwords and an
attentional GRU encoder-decoder; export as two ONNX graphs, verification, evaluation, plots.

Training reads ``multi30k/train.{en,de}``; ``val.{en,de}`` serves model selection (greedy dev
BLEU) only. Decoding, in training as in the service, is the numpy search of
:mod:`service.predictors.decoding`; in training its step function runs the PyTorch model, in
the service the ``decoder_step`` graph, so the export can check that both give the same strings.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import sacrebleu
import torch
from torch.nn import functional as F

from service.predictors.decoding import Hypothesis, State, greedy_search, max_lengths
from service.predictors.translator import (
    ATTENTION,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_OUTPUTS,
    ENCODER_STATES,
    HIDDEN,
    INPUT_FEED,
    LOG_PROBS,
    NEXT_HIDDEN,
    NEXT_INPUT_FEED,
    SRC_IDS,
    SRC_LENGTHS,
    SRC_MASK,
    TranslationPreprocessing,
    Translator,
)
from service.runtime.manifest import (
    GraphSpec,
    Manifest,
    TensorSpec,
    file_hashes,
    load_manifest,
)
from service.runtime.registry import open_sessions
from service.runtime.session import SessionConfig
from service.text.constants import (
    DECODER_STEP_GRAPH_FILE,
    ENCODER_GRAPH_FILE,
    SOURCE_SPM_FILE,
    TARGET_SPM_FILE,
    TRUECASE_FILE,
)
from service.text.padding import pad_batch
from service.text.subword import SubwordTokenizer, is_blank_char
from service.text.truecase import Truecaser
from training import data
from training.batching import token_budget_batches
from training.casing import SOURCE_CASES
from training.config import TranslationConfig, from_dict, to_dict
from training.export import OPSET, export_onnx, export_truecaser
from training.models.seq2seq import DecoderStepGraph, EncoderGraph, Seq2Seq
from training.quantize import DevEvaluation, GraphFiles, graph_sessions
from training.trainer import Trainer, TrainingTask, read_checkpoint, start_from
from training.verify import VerificationError, assert_close

log = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 64
Pair = tuple[list[int], list[int]]  # source ids (eos included), target ids (no bos/eos)


@dataclass
class ParallelData:
    train: list[tuple[str, str]]
    dev: list[tuple[str, str]]
    sources: list[dict]  # for the manifest's training_data


def read_parallel(
    src_path: Path, tgt_path: Path, *, refuse_blank: bool = True
) -> list[tuple[str, str]]:
    """Aligned lines of two files as ``(source, target)`` pairs (raw text, line ends removed).
    With ``refuse_blank`` (training and dev data), a blank line on either side is an error
    naming it: it would teach the model to translate nothing into a sentence, or a sentence
    into nothing."""
    src, tgt = data.read_lines(src_path), data.read_lines(tgt_path)
    if len(src) != len(tgt):
        raise data.DataError(f"{src_path} has {len(src)} lines, {tgt_path} has {len(tgt)}")
    if not src:
        raise data.DataError(f"{src_path} and {tgt_path} hold no sentences")
    if refuse_blank:
        for path, lines in ((src_path, src), (tgt_path, tgt)):
            blank = next((i for i, line in enumerate(lines, 1) if not line.strip()), None)
            if blank is not None:
                raise data.DataError(
                    f"{path}:{blank}: the line is blank; every line holds one sentence, aligned "
                    "with the same line of the other file"
                )
    return list(zip(src, tgt, strict=True))


def load_data(config: TranslationConfig) -> ParallelData:
    """Shuffled training pairs and the dev pairs (file order)."""
    root, files = Path(config.data.datasets_dir), config.data
    train = read_parallel(
        data.dataset_file(root, files.train_src, "data.train_src"),
        data.dataset_file(root, files.train_tgt, "data.train_tgt"),
    )
    dev = load_dev(config)
    sources = [
        dict(
            name=files.name,
            split="train",
            examples=len(train),
            source=f"{files.train_src}, {files.train_tgt}",
        ),
        dict(
            name=files.name,
            split="val",
            examples=len(dev),
            source=f"{files.dev_src}, {files.dev_tgt}",
        ),
    ]
    random.Random(config.trainer.seed).shuffle(train)
    if files.limit_train is not None:
        train = train[: files.limit_train]
    return ParallelData(train=train, dev=dev, sources=sources)


def load_dev(config: TranslationConfig) -> list[tuple[str, str]]:
    """The dev pairs, in file order (export and quantize read only these)."""
    root, files = Path(config.data.datasets_dir), config.data
    dev = read_parallel(
        data.dataset_file(root, files.dev_src, "data.dev_src"),
        data.dataset_file(root, files.dev_tgt, "data.dev_tgt"),
    )
    return dev if files.limit_dev is None else dev[: files.limit_dev]


def train_tokenizers(
    config: TranslationConfig, pairs: Sequence[tuple[str, str]]
) -> tuple[SubwordTokenizer, SubwordTokenizer]:
    """Source and target sentencepiece models, trained on the training pairs only."""
    vocab = config.vocab
    source = SubwordTokenizer.train((s for s, _ in pairs), vocab.source_size, vocab.model_type)
    target = SubwordTokenizer.train((t for _, t in pairs), vocab.target_size, vocab.model_type)
    return source, target


def encode_pairs(
    source: SubwordTokenizer, target: SubwordTokenizer, pairs: Sequence[tuple[str, str]]
) -> list[Pair]:
    return [(source.encode_source(s), target.encode(t)) for s, t in pairs]


def preprocessing(config: TranslationConfig, truecased: bool = False) -> TranslationPreprocessing:
    """What the service needs to encode and decode (the manifest records it); ``truecased``:
    the artifact has a truecaser."""
    decoding = config.decoding
    return TranslationPreprocessing(
        source_model=SOURCE_SPM_FILE,
        target_model=TARGET_SPM_FILE,
        truecaser=TRUECASE_FILE if truecased else None,
        max_source_tokens=config.max_source_tokens,
        beam_size=decoding.beam_size,
        length_penalty=decoding.length_penalty,
        max_length_a=decoding.max_length_a,
        max_length_b=decoding.max_length_b,
        max_length=decoding.max_length,
    )


def build_model(config: TranslationConfig, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    return Seq2Seq(src_vocab, tgt_vocab, **to_dict(config.model))


def to_tensors(pairs: Sequence[Pair], bos_id: int, eos_id: int) -> tuple[torch.Tensor, ...]:
    """``src_ids (batch, src_len)``, ``src_lengths (batch,)``, ``tgt_in`` and ``tgt_out``
    ``(batch, tgt_len + 1)``: bos + target, target + eos (padding 0)."""
    src_ids, src_lengths = pad_batch([s for s, _ in pairs])
    tgt_in, _ = pad_batch([[bos_id, *t] for _, t in pairs])
    tgt_out, _ = pad_batch([[*t, eos_id] for _, t in pairs])
    return tuple(torch.from_numpy(a) for a in (src_ids, src_lengths, tgt_in, tgt_out))


def torch_step(model: Seq2Seq):
    """A step function for :mod:`service.predictors.decoding` that runs the PyTorch model."""

    def step(prev_tokens: np.ndarray, state: State) -> tuple[np.ndarray, State, np.ndarray]:
        with torch.no_grad():
            tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
            graph = DecoderStepGraph(model)
            log_probs, hidden, feed, attention = graph(
                torch.from_numpy(prev_tokens.astype(np.int64)),
                tensors[HIDDEN],
                tensors[INPUT_FEED],
                tensors[ENCODER_STATES],
                tensors[SRC_MASK],
            )
        next_state = {**state, HIDDEN: hidden.numpy(), INPUT_FEED: feed.numpy()}
        return log_probs.numpy(), next_state, attention.numpy()

    return step


def torch_encode(model: Seq2Seq, sources: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    ids, lengths = pad_batch(sources)
    with torch.no_grad():
        outputs = model.encode(torch.from_numpy(ids), torch.from_numpy(lengths))
    return {name: t.numpy() for name, t in zip(ENCODER_OUTPUTS, outputs, strict=True)}


def eval_batches(sources: Sequence[Sequence[int]]) -> list[list[int]]:
    """Deterministic batches of similar source length."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    return [order[i : i + EVAL_BATCH_SIZE] for i in range(0, len(order), EVAL_BATCH_SIZE)]


def decode_limits(config: TranslationConfig, sources: Sequence[Sequence[int]]) -> np.ndarray:
    d = config.decoding
    return max_lengths(
        np.array([len(s) for s in sources]), d.max_length_a, d.max_length_b, d.max_length
    )


def torch_greedy(
    model: Seq2Seq, config: TranslationConfig, sources: Sequence[Sequence[int]], bos: int, eos: int
) -> list[Hypothesis]:
    """PyTorch greedy decoding of every source (eval mode), in order."""
    model.eval()
    out: list[Hypothesis | None] = [None] * len(sources)
    step = torch_step(model)
    for batch in eval_batches(sources):
        chunk = [sources[i] for i in batch]
        hyps = greedy_search(
            step,
            torch_encode(model, chunk),
            bos_id=bos,
            eos_id=eos,
            max_lengths=decode_limits(config, chunk),
        )
        for index, hyp in zip(batch, hyps, strict=True):
            out[index] = hyp
    return out  # type: ignore[return-value]


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """sacreBLEU (cased, 13a tokenization) and chrF of detokenized output vs raw references."""
    return {
        "bleu": float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score),
        "chrf": float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score),
    }


def train(config: TranslationConfig, run_dir: Path, resume: bool = False) -> dict[str, float]:
    """Train with model selection on greedy dev BLEU; returns the best epoch's record."""
    torch.manual_seed(config.trainer.seed)
    torch.set_num_threads(config.trainer.threads)
    corpus = load_data(config)
    log.info("training pairs: %d; dev: %d", len(corpus.train), len(corpus.dev))
    start = None
    if config.init_from:
        start = read_checkpoint(Path(config.init_from), "translation")
        source = SubwordTokenizer(start["source_spm"])
        target = SubwordTokenizer(start["target_spm"])
    else:
        source, target = train_tokenizers(config, corpus.train)
    log.info("subword vocabularies: source %d, target %d", len(source), len(target))
    limit = config.data.max_train_tokens
    train_pairs = [
        p
        for p in encode_pairs(source, target, corpus.train)
        if len(p[0]) <= limit and len(p[1]) < limit
    ]
    left_out = len(corpus.train) - len(train_pairs)
    if not train_pairs:
        raise data.DataError(
            f"every training pair is longer than data.max_train_tokens={limit} subwords"
        )
    if left_out:
        log.warning(
            "%d of %d training pairs are longer than data.max_train_tokens=%d subwords and are "
            "left out",
            left_out,
            len(corpus.train),
            limit,
        )
    dev_sources = [source.encode_source(s) for s, _ in corpus.dev]
    dev_refs = [t for _, t in corpus.dev]
    model = build_model(config, len(source), len(target))
    if start is not None:
        start_from(model, start["model"], start, config)
    log.info("parameters: %d", sum(p.numel() for p in model.parameters()))
    lengths = [max(len(s), len(t) + 1) for s, t in train_pairs]
    bos, eos = target.bos_id, target.eos_id

    def batches(epoch: int) -> Iterator:
        rng = random.Random(config.trainer.seed * 1000 + epoch)
        for indices in token_budget_batches(
            lengths, config.data.batch_tokens, config.data.max_batch_size, rng
        ):
            yield to_tensors([train_pairs[i] for i in indices], bos, eos)

    def loss(model: Seq2Seq, batch) -> torch.Tensor:
        src_ids, src_lengths, tgt_in, tgt_out = batch
        real = tgt_out != target.pad_id
        logits = model.generate(model(src_ids, src_lengths, tgt_in)[real])
        return F.cross_entropy(logits, tgt_out[real], label_smoothing=config.label_smoothing)

    def evaluate(model: Seq2Seq) -> dict[str, float]:
        hyps = torch_greedy(model, config, dev_sources, bos, eos)
        scores = corpus_scores([target.decode(h.tokens) for h in hyps], dev_refs)
        return {f"dev_{name}_greedy": value for name, value in scores.items()}

    task = TrainingTask(
        batches=batches,
        loss=loss,
        evaluate=evaluate,
        select="dev_bleu_greedy",
        checkpoint_extra={
            "task": "translation",
            "config": to_dict(config),
            "source_spm": source.model_proto,
            "target_spm": target.model_proto,
            "truecase": Truecaser.fit(s for s, _ in corpus.train).tables(),  # this run's data
            "training_data": corpus.sources,
        },
    )
    return Trainer(model, task, config.trainer, run_dir).fit(resume=resume)


# --- export -------------------------------------------------------------------------------------

ENCODER_INPUT_SHAPES = {SRC_IDS: ["batch", "src_len"], SRC_LENGTHS: ["batch"]}


def load_checkpoint(path: Path) -> tuple[Seq2Seq, dict]:
    """Rebuild the model from a checkpoint, which carries its config and subword models."""
    state = read_checkpoint(path, "translation")
    config = from_dict("translation", state["config"])
    source, target = SubwordTokenizer(state["source_spm"]), SubwordTokenizer(state["target_spm"])
    model = build_model(config, len(source), len(target))
    model.load_state_dict(state["model"])
    model.eval()
    return model, state


def graph_specs(model: Seq2Seq, tgt_vocab: int) -> dict[str, GraphSpec]:
    """Names, dtypes and shapes of the two graphs (as the manifest declares them)."""
    enc = 2 * model.encoder.hidden_size
    state_size = model.decoder_hidden * (2 if model.cell_type == "lstm" else 1)
    dec = model.decoder_hidden

    def f32(name: str, *shape: str | int) -> TensorSpec:
        return TensorSpec(name=name, dtype="float32", shape=list(shape))

    states = f32(ENCODER_STATES, "batch", "src_len", enc)
    mask = TensorSpec(name=SRC_MASK, dtype="bool", shape=["batch", "src_len"])
    return {
        "encoder": GraphSpec(
            file=ENCODER_GRAPH_FILE,
            inputs=[
                TensorSpec(name=n, dtype="int64", shape=s) for n, s in ENCODER_INPUT_SHAPES.items()
            ],
            outputs=[states, f32(HIDDEN, "batch", state_size), f32(INPUT_FEED, "batch", dec), mask],
        ),
        "decoder_step": GraphSpec(
            file=DECODER_STEP_GRAPH_FILE,
            inputs=[
                TensorSpec(name="prev_tokens", dtype="int64", shape=["batch"]),
                f32(HIDDEN, "batch", state_size),
                f32(INPUT_FEED, "batch", dec),
                states,
                mask,
            ],
            outputs=[
                f32(LOG_PROBS, "batch", tgt_vocab),
                f32(NEXT_HIDDEN, "batch", state_size),
                f32(NEXT_INPUT_FEED, "batch", dec),
                f32(ATTENTION, "batch", "src_len"),
            ],
        ),
    }


def export_graphs(model: Seq2Seq, source: SubwordTokenizer, out_dir: Path) -> None:
    """Write ``encoder.onnx`` and ``decoder_step.onnx`` with dynamic batch and length axes."""
    examples = [source.encode_source("A man rides a bike."), source.encode_source("Two dogs.")]
    ids, lengths = pad_batch(examples)
    inputs = (torch.from_numpy(ids), torch.from_numpy(lengths))
    export_onnx(
        EncoderGraph(model),
        inputs,
        out_dir / ENCODER_GRAPH_FILE,
        input_names=[SRC_IDS, SRC_LENGTHS],
        output_names=list(ENCODER_OUTPUTS),
        dynamic_axes={
            SRC_IDS: {0: "batch", 1: "src_len"},
            SRC_LENGTHS: {0: "batch"},
            ENCODER_STATES: {0: "batch", 1: "src_len"},
            HIDDEN: {0: "batch"},
            INPUT_FEED: {0: "batch"},
            SRC_MASK: {0: "batch", 1: "src_len"},
        },
    )
    with torch.no_grad():
        states, hidden, feed, mask = model.encode(*inputs)
    export_onnx(
        DecoderStepGraph(model),
        (torch.tensor([2, 2]), hidden, feed, states, mask),
        out_dir / DECODER_STEP_GRAPH_FILE,
        input_names=list(DECODER_INPUTS),
        output_names=list(DECODER_OUTPUTS),
        dynamic_axes={
            "prev_tokens": {0: "batch"},
            HIDDEN: {0: "batch"},
            INPUT_FEED: {0: "batch"},
            ENCODER_STATES: {0: "batch", 1: "src_len"},
            SRC_MASK: {0: "batch", 1: "src_len"},
            LOG_PROBS: {0: "batch"},
            NEXT_HIDDEN: {0: "batch"},
            NEXT_INPUT_FEED: {0: "batch"},
            ATTENTION: {0: "batch", 1: "src_len"},
        },
    )


def load_translator(model_dir: Path, threads: int = 1) -> Translator:
    """The service's predictor over a verified artifact folder."""
    manifest = load_manifest(model_dir, verify=True, task="translation")
    return open_translator(model_dir, manifest, threads)


def open_translator(folder: Path, manifest: Manifest, threads: int = 1) -> Translator:
    """The service's predictor over the graphs and subword models in ``folder`` that
    ``manifest`` describes (its files are not checked against their sha256)."""
    sessions = open_sessions(folder, manifest, SessionConfig(intra_op_threads=threads))
    return Translator.from_artifact(folder, manifest, sessions)


def verify_greedy(
    model: Seq2Seq,
    translator: Translator,
    config: TranslationConfig,
    sources: Sequence[Sequence[int]],
    atol: float = 1e-4,
) -> float:
    """On every source: ONNX Runtime greedy strings equal PyTorch's, and at every step of the
    ONNX search the decoder's log-probabilities (and the encoder outputs) match PyTorch's to
    ``atol``. Returns the max difference; raises :class:`VerificationError` otherwise."""
    worst = 0.0
    reference = torch_greedy(
        model, config, sources, translator.target.bos_id, translator.target.eos_id
    )
    torch_step_fn = torch_step(model)

    def checked_step(prev: np.ndarray, state: State):
        nonlocal worst
        log_probs, next_state, attention = translator.step(prev, state)
        expected, _, expected_attention = torch_step_fn(prev, state)
        worst = max(worst, assert_close(expected, log_probs, atol, "decoder_step log_probs"))
        worst = max(worst, assert_close(expected_attention, attention, atol, "attention"))
        return log_probs, next_state, attention

    for batch in eval_batches(sources):
        chunk = [sources[i] for i in batch]
        state = translator.encode(chunk)
        expected = torch_encode(model, chunk)
        for name in (ENCODER_STATES, HIDDEN, INPUT_FEED):
            worst = max(worst, assert_close(expected[name], state[name], atol, f"encoder {name}"))
        hyps = greedy_search(
            checked_step,
            state,
            bos_id=translator.target.bos_id,
            eos_id=translator.target.eos_id,
            max_lengths=decode_limits(config, chunk),
        )
        for index, hyp in zip(batch, hyps, strict=True):
            got, want = (
                translator.target.decode(hyp.tokens),
                translator.target.decode(reference[index].tokens),
            )
            if got != want:
                raise VerificationError(
                    f"dev sentence {index}: ONNX Runtime greedy gives {got!r}, PyTorch {want!r}"
                )
    return worst


def check_batch_invariance(
    translator: Translator, texts: Sequence[str], beam_size: int, count: int = 8
) -> float:
    """The shortest texts translate to the same strings alone and inside a batch with the
    longest ones; returns the max score difference."""
    by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows = [
        translator.make_row(texts[i], beam_size) for i in by_length[:count] + by_length[-count:]
    ]
    batched = translator.run_rows(rows)
    worst = 0.0
    for row, together in zip(rows[:count], batched, strict=False):
        (alone,) = translator.run_rows([row])
        if alone.tokens != together.tokens:
            raise VerificationError(
                f"{translator.source.decode(row.ids)!r} translates differently alone and in a batch"
            )
        worst = max(worst, abs(alone.score - together.score))
    if worst > 1e-4:
        raise VerificationError(f"scores alone vs in a batch differ by {worst:.3g}")
    return worst


def dev_bleu(
    translator: Translator, dev: Sequence[tuple[str, str]], beam_size: int
) -> dict[str, float]:
    """Greedy and beam dev scores through the service's predictor, keyed as the export records
    them (``dev_bleu_greedy``, ``dev_chrf_beam``, ...)."""
    sources, refs = [s for s, _ in dev], [t for _, t in dev]
    metrics: dict[str, float] = {}
    for name, beam in [("greedy", 1), ("beam", beam_size)]:
        outputs = translator.predict_batch(sources, beam_size=beam)
        for key, value in corpus_scores([p.translation for p in outputs], refs).items():
            metrics[f"dev_{key}_{name}"] = value
    return metrics


def build_artifact(
    folder: Path, model: Seq2Seq, state: dict, config: TranslationConfig, version: str
) -> Manifest:
    """Write the graphs, the subword models and the truecaser into ``folder``, check on the dev
    set that the service's predictor over them decodes as PyTorch does and return their
    manifest (with the dev scores of that predictor)."""
    source, target = SubwordTokenizer(state["source_spm"]), SubwordTokenizer(state["target_spm"])
    source.save(folder / SOURCE_SPM_FILE)
    target.save(folder / TARGET_SPM_FILE)
    train_src = Path(config.data.datasets_dir) / config.data.train_src
    truecased = export_truecaser(state, folder, train_src, data.read_lines)
    export_graphs(model, source, folder)

    manifest = Manifest(
        task="translation",
        name="translation",
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        opset=OPSET,
        graphs=graph_specs(model, len(target)),
        labels=[],
        preprocessing=preprocessing(config, truecased).model_dump(),
        training_data=state["training_data"],
        metrics={},
        training_config=state["config"],
        framework={
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "sacrebleu": sacrebleu.__version__,
        },
        files=file_hashes(folder),  # the predictor opens listed files only
    )
    translator = open_translator(folder, manifest, threads=config.trainer.threads)

    dev = load_dev(config)
    dev_sources = [source.encode_source(s) for s, _ in dev]
    diff = verify_greedy(model, translator, config, dev_sources)
    log.info("parity: equal greedy strings on all %d dev sentences; max diff %.2e", len(dev), diff)
    invariance = check_batch_invariance(translator, [s for s, _ in dev], config.decoding.beam_size)
    log.info("batch invariance: equal translations, max score difference %.2e", invariance)

    metrics = dev_bleu(translator, dev, config.decoding.beam_size)
    log.info("dev metrics (ONNX Runtime + numpy search): %s", metrics)
    return manifest.model_copy(update={"metrics": metrics})


# --- evaluation and plots of an exported model --------------------------------------------------


def evaluate_files(
    model_dir: Path,
    src_file: Path,
    ref_file: Path,
    beam_size: int | None = None,
    length_penalty: float | None = None,
    threads: int = 1,
    source_case: str | None = None,
) -> tuple[str, dict[str, float]]:
    """Translate ``src_file`` with the exported model through the service's code and score it
    against the raw ``ref_file``: sacreBLEU (cased, 13a) and chrF. Returns the sacreBLEU
    signature line and the scores. ``length_penalty`` replaces the manifest's (to choose it on
    dev data). ``source_case`` (a key of ``training.casing.SOURCE_CASES``) rewrites every
    source first, as a user may type it; the scores are then case-insensitive."""
    translator = load_translator(model_dir, threads=threads)
    if length_penalty is not None:
        translator.preprocessing = translator.preprocessing.model_copy(
            update={"length_penalty": length_penalty}
        )
    pairs = read_parallel(src_file, ref_file, refuse_blank=False)  # scored as they are
    sources = [s for s, _ in pairs]
    if source_case is not None:
        sources = [SOURCE_CASES[source_case](s) for s in sources]
    hypotheses = [""] * len(sources)  # a source with nothing to translate translates to nothing
    kept = [i for i, source in enumerate(sources) if not all(map(is_blank_char, source))]
    outputs = translator.predict_batch([sources[i] for i in kept], beam_size=beam_size)
    for index, output in zip(kept, outputs, strict=True):
        hypotheses[index] = output.translation
    refs = [[t for _, t in pairs]]
    folded = source_case is not None
    if folded:  # case-folded, not only lower-cased: "STRASSE" is "Straße" in capitals
        hypotheses = [h.casefold() for h in hypotheses]
        refs = [[t.casefold() for t in refs[0]]]
    bleu = sacrebleu.metrics.BLEU(lowercase=folded)  # a no-op after folding; signed case:lc
    chrf = sacrebleu.metrics.CHRF(lowercase=folded)
    bleu_score, chrf_score = (
        bleu.corpus_score(hypotheses, refs),
        chrf.corpus_score(hypotheses, refs),
    )
    report = f"{bleu_score}\n{bleu.get_signature()}\n{chrf_score}"
    return report, {"bleu": float(bleu_score.score), "chrf": float(chrf_score.score)}


def plot_attention(
    model_dir: Path, text: str, out: Path, beam_size: int | None = None, threads: int = 1
) -> str:
    """Translate ``text`` and draw its attention matrix (target rows, source columns) as a
    labelled heatmap in ``out``; returns the translation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    translator = load_translator(model_dir, threads=threads)
    (prediction,) = translator.predict_batch([text], beam_size=beam_size, return_attention=True)
    attention = prediction.attention
    weights = np.array(attention.weights)
    rows, cols = weights.shape
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * cols + 2), max(3, 0.4 * rows + 2)))
    image = ax.imshow(weights, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(cols), attention.source_tokens, rotation=60, ha="right")
    ax.set_yticks(range(rows), attention.target_tokens)
    ax.set_xlabel("source subwords")
    ax.set_ylabel("target subwords")
    ax.set_title(prediction.translation, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return prediction.translation


# --- int8 variants (python -m training quantize) --------------------------------------------------


def dev_evaluation(folder: Path, manifest: Manifest, config: TranslationConfig) -> DevEvaluation:
    """Dev BLEU and chrF of any graph files of the artifact in ``folder`` (its int8 variant,
    say); the dev source sentences are the speed texts (translated with the default beam)."""
    dev = load_dev(config)

    def metrics(graphs: GraphFiles, threads: int) -> dict[str, float]:
        sessions = graph_sessions(manifest, graphs, threads)
        translator = Translator.from_artifact(folder, manifest, sessions)
        return dev_bleu(translator, dev, config.decoding.beam_size)

    return DevEvaluation(metrics=metrics, texts=[s for s, _ in dev])
