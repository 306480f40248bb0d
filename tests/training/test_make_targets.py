"""The Makefile's training targets, read with ``make -n`` (print the commands, run nothing)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def training_command(target: str, *variables: str) -> str:
    """The ``python -m training`` command that ``make -n target VAR=value ...`` would run."""
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target, *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    (command,) = [c for c in result.stdout.splitlines() if "-m training " in c]
    return command


def test_export_translation_ships_stage_two_s_best_checkpoint():
    # The committed translator is stage 2's best (make continue-translation), not stage 1's.
    command = training_command("export-translation")

    assert "--checkpoint runs/translation-cont/best.pt " in command


def test_export_translation_takes_another_checkpoint_when_named():
    command = training_command("export-translation", "MT_CHECKPOINT=runs/x/averaged.pt")

    assert "--checkpoint runs/x/averaged.pt " in command


def test_train_sentiment_runs_the_committed_model_s_three_stages():
    # Stage 1 (SST-2 + IMDB) and stage 3 (SST-2 only, from stage 2's best) with
    # adversarial.epsilon, stage 2 (SST-2 only, from stage 1's last epoch) without;
    # export-sentiment ships stage 3's best.
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "train-sentiment"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    stages = result.stdout.replace("\\\n", " ").split("-m training train sentiment")[1:]
    assert len(stages) == 3
    assert "--run-dir runs/sentiment-joint " in stages[0]
    assert "adversarial.epsilon=1.0" in stages[0]
    assert "init_from=runs/sentiment-joint/last.pt" in stages[1]
    assert "--run-dir runs/sentiment-sst " in stages[1]
    assert "adversarial" not in stages[1]
    assert "init_from=runs/sentiment-sst/best.pt" in stages[2]
    assert "adversarial.epsilon=1.0" in stages[2]
    assert "--run-dir runs/sentiment " in stages[2]
    assert "--checkpoint runs/sentiment/best.pt " in training_command("export-sentiment")
