"""A tiny translation artifact, trained and exported for real (``python -m training train
translation`` / ``export``) on the synthetic English-German corpus of
``tests/training/test_translation_end_to_end.py``, in seconds.

Its translations are poor: tests assert structure and invariants (order, batch invariance,
attention shape), never quality. ``torch`` is a test-only dependency: the service never imports
it.
"""

from __future__ import annotations

from pathlib import Path

TINY_TRANSLATION_EPOCHS = 1
TINY_TRANSLATION_MAX_SOURCE_TOKENS = 40  # small, so that tests can reach truncation


def build_tiny_translation_artifact(folder: Path, work_dir: Path) -> Path:
    """Train a tiny model in ``work_dir`` and export it into ``folder`` (which must not exist
    yet); returns ``folder``."""
    # Imported here, so that importing this module (conftest does) loads no training code.
    from tests.training.test_translation_end_to_end import overrides, write_tiny_multi30k
    from training.cli import main

    datasets = write_tiny_multi30k(work_dir / "datasets")
    run_dir = work_dir / "run"
    args = ["train", "translation", "--run-dir", str(run_dir)]
    args += ["--set", f"trainer.epochs={TINY_TRANSLATION_EPOCHS}", *overrides(datasets)]
    args += ["--set", f"max_source_tokens={TINY_TRANSLATION_MAX_SOURCE_TOKENS}"]
    if main(args) != 0:
        raise RuntimeError("training the tiny translation model failed")
    export = ["export", "translation", "--checkpoint", str(run_dir / "best.pt")]
    if main([*export, "--out", str(folder)]) != 0:
        raise RuntimeError("exporting the tiny translation model failed")
    return folder
