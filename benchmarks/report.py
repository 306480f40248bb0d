"""Targets, plots and docs/benchmarks.md, all computed from one run's results."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from benchmarks.common import target_concurrency
from benchmarks.serving import FLOOR, NAIVE, SERVICE_BATCHING, SERVICE_NO_BATCHING
from training.quantize import Criteria, QuantizationReport, judge

# A variant qualifies as `python -m training quantize` judges it (training/quantize.py).
QUANT_CRITERIA = Criteria()
QUANT_MIN_SPEEDUP = QUANT_CRITERIA.min_speedup
QUANT_MAX_LOSS = QUANT_CRITERIA.max_loss_points
# model -> least ratio of "N texts in one request" over "N sequential single-text requests"
ONE_VS_MANY_TARGETS = {"translation": 5.0}


def _f(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _load(results: dict, server: str, concurrency: int) -> dict | None:
    for row in results.get("http", {}).get("load", []):
        if row["server"] == server and row["concurrency"] == concurrency:
            return row
    return None


def _label(model: str, variant: str = "") -> str:
    """A model, with the in-process variant where it has several (translation (greedy))."""
    return f"{model} ({variant})" if variant else model


def _ort_speedups(inproc: list[dict], model: str) -> dict[str, float]:
    """PyTorch ms / ORT ms at batch 1 and the fewest threads, per variant (headline first)."""
    threads = min(r["threads"] for r in inproc)
    at_1 = [
        r for r in inproc if r["model"] == model and r["batch"] == 1 and r["threads"] == threads
    ]
    ratios = {}
    for variant in dict.fromkeys(r.get("variant", "") for r in at_1):
        cells = {r["backend"]: r for r in at_1 if r.get("variant", "") == variant}
        if len(cells) == 2:
            ratios[variant] = (
                cells["pytorch"]["ms_per_batch"] / cells["onnxruntime"]["ms_per_batch"]
            )
    return ratios


def _ort_targets(inproc: list[dict]) -> list[dict]:
    """ONNX Runtime ≥ 2× PyTorch at batch 1, per model, judged on its headline variant; the
    other variants (translation's beam search) are shown beside it."""
    rows = []
    for model in dict.fromkeys(r["model"] for r in inproc):
        ratios = _ort_speedups(inproc, model)
        if not ratios:
            continue
        (headline, ratio), *others = ratios.items()
        also = ", ".join(f"{variant}: {other:.2f}×" for variant, other in others)
        rows.append(
            dict(
                target=f"{_label(model, headline)}: ONNX Runtime ≥ 2× PyTorch eager at batch 1",
                measured=f"{ratio:.2f}×" + (f" ({also})" if also else ""),
                met=ratio >= 2,
                kind="ort",
                model=model,
            )
        )
    return rows


def _one_vs_many_targets(http: dict) -> list[dict]:
    rows = []
    for r in http.get("one_vs_many", []):
        least = ONE_VS_MANY_TARGETS.get(r["model"])
        if least is None:
            continue
        n = r["texts"]
        options = ", ".join(f"{k} {v}" for k, v in r.get("options", {}).items())
        rows.append(
            dict(
                target=f"{r['model'].capitalize()}: one request with {n} texts ≥ {least:g}× the "
                f"throughput of {n} sequential requests",
                measured=f"{r['ratio']:.2f}×" + (f" ({options})" if options else ""),
                met=r["ratio"] >= least,
                kind="http",
                model=r["model"],
                options=r.get("options", {}),
            )
        )
    return rows


def targets(results: dict) -> list[dict]:
    """Each target: name, ratio/value, threshold, met."""
    rows = _ort_targets(results.get("inprocess", []))
    http = results.get("http")
    if http:
        c = target_concurrency(results["mode"]["concurrency"])
        on, off, naive = (
            _load(results, s, c) for s in (SERVICE_BATCHING, SERVICE_NO_BATCHING, NAIVE)
        )
        if on and naive:
            ratio = on["throughput"] / naive["throughput"] if naive["throughput"] else float("inf")
            rows.append(
                dict(
                    target=f"sentiment over HTTP, concurrency {c}: service ≥ 3× naive baseline",
                    measured=f"{ratio:.2f}×",
                    met=ratio >= 3,
                    kind="http",
                    times_naive=3,
                )
            )
        if on and off:
            ratio = on["throughput"] / off["throughput"] if off["throughput"] else float("inf")
            rows.append(
                dict(
                    target=f"sentiment over HTTP, concurrency {c}: batching on ≥ 2× batching off",
                    measured=f"{ratio:.2f}×",
                    met=ratio >= 2,
                    kind="http",
                    batching_of="sentiment",
                )
            )
        errors = sum(r["errors"] for r in http["load"])
        sent = sum(r["requests"] + r["errors"] for r in http["load"])
        rows.append(
            dict(
                target="zero errors (every server, every level)",
                measured=f"{errors} errors in {sent:,} requests",
                met=errors == 0,
                kind="http",
            )
        )
        worst = max(
            (r for r in http["load"] if r["server"] == SERVICE_BATCHING and r["requests"]),
            key=lambda r: r["p99_ms"] / r["p50_ms"],
            default=None,
        )
        if worst:
            ratio = worst["p99_ms"] / worst["p50_ms"]
            rows.append(
                dict(
                    target="service (batching): p99 ≤ 4× p50 at every concurrency",
                    measured=f"worst {ratio:.2f}× (concurrency {worst['concurrency']})",
                    met=ratio <= 4,
                    kind="http",
                )
            )
        rows += _one_vs_many_targets(http)
    return rows


def plots(results: dict, folder: Path, prefix: str) -> list[tuple[str, str]]:
    """Write the PNG plots; returns (title, file name) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    http = results.get("http")
    if http:
        servers = list(dict.fromkeys(r["server"] for r in http["load"]))
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for server in servers:
            rows = [r for r in http["load"] if r["server"] == server]
            ax.plot(
                [r["concurrency"] for r in rows],
                [r["throughput"] for r in rows],
                "o-",
                label=server,
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("requests / s (1 text each)")
        ax.set_title("POST /v1/sentiment: throughput vs concurrency")
        ax.grid(alpha=0.3)
        ax.legend()
        name = f"{prefix}-throughput.png"
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written.append(("Throughput vs concurrency", name))

        fig, axes = plt.subplots(1, len(servers), figsize=(4 * len(servers), 3.8), sharey=True)
        for ax, server in zip(axes if len(servers) > 1 else [axes], servers, strict=True):
            rows = [r for r in http["load"] if r["server"] == server]
            xs = [r["concurrency"] for r in rows]
            for key in ("p50_ms", "p95_ms", "p99_ms"):
                ax.plot(xs, [r[key] for r in rows], "o-", label=key.split("_")[0])
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(server, fontsize=9)
            ax.set_xlabel("concurrent clients")
            ax.grid(alpha=0.3)
        (axes[0] if len(servers) > 1 else axes).set_ylabel("latency (ms)")
        (axes[0] if len(servers) > 1 else axes).legend()
        name = f"{prefix}-latency.png"
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written.append(("Latency percentiles", name))

    inproc = results.get("inprocess")
    if inproc:
        panels = list(dict.fromkeys((r["model"], r.get("variant", "")) for r in inproc))
        columns = min(2, len(panels))  # two panels a row keep the labels readable
        rows_of_panels = math.ceil(len(panels) / columns)
        fig, axes = plt.subplots(
            rows_of_panels, columns, figsize=(4.5 * columns, 3.8 * rows_of_panels), squeeze=False
        )
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        for ax, panel in zip(axes.flat, panels, strict=False):
            for threads in sorted({r["threads"] for r in inproc}):
                for backend in ("onnxruntime", "pytorch"):
                    rows = [
                        r
                        for r in inproc
                        if (r["model"], r.get("variant", "")) == panel
                        and r["backend"] == backend
                        and r["threads"] == threads
                    ]
                    ax.plot(
                        [r["batch"] for r in rows],
                        [r["sentences_per_s"] for r in rows],
                        "o-" if backend == "onnxruntime" else "s--",
                        label=f"{backend}, {threads} thread{'s' if threads > 1 else ''}",
                    )
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.set_ylabel("sentences / s")
            ax.set_title(f"{_label(*panel)}: batch-size effect (in process)", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        name = f"{prefix}-batch-size.png"
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written.append(("Batch-size effect", name))
    return written


def markdown(results: dict, plot_files: list[tuple[str, str]]) -> str:
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
        f"{_f(machine['memory_gib'])} GiB memory; {machine['system']}",
        f"- Python {machine['python']}; "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        f"- Commit: `{machine['git']}`",
        f"- Run took {_f(results['elapsed_s'] / 60, 1)} min. The machine was shared: other "
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
    lines += _limits(results)
    lines += _inprocess(results)
    lines += _quantization(results)
    lines += _http(results)
    lines += _padding(results)
    lines += _footprint(results)
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
        f"{_f(mode['warmup_s'])} s warm-up, then {_f(mode['level_s'])} s measured (at most "
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
        + _worker_counts(results.get("http", {}))
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


def _worker_counts(http: dict) -> str:
    """The one worker count every server ran with, and where it came from."""
    if "workers" not in http:
        return ""
    servers = http.get("servers", {})
    threads = {s["threads"] for name, s in servers.items() if name != NAIVE and "threads" in s}
    each = (
        f", {'/'.join(map(str, sorted(threads)))} request threads each for the service"
        + (" and the floor" if FLOOR in servers else "")
        if threads
        else ""
    )
    return (
        f"every server ran {http['workers']} worker process"
        f"{'es' if http['workers'] != 1 else ''} ({http['workers_source']}){each}, "
        "one request at a time each for the naive one (sync workers); "
    )


def _limits(results: dict) -> list[str]:
    missed = [t for t in results["targets"] if not t["met"]]
    if not missed:
        return [""]
    lines = ["", "### What limits the missed targets", ""]
    for profile in results.get("profiles", []):
        top = ", ".join(f"{op} {share * 100:.0f}%" for op, share in profile["shares"][:5])
        lines.append(
            f"- **{profile['model']}, ORT at batch 1** (ORT profiler, share of wall time): {top}."
        )
    stats = results.get("http", {}).get("batching_stats", [])
    for server in (SERVICE_BATCHING, SERVICE_NO_BATCHING):
        rows = [r for r in stats if r["server"] == server]
        if rows:
            parts = ", ".join(
                f"c={r['concurrency']}: {_f(r['mean_rows'])} rows/call, "
                f"{_f(r['mean_compute_ms'], 2)} ms/call, queue {_f(r['mean_queue_ms'], 2)} ms"
                for r in rows
            )
            lines.append(f"- **{server}** (service /metrics): {parts}.")
    for target in missed:
        if target.get("times_naive"):
            lines += _cpu_limit(results, target["times_naive"])
            lines += _floor_limit(results, target["times_naive"])
        if target["kind"] == "http" and target.get("model"):
            lines += _one_vs_many_limit(results, target["model"], target.get("options", {}))
        if target.get("batching_of"):
            model = target["batching_of"]
            gains = _batching_gains(results, model)
            if gains:
                lines.append(
                    f"- **{model}, batching on vs off**: in process, ONNX Runtime runs "
                    f"{gains}. That is the most that batching can gain even if a request cost "
                    "nothing outside the graph; every millisecond of per-request work (HTTP, "
                    "Flask, JSON, logging) that batching does not touch lowers the ratio further."
                )
            lines += _batch_profile(results, model)
    load = results.get("http", {}).get("load", [])
    cores = results["machine"]["usable_cores"]
    for r in stats:
        level = _load(results, r["server"], r["concurrency"])
        if r["server"] != SERVICE_BATCHING or not level or not level["throughput"]:
            continue
        if r["concurrency"] != max(x["concurrency"] for x in stats if x["server"] == r["server"]):
            continue
        graph_ms = r["mean_compute_ms"] / r["mean_rows"]
        # Both wall-clock: the graph's time per call includes waiting for a core, so it is set
        # against the machine's core-time per request, not against the server's CPU time.
        budget_ms = _core_ms(results, level["throughput"])
        lines.append(
            f"- At c={r['concurrency']} the batching service answered "
            f"{_f(level['throughput'])} requests/s, i.e. at most {_f(budget_ms, 2)} ms of CPU "
            f"per request on {cores} cores; the graph took {_f(graph_ms, 2)} ms of it per text "
            f"({_f(100 * graph_ms / budget_ms, 0)}%). The rest is per-request work outside "
            "ONNX Runtime (HTTP parsing, Flask, validation, JSON, logging, metrics, thread "
            "hand-offs, plus the load generator), which no batching removes. "
            + _batch_size_limit(results, r)
        )
    if load:
        top = max(load, key=lambda r: r["client_cpu"])
        lines.append(
            f"- The load generator itself used up to {top['client_cpu'] * 100:.0f}% of a core "
            f"({top['server']}, c={top['concurrency']}) on a "
            f"{results['machine']['usable_cores']}-core "
            "machine it shares with the server."
        )
    lines.append("")
    return lines


def _batch_profile(results: dict, model: str, top: int = 4) -> list[str]:
    """The graph's cost per text by operator at each profiled batch size (the costliest
    operators at batch 1, and what lies outside the kernels); empty if not profiled."""
    profile = next((p for p in results.get("batch_profiles", []) if p["model"] == model), None)
    if not profile or not profile["rows"]:
        return []
    rows = profile["rows"]
    first = rows[0]["us_per_text"]
    ops = sorted((op for op in first if not op.startswith("(")), key=lambda op: -first[op])[:top]
    ops += [op for op in first if op.startswith("(")]

    def path(op: str) -> str:
        return " → ".join(_f(r["us_per_text"].get(op, 0.0), 0) for r in rows)

    batches = " → ".join(str(r["batch"]) for r in rows)
    parts = "; ".join(f"{op.split(':')[0].strip('(')} {path(op)}" for op in ops)
    return [
        f"- **{model}, where the graph's time per text goes** (ORT profiler, 1 thread, µs per "
        f"text at batch {batches}): {parts}."
    ]


def _core_ms(results: dict, throughput: float) -> float:
    """The machine's core-time per request at ``throughput`` requests/s: at most what a request
    used, server and load generator together."""
    return 1000 * results["machine"]["usable_cores"] / throughput


def _client_ms(level: dict) -> float:
    """The load generator's CPU time per request of a load level."""
    return 1000 * level["client_cpu"] / level["throughput"]


def _cpu_limit(results: dict, times: float) -> list[str]:
    """What ``times`` × the naive baseline's throughput asks of the service's CPU per request,
    from what the servers' processes used per request at the target concurrency (measured from
    /proc, so other processes on a shared machine do not count); empty when the run did not
    measure it."""
    c = target_concurrency(results["mode"]["concurrency"])
    naive, service, floor = (_load(results, s, c) for s in (NAIVE, SERVICE_BATCHING, FLOOR))
    measured = [r for r in (naive, service, floor) if r and r["throughput"]]
    measured = [r for r in measured if r.get("server_cpu_ms") is not None]
    if naive not in measured or service not in measured:
        return []

    def cost(level: dict) -> str:
        return f"{_f(level['server_cpu_ms'], 2)} ms ({_f(_client_ms(level), 2)} ms)"

    naive_ms = naive["server_cpu_ms"] + _client_ms(naive)
    service_ms = service["server_cpu_ms"] + _client_ms(service)
    cores = results["machine"]["usable_cores"]
    wanted = times * naive["throughput"]
    wanted_ms = _core_ms(results, wanted)
    allowed = wanted_ms - _client_ms(service)
    line = (
        f"- **CPU per request** (c={c}; the server's own processes, from /proc, with the load "
        f"generator's share in brackets): {NAIVE} {cost(naive)}, {SERVICE_BATCHING} "
        f"{cost(service)}"
    )
    if floor in measured:
        line += f", {FLOOR} {cost(floor)}"
    line += (
        f". Per request, the naive baseline cost {naive_ms / service_ms:.2f}× what the service "
        f"did, server and load generator together. {times:g}× the naive baseline's throughput "
        f"({_f(wanted)} requests/s) leaves {_f(wanted_ms, 2)} ms of the {cores} cores' time per "
        "request"
    )
    if allowed <= 0:
        line += ", no more than the load generator's share alone."
    elif service["server_cpu_ms"] > allowed:
        line += (
            f", {_f(allowed, 2)} ms of it for the service's own processes; they used "
            f"{_f(service['server_cpu_ms'] - allowed, 2)} ms more."
        )
    else:
        line += (
            f", {_f(allowed, 2)} ms of it for the service's own processes; they used less, so "
            "the throughput missed went to neither server nor load generator (idle cores, or "
            "other processes on a shared machine)."
        )
    return [line]


def _floor_limit(results: dict, times: float) -> list[str]:
    """What ``times`` × the naive baseline's throughput leaves for the service's own work per
    request, once Flask and gunicorn under the service's settings have taken what they take with
    no model at all (the floor server's load level at the target concurrency); empty without
    the floor. Times are the machine's core-time per request (cores / throughput: at most what a
    request used, the load generator's share included, which the line gives for both)."""
    c = target_concurrency(results["mode"]["concurrency"])
    floor, naive, service = (_load(results, s, c) for s in (FLOOR, NAIVE, SERVICE_BATCHING))
    if not (floor and naive and service) or not min(
        r["throughput"] for r in (floor, naive, service)
    ):
        return []
    cores = results["machine"]["usable_cores"]
    wanted = times * naive["throughput"]
    floor_ms, service_ms, wanted_ms = (
        _core_ms(results, x) for x in (floor["throughput"], service["throughput"], wanted)
    )
    line = (
        f"- **Floor** (c={c}): {FLOOR}, under the service's gunicorn settings, answered "
        f"{_f(floor['throughput'])} requests/s, {floor['throughput'] / naive['throughput']:.2f}× "
        f"the naive baseline, i.e. at most {_f(floor_ms, 2)} ms of the {cores} "
        f"cores' time per request (the load generator's {_f(_client_ms(floor), 2)} ms included). "
    )
    if wanted >= floor["throughput"]:
        line += (
            f"{times:g}× the naive baseline ({_f(wanted)} requests/s) is more than the floor "
            "answers: with these gunicorn settings, no change to the service's own code reaches "
            "it on this machine."
        )
    else:
        line += (
            f"{times:g}× the naive baseline ({_f(wanted)} requests/s) allows {_f(wanted_ms, 2)} "
            f"ms: {_f(wanted_ms - floor_ms, 2)} ms per request for all the service does beyond "
            "the floor (model, text encoding, validation, batching, logging, metrics). The "
            f"batching service answered {_f(service['throughput'])} requests/s "
            f"({100 * service['throughput'] / floor['throughput']:.0f}% of the floor): at most "
            f"{_f(service_ms, 2)} ms per request, {_f(service_ms - floor_ms, 2)} ms beyond the "
            f"floor (the load generator's share: {_f(_client_ms(service), 2)} ms)."
        )
    return [line]


# Rows per graph call this close to the request threads of a worker (the most one batch can
# hold when every request carries one text) count as held down by the thread count.
THREAD_CAP_SHARE = 0.75


def _batch_size_limit(results: dict, stats: dict) -> str:
    """The batching service's rows per graph call next to what its request threads allow; the
    thread count is named as the limit only when the batches come close to it."""
    server = results["http"]["servers"].get(SERVICE_BATCHING, {})
    workers = server.get("worker_count", len(server.get("workers", [])))
    threads = server.get("threads")
    rows = stats["mean_rows"]
    if not threads:
        return f"Batches held {_f(rows, 1)} rows per call on average."
    per_worker = f"of at most {threads}: one per request thread of a worker, GUNICORN_THREADS"
    inside = f"{workers} worker{'s' if workers != 1 else ''} × {threads} request threads"
    if rows >= THREAD_CAP_SHARE * threads:
        return (
            f"Batches stay small ({_f(rows, 1)} rows per call, {per_worker}={threads}) because "
            f"only {inside} can be inside the service at once; the other clients wait in the "
            "listen queue, not in the batcher."
        )
    return (
        f"Batches held {_f(rows, 1)} rows per call on average ({per_worker}={threads}; "
        f"{inside} can be inside the service at once)."
    )


def _one_vs_many_limit(results: dict, model: str, options: dict) -> list[str]:
    """Why one request with many texts is not much faster than as many requests: per text,
    what each costs over HTTP, and what batching gains in process (ONNX Runtime)."""
    r = next(
        x
        for x in results["http"]["one_vs_many"]
        if x["model"] == model and x.get("options", {}) == options
    )
    shown = ", ".join(f"{k} {v}" for k, v in options.items())
    line = (
        f"- **{model}{f' ({shown})' if shown else ''}, one request vs {r['texts']} requests**: "
        f"{_f(1000 * r['one_s'] / r['texts'], 1)} ms per text in one request, "
        f"{_f(1000 * r['many_s'] / r['texts'], 1)} ms per text in single-text requests."
    )
    gains = _batching_gains(results, model)
    if gains:
        line += (
            f" In process, ONNX Runtime runs {gains}: a request can only be as much faster than "
            "single-text requests as batching makes the model itself, plus the per-request HTTP "
            "cost it saves."
        )
    return [line]


def _batching_gains(results: dict, model: str) -> str:
    """What batching gains inside ONNX Runtime for ``model`` (per variant: sentences/s at
    batch 1 and at the best batch size, fewest threads measured); empty if not measured."""
    inproc = [x for x in results.get("inprocess", []) if x["model"] == model]
    if not inproc:
        return ""
    threads = min(x["threads"] for x in inproc)
    gains = []
    for variant in dict.fromkeys(x.get("variant", "") for x in inproc):
        ort = [
            x
            for x in inproc
            if x.get("variant", "") == variant
            and x["backend"] == "onnxruntime"
            and x["threads"] == threads
        ]
        single = next((x for x in ort if x["batch"] == 1), None)
        best = max(ort, key=lambda x: x["sentences_per_s"])
        if single:
            gains.append(
                f"{variant or 'one call'}: {_f(single['sentences_per_s'], 0)} sentences/s at "
                f"batch 1, at best {_f(best['sentences_per_s'], 0)} (batch {best['batch']}, "
                f"{best['sentences_per_s'] / single['sentences_per_s']:.2f}×)"
            )
    return f"({threads} thread{'s' if threads > 1 else ''}) " + "; ".join(gains)


def _inprocess(results: dict) -> list[str]:
    rows = results.get("inprocess")
    if not rows:
        return []
    lines = [
        "## In process: ONNX Runtime vs PyTorch eager",
        "",
        "| model | threads | batch | ORT ms/batch | PyTorch ms/batch | ORT sentences/s "
        "| PyTorch sentences/s | ORT speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def key(r: dict) -> tuple:
        return r["model"], r.get("variant", ""), r["threads"], r["batch"]

    for model, variant, threads, batch in dict.fromkeys(map(key, rows)):
        cell = {r["backend"]: r for r in rows if key(r) == (model, variant, threads, batch)}
        o, p = cell["onnxruntime"], cell["pytorch"]
        lines.append(
            f"| {_label(model, variant)} | {threads} | {batch} | {_f(o['ms_per_batch'], 2)} | "
            f"{_f(p['ms_per_batch'], 2)} | "
            f"{_f(o['sentences_per_s'], 0)} | {_f(p['sentences_per_s'], 0)} | "
            f"{p['ms_per_batch'] / o['ms_per_batch']:.2f}× |"
        )
    return [*lines, ""]


def _quantization(results: dict) -> list[str]:
    rows = results.get("quantization")
    if not rows:
        return []
    lines = [
        "## Dynamic int8 quantization (ONNX Runtime, 1 thread)",
        "",
        "| model | graphs MB fp32 → int8 | speed-up (int8 vs fp32 ms per batch) | metric | fp32 "
        "| int8 | change (points) | qualifies |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        speed = "; ".join(
            f"{_speed_cell(s)}: {s['speedup']:.2f}× ({_f(s['fp32_ms'], 2)} → {_f(s['int8_ms'], 2)})"
            for s in row["speed"]
        )
        # the table shows the headline and the overall metrics; the verdict covers all of them
        metric_keys = [
            k for k in row["fp32"] if k == row["headline"] or not k.startswith("dev_f1_")
        ]
        losses = {k: row["fp32"][k] - row["int8"].get(k, float("nan")) for k in metric_keys}
        verdict = quantization_verdict(row)
        for i, key in enumerate(metric_keys):
            first = i == 0
            lines.append(
                f"| {row['model'] if first else ''} | "
                f"{(_f(row['fp32_mb']) + ' → ' + _f(row['int8_mb'])) if first else ''} | "
                f"{speed if first else ''} | {key} | {_f(row['fp32'][key], 2)} | "
                f"{_f(row['int8'][key], 2)} | {-losses[key]:+.2f} | {verdict if first else ''} |"
            )
    sizes = "; ".join(
        f"{r['model']}: " + ", ".join(f"{k} {v:,}" for k, v in r["metric_sizes"].items())
        for r in rows
    )
    lines += [
        "",
        f"Examples scored: {sizes}"
        + (
            " (a prefix of each dev set: quick mode; the full run scores every example)."
            if results["mode"]["metric_limit"]
            else " (the full dev sets)."
        ),
        "",
    ]
    return lines


def quantization_verdict(row: dict) -> str:
    """``yes``, or ``no (...)`` with what the int8 variant misses, judged by training's quantize
    criterion (``training.quantize.judge``): fast enough at every batch size and search
    measured, and no more than the allowed loss on *every* dev metric (per-type F1 included,
    though the table does not show them)."""
    slow = judge(_quantization_report(row, speed=True, metrics=()), QUANT_CRITERIA)
    worse = [
        key
        for key in row["fp32"]
        if judge(_quantization_report(row, speed=False, metrics=(key,)), QUANT_CRITERIA)
    ]
    if not slow and not worse:
        return "yes"
    reasons = (["too slow"] if slow else []) + (
        [f"too inaccurate: {', '.join(worse)}"] if worse else []
    )
    return f"no ({'; '.join(reasons)})"


def _quantization_report(row: dict, speed: bool, metrics: Sequence[str]) -> QuantizationReport:
    """A quantization row as training.quantize's report: its speed (or none) and the
    ``metrics`` named."""
    return QuantizationReport(
        model=row["model"],
        files={},
        fp32_metrics={k: row["fp32"][k] for k in metrics},
        int8_metrics={k: row["int8"][k] for k in metrics if k in row["int8"]},
        ms_per_batch={
            _speed_cell(s): {"fp32": s["fp32_ms"], "int8": s["int8_ms"]} for s in row["speed"]
        }
        if speed
        else {},
    )


def _worker_profiles(profiles: dict) -> list[str]:
    """Share of py-spy samples per part of the request path, one column per profiled server."""
    measured = {name: dict(p["shares"]) for name, p in profiles.items() if p["shares"]}
    if not measured:
        notes = {p.get("note") for p in profiles.values()} - {None}
        return ["", f"(No worker profile: {'; '.join(sorted(notes))}.)"] if notes else []
    first = next(p for p in profiles.values() if p["shares"])
    parts = list(dict.fromkeys(part for shares in measured.values() for part in shares))
    lines = [
        "",
        f"Where one worker's Python time goes at concurrency {first['concurrency']} (py-spy "
        f"`--gil`, {first['seconds']:g} s at 100 samples/s of the thread holding the GIL; a "
        "sample counts for the innermost part of the request path on its stack; graph kernels "
        "run without the GIL, so their rows show only the Python side of the call):",
        "",
        "| part | " + " | ".join(measured) + " |",
        "|---|" + "---|" * len(measured),
    ]
    for part in parts:
        cells = " | ".join(f"{shares.get(part, 0.0) * 100:.0f}%" for shares in measured.values())
        lines.append(f"| {part} | {cells} |")
    return lines


def _speed_cell(speed: dict) -> str:
    """Where a quantization speed-up was measured: "batch 32", "beam 5, batch 32"."""
    return ", ".join(x for x in (speed.get("variant", ""), f"batch {speed['batch']}") if x)


def _http(results: dict) -> list[str]:
    http = results.get("http")
    if not http:
        return []
    # Runs before the server's CPU was measured have no such column.
    cpu = any(r.get("server_cpu_ms") is not None for r in http["load"])
    lines = [
        "## Over HTTP: POST /v1/sentiment, one text per request",
        "",
        "| server | concurrency | requests/s | p50 ms | p95 ms | p99 ms | p99/p50 | errors "
        "| requests | client CPU |" + (" server CPU ms per request |" if cpu else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if cpu else ""),
    ]
    for r in http["load"]:
        server_ms = r.get("server_cpu_ms")
        server_cell = f" {'–' if server_ms is None else _f(server_ms, 2)} |" if cpu else ""
        lines.append(
            f"| {r['server']} | {r['concurrency']} | {_f(r['throughput'])} | "
            f"{_f(r['p50_ms'], 2)} | "
            f"{_f(r['p95_ms'], 2)} | {_f(r['p99_ms'], 2)} | "
            f"{_f(r['p99_ms'] / r['p50_ms'] if r['p50_ms'] else float('nan'), 2)} | "
            f"{r['errors']} | "
            f"{r['requests']:,} | {r['client_cpu'] * 100:.0f}% |{server_cell}"
        )
    if http["batching_stats"]:
        lines += [
            "",
            "Inside the service (from its `/metrics`):",
            "",
            "| server | concurrency | rows per graph call | ms per graph call | queue wait ms |",
            "|---|---|---|---|---|",
        ]
        for r in http["batching_stats"]:
            lines.append(
                f"| {r['server']} | {r['concurrency']} | {_f(r['mean_rows'], 2)} | "
                f"{_f(r['mean_compute_ms'], 2)} | {_f(r['mean_queue_ms'], 2)} |"
            )
    lines += _worker_profiles(http.get("worker_profiles", {}))
    if http["one_vs_many"]:
        lines += [
            "",
            "### Request-level batching (service with batching, one client)",
            "",
            "| model | texts | request options | one request ms "
            "| sequential single-text requests ms | ratio |",
            "|---|---|---|---|---|---|",
        ]
        for r in http["one_vs_many"]:
            options = ", ".join(f"`{k}`: {v}" for k, v in r.get("options", {}).items())
            lines.append(
                f"| {r['model']} | {r['texts']} | {options or '–'} | {_f(r['one_s'] * 1000)} | "
                f"{_f(r['many_s'] * 1000)} | "
                f"{r['ratio']:.2f}× |"
            )
    return [*lines, ""]


def padding_table(rows: list[dict]) -> list[str]:
    """Markdown table of ``benchmarks.padding.measure`` rows."""
    lines = [
        "| workload | texts per request | min_fill | ms per request | with min_fill 0 | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['workload']} | {row['texts']} | {row['min_fill']:g} | {_f(row['ms'])} "
            f"| {_f(row['ms_without'])} | {row['speedup']:.2f}× |"
        )
    return lines


def _padding(results: dict) -> list[str]:
    rows = results.get("padding")
    if not rows:
        return []
    mode = results["mode"]
    return [
        "## Padding-aware batching: multi-text requests of mixed length",
        "",
        "A recurrent graph runs every row of a batch for as many steps as its longest row. The "
        "batcher cuts a batch where fewer than `min_fill` of its padded tokens would be real "
        "(the model's default, `BATCH_OVERRIDES` changes it); with `min_fill` 0 every text of a "
        "request runs in one padded batch. In process, through the service's predictors (one "
        f"ONNX Runtime thread), {mode['padding_requests']} requests of "
        f"{mode['padding_texts']} random dev texts each (fixed seed), the two settings "
        f"interleaved over {mode['padding_repeats']} repeat(s), medians "
        "(`python -m benchmarks.padding`).",
        "",
        *padding_table(rows),
        "",
    ]


def _footprint(results: dict) -> list[str]:
    lines = ["## Footprint", ""]
    servers = results.get("http", {}).get("servers", {})
    if servers:
        lines += [
            "| server | workers | start-up to first answer s | RSS per worker MiB (after load) "
            "| PSS per worker MiB (after load) |",
            "|---|---|---|---|---|",
        ]
        for name, s in servers.items():
            workers = s.get("workers_after") or s["workers"]
            rss = ", ".join(_f(w.get("rss", float("nan")), 0) for w in workers)
            pss = ", ".join(_f(w.get("pss", float("nan")), 0) for w in workers)
            lines.append(f"| {name} | {len(workers)} | {_f(s['startup_s'], 2)} | {rss} | {pss} |")
        lines.append("")
    size = results.get("install")
    if size:
        biggest = ", ".join(f"{k} {_f(v, 0)} MB" for k, v in size["biggest_train"])
        torch_note = "torch included!" if size["torch_in_serve"] else "no torch"
        lines += [
            "| install | distributions | size MB |",
            "|---|---|---|",
            f"| serving (`pip install .`, {torch_note}) | {size['serve_packages']} "
            f"| {_f(size['serve_mb'])} |",
            f"| training (`pip install .[train]`) | {size['train_packages']} "
            f"| {_f(size['train_mb'])} |",
            "",
            "Install sizes add up the installed files of each distribution that the project's "
            "requirements pull in (base requirements vs base + `train` extra), as installed in "
            "this "
            f"environment. Largest in the training install: {biggest}.",
            "",
        ]
    return lines


def write(results: dict, doc: Path, plots_dir: Path) -> None:
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


__all__ = ["asdict", "markdown", "plots", "targets", "write"]
