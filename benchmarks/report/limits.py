"""What limits the missed targets: the figures of the same run that bound each of them."""

from __future__ import annotations

from benchmarks.common import target_concurrency
from benchmarks.report.cells import fmt, load_level
from benchmarks.serving import FLOOR, NAIVE, SERVICE_BATCHING, SERVICE_NO_BATCHING


def explain(results: dict) -> list[str]:
    """ "What limits the missed targets": a line for each missed target, from the same run's
    figures; nothing when every target was met."""
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
                f"c={r['concurrency']}: {fmt(r['mean_rows'])} rows/call, "
                f"{fmt(r['mean_compute_ms'], 2)} ms/call, queue {fmt(r['mean_queue_ms'], 2)} ms"
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
        level = load_level(results, r["server"], r["concurrency"])
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
            f"{fmt(level['throughput'])} requests/s, i.e. at most {fmt(budget_ms, 2)} ms of CPU "
            f"per request on {cores} cores; the graph took {fmt(graph_ms, 2)} ms of it per text "
            f"({fmt(100 * graph_ms / budget_ms, 0)}%). The rest is per-request work outside "
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
        return " → ".join(fmt(r["us_per_text"].get(op, 0.0), 0) for r in rows)

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
    naive, service, floor = (load_level(results, s, c) for s in (NAIVE, SERVICE_BATCHING, FLOOR))
    measured = [r for r in (naive, service, floor) if r and r["throughput"]]
    measured = [r for r in measured if r.get("server_cpu_ms") is not None]
    if naive not in measured or service not in measured:
        return []

    def cost(level: dict) -> str:
        return f"{fmt(level['server_cpu_ms'], 2)} ms ({fmt(_client_ms(level), 2)} ms)"

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
        f"({fmt(wanted)} requests/s) leaves {fmt(wanted_ms, 2)} ms of the {cores} cores' time per "
        "request"
    )
    if allowed <= 0:
        line += ", no more than the load generator's share alone."
    elif service["server_cpu_ms"] > allowed:
        line += (
            f", {fmt(allowed, 2)} ms of it for the service's own processes; they used "
            f"{fmt(service['server_cpu_ms'] - allowed, 2)} ms more."
        )
    else:
        line += (
            f", {fmt(allowed, 2)} ms of it for the service's own processes; they used less, so "
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
    floor, naive, service = (load_level(results, s, c) for s in (FLOOR, NAIVE, SERVICE_BATCHING))
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
        f"{fmt(floor['throughput'])} requests/s, {floor['throughput'] / naive['throughput']:.2f}× "
        f"the naive baseline, i.e. at most {fmt(floor_ms, 2)} ms of the {cores} "
        f"cores' time per request (the load generator's {fmt(_client_ms(floor), 2)} ms included). "
    )
    if wanted >= floor["throughput"]:
        line += (
            f"{times:g}× the naive baseline ({fmt(wanted)} requests/s) is more than the floor "
            "answers: with these gunicorn settings, no change to the service's own code reaches "
            "it on this machine."
        )
    else:
        line += (
            f"{times:g}× the naive baseline ({fmt(wanted)} requests/s) allows {fmt(wanted_ms, 2)} "
            f"ms: {fmt(wanted_ms - floor_ms, 2)} ms per request for all the service does beyond "
            "the floor (model, text encoding, validation, batching, logging, metrics). The "
            f"batching service answered {fmt(service['throughput'])} requests/s "
            f"({100 * service['throughput'] / floor['throughput']:.0f}% of the floor): at most "
            f"{fmt(service_ms, 2)} ms per request, {fmt(service_ms - floor_ms, 2)} ms beyond the "
            f"floor (the load generator's share: {fmt(_client_ms(service), 2)} ms)."
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
        return f"Batches held {fmt(rows, 1)} rows per call on average."
    per_worker = f"of at most {threads}: one per request thread of a worker, GUNICORN_THREADS"
    inside = f"{workers} worker{'s' if workers != 1 else ''} × {threads} request threads"
    if rows >= THREAD_CAP_SHARE * threads:
        return (
            f"Batches stay small ({fmt(rows, 1)} rows per call, {per_worker}={threads}) because "
            f"only {inside} can be inside the service at once; the other clients wait in the "
            "listen queue, not in the batcher."
        )
    return (
        f"Batches held {fmt(rows, 1)} rows per call on average ({per_worker}={threads}; "
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
        f"{fmt(1000 * r['one_s'] / r['texts'], 1)} ms per text in one request, "
        f"{fmt(1000 * r['many_s'] / r['texts'], 1)} ms per text in single-text requests."
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
                f"{variant or 'one call'}: {fmt(single['sentences_per_s'], 0)} sentences/s at "
                f"batch 1, at best {fmt(best['sentences_per_s'], 0)} (batch {best['batch']}, "
                f"{best['sentences_per_s'] / single['sentences_per_s']:.2f}×)"
            )
    return f"({threads} thread{'s' if threads > 1 else ''}) " + "; ".join(gains)
