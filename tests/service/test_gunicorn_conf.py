"""gunicorn.conf.py's derived settings, read without starting gunicorn."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("WEB_CONCURRENCY", "ORT_INTRA_OP_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("RELOAD_SIGNAL_DIR", str(tmp_path / "reload"))
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("workers", "threads"), [("4", "1"), ("2", "2"), ("1", "4"), ("8", "1")])
def test_intra_op_threads_share_the_cores_between_workers(env, workers, threads) -> None:
    env.setenv("WEB_CONCURRENCY", workers)

    config = runpy.run_path(str(CONF))

    assert config["workers"] == int(workers)
    assert os.environ["ORT_INTRA_OP_THREADS"] == threads


def test_an_explicit_intra_op_thread_count_wins(env) -> None:
    env.setenv("ORT_INTRA_OP_THREADS", "3")

    runpy.run_path(str(CONF))

    assert os.environ["ORT_INTRA_OP_THREADS"] == "3"


def test_a_given_metrics_folder_is_emptied_at_start(env, tmp_path) -> None:
    config = runpy.run_path(str(CONF))
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"old")

    config["on_starting"](None)

    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "metrics")
    assert not (tmp_path / "metrics" / "counter_1.db").exists()
    config["on_exit"](None)
    assert (tmp_path / "metrics").is_dir()  # not ours to remove


@pytest.mark.parametrize("name", ["PROMETHEUS_MULTIPROC_DIR", "RELOAD_SIGNAL_DIR"])
def test_a_shared_folder_is_made_when_unset_and_removed_at_exit(env, name: str) -> None:
    env.delenv(name)

    config = runpy.run_path(str(CONF))
    created = Path(os.environ[name])
    assert created.is_dir()
    config["on_exit"](None)

    assert not created.exists()


def test_gunicorns_access_log_is_off_unless_asked_for(env) -> None:
    env.delenv("GUNICORN_ACCESS_LOG", raising=False)
    assert runpy.run_path(str(CONF))["accesslog"] is None  # the service logs each request

    env.setenv("GUNICORN_ACCESS_LOG", "-")
    assert runpy.run_path(str(CONF))["accesslog"] == "-"
