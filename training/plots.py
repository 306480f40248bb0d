"""Figures written into run folders."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_learning_curve(history: list[dict[str, float]], select: str, path: Path) -> None:
    """Training loss and the selection metric per epoch, side by side."""
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["train_loss"] for r in history], marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="loss")
    dev_keys = [k for k in history[0] if k.startswith("dev_")]
    for key in dev_keys:
        right.plot(epochs, [r[key] for r in history], marker="o", label=key)
    right.set(title=f"dev metrics (selection: {select})", xlabel="epoch")
    right.legend()
    for axis in (left, right):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
