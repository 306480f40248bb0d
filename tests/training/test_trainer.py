"""The task-agnostic training loop on a one-weight model."""

import json

import pytest
import torch
from torch import nn

from training.config import TrainerConfig
from training.trainer import Trainer, TrainingTask


def fit(run_dir, epochs: int, resume: bool = False) -> list[int]:
    """Fit y = 2x for ``epochs``; returns the epochs of the run's metrics.jsonl."""
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 8).unsqueeze(1)
    task = TrainingTask(
        batches=lambda epoch: [(x, 2 * x)],
        loss=lambda model, batch: nn.functional.mse_loss(model(batch[0]), batch[1]),
        evaluate=lambda model: {"dev_loss": nn.functional.mse_loss(model(x), 2 * x).item()},
        select="dev_loss",
        lower_is_better=True,
    )
    Trainer(nn.Linear(1, 1), task, TrainerConfig(epochs=epochs), run_dir).fit(resume=resume)
    lines = (run_dir / "metrics.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def test_resume_continues_after_the_last_epoch(tmp_path):
    assert fit(tmp_path, epochs=2) == [1, 2]

    assert fit(tmp_path, epochs=3, resume=True) == [1, 2, 3]


def test_resume_without_a_last_checkpoint_does_not_start_over(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cannot resume: .*last\.pt does not exist"):
        fit(tmp_path, epochs=1, resume=True)

    assert not (tmp_path / "metrics.jsonl").exists()


def test_early_stopping_waits_patience_epochs_without_improvement(tmp_path):
    # Dev scores 1, 3, 2, 3, 2, ...: epoch 2 is the best and the only improvement after epoch 1
    # (a tie is none); with patience 2 the run stops after epochs 3 and 4, and best.pt is epoch 2.
    scores = iter([1.0, 3.0, 2.0, 3.0, 2.0, 5.0])
    x = torch.ones(2, 1)
    task = TrainingTask(
        batches=lambda epoch: [x],
        loss=lambda model, batch: model(batch).pow(2).mean(),
        evaluate=lambda model: {"dev_accuracy": next(scores)},
        select="dev_accuracy",
    )
    config = TrainerConfig(epochs=10, patience=2)

    best = Trainer(nn.Linear(1, 1), task, config, tmp_path).fit()

    lines = (tmp_path / "metrics.jsonl").read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert [r["best"] for r in records] == [1.0, 1.0, 0.0, 0.0]
    assert best["epoch"] == 2 and best["dev_accuracy"] == 3.0
