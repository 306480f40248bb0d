"""Dynamic batching: rows of concurrent requests for one model, run together in one graph call.

It works like Triton's dynamic batcher. A request thread hands its *rows* (encoded texts, or
NER sentence pieces) to :meth:`DynamicBatcher.submit` and waits. One thread per model takes
queued rows, picks rows of similar length (to limit padding, always including the oldest row,
so nothing starves), runs them in one ``run_rows`` call and hands each request its results in
order. Rows that arrive while a batch runs make up the next one.

Waiting for a batch to fill only pays when more rows are on their way, so the batcher waits
only for requests it knows of: a request handler announces itself with
:meth:`DynamicBatcher.incoming` before it parses and encodes its body, and while announced
requests have not submitted yet, the batch thread waits for them, at most
``max_queue_delay_s`` after the oldest queued row arrived and until ``max_batch_size`` rows are
queued. A lone request never waits, so batching costs no latency at low load.

A request can be split over several batches and a batch can hold rows of many requests; since
the models are batch-invariant, results do not depend on either.

Back-pressure and deadlines: when ``max_queue_size`` requests already wait, :meth:`submit`
raises :class:`QueueFull` at once (the API answers 503 with ``Retry-After``); a request not
answered within ``timeout_s`` raises :class:`DeadlineExceeded` (504) and its rows that have not
run yet are dropped.

:class:`InlineBatches` is the ``BATCHING=false`` alternative: each request's rows run in the
request's own thread, length-sorted, ``max_batch_size`` at a time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

RunRows = Callable[[Sequence[Any]], Sequence[Any]]
"""Runs one batch: one output per input row, in order (e.g. pad, run the graph, split)."""


class BatcherError(Exception):
    """A request that the batcher could not serve."""


class QueueFull(BatcherError):
    """Too many requests already wait for this model; retry after ``retry_after_s`` seconds."""

    def __init__(self, model: str, queued: int, retry_after_s: int):
        super().__init__(
            f"{model}: {queued} requests are already waiting for this model; retry later"
        )
        self.model = model
        self.retry_after_s = retry_after_s


class DeadlineExceeded(BatcherError):
    """The request waited longer than its time limit for the model."""

    def __init__(self, model: str, timeout_s: float):
        super().__init__(f"{model}: no result within REQUEST_TIMEOUT_S={timeout_s:g} s")
        self.model = model
        self.timeout_s = timeout_s


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """How one model's rows are scheduled (see the module docstring)."""

    enabled: bool = True
    max_batch_size: int = 32
    max_queue_delay_s: float = 0.002
    max_queue_size: int = 64
    timeout_s: float = 30.0


class BatchObserver(Protocol):
    """Told about every graph call (for metrics)."""

    def on_batch(self, model: str, rows: int, queue_waits_s: Sequence[float], run_s: float) -> None:
        """``rows`` ran in one call that took ``run_s``; each request waited ``queue_waits_s``."""
        ...


class RowScheduler(Protocol):
    """What a predictor calls to run its rows: :class:`DynamicBatcher` or :class:`InlineBatches`."""

    def submit(self, rows: Sequence[Any]) -> list[Any]:
        """One output per row, in order."""
        ...

    def incoming(self) -> AbstractContextManager[None]:
        """Announce, for the ``with`` block, a request that will :meth:`submit` rows soon."""
        ...

    def close(self) -> None:
        """Finish what is queued, then stop (new rows still get an answer)."""
        ...


def length_sorted_batches(lengths: Sequence[int], max_batch_size: int) -> list[list[int]]:
    """Row indices sorted by length (stable), cut into batches of at most ``max_batch_size``."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i : i + max_batch_size] for i in range(0, len(order), max_batch_size)]


class InlineBatches:
    """Runs a request's rows in the calling thread, length-sorted, ``max_batch_size`` at a time."""

    def __init__(
        self,
        model: str,
        run_rows: RunRows,
        max_batch_size: int,
        observer: BatchObserver | None = None,
    ):
        self.model = model
        self.run_rows = run_rows
        self.max_batch_size = max_batch_size
        self.observer = observer

    def submit(self, rows: Sequence[Any]) -> list[Any]:
        results: list[Any] = [None] * len(rows)
        for batch in length_sorted_batches([len(r) for r in rows], self.max_batch_size):
            started = time.perf_counter()
            outputs = self.run_rows([rows[i] for i in batch])
            if self.observer is not None:
                self.observer.on_batch(self.model, len(batch), [0.0], time.perf_counter() - started)
            for index, output in zip(batch, outputs, strict=True):
                results[index] = output
        return results

    def incoming(self) -> AbstractContextManager[None]:
        """Nothing waits for the request: its rows run in its own thread."""
        return nullcontext()

    def close(self) -> None:
        """Nothing to stop."""


@dataclass(eq=False, slots=True)
class _Request:
    """One :meth:`DynamicBatcher.submit` call waiting for its rows."""

    rows: int
    arrived: float
    results: list[Any]
    unfinished: int
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    started: float | None = None  # when its first row went into a batch


@dataclass(eq=False, slots=True)
class _Row:
    request: _Request
    index: int
    item: Any
    length: int


class DynamicBatcher:
    """Gathers rows of concurrent requests for one model into batches run by one thread."""

    def __init__(
        self,
        model: str,
        run_rows: RunRows,
        policy: BatchPolicy,
        observer: BatchObserver | None = None,
    ):
        self.model = model
        self.run_rows = run_rows
        self.policy = policy
        self.observer = observer
        self._cond = threading.Condition()
        self._rows: list[_Row] = []  # rows not taken yet, in arrival order
        self._waiting: set[_Request] = set()  # requests with rows not taken yet
        self._closed = False
        self._on_the_way = 0  # announced requests (see incoming) that have not submitted yet
        self._announced = threading.local()  # .pending: this thread's request has not submitted
        self._mean_run_s = 0.0
        self._thread = threading.Thread(target=self._serve, name=f"batcher-{model}", daemon=True)
        self._thread.start()

    # --- request threads -------------------------------------------------------------------

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Announce the calling thread's request until it submits its rows (or the block ends,
        e.g. on a validation error): batches wait for it, up to ``max_queue_delay_s``."""
        with self._cond:
            self._on_the_way += 1
        self._announced.pending = True
        try:
            yield
        finally:
            if getattr(self._announced, "pending", False):
                with self._cond:
                    self._arrived_locked()

    def _arrived_locked(self) -> None:
        """The calling thread's announced request submitted or left (lock held)."""
        self._announced.pending = False
        self._on_the_way -= 1
        self._cond.notify()

    def submit(self, rows: Sequence[Any]) -> list[Any]:
        """Queue ``rows``, wait for their outputs (in order); see :class:`QueueFull` and
        :class:`DeadlineExceeded`."""
        if not rows:
            return []
        request = _Request(len(rows), time.monotonic(), [None] * len(rows), len(rows))
        with self._cond:
            if getattr(self._announced, "pending", False):
                self._arrived_locked()
            closed = self._closed
            if not closed:
                if len(self._waiting) >= self.policy.max_queue_size:
                    raise QueueFull(self.model, len(self._waiting), self._retry_after_s())
                self._waiting.add(request)
                self._rows += [_Row(request, i, row, len(row)) for i, row in enumerate(rows)]
                self._cond.notify()
        if closed:  # a reload replaced this model: run the old one in this thread
            size = self.policy.max_batch_size
            return InlineBatches(self.model, self.run_rows, size, self.observer).submit(rows)
        if not request.done.wait(self.policy.timeout_s):
            self._drop(request)
            if not request.done.is_set():
                raise DeadlineExceeded(self.model, self.policy.timeout_s)
        if request.error is not None:
            raise request.error
        return request.results

    def close(self) -> None:
        """Run what is queued, then stop the thread; later :meth:`submit` calls run inline."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to stop after :meth:`close`."""
        self._thread.join(timeout)

    def _drop(self, request: _Request) -> None:
        with self._cond:
            self._rows = [row for row in self._rows if row.request is not request]
            self._waiting.discard(request)

    def _retry_after_s(self) -> int:
        """Seconds until the queue has likely drained (at least 1)."""
        queued_batches = math.ceil(len(self._rows) / self.policy.max_batch_size)
        return max(1, math.ceil(queued_batches * self._mean_run_s))

    # --- the batching thread ---------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Row] | None:
        """Wait for rows, then, while announced requests are still on their way, for the batch
        to fill or the oldest row's delay to pass."""
        with self._cond:
            while not self._rows:
                if self._closed:
                    return None
                self._cond.wait()
            while (
                self._on_the_way > 0
                and len(self._rows) < self.policy.max_batch_size
                and not self._closed
            ):
                left = self._rows[0].request.arrived + self.policy.max_queue_delay_s
                left -= time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
                if not self._rows:  # every waiting request timed out meanwhile
                    return []
            return self._take_batch()

    def _take_batch(self) -> list[_Row]:
        """Remove and return up to ``max_batch_size`` rows of similar length, the oldest among
        them. Called with the lock held and at least one row queued."""
        size = self.policy.max_batch_size
        if len(self._rows) <= size:
            taken = self._rows
        else:
            oldest = self._rows[0]
            by_length = sorted(self._rows, key=lambda row: row.length)
            at = by_length.index(oldest)
            first = min(
                range(max(0, at - size + 1), min(at, len(by_length) - size) + 1),
                key=lambda s: by_length[s + size - 1].length - by_length[s].length,
            )
            taken = by_length[first : first + size]
        chosen = set(map(id, taken))
        self._rows = [row for row in self._rows if id(row) not in chosen]
        still_waiting = {row.request for row in self._rows}
        self._waiting &= still_waiting
        return taken

    def _run(self, batch: list[_Row]) -> None:
        if not batch:
            return
        started = time.monotonic()
        requests = list(dict.fromkeys(row.request for row in batch))
        waits = []
        for request in requests:
            if request.started is None:
                request.started = started
                waits.append(started - request.arrived)
        try:
            outputs = self.run_rows([row.item for row in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"{len(outputs)} outputs for a batch of {len(batch)} rows")
        except BaseException as exc:  # hand the failure to every request in the batch
            logger.exception("%s: a batch of %d rows failed", self.model, len(batch))
            for request in requests:
                request.error = exc
                request.done.set()
            return
        run_s = time.monotonic() - started
        self._mean_run_s = 0.8 * self._mean_run_s + 0.2 * run_s if self._mean_run_s else run_s
        for row, output in zip(batch, outputs, strict=True):
            row.request.results[row.index] = output
            row.request.unfinished -= 1
            if row.request.unfinished == 0:
                row.request.done.set()
        if self.observer is not None:
            self.observer.on_batch(self.model, len(batch), waits, run_s)


def make_scheduler(
    model: str, run_rows: RunRows, policy: BatchPolicy, observer: BatchObserver | None = None
) -> RowScheduler:
    """A :class:`DynamicBatcher` when the policy enables batching, else :class:`InlineBatches`."""
    if policy.enabled:
        return DynamicBatcher(model, run_rows, policy, observer)
    return InlineBatches(model, run_rows, policy.max_batch_size, observer)
