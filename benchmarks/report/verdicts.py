"""The issue's targets, each judged from one run's results."""

from __future__ import annotations

from benchmarks.common import target_concurrency
from benchmarks.report.cells import load_level, model_label
from benchmarks.serving import NAIVE, SERVICE_BATCHING, SERVICE_NO_BATCHING

# model -> least ratio of "N texts in one request" over "N sequential single-text requests"
ONE_VS_MANY_TARGETS = {"translation": 5.0}


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
                target=f"{model_label(model, headline)}: "
                "ONNX Runtime ≥ 2× PyTorch eager at batch 1",
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
            load_level(results, s, c) for s in (SERVICE_BATCHING, SERVICE_NO_BATCHING, NAIVE)
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
