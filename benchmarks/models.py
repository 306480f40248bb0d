"""The models under test: for each, its ONNX graphs, its PyTorch twin, its dev data and metric.

A model is one :class:`ModelBench`; :func:`available_models` lists those whose exported graphs
and checkpoint exist. The in-process benchmarks time a model through two *backends* (ONNX
Runtime over some graph files, PyTorch eager over the checkpoint), each of which turns batches
of dev rows into a :data:`Runner`. A model with one graph and one forward pass subclasses
:class:`SingleGraphBench` and only says how to pad a batch and which module to call; a model
with several graphs and a search loop (translation) builds its runners itself. A new model
needs one more subclass here and nothing else.

torch and the training package are imported only inside methods (they are not in the serving
install).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from benchmarks.common import REPO_ROOT, Mode
from service.runtime.manifest import Manifest, load_manifest

if TYPE_CHECKING:
    from service.predictors.decoding import Hypothesis, State, StepFn
    from service.predictors.translator import TranslationRow, Translator

    Encode = Callable[[Sequence[Sequence[int]]], State]  # source ids -> the decoder's state

EXPORTED = REPO_ROOT / "exported_models"
CHECKPOINTS = REPO_ROOT / "training" / "checkpoints"

Runner = Callable[[int], object]  # runs prepared batch number i
# (batches of dev rows, variant) -> a runner over those batches; the expensive part of a backend
# (sessions, checkpoint) is built once, the batches are prepared per cell
Backend = Callable[[Sequence[Sequence[Any]], str], Runner]


def make_session(
    path: Path, threads: int, profile_prefix: str | None = None
) -> ort.InferenceSession:
    """A CPU session built like the service's (service.runtime.session): pinned thread counts,
    sequential execution, every graph optimization; ORT's profiler on with ``profile_prefix``."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class NamedSession:
    """The interface the service's predictors use of ``service.runtime.session.OnnxSession``
    (``input_names``, ``run`` returning outputs by name) over a session from
    :func:`make_session`, so that a predictor can run int8 variants or under the profiler."""

    def __init__(self, session: ort.InferenceSession):
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, dict(feeds))
        return dict(zip(self.output_names, values, strict=True))


class ModelBench:
    """One served model, as the benchmarks see it."""

    name: str = ""
    endpoint: str = ""
    headline_metric: str = ""
    # what is timed in process, per batch size ("": the model's one forward pass); the first
    # one is the headline (the ONNX Runtime vs PyTorch target)
    variants: tuple[str, ...] = ("",)

    def __init__(self, folder: Path | None = None, checkpoint: Path | None = None):
        self.folder = Path(folder or EXPORTED / self.name)
        self.checkpoint = Path(checkpoint or CHECKPOINTS / self.name / "best.pt")

    @cached_property
    def manifest(self) -> Manifest:
        return load_manifest(self.folder, verify=True)

    @property
    def graphs(self) -> dict[str, Path]:
        """The exported (fp32) graph files, by the manifest's graph names."""
        return {name: self.manifest.path_of(self.folder, name) for name in self.manifest.graphs}

    def available(self) -> bool:
        return (self.folder / "manifest.json").is_file() and self.checkpoint.is_file()

    def sessions(
        self, graphs: Mapping[str, Path], threads: int, profile_prefix: str | None = None
    ) -> dict[str, ort.InferenceSession]:
        """One session per graph file (``graphs``: the exported ones or variants of them)."""
        return {
            name: make_session(
                path, threads, None if profile_prefix is None else f"{profile_prefix}-{name}"
            )
            for name, path in graphs.items()
        }

    def repeats(self, mode: Mode) -> int:
        """Interleaved repeats of each in-process cell (one cell: variant x batch size)."""
        return mode.repeats

    @property
    def request_options(self) -> tuple[dict[str, Any], ...]:
        """The request bodies' fields besides ``texts`` to measure, one dict per variant (the
        API's defaults first)."""
        return ({},)

    # --- to implement ----------------------------------------------------------------------

    def dev_rows(self, limit: int | None) -> list[Any]:
        """Encoded dev examples (what a backend's batches hold), in file order."""
        raise NotImplementedError

    def ort_backend(self, sessions: Mapping[str, ort.InferenceSession]) -> Backend:
        """Runners over ONNX Runtime ``sessions`` (from :meth:`sessions`)."""
        raise NotImplementedError

    def torch_backend(self) -> Backend:
        """Runners over the PyTorch checkpoint, computing what the ONNX backend computes."""
        raise NotImplementedError

    def http_texts(self, limit: int | None) -> list[str]:
        """Raw dev texts for requests."""
        raise NotImplementedError

    def metrics(self, graphs: Mapping[str, Path], threads: int, limit: int | None) -> dict:
        """Dev metrics (percent) with ``graphs`` (the exported ones or variants of them)."""
        raise NotImplementedError

    def metric_sizes(self, limit: int | None) -> dict[str, int]:
        """Examples per dev set that :meth:`metrics` scores."""
        raise NotImplementedError


class SingleGraphBench(ModelBench):
    """A model computed by one graph call per batch: both backends run padded feeds."""

    input_names: tuple[str, ...] = ()  # the graph inputs, in the PyTorch module's order

    @property
    def graph(self) -> Path:
        (path,) = self.graphs.values()
        return path

    def feeds(self, rows: Sequence[Any]) -> dict[str, np.ndarray]:
        """Padded graph inputs of one batch of rows."""
        raise NotImplementedError

    def torch_module(self) -> Any:
        """The PyTorch model computing the same outputs as the graph, in eval mode."""
        raise NotImplementedError

    def ort_backend(self, sessions: Mapping[str, ort.InferenceSession]) -> Backend:
        (session,) = sessions.values()
        names = {i.name for i in session.get_inputs()}

        def prepare(batches: Sequence[Sequence[Any]], variant: str) -> Runner:
            inputs = [{k: v for k, v in self.feeds(b).items() if k in names} for b in batches]
            return lambda i: session.run(None, inputs[i])

        return prepare

    def torch_backend(self) -> Backend:
        import torch

        module = self.torch_module()

        def prepare(batches: Sequence[Sequence[Any]], variant: str) -> Runner:
            inputs = [
                tuple(torch.from_numpy(f[n]) for n in self.input_names)
                for f in map(self.feeds, batches)
            ]

            def run(i: int) -> object:
                with torch.inference_mode():
                    return module(*inputs[i])

            return run

        return prepare


class SentimentBench(SingleGraphBench):
    name = "sentiment"
    endpoint = "/v1/sentiment"
    input_names = ("token_ids", "lengths")
    headline_metric = "dev_mean_accuracy"

    @cached_property
    def encoder(self):
        from service.text.constants import VOCAB_FILE
        from service.text.encoding import WordEncoder, WordEncoderConfig
        from service.text.vocab import Vocab

        vocab = Vocab.from_json(self.folder / VOCAB_FILE)
        return WordEncoder(vocab, WordEncoderConfig(**self.manifest.preprocessing))

    def _dev_sets(self, limit: int | None) -> dict[str, list]:
        from training import data
        from training.config import DATASETS

        settings = (self.manifest.training_config or {}).get("data", {})
        sets = {"sst2": data.read_sst2_tsv(DATASETS / "sst/sst2_glue/dev.tsv")}
        imdb = data.read_imdb_tsv(DATASETS / "imdb/train.tsv")
        _, sets["imdb"] = data.split_holdout(
            imdb, settings.get("imdb_holdout", 2500), settings.get("holdout_seed", 1234)
        )
        return {name: records[:limit] for name, records in sets.items()}

    def dev_rows(self, limit: int | None) -> list[list[int]]:
        from training import data
        from training.config import DATASETS

        records = data.read_sst2_tsv(DATASETS / "sst/sst2_glue/dev.tsv")[:limit]
        return [self.encoder.encode(r.text).ids for r in records]

    def feeds(self, rows: Sequence[list[int]]) -> dict[str, np.ndarray]:
        from service.text.padding import pad_batch

        ids, lengths = pad_batch(rows, pad_id=self.encoder.vocab.pad_id)
        return {"token_ids": ids, "lengths": lengths}

    def torch_module(self):
        from training.models.sentiment import ProbabilityHead
        from training.tasks.sentiment import load_checkpoint

        model, _ = load_checkpoint(self.checkpoint)
        return ProbabilityHead(model).eval()

    def http_texts(self, limit: int | None) -> list[str]:
        from training import data
        from training.config import DATASETS

        return [r.text for r in data.read_sst2_tsv(DATASETS / "sst/sst2_glue/dev.tsv")[:limit]]

    def metrics(self, graphs: Mapping[str, Path], threads: int, limit: int | None) -> dict:
        from training.tasks import sentiment as task

        (session,) = self.sessions(graphs, threads).values()
        examples = {
            name: task.encode(self.encoder, records)
            for name, records in self._dev_sets(limit).items()
        }
        return task.accuracy_metrics(lambda ex: task.ort_probabilities(session, ex), examples)

    def metric_sizes(self, limit: int | None) -> dict[str, int]:
        return {name: len(records) for name, records in self._dev_sets(limit).items()}


class NerBench(SingleGraphBench):
    name = "ner"
    endpoint = "/v1/ner"
    headline_metric = "dev_f1"

    @property
    def input_names(self) -> tuple[str, ...]:  # type: ignore[override]
        from service.text.features import NER_INPUT_NAMES

        return tuple(NER_INPUT_NAMES)

    def predictor(self, graphs: Mapping[str, Path], threads: int):
        from service.predictors.ner import NerPredictor
        from service.runtime.session import OnnxSession, SessionConfig

        config = SessionConfig(intra_op_threads=threads)
        sessions = {
            name: OnnxSession(path, self.manifest.graphs[name], config)
            for name, path in graphs.items()
        }
        return NerPredictor.from_artifact(self.folder, self.manifest, sessions)

    @cached_property
    def _encoder(self):
        return self.predictor(self.graphs, 1).encoder

    def _sentences(self, limit: int | None):
        from training import data
        from training.config import DATASETS

        return data.read_conll(DATASETS / "conll2003/valid.txt")[:limit]

    def dev_rows(self, limit: int | None) -> list[Any]:
        return [self._encoder.encode([w for w, _ in s]) for s in self._sentences(limit)]

    def feeds(self, rows: Sequence[Any]) -> dict[str, np.ndarray]:
        from service.text.features import pad_ner_batch

        return pad_ner_batch(rows)

    def torch_module(self):
        from training.tasks.ner import load_checkpoint

        model, _ = load_checkpoint(self.checkpoint)
        return model.emissions.eval()

    def http_texts(self, limit: int | None) -> list[str]:
        return [" ".join(w for w, _ in s) for s in self._sentences(limit)]

    def metrics(self, graphs: Mapping[str, Path], threads: int, limit: int | None) -> dict:
        from training.tasks.ner import entity_metrics

        sentences = self._sentences(limit)
        predicted = self.predictor(graphs, threads).predict_tokens(
            [[w for w, _ in s] for s in sentences]
        )
        gold = [[t for _, t in s] for s in sentences]
        return entity_metrics(gold, [[t.tag for t in p.tokens] for p in predicted])

    def metric_sizes(self, limit: int | None) -> dict[str, int]:
        return {"conll2003_valid": len(self._sentences(limit))}


BEAM_SIZE = 5  # the beam width the benchmarks report (the service's default too)
SEARCHES = {"greedy": 1, f"beam {BEAM_SIZE}": BEAM_SIZE}  # variant -> beam size


class TranslationBench(ModelBench):
    """English -> German: the ``encoder`` graph, then a numpy greedy or beam search
    (service.predictors.decoding) whose step function runs the ``decoder_step`` graph.

    Both backends run that same search from the same source ids; they differ only in the
    encoder and the step function: the service's Translator over ONNX Runtime sessions, or
    training's ``torch_encode``/``torch_step`` over the checkpoint (what the export verifies
    the graphs against). A row is a :class:`service.predictors.translator.TranslationRow`:
    source ids and the maximum target length; the variant sets the beam size.
    """

    name = "translation"
    endpoint = "/v1/translate"
    headline_metric = f"dev_bleu_beam{BEAM_SIZE}"
    variants = tuple(SEARCHES)

    def repeats(self, mode: Mode) -> int:
        return mode.search_repeats

    @property
    def request_options(self) -> tuple[dict[str, Any], ...]:
        return ({"beam_size": BEAM_SIZE}, {"beam_size": 1})

    def translator(self, sessions: Mapping[str, ort.InferenceSession]) -> Translator:
        """The service's predictor over ``sessions`` (an ``encoder`` and a ``decoder_step``)."""
        from service.predictors.translator import Translator

        named = {name: NamedSession(session) for name, session in sessions.items()}
        return Translator.from_artifact(self.folder, self.manifest, named)

    @cached_property
    def _translator(self) -> Translator:
        """For encoding texts into rows, and the tokenizers' ids."""
        return self.translator(self.sessions(self.graphs, 1))

    def _dev_pairs(self, limit: int | None) -> list[tuple[str, str]]:
        from training.config import DATASETS
        from training.tasks.translation import read_parallel

        data = (self.manifest.training_config or {}).get("data", {})
        source = DATASETS / data.get("dev_src", "multi30k/val.en")
        target = DATASETS / data.get("dev_tgt", "multi30k/val.de")
        return read_parallel(source, target)[:limit]

    def dev_rows(self, limit: int | None) -> list[TranslationRow]:
        return [self._translator.make_row(source) for source, _ in self._dev_pairs(limit)]

    def search(
        self, encode: Encode, step: StepFn, rows: Sequence[TranslationRow], beam_size: int
    ) -> list[Hypothesis]:
        """What ``Translator.decode`` does, with any encoder and step function."""
        state = encode([row.ids for row in rows])
        limits = [row.max_length for row in rows]
        return self._translator.search(state, step, beam_size, limits)

    def _search_backend(self, encode: Encode, step: StepFn) -> Backend:
        def prepare(batches: Sequence[Sequence[Any]], variant: str) -> Runner:
            return lambda i: self.search(encode, step, batches[i], SEARCHES[variant])

        return prepare

    def ort_backend(self, sessions: Mapping[str, ort.InferenceSession]) -> Backend:
        translator = self.translator(sessions)
        return self._search_backend(translator.encode, translator.step)

    def torch_backend(self) -> Backend:
        from training.tasks.translation import load_checkpoint, torch_encode, torch_step

        model, _ = load_checkpoint(self.checkpoint)
        return self._search_backend(partial(torch_encode, model), torch_step(model))

    def http_texts(self, limit: int | None) -> list[str]:
        return [source for source, _ in self._dev_pairs(limit)]

    def metrics(self, graphs: Mapping[str, Path], threads: int, limit: int | None) -> dict:
        """sacreBLEU and chrF (as training computes them) of greedy and beam output, decoded
        by the service's Translator as a request would be."""
        from training.tasks.translation import corpus_scores

        translator = self.translator(self.sessions(graphs, threads))
        pairs = self._dev_pairs(limit)
        scores = {}
        for variant, beam_size in SEARCHES.items():
            outputs = translator.predict_batch([s for s, _ in pairs], beam_size=beam_size)
            found = corpus_scores([o.translation for o in outputs], [t for _, t in pairs])
            scores |= {f"dev_{k}_{variant.replace(' ', '')}": v for k, v in found.items()}
        return scores

    def metric_sizes(self, limit: int | None) -> dict[str, int]:
        return {"multi30k_val": len(self._dev_pairs(limit))}


MODEL_TYPES: tuple[type[ModelBench], ...] = (SentimentBench, NerBench, TranslationBench)


def available_models(names: Sequence[str] | None = None) -> list[ModelBench]:
    """The models with exported graphs and a checkpoint (optionally only ``names``)."""
    models = [kind() for kind in MODEL_TYPES if names is None or kind.name in names]
    return [m for m in models if m.available()]
