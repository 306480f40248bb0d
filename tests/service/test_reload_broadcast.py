"""A reload in one worker reaches the others through the shared signal folder."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import pytest
from flask import Flask

from service import REGISTRY_KEY
from service.runtime.reload_broadcast import ReloadBroadcast
from tests.service.test_reload import served_version, set_version


def version_of(app: Flask) -> str:
    return app.extensions[REGISTRY_KEY].models["sentiment"].manifest.version


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_reload_in_one_worker_is_followed_by_the_others(
    admin_app_factory, own_model_dir, tmp_path
):
    signals = tmp_path / "signals"
    first, second = (admin_app_factory(own_model_dir, reload_signal_dir=signals) for _ in range(2))
    set_version(own_model_dir / "sentiment", "2.0.0")

    response = first.test_client().post("/v1/models/sentiment/reload")

    assert response.status_code == 200
    assert version_of(first) == "2.0.0"
    assert wait_for(lambda: version_of(second) == "2.0.0")
    assert (signals / "sentiment").is_file()


def test_signals_present_at_start_are_not_followed(own_model_dir: Path, tmp_path: Path) -> None:
    calls = []

    class Registry:
        def reload(self, name):
            calls.append(name)

    signals = tmp_path / "signals"
    signals.mkdir()
    (signals / "sentiment").write_text("old-sender abc", "utf-8")
    broadcast = ReloadBroadcast(signals)
    broadcast.registry = Registry()  # type: ignore[assignment]  # checked by hand, no thread

    broadcast.check()
    assert calls == []
    (signals / "sentiment").write_text("other-sender def", "utf-8")
    broadcast.check()
    broadcast.check()
    assert calls == ["sentiment"]  # once per new signal
    broadcast.announce("sentiment")
    broadcast.check()
    assert calls == ["sentiment"]  # its own signal is not followed
    assert json.dumps(sorted(p.name for p in signals.iterdir())) == '["sentiment"]'


def test_a_failed_follow_keeps_the_old_model(
    admin_app_factory, own_model_dir, tmp_path, caplog
) -> None:
    signals = tmp_path / "signals"
    app = admin_app_factory(own_model_dir, reload_signal_dir=signals)
    # New files with a new version (a successful reload would show it) and a vocab that no
    # longer matches its sha256 in the manifest (so loading them fails).
    set_version(own_model_dir / "sentiment", "2.0.0")
    vocab = own_model_dir / "sentiment" / "vocab.json"
    vocab.write_text(vocab.read_text("utf-8").replace("awful", "awfull"), "utf-8")
    other = ReloadBroadcast(signals)

    def follow_failed() -> bool:
        return any(
            r.name == "service.runtime.reload_broadcast"
            and r.getMessage().startswith("following a reload of 'sentiment' failed")
            for r in list(caplog.records)
        )

    with caplog.at_level(logging.ERROR, logger="service.runtime.reload_broadcast"):
        other.announce("sentiment")  # as if another worker had reloaded
        # The worker polls every second; a generous deadline for a loaded machine.
        assert wait_for(follow_failed, timeout=30), (
            f"no failed follow logged; serving {version_of(app)}\n{caplog.text}"
        )

    assert "sha256 mismatch" in caplog.text
    assert version_of(app) == "0.0.1-test"
    assert served_version(app) == "0.0.1-test"


def test_a_reload_that_cannot_tell_the_other_workers_stands_and_says_so(
    admin_app_factory, own_model_dir, tmp_path, caplog
) -> None:
    signals = tmp_path / "signals"
    app = admin_app_factory(own_model_dir, reload_signal_dir=signals)
    set_version(own_model_dir / "sentiment", "2.0.0")
    shutil.rmtree(signals, ignore_errors=True)
    signals.write_text("a file where the folder should be", "utf-8")

    with caplog.at_level(logging.ERROR, logger="service"):
        response = app.test_client().post("/v1/models/sentiment/reload")

    assert response.status_code == 200  # was a 500, for a reload that had taken place
    body = response.get_json()
    assert body["model"]["version"] == "2.0.0" and version_of(app) == "2.0.0"
    assert body["warning"].startswith("reloaded in this worker only; telling the others failed")
    assert "telling the other workers to reload 'sentiment' failed" in caplog.text


def test_announcements_never_share_a_temporary_file(tmp_path: Path) -> None:
    broadcast = ReloadBroadcast(tmp_path)
    written = []
    real_write_text = Path.write_text

    def record(path: Path, *args, **kwargs):
        written.append(path.name)
        return real_write_text(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "write_text", record)
        broadcast.announce("sentiment")
        broadcast.announce("sentiment")
    assert len(set(written)) == 2


def test_a_signal_for_a_model_not_served_here_is_skipped_and_the_others_followed(
    tmp_path: Path,
) -> None:
    # Workers may serve different MODELS: one's reload of "ner" means nothing to another.
    reloaded = []

    class Registry:
        def reload(self, name):
            if name == "ner":
                raise KeyError(name)
            reloaded.append(name)

    signals = tmp_path / "signals"
    broadcast = ReloadBroadcast(signals)
    broadcast.registry = Registry()  # type: ignore[assignment]  # checked by hand, no thread
    signals.mkdir()
    for name in ("ner", "sentiment"):
        (signals / name).write_text(f"other-sender {name}", "utf-8")

    broadcast.check()

    assert reloaded == ["sentiment"]
