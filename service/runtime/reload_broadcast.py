"""Reload a model in every worker of a server, not only in the one that got the request.

Each gunicorn worker has its own registry, and ``POST /v1/models/{name}/reload`` reaches one
worker. After a successful reload that worker writes a signal file, ``<folder>/<name>``, into a
folder all workers share (``RELOAD_SIGNAL_DIR``, set up by ``gunicorn.conf.py``); every worker
polls the folder and reloads a model whose signal changed since it last looked. A worker that
starts later loads the current files anyway, so it takes the signals present *before* it loads
its models as seen (a signal written while it loads is then followed, not missed).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from pathlib import Path

from service.runtime.registry import ModelRegistry, ReloadError

logger = logging.getLogger(__name__)

POLL_S = 1.0


class ReloadBroadcast:
    """Announces this worker's reloads and follows the other workers' ones."""

    def __init__(self, folder: Path, poll_s: float = POLL_S):
        """Take the signals present now as seen: create it *before* loading the models."""
        self.folder = Path(folder)
        self.poll_s = poll_s
        self.sender = uuid.uuid4().hex  # this worker, in the signals it writes
        self.registry: ModelRegistry | None = None
        self._seen = self._signals()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="reload-broadcast", daemon=True)

    def follow(self, registry: ModelRegistry) -> ReloadBroadcast:
        """Start reloading ``registry``'s models when another worker says so."""
        self.registry = registry
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def announce(self, name: str) -> None:
        """Tell the other workers that ``name`` was reloaded here."""
        token = uuid.uuid4().hex
        signal = f"{self.sender} {token}"
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{name}.{token}"  # one per announcement, even in one worker
        temporary.write_text(signal, "utf-8")
        os.replace(temporary, self.folder / name)  # readers see the old or the new signal
        self._seen[name] = signal

    def check(self) -> None:
        """Reload every model whose signal another worker changed since the last check."""
        for name, signal in self._signals().items():
            if self._seen.get(name) == signal:
                continue
            self._seen[name] = signal
            if signal.startswith(f"{self.sender} ") or self.registry is None:
                continue
            try:
                self.registry.reload(name)
            except KeyError:
                pass  # a model this worker does not serve
            except ReloadError as exc:
                logger.error("following a reload of %r failed, keeping the old one: %s", name, exc)

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:  # the thread must survive anything, e.g. a vanished folder
                logger.exception("checking %s for reloads failed", self.folder)

    def _signals(self) -> dict[str, str]:
        if not self.folder.is_dir():
            return {}
        signals = {}
        for path in self.folder.iterdir():
            if path.is_file() and not path.name.startswith("."):
                try:
                    signals[path.name] = path.read_text("utf-8")
                except OSError:  # replaced while being read: seen on the next check
                    continue
        return signals
