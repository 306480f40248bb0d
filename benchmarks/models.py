"""The models under test: for each, its ONNX graph, its PyTorch twin, its dev data and metric.

A model is one :class:`ModelBench`; :func:`available_models` lists those whose exported graph
and checkpoint exist. A new model (translation) needs one more subclass here and nothing else.
torch and the training package are imported only inside methods (they are not in the serving
install).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks.common import REPO_ROOT
from service.runtime.manifest import Manifest, load_manifest

EXPORTED = REPO_ROOT / "exported_models"
CHECKPOINTS = REPO_ROOT / "training" / "checkpoints"


def make_session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session built like the service's (service.runtime.session): pinned thread counts,
    sequential execution, every graph optimization."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class ModelBench:
    """One served model, as the benchmarks see it."""

    name: str = ""
    endpoint: str = ""
    input_names: tuple[str, ...] = ()
    headline_metric: str = ""

    def __init__(self, folder: Path | None = None, checkpoint: Path | None = None):
        self.folder = Path(folder or EXPORTED / self.name)
        self.checkpoint = Path(checkpoint or CHECKPOINTS / self.name / "best.pt")

    @cached_property
    def manifest(self) -> Manifest:
        return load_manifest(self.folder, verify=True)

    @property
    def graph(self) -> Path:
        (name,) = self.manifest.graphs
        return self.manifest.path_of(self.folder, name)

    def available(self) -> bool:
        return (self.folder / "manifest.json").is_file() and self.checkpoint.is_file()

    # --- to implement ----------------------------------------------------------------------

    def dev_rows(self, limit: int | None) -> list[Any]:
        """Encoded dev examples (graph rows), in file order."""
        raise NotImplementedError

    def feeds(self, rows: Sequence[Any]) -> dict[str, np.ndarray]:
        """Padded graph inputs of one batch of rows."""
        raise NotImplementedError

    def torch_module(self) -> Any:
        """The PyTorch model computing the same outputs as the graph, in eval mode."""
        raise NotImplementedError

    def http_texts(self, limit: int | None) -> list[str]:
        """Raw dev texts for requests."""
        raise NotImplementedError

    def metrics(self, graph: Path, threads: int, limit: int | None) -> dict[str, float]:
        """Dev metrics (percent) of ``graph`` (the exported one or a variant of it)."""
        raise NotImplementedError


class SentimentBench(ModelBench):
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

    def metrics(self, graph: Path, threads: int, limit: int | None) -> dict[str, float]:
        from training.tasks import sentiment as task

        session = make_session(graph, threads)
        examples = {
            name: task.encode(self.encoder, records)
            for name, records in self._dev_sets(limit).items()
        }
        return task.accuracy_metrics(lambda ex: task.ort_probabilities(session, ex), examples)

    def metric_sizes(self, limit: int | None) -> dict[str, int]:
        return {name: len(records) for name, records in self._dev_sets(limit).items()}


class NerBench(ModelBench):
    name = "ner"
    endpoint = "/v1/ner"
    headline_metric = "dev_f1"

    @property
    def input_names(self) -> tuple[str, ...]:  # type: ignore[override]
        from service.text.features import NER_INPUT_NAMES

        return tuple(NER_INPUT_NAMES)

    def predictor(self, graph: Path, threads: int):
        from service.predictors.ner import NerPredictor
        from service.runtime.session import OnnxSession, SessionConfig

        (name, spec), *_ = self.manifest.graphs.items()
        session = OnnxSession(graph, spec, SessionConfig(intra_op_threads=threads))
        return NerPredictor.from_artifact(self.folder, self.manifest, {name: session})

    @cached_property
    def _encoder(self):
        return self.predictor(self.graph, 1).encoder

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

    def metrics(self, graph: Path, threads: int, limit: int | None) -> dict[str, float]:
        from training.tasks.ner import entity_metrics

        sentences = self._sentences(limit)
        predicted = self.predictor(graph, threads).predict_tokens(
            [[w for w, _ in s] for s in sentences]
        )
        gold = [[t for _, t in s] for s in sentences]
        return entity_metrics(gold, [[t.tag for t in p.tokens] for p in predicted])

    def metric_sizes(self, limit: int | None) -> dict[str, int]:
        return {"conll2003_valid": len(self._sentences(limit))}


MODEL_TYPES: tuple[type[ModelBench], ...] = (SentimentBench, NerBench)


def available_models(names: Sequence[str] | None = None) -> list[ModelBench]:
    """The models with an exported graph and a checkpoint (optionally only ``names``)."""
    models = [kind() for kind in MODEL_TYPES if names is None or kind.name in names]
    return [m for m in models if m.available()]
