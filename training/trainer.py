"""One task-agnostic training loop: clipping, dev evaluation, early stopping, checkpoints, resume.

Everything task-specific comes in as callables: how to make the epoch's batches, how to compute
a batch's loss and how to evaluate on dev data.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from training.config import TrainerConfig, config_differences, from_dict, to_dict
from training.errors import CheckpointError, ConfigError
from training.plots import plot_learning_curve

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


def read_checkpoint(path: Path, task: str | None = None) -> dict[str, Any]:
    """The state saved at ``path`` by a training run, of ``task`` when given (raises
    :class:`CheckpointError` for any other file: another task's checkpoint, a file that is not
    one at all)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # Not torch.save's format, or a pickle of other objects than tensors and plain data
    # (weights_only: a checkpoint never runs code when it loads).
    except (pickle.UnpicklingError, EOFError, RuntimeError, ImportError, AttributeError) as exc:
        raise CheckpointError(f"{path} is not a checkpoint: {exc}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a checkpoint written by a training run")
    if task is not None and state.get("task") != task:
        raise CheckpointError(f"{path} is a {state.get('task')!r} checkpoint, not a {task!r} one")
    if task is not None:  # its settings must read (the model is rebuilt from them)
        try:
            from_dict(task, state.get("config", {}))
        except ConfigError as exc:
            raise ConfigError(f"{path}: its configuration: {exc}") from None
    return state


def start_from(
    model: nn.Module, weights: dict[str, torch.Tensor], checkpoint: dict, config
) -> None:
    """Load ``weights`` of ``checkpoint`` (``config.init_from``) into ``model``; weights of
    another shape are a :class:`ConfigError` naming the model settings that differ."""
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        differing = config_differences(checkpoint["config"]["model"], to_dict(config)["model"])
        listed = "; ".join(
            f"model.{k}={old!r} (this run: {new!r})" for k, (old, new) in differing.items()
        )
        raise ConfigError(
            f"init_from={config.init_from}: its weights do not fit this model: the checkpoint "
            f"has {listed or 'the same model settings'}; give the checkpoint's model settings"
        ) from None
    log.info("initialised from %s", config.init_from)


@dataclass
class TrainingTask:
    """What the loop needs to know about a task."""

    batches: Callable[[int], Iterable[Any]]  # epoch -> batches
    loss: Callable[[nn.Module, Any], torch.Tensor]  # (model, batch) -> scalar loss
    evaluate: Callable[[nn.Module], dict[str, float]]  # model -> dev metrics
    select: str  # dev metric for model selection
    checkpoint_extra: dict[str, Any] = field(default_factory=dict)  # saved with every checkpoint
    lower_is_better: bool = False  # true for a loss or perplexity

    def score(self, record: dict[str, float]) -> float:
        """``select``'s value, signed so that higher is better."""
        return -record[self.select] if self.lower_is_better else record[self.select]


class Trainer:
    def __init__(self, model: nn.Module, task: TrainingTask, config: TrainerConfig, run_dir: Path):
        self.model = model
        self.task = task
        self.config = config
        self.run_dir = Path(run_dir)
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.history: list[dict[str, float]] = []
        self.best: float = -math.inf
        self.epoch = 0
        self.stale = 0

    def fit(self, resume: bool = False) -> dict[str, float]:
        """Train until ``epochs`` or early stopping; return the best epoch's record. ``resume``
        continues from the run folder's ``last.pt``, which must exist."""
        if resume:
            self._load_last()
        while self.epoch < self.config.epochs and self.stale < self.config.patience:
            self.epoch += 1
            record = self._run_epoch()
            improved = self.task.score(record) > self.best
            if improved:
                self.best, self.stale = self.task.score(record), 0
                self._save(BEST_CHECKPOINT, model_only=True)
            else:
                self.stale += 1
                self._decay_lr()
            record["best"] = float(improved)
            self.history.append(record)
            self._write_history()
            self._save(LAST_CHECKPOINT)
            if self.config.keep_epochs:
                self._save(f"epoch-{self.epoch}.pt", model_only=True)
            log.info("epoch %d %s", self.epoch, json.dumps(record))
        return max(self.history, key=self.task.score)

    def _run_epoch(self) -> dict[str, float]:
        self.model.train()
        started, total, count = time.perf_counter(), 0.0, 0
        batches = self.task.batches(self.epoch)
        progress = tqdm(
            batches, desc=f"epoch {self.epoch}", unit="batch", mininterval=5, leave=False
        )
        for index, batch in enumerate(progress):
            if self.config.max_batches is not None and index >= self.config.max_batches:
                break
            loss = self.task.loss(self.model, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
            self.optimizer.step()
            total, count = total + loss.item(), count + 1
            if index % 20 == 0:
                progress.set_postfix(loss=f"{total / count:.4f}")
        self.model.eval()
        with torch.no_grad():
            metrics = self.task.evaluate(self.model)
        return {
            "epoch": self.epoch,
            "train_loss": total / max(count, 1),
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
            **metrics,
        }

    def _decay_lr(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] *= self.config.lr_decay

    def _save(self, name: str, model_only: bool = False) -> None:
        state = {"model": self.model.state_dict(), **self.task.checkpoint_extra}
        if not model_only:
            state |= {
                "optimizer": self.optimizer.state_dict(),
                "epoch": self.epoch,
                "best": self.best,
                "stale": self.stale,
                "history": self.history,
                "rng": torch.get_rng_state(),
            }
        tmp = self.run_dir / f"{name}.tmp"
        torch.save(state, tmp)
        tmp.replace(self.run_dir / name)  # atomic: a killed run never leaves half a checkpoint

    def _load_last(self) -> None:
        path = self.run_dir / LAST_CHECKPOINT
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: {path} does not exist")
        state = read_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.best, self.stale = state["epoch"], state["best"], state["stale"]
        self.history = state["history"]
        torch.set_rng_state(state["rng"])
        log.info("resumed from %s at epoch %d", self.run_dir / LAST_CHECKPOINT, self.epoch)

    def _write_history(self) -> None:
        with open(self.run_dir / "metrics.jsonl", "w", encoding="utf-8") as handle:
            for record in self.history:
                handle.write(json.dumps(record) + "\n")
        plot_learning_curve(self.history, self.task.select, self.run_dir / "learning_curve.png")
