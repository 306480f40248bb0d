"""The service runs without torch: importing it, building the app and predicting load none (nor
grpc, without GRPC_PORT)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys
import service
from service.settings import Settings

app = service.create_app(Settings(model_dir=sys.argv[1], ort_providers="cpu"))
client = app.test_client()
response = client.post("/v1/sentiment", json={"texts": ["a good movie"]})
assert response.status_code == 200, response.get_json()
response = client.post("/v1/ner", json={"texts": ["EU rejects German call."]})
assert response.status_code == 200, response.get_json()
heavy = sorted(name for name in ("torch", "onnx", "grpc") if name in sys.modules)
assert not heavy, f"imported {heavy}"
"""


def test_the_service_never_imports_torch(tiny_ner_model_dir: Path, clean_env) -> None:
    # A fresh interpreter: other tests in this process may have imported torch already.
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_ner_model_dir)],
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr


def test_gunicorns_master_loads_no_runtime_before_it_forks(clean_env) -> None:
    """gunicorn.conf.py makes the master import service.gunicorn_log: ONNX Runtime, numpy and
    the app must wait for the workers (their threads and sessions must not cross a fork)."""
    script = (
        "import sys, service.gunicorn_log\n"
        "heavy = ('onnxruntime', 'numpy', 'service.app', 'grpc')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=clean_env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr


def keeps_telemetry(command: list[str], clean_env: dict[str, str], home: Path) -> bool:
    """Run ``command`` with ``home`` as HOME and ORT_DISABLE_TELEMETRY unset: whether ONNX
    Runtime wrote its telemetry (a device id and an event database) under ~/.cache/Microsoft."""
    env = {k: v for k, v in clean_env.items() if k != "ORT_DISABLE_TELEMETRY"}
    result = subprocess.run(
        command, env=env | {"HOME": str(home)}, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return (home / ".cache" / "Microsoft").exists()


def test_onnx_runtime_keeps_no_telemetry(tiny_ner_model_dir: Path, clean_env, tmp_path) -> None:
    command = [sys.executable, "-c", SCRIPT, str(tiny_ner_model_dir)]
    assert not keeps_telemetry(command, clean_env, tmp_path)


@pytest.mark.parametrize("package", ["training.tasks.ner", "benchmarks.models"])
def test_neither_training_nor_the_benchmarks_let_onnx_runtime_keep_telemetry(
    package: str, clean_env, tmp_path
) -> None:
    # Both import onnxruntime before any module of the service: they import `service` first.
    graph = Path(__file__).resolve().parents[2] / "exported_models" / "sentiment" / "model.onnx"
    script = f"import {package}, onnxruntime as ort; ort.InferenceSession({str(graph)!r})"
    assert not keeps_telemetry([sys.executable, "-c", script], clean_env, tmp_path)
