"""The Makefile's install paths, read with ``make -n`` (print the commands, run nothing)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def planned_commands(target: str) -> list[str]:
    """The commands ``make`` would run for ``target`` from scratch (``-B``: as if nothing were
    installed), in order."""
    result = subprocess.run(
        ["make", "-n", "-B", "--no-print-directory", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_gpu_install_is_the_serving_install_with_the_gpu_wheel_instead_of_the_cpu_one():
    commands = planned_commands("install-gpu")

    def first(*words: str) -> int:
        found = [i for i, c in enumerate(commands) if all(w in c for w in words)]
        assert found, f"no command with {words} in {commands}"
        return found[0]

    serving = first("pip install", "-e .")
    removal = first("pip uninstall", "onnxruntime")
    gpu = first("pip install", "onnxruntime-gpu")
    # Every base dependency comes with the serving install; then the CPU wheel goes before the
    # GPU wheel comes, since both provide the `onnxruntime` module.
    assert serving < removal < gpu, commands
    assert "[" not in commands[serving], "the GPU install takes no training or dev extras"
    assert not any("--no-deps" in c for c in commands), commands
