"""``python -m benchmarks``: run the benchmark suite and rewrite docs/benchmarks.md.

Sections (all by default):
  inprocess     ONNX Runtime vs PyTorch eager, per model, batch sizes 1/8/32/128
                (translation: the same numpy greedy and beam-5 search over either backend)
  quantization  dynamic int8 ONNX graphs: speed ratio and change of the dev metrics
  http          real gunicorn servers (service with/without batching, naive Flask + PyTorch,
                and a floor: Flask with no model under the service's gunicorn settings):
                sentiment load test at several concurrencies, 64 texts in one request vs
                64 requests (every model), start-up time and memory per worker
  padding       multi-text requests of mixed length, with the batcher's min_fill and without
  footprint     size of the serving install vs the training install

The full run takes under 20 minutes, --quick under 3. Every ratio compares measurements of the
same run. Load tests only target servers this command starts on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import inprocess, padding, report, serving
from benchmarks.common import MODES, REPO_ROOT, machine_info
from benchmarks.models import available_models

SECTIONS = ("inprocess", "quantization", "http", "padding", "footprint")
log = logging.getLogger("benchmarks")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true", help="short run (under 3 minutes)")
    speed.add_argument("--tiny", action="store_true", help="seconds-long smoke run (for tests)")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--models", default="", help="comma-separated model names (default: all)")
    parser.add_argument(
        "--doc",
        type=Path,
        default=REPO_ROOT / "docs" / "benchmarks.md",
        help="markdown file to write (default: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--plots-dir", type=Path, default=None, help="where the PNGs go (default: the doc's folder)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where the raw results go (default: next to the doc, docs/benchmarks.json)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        default=None,
        help="measure nothing: write the doc and plots again from a run's raw results (after a "
        "change to the report's code)",
    )
    return parser.parse_args(argv)


def render(args: argparse.Namespace, command: str) -> dict:
    """The doc and plots of an earlier run, from its raw results, with today's report code (the
    targets are judged again; every measurement is the run's)."""
    results = json.loads(args.render.read_text(encoding="utf-8"))
    results["targets"] = report.targets(results)
    results["rendered_by"] = command
    results["raw"] = _as_seen_from_doc(args.render, args.doc)
    log.info("wrote %s from %s", write_doc(results, args), args.render)
    return results


def _as_seen_from_doc(path: Path, doc: Path) -> str:
    """How the page names its raw results: by file name when they lie next to it."""
    return path.name if path.resolve().parent == doc.resolve().parent else str(path)


def write_doc(results: dict, args: argparse.Namespace) -> Path:
    """The markdown page and its plots, where ``args`` says; the page's path."""
    doc = args.doc.resolve()
    plots_dir = (args.plots_dir or doc.parent).resolve()
    for folder in (doc.parent, plots_dir):
        folder.mkdir(parents=True, exist_ok=True)
    report.write(results, doc, plots_dir)
    return doc


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    shown = [a for a in (argv if argv is not None else sys.argv[1:])]
    command = shlex.join(["python", "-m", "benchmarks", *shown])
    if args.render:
        return render(args, command)
    mode = MODES["tiny" if args.tiny else "quick" if args.quick else "full"]
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    names = [n.strip() for n in args.models.split(",") if n.strip()] or None
    models = available_models(names)
    started = time.perf_counter()
    doc = args.doc.resolve()
    raw = (args.json or doc.with_suffix(".json")).resolve()
    results: dict = {
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": asdict(mode),
        "machine": asdict(machine_info()),
        "models": [m.name for m in models],
    }
    if "inprocess" in sections:
        results["inprocess"] = inprocess.onnx_vs_torch(models, mode)
    if "quantization" in sections:
        results["quantization"] = inprocess.quantization(models, mode)
    if "http" in sections and any(m.name == "sentiment" for m in models):
        with tempfile.TemporaryDirectory(prefix="bench-logs-") as logs:
            results["http"] = serving.http_section(models, mode, Path(logs))
    if "padding" in sections:
        results["padding"] = padding.measure(
            mode.padding_requests,
            mode.padding_texts,
            mode.padding_repeats,
            tasks={m.name for m in models},
        )
    if "footprint" in sections:
        results["install"] = serving.install_sizes()
    results["targets"] = report.targets(results)
    missed_ort = [t["model"] for t in results["targets"] if t.get("kind") == "ort" and not t["met"]]
    results["profiles"] = [
        dict(model=m.name, shares=inprocess.ort_profile(m, calls=10 if args.tiny else 100))
        for m in models
        if m.name in missed_ort
    ]
    missed_batching = {
        t["batching_of"] for t in results["targets"] if t.get("batching_of") and not t["met"]
    }
    results["batch_profiles"] = [
        dict(
            model=m.name,
            rows=inprocess.ort_cost_per_text(
                m, [b for b in (1, 8, 32) if b in mode.batch_sizes], 40 if args.tiny else 800
            ),
        )
        for m in models
        if m.name in missed_batching
    ]
    results["elapsed_s"] = time.perf_counter() - started
    results["raw"] = _as_seen_from_doc(args.json or raw, doc)
    write_doc(results, args)
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    for target in results["targets"]:
        log.info(
            "%s: %s (%s)",
            "MET   " if target["met"] else "MISSED",
            target["target"],
            target["measured"],
        )
    log.info("wrote %s in %.1f min", doc, results["elapsed_s"] / 60)
    return results


if __name__ == "__main__":
    main()
