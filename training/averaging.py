"""Checkpoint averaging: the element-wise mean of the weights of several checkpoints of one run.

Averaging the last epochs of a run (Vaswani et al. 2017; Popel & Bojar 2018) smooths out the
noise of the final updates and usually scores a little better than any single epoch. The result
is an ordinary model-only checkpoint (like ``best.pt``) that ``export`` takes as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from training.errors import CheckpointError
from training.trainer import read_checkpoint

# Saved with every checkpoint by the trainer but not part of a model-only one.
_TRAINING_STATE = ("optimizer", "epoch", "best", "stale", "history", "rng")


def average_checkpoints(paths: Sequence[Path]) -> dict[str, Any]:
    """A model-only checkpoint whose weights are the mean of ``paths``' weights; everything
    else (task, config, vocabularies) comes from the last checkpoint and must agree."""
    if not paths:
        raise ValueError("no checkpoints to average")
    states = [read_checkpoint(p) for p in paths]
    first, last = states[0], states[-1]
    # What defines the model: its task, architecture and vocabularies (not the schedule:
    # a resumed run may change epochs, learning rate or threads).
    same = [k for k in last if k not in (*_TRAINING_STATE, "model", "config", "training_data")]
    for path, state in zip(paths, states, strict=True):
        if state["model"].keys() != first["model"].keys() or any(
            state.get(k) != last[k] for k in same
        ):
            raise CheckpointError(f"{path} is not a checkpoint of the same model as {paths[-1]}")
        if state.get("config", {}).get("model") != last.get("config", {}).get("model"):
            raise CheckpointError(f"{path} has another model config than {paths[-1]}")
    model = {}
    for name, value in first["model"].items():
        if value.is_floating_point():
            model[name] = torch.stack([s["model"][name] for s in states]).mean(dim=0)
        else:  # counters and the like: the last checkpoint's
            model[name] = last["model"][name]
    extra = {k: v for k, v in last.items() if k != "model" and k not in _TRAINING_STATE}
    return {"model": model, **extra, "averaged_from": [str(p) for p in paths]}


def write_average(paths: Sequence[Path], out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(average_checkpoints(paths), out)
    return out
