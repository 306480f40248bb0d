"""The report's tables: in process, quantization, HTTP, padding, footprint."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.report.cells import fmt, model_label
from benchmarks.servers import NAIVE_TORCH_THREADS
from benchmarks.serving import FLOOR, NAIVE
from training.quantize import Criteria, QuantizationReport, judge

# A variant qualifies as `python -m training quantize` judges it (training/quantize.py).
QUANT_CRITERIA = Criteria()
QUANT_MIN_SPEEDUP = QUANT_CRITERIA.min_speedup
QUANT_MAX_LOSS = QUANT_CRITERIA.max_loss_points


def worker_counts(http: dict) -> str:
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
    naive_threads = servers.get(NAIVE, {}).get("env", {}).get(NAIVE_TORCH_THREADS)
    torch_threads = (
        f" with {naive_threads} torch thread{'s' if naive_threads != '1' else ''} each (as many "
        "as the service's ONNX Runtime threads per worker)"
        if naive_threads
        else ""
    )
    return (
        f"every server ran {http['workers']} worker process"
        f"{'es' if http['workers'] != 1 else ''} ({http['workers_source']}){each}, "
        f"one request at a time each for the naive one (sync workers){torch_threads}; "
    )


def inprocess_table(results: dict) -> list[str]:
    """ONNX Runtime vs PyTorch eager, per model, thread count and batch size."""
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
            f"| {model_label(model, variant)} | {threads} | {batch} | "
            f"{fmt(o['ms_per_batch'], 2)} | {fmt(p['ms_per_batch'], 2)} | "
            f"{fmt(o['sentences_per_s'], 0)} | {fmt(p['sentences_per_s'], 0)} | "
            f"{p['ms_per_batch'] / o['ms_per_batch']:.2f}× |"
        )
    return [*lines, ""]


def quantization_table(results: dict) -> list[str]:
    """int8 vs fp32 per model: size, speed, every headline dev metric and the verdict."""
    rows = results.get("quantization")
    if not rows:
        return []
    lines = [
        "## Dynamic int8 quantization (ONNX Runtime, 1 thread)",
        "",
        "| model | graphs MiB fp32 → int8 | speed-up (int8 vs fp32 ms per batch) | metric | fp32 "
        "| int8 | change (points) | qualifies |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        speed = "; ".join(
            f"{_speed_cell(s)}: {s['speedup']:.2f}× "
            f"({fmt(s['fp32_ms'], 2)} → {fmt(s['int8_ms'], 2)})"
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
                f"{(fmt(row['fp32_mb']) + ' → ' + fmt(row['int8_mb'])) if first else ''} | "
                f"{speed if first else ''} | {key} | {fmt(row['fp32'][key], 2)} | "
                f"{fmt(row['int8'][key], 2)} | {-losses[key]:+.2f} | {verdict if first else ''} |"
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


def http_tables(results: dict) -> list[str]:
    """The HTTP load levels, the batching inside the service, the worker profile and
    request-level batching."""
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
        server_cell = f" {'–' if server_ms is None else fmt(server_ms, 2)} |" if cpu else ""
        lines.append(
            f"| {r['server']} | {r['concurrency']} | {fmt(r['throughput'])} | "
            f"{fmt(r['p50_ms'], 2)} | "
            f"{fmt(r['p95_ms'], 2)} | {fmt(r['p99_ms'], 2)} | "
            f"{fmt(r['p99_ms'] / r['p50_ms'] if r['p50_ms'] else float('nan'), 2)} | "
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
                f"| {r['server']} | {r['concurrency']} | {fmt(r['mean_rows'], 2)} | "
                f"{fmt(r['mean_compute_ms'], 2)} | {fmt(r['mean_queue_ms'], 2)} |"
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
                f"| {r['model']} | {r['texts']} | {options or '–'} | {fmt(r['one_s'] * 1000)} | "
                f"{fmt(r['many_s'] * 1000)} | "
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
            f"| {row['workload']} | {row['texts']} | {row['min_fill']:g} | {fmt(row['ms'])} "
            f"| {fmt(row['ms_without'])} | {row['speedup']:.2f}× |"
        )
    return lines


def padding_section(results: dict) -> list[str]:
    """Padding-aware batching against one padded batch per request."""
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


def footprint_tables(results: dict) -> list[str]:
    """Start-up time and memory per worker of each server, and the install sizes."""
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
            rss = ", ".join(fmt(w.get("rss", float("nan")), 0) for w in workers)
            pss = ", ".join(fmt(w.get("pss", float("nan")), 0) for w in workers)
            lines.append(f"| {name} | {len(workers)} | {fmt(s['startup_s'], 2)} | {rss} | {pss} |")
        lines.append("")
    size = results.get("install")
    if size:
        biggest = ", ".join(f"{k} {fmt(v, 0)} MiB" for k, v in size["biggest_train"])
        torch_note = "torch included!" if size["torch_in_serve"] else "no torch"
        lines += [
            "| install | distributions | size MiB |",
            "|---|---|---|",
            f"| serving (`pip install .`, {torch_note}) | {size['serve_packages']} "
            f"| {fmt(size['serve_mb'])} |",
            f"| training (`pip install .[train]`) | {size['train_packages']} "
            f"| {fmt(size['train_mb'])} |",
            "",
            "Install sizes add up the installed files of each distribution that the project's "
            "requirements pull in (base requirements vs base + `train` extra), as installed in "
            "this "
            f"environment. Largest in the training install: {biggest}.",
            "",
        ]
    return lines
