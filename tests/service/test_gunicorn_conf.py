"""gunicorn.conf.py's derived settings, read without starting gunicorn."""

from __future__ import annotations

import logging
import os
import runpy
import shutil
import signal
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.service.live_server import free_port

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def run_conf(cgroup_root: Path | None = None) -> dict:
    """Execute gunicorn.conf.py; its cgroup files come from ``cgroup_root`` (default: none)."""
    root = cgroup_root if cgroup_root is not None else Path(os.devnull) / "no-cgroup"
    return runpy.run_path(str(CONF), init_globals={"CGROUP_ROOT": str(root)})


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in (
        "WEB_CONCURRENCY",
        "ORT_INTRA_OP_THREADS",
        "GRPC_PORT",
        "HEALTH_PORT",
        "GUNICORN_FD",
        "MODELS",
        "MODEL_DIR",
        "GUNICORN_CONF_PINNED_MODELS",
    ):
        # Set, then deleted: monkeypatch then restores the variable (or its absence) after the
        # test, though the config itself sets ORT_INTRA_OP_THREADS in os.environ.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("RELOAD_SIGNAL_DIR", str(tmp_path / "reload"))
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("workers", "threads"), [("4", "1"), ("2", "2"), ("1", "4"), ("8", "1")])
def test_intra_op_threads_share_the_cores_between_workers(env, workers, threads) -> None:
    env.setenv("WEB_CONCURRENCY", workers)

    config = run_conf()

    assert config["workers"] == int(workers)
    assert os.environ["ORT_INTRA_OP_THREADS"] == threads


def test_an_explicit_intra_op_thread_count_wins(env) -> None:
    env.setenv("ORT_INTRA_OP_THREADS", "3")

    run_conf()

    assert os.environ["ORT_INTRA_OP_THREADS"] == "3"


def master_with_bind(*addresses: object) -> SimpleNamespace:
    """What on_starting reads of gunicorn's arbiter: the bind addresses, and its log."""
    log = SimpleNamespace(info=lambda *args: None)
    return SimpleNamespace(cfg=SimpleNamespace(address=list(addresses)), log=log)


def test_a_given_metrics_folder_is_emptied_at_start(env, tmp_path) -> None:
    config = run_conf()
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"old")

    config["on_starting"](master_with_bind(("0.0.0.0", 8000)))

    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "metrics")
    assert not (tmp_path / "metrics" / "counter_1.db").exists()
    config["on_exit"](None)
    assert (tmp_path / "metrics").is_dir()  # not ours to remove


@pytest.mark.parametrize("name", ["PROMETHEUS_MULTIPROC_DIR", "RELOAD_SIGNAL_DIR"])
def test_a_shared_folder_is_made_when_unset_and_removed_at_exit(env, name: str) -> None:
    env.delenv(name)

    env.delenv(f"GUNICORN_CONF_CREATED_{name}", raising=False)

    config = run_conf()
    created = Path(os.environ[name])
    assert created.is_dir()
    config = run_conf()  # gunicorn reads its config file again on SIGHUP
    assert os.environ[name] == str(created)
    marker = os.environ[f"GUNICORN_CONF_CREATED_{name}"]
    env.setenv(f"GUNICORN_CONF_CREATED_{name}", marker.replace(f"{os.getpid()}:", "1:", 1))
    run_conf()["on_exit"](None)  # a new master (SIGUSR2) inherits the folder: not its own
    assert created.exists()
    env.setenv(f"GUNICORN_CONF_CREATED_{name}", marker)
    master = os.getpid()
    env.setattr(os, "getpid", lambda: master + 1)
    config["_remove_created_folders"]()  # a worker's exit (SIGHUP, max_requests): kept
    assert created.exists()
    env.setattr(os, "getpid", lambda: master)
    config["on_exit"](None)

    assert not created.exists()


def test_a_dead_worker_s_metrics_join_the_archive(env, tmp_path) -> None:
    # Else the metrics folder grows with every worker that ever ran.
    from prometheus_client.mmap_dict import MmapedDict

    folder = tmp_path / "metrics"
    folder.mkdir()
    dead = MmapedDict(str(folder / "counter_4242.db"))
    dead.write_value('["requests_total", "requests_total", {}, "help"]', 3.0, 0.0)
    dead.close()

    run_conf()["child_exit"](None, SimpleNamespace(pid=4242))

    assert sorted(p.name for p in folder.iterdir()) == ["counter_archive.db"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEB_CONCURRENCY", "0"),
        ("GUNICORN_THREADS", "abc"),
        ("GUNICORN_KEEPALIVE", "-5"),
        ("PORT", "80.5"),
        ("PORT", "-1"),
        ("PORT", "70000"),
    ],
)
def test_an_invalid_setting_stops_gunicorn_naming_it(env, name: str, value: str) -> None:
    env.setenv(name, value)

    with pytest.raises(SystemExit, match=f"^invalid settings: {name}='{value}': expected an"):
        run_conf()


def test_gunicorns_access_log_is_off_unless_asked_for(env) -> None:
    env.delenv("GUNICORN_ACCESS_LOG", raising=False)
    assert run_conf()["accesslog"] is None  # the service logs each request

    env.setenv("GUNICORN_ACCESS_LOG", "-")
    assert run_conf()["accesslog"] == "-"


def test_gunicorns_own_lines_follow_log_format(env) -> None:
    env.delenv("LOG_FORMAT", raising=False)
    assert run_conf()["logger_class"] == "service.gunicorn_log.GunicornJsonLogger"

    env.setenv("LOG_FORMAT", "text")
    assert "logger_class" not in run_conf()  # gunicorn's own plain format


@pytest.mark.parametrize(
    ("files", "workers"),
    [
        ({"cpu.max": "200000 100000\n"}, 2),  # cgroup v2, docker run --cpus 2
        ({"cpu.max": "150000 100000\n"}, 1),  # 1.5 CPUs: one worker, not two throttled ones
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu.max": "max 100000\n"}, 4),  # no quota: the 4 cores of the affinity mask
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),
        ({"cpu.max": "800000 100000\n"}, 4),  # a quota above the cores changes nothing
    ],
)
def test_workers_follow_a_container_cpu_quota(env, tmp_path, files, workers) -> None:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)

    config = run_conf(root)

    assert config["workers"] == workers
    assert os.environ["ORT_INTRA_OP_THREADS"] == "1"  # one worker per CPU it may use


def test_no_control_socket_is_opened(env) -> None:
    assert run_conf()["control_socket_disable"] is True


PORT_VARIABLES = pytest.mark.parametrize("variable", ["GRPC_PORT", "HEALTH_PORT"])


@PORT_VARIABLES
def test_a_free_grpc_or_health_port_or_none_lets_gunicorn_start(env, variable) -> None:
    on_starting = run_conf()["on_starting"]
    on_starting(master_with_bind(("0.0.0.0", 8000)))  # no GRPC_PORT or HEALTH_PORT
    env.setenv(variable, str(free_port()))
    on_starting(master_with_bind(("127.0.0.1", 8000)))


@PORT_VARIABLES
def test_a_grpc_or_health_port_that_is_gunicorns_own_is_refused(env, variable) -> None:
    env.setenv(variable, "8000")

    with pytest.raises(SystemExit, match=f"{variable}=8000 is gunicorn's HTTP port"):
        run_conf()["on_starting"](master_with_bind(("0.0.0.0", 8000)))


def test_a_health_port_equal_to_the_grpc_port_is_refused(env) -> None:
    env.setenv("GRPC_PORT", "9000")
    env.setenv("HEALTH_PORT", "9000")

    with pytest.raises(SystemExit, match="HEALTH_PORT and GRPC_PORT are both 9000"):
        run_conf()["on_starting"](master_with_bind(("0.0.0.0", 8000)))


@PORT_VARIABLES
def test_a_port_in_use_is_refused_unless_a_new_master_inherits_it(env, variable) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as the workers bind it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env.setenv(variable, str(port))
        on_starting = run_conf()["on_starting"]

        with pytest.raises(SystemExit, match=f"{variable}={port} is in use"):
            on_starting(master_with_bind(("127.0.0.1", 8000)))
        env.setenv("GUNICORN_FD", "5")  # a new master started by SIGUSR2: the old workers hold it
        on_starting(master_with_bind(("127.0.0.1", 8000)))


def model_folders(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "manifest.json").write_text("{}", "utf-8")
    return root


def test_the_master_pins_the_models_its_workers_serve(env, tmp_path) -> None:
    """A folder missing when a worker starts (being replaced, say) must be a model that failed
    to load, not one left out without a word; folders added join at the next SIGHUP."""
    models = model_folders(tmp_path / "models", "ner", "sentiment")
    env.setenv("MODEL_DIR", str(models))
    config = run_conf()

    config["on_starting"](master_with_bind(("0.0.0.0", 8000)))
    assert os.environ["MODELS"] == "ner,sentiment"

    shutil.rmtree(models / "ner")  # gone for a moment; a new model arrives
    model_folders(models, "translation")
    config["on_reload"](master_with_bind(("0.0.0.0", 8000)))
    assert os.environ["MODELS"] == "ner,sentiment,translation"


def test_models_set_by_the_operator_are_kept(env, tmp_path) -> None:
    env.setenv("MODEL_DIR", str(model_folders(tmp_path / "models", "ner", "sentiment")))
    env.setenv("MODELS", "sentiment")

    run_conf()["on_starting"](master_with_bind(("0.0.0.0", 8000)))

    assert os.environ["MODELS"] == "sentiment"


def test_a_stop_signal_before_the_worker_s_own_handlers_is_not_lost(env) -> None:
    """Between fork and gunicorn's init_signals the worker had the master's handlers, which
    queue a signal in the master's memory: a SIGTERM then was lost, and the worker served on
    until the master killed it at the graceful timeout."""
    worker = SimpleNamespace(alive=True)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)}
    try:
        run_conf()["post_fork"](master_with_bind(("0.0.0.0", 8000)), worker)
        for signum in saved:
            worker.alive = True
            signal.getsignal(signum)(signum, None)
            assert worker.alive is False
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.mark.parametrize("quick", [True, False])
def test_a_quick_stop_exits_without_waiting_for_http_requests(env, monkeypatch, quick) -> None:
    config = run_conf()
    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)
    monkeypatch.setattr(logging, "shutdown", lambda: None)  # the test session's handlers stay
    worker = SimpleNamespace()
    if quick:
        config["worker_int"](worker)  # SIGINT or SIGQUIT

    config["worker_exit"](None, worker)

    assert exits == ([0] if quick else [])
