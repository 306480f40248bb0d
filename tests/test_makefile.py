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

    def first(*words: str) -> int:  # the swap itself, not the serving install's conditional one
        found = [
            i
            for i, c in enumerate(commands)
            if all(w in c for w in words) and not c.startswith("if [")
        ]
        assert found, f"no command with {words} in {commands}"
        return found[0]

    serving = first("pip install", "-e .")
    swap = first("pip uninstall", "onnxruntime")
    # Every base dependency comes with the serving install; then the CPU wheel goes before the
    # GPU wheel comes, since both provide the `onnxruntime` module.
    assert serving < swap, commands
    assert commands[swap].index("pip uninstall") < commands[swap].index("pip install"), commands
    assert "onnxruntime-gpu" in commands[swap].split("pip install")[1], commands
    assert f"touch {commands[swap].split('/bin/pip')[0]}/.gpu" in commands[swap + 1 :], commands
    assert "[" not in commands[serving], "the GPU install takes no training or dev extras"
    assert not any("--no-deps" in c for c in commands), commands


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["serve", "test", "install-gpu"])
def test_every_install_of_the_project_is_pinned_and_keeps_a_gpu_choice(target: str):
    # `pip install -e .` brings the CPU wheel back next to the GPU one (they are different
    # distributions of one module), so after each install the swap is redone when chosen.
    commands = planned_commands(target)
    installs = [
        i for i, c in enumerate(commands) if c.startswith(".venv/bin/pip install") and " -e " in c
    ]

    assert installs, commands
    for index in installs:
        # at the serving stack's pinned versions, the image's (Dockerfile)
        assert " -c requirements/serve.txt " in commands[index], commands[index]
        follow_up = commands[index + 1]
        assert follow_up.startswith("if [ -f .venv/.gpu ]"), commands
        assert follow_up.index("pip uninstall") < follow_up.index("onnxruntime-gpu"), follow_up
