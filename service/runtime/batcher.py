"""Dynamic batching: rows of concurrent requests for one model, run together in one graph call.

It works like Triton's dynamic batcher. A request thread hands its *rows* (encoded texts, or
NER sentence pieces) to :meth:`DynamicBatcher.submit`. The waiting request threads take turns
(leader/follower): when no batch is being gathered or run, the thread that finds rows queued
leads: it picks rows of similar length (to limit padding, always including the oldest row, so
nothing starves), runs them in one ``run_rows`` call in its own thread and hands each request
its results in order; then the thread of the oldest row still queued leads the next batch.
Rows that arrive while a batch runs make up the next one. No thread of its own means no
hand-off: a request that finds the model idle runs at once, like an unbatched call.

Waiting for a batch to fill only pays when more rows are on their way, so the batcher waits
only for requests it knows of: a request handler announces itself with
:meth:`DynamicBatcher.incoming` before it parses and encodes its body, and while announced
requests have not submitted yet, the leader waits for them, at most
``max_queue_delay_s`` after the oldest queued row arrived and until ``max_batch_size`` rows are
queued. A lone request never waits, so batching costs no latency at low load.

A request can be split over several batches and a batch can hold rows of many requests; since
the models are batch-invariant, results do not depend on either.

Padding: a recurrent graph runs every row of a batch for as many steps as its longest row, so a
500-word review batched with 20-word sentences makes each of them cost 500 steps. A model's
``min_fill`` (:class:`BatchPolicy`) bounds that waste: a batch is cut where its real tokens would
fall below that share of the padded ones (rows x longest row), and the rows left out run in the
next batch (see :func:`fill_groups`). The translator sets none: its search drops finished
sentences from the batch at every step.

Back-pressure and deadlines: when ``max_queue_size`` requests already wait, :meth:`submit`
raises :class:`QueueFull` at once (the API answers 503 with ``Retry-After``); a request with
rows that have not started running ``timeout_s`` after it arrived raises
:class:`DeadlineExceeded` (504) and those rows are dropped. A batch that has started is never
interrupted: a request whose rows are all running is answered, late if need be, and a leader
running a batch finds out about its own deadline when that batch is done.

Clients that leave: a request's handler may say how to tell whether its client is still there
(:data:`CLIENT_ALIVE`: the HTTP connection, the gRPC call). A request that has waited
:data:`CLIENT_CHECK_S` asks, and asks again as often while it waits; once its client has gone,
its rows that have not started are dropped and :meth:`submit` raises :class:`ClientGone`, so an
overloaded server does not spend its time on answers no one will read. A request that runs its
own batches one after another (it leads, or ``BATCHING=false``) asks between them.

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
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, Protocol

logger = logging.getLogger(__name__)

RunRows = Callable[[Sequence[Any]], Sequence[Any]]
"""Runs one batch: one output per input row, in order (e.g. pad, run the graph, split)."""

CLIENT_ALIVE: ContextVar[Callable[[], bool] | None] = ContextVar("client_alive", default=None)
"""Whether the client of the request being handled is still there, when the handler can tell
(set for each request by the HTTP and gRPC layers); None: it cannot."""

CLIENT_CHECK_S = 1.0
"""How long a request waits for its rows before it checks its client, and then between checks:
a request that is answered sooner never checks."""


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


class ClientGone(BatcherError):
    """The client left while the request waited for the model; its rows that had not started
    running were dropped."""

    def __init__(self, model: str):
        super().__init__(f"{model}: the client left while its request waited for the model")
        self.model = model


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """How one model's rows are scheduled (see the module docstring)."""

    enabled: bool = True
    max_batch_size: int = 32
    max_queue_delay_s: float = 0.002
    max_queue_size: int = 64
    timeout_s: float = 30.0
    min_fill: float = 0.0  # least share of real tokens in a padded batch (0: any rows mix)


class BatchFailed(BatcherError):
    """The graph call that held some of this request's rows failed (the batcher logged why);
    each request of that batch gets its own, with the failure as its ``__cause__``."""

    def __init__(self, model: str):
        super().__init__(f"{model}: the batch that held this request's rows failed")
        self.model = model


class BatchObserver(Protocol):
    """Told about every graph call (for metrics)."""

    def on_batch(
        self, model: str, rows: int, queue_waits_s: Sequence[float], run_s: float, requests: int
    ) -> None:
        """``rows`` of ``requests`` requests ran in one call that took ``run_s``; each request
        whose first batch this was waited ``queue_waits_s``."""
        ...


def _observe(observer: BatchObserver | None, model: str, *batch: Any) -> None:
    """Tell ``observer`` about a batch; its failure (say, a full disk under the metrics files) is
    logged and fails no request."""
    if observer is None:
        return
    try:
        observer.on_batch(model, *batch)
    except Exception:
        logger.exception("%s: recording a batch failed", model)


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


def fill_groups(lengths: Sequence[int], min_fill: float) -> list[list[int]]:
    """Positions ``0 .. len(lengths) - 1`` of rows sorted by length (shortest first) cut into
    consecutive groups whose padded batch is at least ``min_fill`` real tokens: each group
    starts from its longest row and takes shorter rows while ``sum(lengths) >= min_fill * rows *
    longest`` holds. ``min_fill`` 0 keeps all rows in one group."""
    groups: list[list[int]] = []
    group: list[int] = []
    longest = total = 0
    for position in range(len(lengths) - 1, -1, -1):
        length = max(lengths[position], 1)
        if group and total + length < min_fill * (len(group) + 1) * longest:
            groups.append(group[::-1])
            group = []
        if not group:
            longest, total = length, 0
        group.append(position)
        total += length
    if group:
        groups.append(group[::-1])
    return groups[::-1]


def _keeps_fill(rows: Sequence[_Row], min_fill: float) -> bool:
    """Whether ``rows`` in one padded batch are at least ``min_fill`` real tokens."""
    lengths = [max(row.length, 1) for row in rows]
    return sum(lengths) >= min_fill * len(lengths) * max(lengths)


def length_sorted_batches(
    lengths: Sequence[int], max_batch_size: int, min_fill: float = 0.0
) -> list[list[int]]:
    """Row indices sorted by length (stable), cut into batches of at most ``max_batch_size``
    rows that each keep ``min_fill`` (see :func:`fill_groups`)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches = []
    for group in fill_groups([lengths[i] for i in order], min_fill):
        rows = [order[i] for i in group]
        batches += [rows[i : i + max_batch_size] for i in range(0, len(rows), max_batch_size)]
    return batches


class InlineBatches:
    """Runs a request's rows in the calling thread, length-sorted, ``max_batch_size`` at a time
    (and cut where a batch would be less than ``min_fill`` real tokens)."""

    def __init__(
        self,
        model: str,
        run_rows: RunRows,
        max_batch_size: int,
        observer: BatchObserver | None = None,
        min_fill: float = 0.0,
        timeout_s: float | None = None,
    ):
        self.model = model
        self.run_rows = run_rows
        self.max_batch_size = max_batch_size
        self.observer = observer
        self.min_fill = min_fill
        self.timeout_s = timeout_s

    def submit(self, rows: Sequence[Any]) -> list[Any]:
        """Run ``rows``; with ``timeout_s``, a request whose next batch would start later than
        that after the call raises :class:`DeadlineExceeded` instead, and one whose client has
        gone (asked before a batch, every :data:`CLIENT_CHECK_S`) :class:`ClientGone`."""
        arrived = time.monotonic()
        alive = CLIENT_ALIVE.get()
        next_check = arrived + CLIENT_CHECK_S if alive is not None else math.inf
        results: list[Any] = [None] * len(rows)
        lengths = [len(r) for r in rows]
        batches = length_sorted_batches(lengths, self.max_batch_size, self.min_fill)
        for number, batch in enumerate(batches):
            now = time.monotonic()
            if self.timeout_s is not None and now - arrived >= self.timeout_s:
                raise DeadlineExceeded(self.model, self.timeout_s)
            if alive is not None and now >= next_check:
                next_check = now + CLIENT_CHECK_S
                if not _still_there(alive):
                    raise ClientGone(self.model)
            started = time.perf_counter()
            outputs = self.run_rows([rows[i] for i in batch])
            waits = [0.0] if number == 0 else []  # one wait per request: none, at its first
            run_s = time.perf_counter() - started
            _observe(self.observer, self.model, len(batch), waits, run_s, 1)
            for index, output in zip(batch, outputs, strict=True):
                results[index] = output
        return results

    def incoming(self) -> AbstractContextManager[None]:
        """Nothing waits for the request: its rows run in its own thread."""
        return nullcontext()

    def close(self) -> None:
        """Nothing to stop."""


class _Signal:
    """Wakes one thread sleeping under the batcher's lock: a plain lock held until :meth:`wake`,
    cheaper than a :class:`threading.Condition` (whose waiter queue is Python code)."""

    __slots__ = ("_held", "_woken")

    def __init__(self) -> None:
        self._held = threading.Lock()
        self._held.acquire()
        self._woken = False

    def wake(self) -> None:
        """Called with the batcher's lock held."""
        if not self._woken:
            self._woken = True
            self._held.release()

    def wait(self, lock: threading.Lock, timeout: float) -> None:
        """Release ``lock`` (held) until woken or ``timeout`` seconds passed, then take it back.
        A wake that came first ends the wait at once."""
        lock.release()
        try:
            woken = self._held.acquire(True, timeout)
        finally:
            lock.acquire()
        if not woken and self._woken:  # woken after the timeout: take the wake back
            self._held.acquire()
        self._woken = False


@dataclass(eq=False, slots=True)
class _Request:
    """One :meth:`DynamicBatcher.submit` call waiting for its rows."""

    arrived: float
    results: list[Any]
    unfinished: int
    wakeup: _Signal  # done, or the lead is free
    done: bool = False
    error: BaseException | None = None
    started: float | None = None  # when its first row went into a batch
    client_alive: Callable[[], bool] | None = None  # see CLIENT_ALIVE
    next_check: float = math.inf  # when to ask client_alive next


@dataclass(eq=False, slots=True)
class _Row:
    request: _Request
    index: int
    item: Any
    length: int


class DynamicBatcher:
    """Gathers rows of concurrent requests for one model into batches; the waiting request
    threads take turns running them."""

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
        self._lock = threading.Lock()
        self._arrivals = _Signal()  # wakes the leader waiting for announced rows
        self._gathering = False  # the leader waits for announced rows
        self._rows: list[_Row] = []  # rows not taken yet, in arrival order
        self._waiting: set[_Request] = set()  # requests with rows not taken yet
        self._closed = False
        self._leading = False  # a request thread is gathering or running a batch
        self._on_the_way = 0  # announced requests (see incoming) that have not submitted yet
        self._announced = threading.local()  # .pending: this thread's request has not submitted
        self._mean_run_s = 0.0

    # --- request threads -------------------------------------------------------------------

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Announce the calling thread's request until it submits its rows (or the block ends,
        e.g. on a validation error): batches wait for it, up to ``max_queue_delay_s``."""
        with self._lock:
            self._on_the_way += 1
        self._announced.pending = True
        try:
            yield
        finally:
            if getattr(self._announced, "pending", False):
                with self._lock:
                    self._arrived_locked()

    def _arrived_locked(self) -> None:
        """The calling thread's announced request submitted or left (lock held)."""
        self._announced.pending = False
        self._on_the_way -= 1
        if self._gathering:
            self._arrivals.wake()

    def submit(self, rows: Sequence[Any]) -> list[Any]:
        """Queue ``rows``, wait for their outputs (in order), running batches while no other
        request thread does; see :class:`QueueFull` and :class:`DeadlineExceeded`."""
        if not rows:
            return []
        with self._lock:
            if getattr(self._announced, "pending", False):
                self._arrived_locked()
            closed = self._closed
            if not closed:
                if len(self._waiting) >= self.policy.max_queue_size:
                    raise QueueFull(self.model, len(self._waiting), self._retry_after_s())
                now = time.monotonic()
                request = _Request(now, [None] * len(rows), len(rows), _Signal())
                request.client_alive = CLIENT_ALIVE.get()
                if request.client_alive is not None:
                    request.next_check = now + CLIENT_CHECK_S
                self._waiting.add(request)
                self._rows += [_Row(request, i, row, len(row)) for i, row in enumerate(rows)]
                if self._gathering:
                    self._arrivals.wake()
                self._serve_until_done(request)
        if closed:  # a reload replaced this model: run the old one in this thread
            inline = replace(self.policy, enabled=False)
            return make_scheduler(self.model, self.run_rows, inline, self.observer).submit(rows)
        if request.error is not None:
            raise BatchFailed(self.model) from request.error
        return request.results

    def close(self) -> None:
        """Stop batching: rows already queued still run; later :meth:`submit` calls run their
        rows inline (a reload has replaced this model)."""
        with self._lock:
            self._closed = True
            if self._gathering:
                self._arrivals.wake()

    def _retry_after_s(self) -> int:
        """Seconds until the queue has likely drained (at least 1)."""
        queued_batches = math.ceil(len(self._rows) / self.policy.max_batch_size)
        return max(1, math.ceil(queued_batches * self._mean_run_s))

    # --- taking turns (all with the lock held) ----------------------------------------------

    def _serve_until_done(self, request: _Request) -> None:
        """Wait for ``request``'s outputs; whenever no thread leads and rows wait, lead: gather
        a batch, run it in this thread, hand out its outputs. Past the deadline, drop the
        request's rows that have not started and raise :class:`DeadlineExceeded`; once its
        client has gone (checked every :data:`CLIENT_CHECK_S`), drop them and raise
        :class:`ClientGone`. Whatever ends the wait early, the request's queued rows go and the
        next thread may lead."""
        deadline = request.arrived + self.policy.timeout_s
        try:
            while not request.done:
                now = time.monotonic()
                if now >= deadline and self._drop_unstarted(request):
                    raise DeadlineExceeded(self.model, self.policy.timeout_s)
                alive = request.client_alive
                if alive is not None and now >= request.next_check:
                    request.next_check = now + CLIENT_CHECK_S
                    if not _still_there(alive) and self._drop_unstarted(request):
                        raise ClientGone(self.model)
                if not self._leading and self._rows:
                    self._lead()
                    continue
                left = min(deadline, request.next_check) - time.monotonic()
                # Past the deadline with every row running in another thread's batch: wait.
                request.wakeup.wait(self._lock, left if left > 0 else 1.0)
        except BaseException:
            self._drop_unstarted(request)
            if self._rows and not self._leading:
                self._rows[0].request.wakeup.wake()
            raise

    def _drop_unstarted(self, request: _Request) -> bool:
        """Remove ``request``'s rows that wait for a batch; whether there were any."""
        kept = [row for row in self._rows if row.request is not request]
        if len(kept) == len(self._rows):
            return False
        self._rows = kept
        self._waiting.discard(request)
        if self._rows and not self._leading:  # this thread may have been next to lead
            self._rows[0].request.wakeup.wake()
        return True

    def _lead(self) -> None:
        """Gather and run one batch in this thread, pass the lead on, then record the batch."""
        self._leading = True
        observed = None
        try:
            batch = self._gather()
            if batch:
                observed = self._run(batch)
        finally:
            self._leading = False
            if self._rows:  # the thread of the oldest queued row leads next
                self._rows[0].request.wakeup.wake()
        if observed is not None and self.observer is not None:
            self._lock.release()  # the next batch need not wait for the metrics
            try:
                _observe(self.observer, self.model, *observed)
            finally:
                self._lock.acquire()

    def _gather(self) -> list[_Row]:
        """While announced requests are on their way, wait for the batch to fill or the oldest
        row's delay to pass; then take the batch."""
        while (
            self._on_the_way > 0
            and len(self._rows) < self.policy.max_batch_size
            and not self._closed
        ):
            left = self._rows[0].request.arrived + self.policy.max_queue_delay_s
            left -= time.monotonic()
            if left <= 0:
                break
            self._gathering = True
            self._arrivals.wait(self._lock, left)
            self._gathering = False
            if not self._rows:  # every waiting request timed out meanwhile
                return []
        return self._take_batch()

    def _take_batch(self) -> list[_Row]:
        """Remove and return up to ``max_batch_size`` rows of similar length, the oldest among
        them, cut to the oldest row's group when they would not keep ``min_fill``. Called with
        the lock held and at least one row queued."""
        size = self.policy.max_batch_size
        if len(self._rows) <= size and _keeps_fill(self._rows, self.policy.min_fill):
            taken, self._rows = self._rows, []  # all of them, no sorting (the common case)
            self._waiting.clear()
            return taken
        oldest = self._rows[0]
        by_length = sorted(self._rows, key=lambda row: row.length)
        at = by_length.index(oldest)
        if len(by_length) > size:  # the window of `size` rows around the oldest, least spread
            first = min(
                range(max(0, at - size + 1), min(at, len(by_length) - size) + 1),
                key=lambda s: by_length[s + size - 1].length - by_length[s].length,
            )
            by_length, at = by_length[first : first + size], at - first
        if self.policy.min_fill > 0:
            groups = fill_groups([row.length for row in by_length], self.policy.min_fill)
            group = next(g for g in groups if g[0] <= at <= g[-1])
            by_length = by_length[group[0] : group[-1] + 1]
        chosen = set(map(id, by_length))
        self._rows = [row for row in self._rows if id(row) not in chosen]
        self._waiting &= {row.request for row in self._rows}
        return by_length

    def _run(self, batch: list[_Row]) -> tuple[int, list[float], float, int] | None:
        """Run ``batch`` with the lock released, then hand out its outputs (or its failure);
        returns what the observer is told of a batch that ran."""
        started = time.monotonic()
        requests = list(dict.fromkeys(row.request for row in batch))
        waits = []
        for request in requests:
            if request.started is None:
                request.started = started
                waits.append(started - request.arrived)
        self._lock.release()
        try:
            outputs = self.run_rows([row.item for row in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"{len(outputs)} outputs for a batch of {len(batch)} rows")
        except BaseException as exc:  # hand the failure to every request in the batch
            logger.exception("%s: a batch of %d rows failed", self.model, len(batch))
            self._lock.acquire()
            failed = set(requests)  # their rows in later batches need not run
            self._rows = [row for row in self._rows if row.request not in failed]
            self._waiting -= failed
            for request in requests:
                request.error = exc
                request.done = True
                request.wakeup.wake()
            return None
        run_s = time.monotonic() - started
        self._lock.acquire()
        self._mean_run_s = 0.8 * self._mean_run_s + 0.2 * run_s if self._mean_run_s else run_s
        for row, output in zip(batch, outputs, strict=True):
            request = row.request
            request.results[row.index] = output
            request.unfinished -= 1
            if request.unfinished == 0:
                request.done = True
                request.wakeup.wake()
        return len(batch), waits, run_s, len(requests)


def _still_there(alive: Callable[[], bool]) -> bool:
    """``alive()``, whether a request's client is there; a check that fails says it is (and is
    logged)."""
    try:
        return alive()
    except Exception:
        logger.exception("checking whether a client is still there failed")
        return True


def make_scheduler(
    model: str, run_rows: RunRows, policy: BatchPolicy, observer: BatchObserver | None = None
) -> RowScheduler:
    """A :class:`DynamicBatcher` when the policy enables batching, else :class:`InlineBatches`."""
    if policy.enabled:
        return DynamicBatcher(model, run_rows, policy, observer)
    return InlineBatches(
        model, run_rows, policy.max_batch_size, observer, policy.min_fill, policy.timeout_s
    )
