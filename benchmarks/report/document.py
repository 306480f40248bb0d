"""docs/benchmarks.md: the targets, what limits the missed ones, the tables, the plots and how
everything was measured."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report import limits, sections
from benchmarks.report.cells import fmt
from benchmarks.report.figures import plots
from benchmarks.report.sections import QUANT_MAX_LOSS, QUANT_MIN_SPEEDUP


def markdown(results: dict, plot_files: list[tuple[str, str]]) -> str:
    """The whole page, from a run's results and its plots (title, file name relative to the
    page)."""
    mode, machine = results["mode"], results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{results['command']}` (mode **{mode['name']}**) on {results['date']}; every "
        "number below comes from that one run. Ratios compare measurements taken side by side in "
        "the same run (interleaved repeats, in process and over HTTP), so "
        "they hold better than absolute numbers on a shared machine. Regenerate with `make bench` "
        "(full, under 20 minutes) or `python -m benchmarks --quick` (under 3 minutes)."
        + (
            f" The run's raw results are in [{results['raw']}]({results['raw']})."
            if results.get("raw")
            else ""
        )
        + (
            f" This page was written again from them by `{results['rendered_by']}`."
            if results.get("rendered_by")
            else ""
        ),
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu']}; {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{fmt(machine['memory_gib'])} GiB memory; {machine['system']}",
        f"- Python {machine['python']}; "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        f"- Commit: `{machine['git']}`",
        f"- Run took {fmt(results['elapsed_s'] / 60, 1)} min. The machine was shared: other "
        "processes may have run at the same time.",
        "",
        "## Targets",
        "",
        "| target | measured | status |",
        "|---|---|---|",
    ]
    for row in results["targets"]:
        lines.append(
            f"| {row['target']} | {row['measured']} | {'met' if row['met'] else '**missed**'} |"
        )
    if not results["targets"]:
        lines.append("| (no section producing targets ran) | | |")
    lines += limits.explain(results)
    lines += sections.inprocess_table(results)
    lines += sections.quantization_table(results)
    lines += sections.http_tables(results)
    lines += sections.padding_section(results)
    lines += sections.footprint_tables(results)
    if plot_files:
        lines += ["## Plots", ""]
        for title, name in plot_files:
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
    lines += [
        "## How it was measured",
        "",
        "- **In process**: graph inputs are built from real dev texts (SST-2 dev sentences, "
        "CoNLL-2003 valid sentences, Multi30k val.en) in file order, cut into consecutive "
        "batches; text encoding "
        "is outside the timed region. Both backends run the same batches, their repeats "
        "interleaved; the table shows the median over repeats. PyTorch runs the committed "
        "checkpoint (`training/checkpoints/*/best.pt`) in eager mode under "
        "`torch.inference_mode()` "
        "with `torch.set_num_threads(n)`; ONNX Runtime runs the exported graph with "
        "`intra_op_num_threads=n`, `inter_op_num_threads=1`, sequential execution, all graph "
        "optimizations (the service's settings). For NER both compute the emission scores (the CRF "
        "decoding is numpy and the same either way). For translation both run the same numpy "
        "greedy or beam search (`service.predictors.decoding`) from the same source subwords, "
        "the encoder once per batch and the decoder step once per generated token (for "
        "`batch × beam` rows): ONNX Runtime through the service's `Translator` (its `encoder` "
        "and `decoder_step` graphs), PyTorch through training's `torch_encode`/`torch_step` "
        "over `training/checkpoints/translation/best.pt`; sentences/s counts source sentences. "
        "A translation cell is timed over "
        f"{mode.get('search_repeats', mode['repeats'])} repeat(s) of at least one call each; "
        "where one call lasts a whole repeat (a beam search over 128 sentences: seconds), the "
        "warm-up call is the first repeat.",
        "- **Quantization**: `onnxruntime.quantization.quantize_dynamic(weight_type=QInt8)` of "
        "every exported graph (translation: encoder and decoder step); metrics through the same "
        "code as training's evaluation (sentiment: "
        "`training.tasks.sentiment.accuracy_metrics`; NER: the service's predictor + seqeval, "
        "strict IOB2; translation: the service's `Translator`, greedy and beam 5, scored with "
        "`training.tasks.translation.corpus_scores`: sacreBLEU, cased, 13a tokenization, and "
        "chrF, against val.de; its speed is that of whole searches, which may stop after more "
        "or fewer steps with int8 than with fp32). A variant qualifies at "
        f"≥ {QUANT_MIN_SPEEDUP}× faster (at every batch size and search measured) and "
        f"≤ {QUANT_MAX_LOSS} points lost on every metric, the per-type F1 scores that the table "
        "leaves out included (`training.quantize.judge`, the criterion of `python -m training "
        "quantize`).",
        "- **HTTP**: the suite starts the gunicorn servers one after another on free "
        "127.0.0.1 ports and keeps them all up; the load generator (`benchmarks/loadgen.py`, "
        "asyncio + aiohttp, closed loop) runs on the same machine, so it takes CPU from the "
        "server (its share is the *client CPU* column; *server CPU* is what the server's "
        "gunicorn master and workers used per successful request over the measured part, from "
        "/proc, which leaves out every other process on the machine). Each level: "
        f"{fmt(mode['warmup_s'])} s warm-up, then {fmt(mode['level_s'])} s measured (at most "
        f"{mode['max_requests']:,} requests), on one server at a time; each of "
        f"{mode.get('http_repeats', 1)} repeats runs every level on every server in turn, the "
        "server order rotating between repeats, and the tables give the medians over repeats "
        "(requests and errors: totals). An error is any non-200 answer or failed "
        "connection. Latency is measured by the client. Batch statistics come from the "
        "service's `/metrics`: the difference between a scrape when a level's warm-up has ended "
        "and one after the level (medians). Request-level "
        "batching: one client sends the texts in one request, then one request per text, one after "
        "another, with the same other fields (translation: `beam_size` 5, the API's default, "
        "and 1, greedy); the ratio is of the medians over repeats. Worker profile: after the "
        "load levels, py-spy (`py-spy record --format raw --nonblocking`) samples one worker of "
        "a server for a few seconds while clients keep it busy; each sample is charged to the "
        "innermost part of the request path on its stack (`benchmarks/pyspy.py`).",
        "- **Servers**: "
        + sections.worker_counts(results.get("http", {}))
        + "; ".join(
            f"{name}: `{s['command']}`" + (f" with {s['env']}" if s["env"] else "")
            for name, s in results.get("http", {}).get("servers", {}).items()
        ),
        "",
        "## Commands",
        "",
        "```console",
        "$ make bench                    # python -m benchmarks: full run, rewrites this page",
        "$ python -m benchmarks --quick  # the same, shorter",
        "$ python -m benchmarks --help   # sections, output paths",
        "```",
        "",
    ]
    return "\n".join(lines)


def write(results: dict, doc: Path, plots_dir: Path) -> None:
    """Write ``doc`` and its plots (into ``plots_dir``) from one run's results."""
    prefix = doc.stem
    files = plots(results, plots_dir, prefix)
    rel = [
        (
            t,
            str((plots_dir / n).relative_to(doc.parent))
            if plots_dir.is_relative_to(doc.parent)
            else str(plots_dir / n),
        )
        for t, n in files
    ]
    doc.write_text(markdown(results, rel), encoding="utf-8")
