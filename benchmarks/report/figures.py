"""The report's PNG plots: throughput vs concurrency, latency percentiles, batch-size effect."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.report.cells import model_label


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
            ax.set_title(f"{model_label(*panel)}: batch-size effect (in process)", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        name = f"{prefix}-batch-size.png"
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written.append(("Batch-size effect", name))
    return written
