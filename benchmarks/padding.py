"""What the batcher's ``min_fill`` saves: multi-text requests of mixed length, run through the
service's predictors in process, with each model's default ``min_fill`` and with 0 (every row
of a request in one padded batch, as before the setting existed).

    python -m benchmarks.padding [--requests N] [--texts N] [--repeats N]

Prints one markdown row per workload: milliseconds per request (median over the repeats, the
two settings interleaved) and their ratio. Requests are random samples (fixed seed) of real dev
texts: IMDB held-out reviews and SST-2 dev sentences (sentiment), CoNLL-2003 valid sentences
(NER). Runs on the committed models in ``exported_models/`` with one ONNX Runtime thread.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Collection, Sequence

from benchmarks.common import median
from benchmarks.report import padding_table
from service import REGISTRY_KEY, create_app
from service.settings import Settings
from training import data
from training.config import DATASETS


def workloads(requests: int, texts: int) -> dict[str, tuple[str, list[list[str]]]]:
    """Workload name -> (task, requests of ``texts`` texts each)."""
    rng = random.Random(0)
    _, reviews = data.split_holdout(data.read_imdb_tsv(DATASETS / "imdb/train.tsv"), 2500, 1234)
    sentences = [r.text for r in data.read_sst2_tsv(DATASETS / "sst/sst2_glue/dev.tsv")]
    conll = [" ".join(t for t, _ in s) for s in data.read_conll(DATASETS / "conll2003/valid.txt")]
    pools = {
        "sentiment, IMDB reviews": ("sentiment", [r.text for r in reviews]),
        "sentiment, SST-2 sentences": ("sentiment", sentences),
        "NER, CoNLL-2003 sentences": ("ner", conll),
    }
    return {
        name: (task, [rng.sample(pool, texts) for _ in range(requests)])
        for name, (task, pool) in pools.items()
    }


def measure(
    requests: int = 8, texts: int = 32, repeats: int = 3, tasks: Collection[str] | None = None
) -> list[dict]:
    """Per workload (of ``tasks``, default all): ms per request with the model's ``min_fill``
    and with 0."""
    settings = Settings(batching=False, ort_providers="cpu", ort_intra_op_threads=1)
    registry = create_app(settings).extensions[REGISTRY_KEY]
    rows = []
    for name, (task, batch) in workloads(requests, texts).items():
        if tasks is not None and task not in tasks:
            continue
        predictor = registry.for_task(task).predictor
        default = predictor.scheduler.min_fill
        timings: dict[float, list[float]] = {default: [], 0.0: []}
        for _ in range(repeats):
            for fill in timings:
                predictor.scheduler.min_fill = fill
                timings[fill].append(_ms_per_request(predictor, batch))
        predictor.scheduler.min_fill = default
        with_fill, without = median(timings[default]), median(timings[0.0])
        rows.append(
            dict(
                workload=name,
                texts=texts,
                min_fill=default,
                ms=with_fill,
                ms_without=without,
                speedup=without / with_fill,
            )
        )
    return rows


def _ms_per_request(predictor, batch: Sequence[list[str]]) -> float:
    started = time.perf_counter()
    for texts in batch:
        predictor.predict_batch(texts)
    return (time.perf_counter() - started) / len(batch) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=8, help="requests per workload")
    parser.add_argument("--texts", type=int, default=32, help="texts per request")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each setting")
    args = parser.parse_args()
    rows = measure(args.requests, args.texts, args.repeats)
    sys.stdout.write("\n".join(padding_table(rows)) + "\n")


if __name__ == "__main__":
    main()
