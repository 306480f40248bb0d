"""The dynamic batcher on its own, with a recording fake for the graph call."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.runtime import batcher as batcher_module
from service.runtime.batcher import (
    CLIENT_ALIVE,
    BatchFailed,
    BatchPolicy,
    ClientGone,
    DeadlineExceeded,
    DynamicBatcher,
    InlineBatches,
    QueueFull,
    _Signal,
    fill_groups,
    length_sorted_batches,
    make_scheduler,
)
from tests.service.polling import wait_until


class FakeGraph:
    """``run_rows`` that answers each row (a string) with its upper-case form and records the
    batches; ``gate`` holds every call until it is set."""

    def __init__(self, delay_s: float = 0.0):
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.delay_s = delay_s

    def __call__(self, rows: Sequence[str]) -> list[str]:
        self.entered.set()
        self.gate.wait(10)
        time.sleep(self.delay_s)
        self.batches.append(list(rows))
        return [row.upper() for row in rows]


def policy(**values: object) -> BatchPolicy:
    defaults: dict[str, object] = {
        "max_batch_size": 8,
        "max_queue_delay_s": 0.0,
        "max_queue_size": 100,
        "timeout_s": 10.0,
    }
    return BatchPolicy(**(defaults | values))  # type: ignore[arg-type]


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph()


@pytest.fixture
def make_batcher(graph: FakeGraph):
    batchers: list[DynamicBatcher] = []

    def build(**values: object) -> DynamicBatcher:
        batcher = DynamicBatcher("fake", graph, policy(**values))
        batchers.append(batcher)
        return batcher

    yield build
    graph.gate.set()
    for batcher in batchers:
        batcher.close()


def announced(batcher: DynamicBatcher, barrier: threading.Barrier, rows: list[str]) -> list[str]:
    """A request handler: announce, wait until every other handler has announced, submit."""
    with batcher.incoming():
        barrier.wait(5)
        return batcher.submit(rows)


def test_a_signal_wakes_its_sleeper_once_and_gives_the_lock_back() -> None:
    lock, signal = threading.Lock(), _Signal()
    with lock:
        started = time.monotonic()
        signal.wait(lock, 0.05)  # nobody wakes it: the timeout ends the wait
        assert time.monotonic() - started >= 0.04

        signal.wake()
        signal.wake()  # a second wake before the sleeper ran is the same wake
        started = time.monotonic()
        signal.wait(lock, 5)
        assert time.monotonic() - started < 1
        assert lock.locked()

        started = time.monotonic()
        signal.wait(lock, 0.05)  # the wake was used up
        assert time.monotonic() - started >= 0.04

        waker = threading.Timer(0.05, lambda: (lock.acquire(), signal.wake(), lock.release()))
        waker.start()
        started = time.monotonic()
        signal.wait(lock, 5)  # released the lock while asleep, so the waker could take it
        assert time.monotonic() - started < 2
        waker.join()


def test_length_sorted_batches() -> None:
    assert length_sorted_batches([3, 1, 2, 1, 5], 2) == [[1, 3], [2, 0], [4]]
    assert length_sorted_batches([], 4) == []


def test_fill_groups_cut_where_padding_would_pass_the_limit() -> None:
    # Sorted lengths; each group starts from its longest row and keeps >= min_fill real tokens.
    assert fill_groups([2, 3, 9, 10], 0.8) == [[0, 1], [2, 3]]  # 5/6 and 19/20
    assert fill_groups([2, 3, 9, 10], 0.0) == [[0, 1, 2, 3]]
    assert fill_groups([1, 1, 100], 0.6) == [[0, 1], [2]]
    assert fill_groups([1, 1, 100], 0.5) == [[0], [1, 2]]  # 101 of 200 tokens: still >= 0.5
    assert fill_groups([4, 4, 4], 1.0) == [[0, 1, 2]]
    assert fill_groups([], 0.8) == []


def test_length_sorted_batches_keep_the_fill_and_the_size_limit() -> None:
    lengths = [500, 10, 12, 11, 480, 9]
    assert length_sorted_batches(lengths, 2, min_fill=0.8) == [[5, 1], [3, 2], [4, 0]]
    assert length_sorted_batches(lengths, 8, min_fill=0.8) == [[5, 1, 3, 2], [4, 0]]
    assert length_sorted_batches(lengths, 8) == [[5, 1, 3, 2, 4, 0]]


def test_a_long_row_does_not_pad_a_batch_of_short_ones(make_batcher, graph: FakeGraph) -> None:
    batcher = make_batcher(min_fill=0.8)
    rows = ["a" * 3, "b" * 40, "c" * 2, "d" * 3]

    assert batcher.submit(rows) == [row.upper() for row in rows]
    # The oldest row's group first, the long row in a batch of its own right after.
    assert graph.batches == [["cc", "aaa", "ddd"], ["b" * 40]]


def test_the_oldest_row_always_runs_in_the_next_batch(make_batcher, graph: FakeGraph) -> None:
    graph.gate.clear()
    batcher = make_batcher(min_fill=0.8)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(batcher.submit, ["x"])  # occupies the graph
        assert graph.entered.wait(5)
        long = pool.submit(batcher.submit, ["y" * 50])  # queued first: leads the next batch
        wait_until(lambda: len(batcher._rows) == 1)
        short = pool.submit(batcher.submit, ["zz", "zzz"])
        wait_until(lambda: len(batcher._rows) == 3)
        graph.gate.set()
        assert (first.result(5), long.result(5), short.result(5)) == (
            ["X"],
            ["Y" * 50],
            ["ZZ", "ZZZ"],
        )
    assert graph.batches == [["x"], ["y" * 50], ["zz", "zzz"]]


def test_inline_batches_keep_the_fill(graph: FakeGraph) -> None:
    inline = InlineBatches("m", graph, max_batch_size=4, min_fill=0.8)

    assert inline.submit(["aaaa", "bbb", "cccc" * 10, "dddd"]) == [
        "AAAA",
        "BBB",
        "CCCC" * 10,
        "DDDD",
    ]
    assert graph.batches == [["bbb", "aaaa", "dddd"], ["cccc" * 10]]


class RecordingObserver:
    def __init__(self) -> None:
        self.batches: list[tuple[int, list[float]]] = []
        self.requests: list[int] = []

    def on_batch(
        self, model: str, rows: int, queue_waits_s: Sequence[float], run_s: float, requests: int
    ) -> None:
        self.batches.append((rows, list(queue_waits_s)))
        self.requests.append(requests)


def test_inline_batches_report_one_queue_wait_per_request(graph: FakeGraph) -> None:
    observer = RecordingObserver()
    inline = InlineBatches("m", graph, max_batch_size=4, observer=observer)

    inline.submit(["a"] * 10)  # 3 batches, one request
    inline.submit(["b"])

    assert observer.batches == [(4, [0.0]), (4, []), (2, []), (1, [0.0])]
    assert observer.requests == [1, 1, 1, 1]


def test_one_request_gets_its_results_in_order(make_batcher) -> None:
    batcher = make_batcher()

    assert batcher.submit(["ccc", "a", "bb"]) == ["CCC", "A", "BB"]
    assert batcher.submit([]) == []


def test_concurrent_requests_share_batches_and_get_their_own_results(
    make_batcher, graph: FakeGraph
) -> None:
    batcher = make_batcher(max_batch_size=16, max_queue_delay_s=0.05)
    requests = [[f"r{i}-{j}" * (1 + j % 3) for j in range(1 + i % 4)] for i in range(24)]
    barrier = threading.Barrier(len(requests))

    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(lambda rows: announced(batcher, barrier, rows), requests))

    assert answers == [[row.upper() for row in rows] for rows in requests]
    assert max(len(batch) for batch in graph.batches) > 4  # rows of several requests
    assert all(len(batch) <= 16 for batch in graph.batches)
    assert sum(len(b) for b in graph.batches) == sum(len(r) for r in requests)


def test_the_batch_waits_for_announced_requests(make_batcher, graph: FakeGraph) -> None:
    batcher = make_batcher(max_batch_size=4, max_queue_delay_s=2.0)
    barrier = threading.Barrier(4)

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(announced, batcher, barrier, [f"t{i}"]) for i in range(4)]
        assert [f.result(5) for f in futures] == [["T0"], ["T1"], ["T2"], ["T3"]]

    assert [len(b) for b in graph.batches] == [4]  # one batch, run as soon as it was full
    assert time.monotonic() - started < 1.5


def test_the_observer_hears_how_many_requests_shared_a_graph_call(graph: FakeGraph) -> None:
    observer = RecordingObserver()
    batcher = DynamicBatcher(
        "fake", graph, policy(max_batch_size=4, max_queue_delay_s=2.0), observer
    )
    barrier = threading.Barrier(3)
    try:
        with ThreadPoolExecutor(3) as pool:
            rows = [["a1", "a2"], ["b1"], ["c1"]]
            list(pool.map(lambda r: announced(batcher, barrier, r), rows))
        wait_until(lambda: observer.requests)  # told after the answers are handed out
    finally:
        batcher.close()

    assert [len(b) for b in graph.batches] == [4]
    assert observer.requests == [3]
    assert observer.batches[0][0] == 4 and len(observer.batches[0][1]) == 3  # a wait each


def test_the_wait_for_announced_requests_ends_at_the_queue_delay(
    make_batcher, graph: FakeGraph
) -> None:
    batcher = make_batcher(max_batch_size=4, max_queue_delay_s=0.2)
    barrier, submitted = threading.Barrier(2), threading.Event()

    def slow_handler() -> list[str]:
        with batcher.incoming():
            barrier.wait(5)
            assert submitted.wait(5)
            time.sleep(1.0)  # still parsing when the delay runs out
            return batcher.submit(["late"])

    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(slow_handler)
        with batcher.incoming():
            barrier.wait(5)
            submitted.set()
            started = time.monotonic()
            assert batcher.submit(["early"]) == ["EARLY"]
            waited = time.monotonic() - started
        assert slow.result(5) == ["LATE"]

    assert 0.15 < waited < 0.9
    assert graph.batches == [["early"], ["late"]]


def test_a_lone_request_does_not_wait(make_batcher, graph: FakeGraph) -> None:
    batcher = make_batcher(max_batch_size=8, max_queue_delay_s=2.0)

    started = time.monotonic()
    with batcher.incoming():
        assert batcher.submit(["alone"]) == ["ALONE"]
    assert batcher.submit(["unannounced"]) == ["UNANNOUNCED"]

    assert time.monotonic() - started < 1.0


def test_an_announced_request_that_gives_up_stops_the_wait(make_batcher, graph: FakeGraph) -> None:
    batcher = make_batcher(max_batch_size=8, max_queue_delay_s=3.0)
    barrier, submitted = threading.Barrier(2), threading.Event()

    def failing_handler() -> None:
        with batcher.incoming():
            barrier.wait(5)
            assert submitted.wait(5)
            time.sleep(0.1)
            raise ValueError("the body does not validate")

    with ThreadPoolExecutor(1) as pool:
        failing = pool.submit(failing_handler)
        with batcher.incoming():
            barrier.wait(5)
            submitted.set()
            started = time.monotonic()
            assert batcher.submit(["kept"]) == ["KEPT"]
        with pytest.raises(ValueError):
            failing.result(5)

    assert time.monotonic() - started < 1.5  # not the 3 s queue delay


def test_a_request_that_finds_the_model_idle_runs_in_its_own_thread(make_batcher) -> None:
    batcher = make_batcher(max_queue_delay_s=2.0)
    ran_in = []

    def graph(rows):
        ran_in.append(threading.current_thread())
        return [row.upper() for row in rows]

    batcher.run_rows = graph
    with batcher.incoming():
        assert batcher.submit(["here"]) == ["HERE"]

    assert ran_in == [threading.current_thread()]  # no hand-off to another thread


def test_queued_requests_take_over_when_the_leader_is_done(make_batcher, graph) -> None:
    batcher = make_batcher(max_batch_size=2)
    graph.gate.clear()
    ran_in: list[threading.Thread] = []
    recording = graph.__call__

    def recorded(rows):
        ran_in.append(threading.current_thread())
        return recording(rows)

    batcher.run_rows = recorded
    with ThreadPoolExecutor(5) as pool:
        leader = pool.submit(batcher.submit, ["first"])
        assert graph.entered.wait(5)
        followers = [pool.submit(batcher.submit, [f"f{i}"]) for i in range(4)]
        wait_until(lambda: len(batcher._rows) == 4)
        graph.gate.set()
        assert leader.result(5) == ["FIRST"]
        assert [f.result(5) for f in followers] == [[f"F{i}"] for i in range(4)]

    assert [len(batch) for batch in graph.batches] == [1, 2, 2]
    assert len(set(ran_in)) >= 2  # the first leader left once its own request was done


def test_a_failed_batch_drops_the_rest_of_its_requests(make_batcher, graph) -> None:
    batcher = make_batcher(max_batch_size=2)
    calls = []

    def failing(rows):
        calls.append(list(rows))
        raise RuntimeError("graph exploded")

    batcher.run_rows = failing
    with pytest.raises(BatchFailed, match="fake: the batch") as failed:
        batcher.submit(["a", "b", "c"])
    assert str(failed.value.__cause__) == "graph exploded"

    assert calls == [["a", "b"]]  # the third row never ran
    assert batcher._rows == []


def test_inline_batches_announce_nothing(graph: FakeGraph) -> None:
    inline = InlineBatches("m", graph, max_batch_size=4)
    with inline.incoming():
        assert inline.submit(["a"]) == ["A"]


def test_rows_of_similar_length_are_batched_together(make_batcher, graph: FakeGraph) -> None:
    batcher = make_batcher(max_batch_size=3)
    graph.gate.clear()
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher.submit, ["x"])  # holds the graph while the others queue
        assert graph.entered.wait(5)
        rows = ["a" * 9, "b", "c" * 9, "d", "e" * 9, "f"]
        futures = []
        for queued, row in enumerate(rows, start=1):  # in this order: "a..." is the oldest
            futures.append(pool.submit(batcher.submit, [row]))
            wait_until(lambda n=queued: len(batcher._rows) == n)
        graph.gate.set()
        assert first.result(5) == ["X"]
        assert [f.result(5)[0] for f in futures] == [row.upper() for row in rows]

    lengths = [sorted(len(row) for row in batch) for batch in graph.batches[1:]]
    # No short row padded to 9, and the oldest row's batch first (no row starves).
    assert lengths == [[9, 9, 9], [1, 1, 1]]


def test_a_full_queue_is_refused_at_once_with_a_retry_delay(make_batcher, graph: FakeGraph) -> None:
    batcher = make_batcher(max_queue_size=2)
    graph.gate.clear()
    with ThreadPoolExecutor(4) as pool:
        running = pool.submit(batcher.submit, ["running"])
        assert graph.entered.wait(5)
        queued = [pool.submit(batcher.submit, [f"q{i}"]) for i in range(2)]
        wait_until(lambda: len(batcher._waiting) == 2)

        started = time.monotonic()
        with pytest.raises(QueueFull) as refused:
            batcher.submit(["one too many"])
        assert time.monotonic() - started < 1
        assert refused.value.retry_after_s >= 1

        graph.gate.set()
        assert running.result(5) == ["RUNNING"]
        assert [f.result(5) for f in queued] == [["Q0"], ["Q1"]]
    assert batcher.submit(["later"]) == ["LATER"]  # the queue drained


def test_a_request_past_its_deadline_fails_and_its_rows_never_run(
    make_batcher, graph: FakeGraph
) -> None:
    batcher = make_batcher(timeout_s=0.2)
    graph.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        blocked = pool.submit(batcher.submit, ["blocked"])
        assert graph.entered.wait(5)

        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"REQUEST_TIMEOUT_S=0\.2"):
            batcher.submit(["late"])
        assert 0.15 < time.monotonic() - started < 2

        graph.gate.set()
        assert blocked.result(5) == ["BLOCKED"]  # its batch had started: answered, late
    batcher.submit(["after"])
    assert ["late"] not in graph.batches


def submit_as_client(batcher, rows: list[str], alive) -> list[str]:
    """``batcher.submit(rows)`` for a handler whose client ``alive()`` tells about."""
    token = CLIENT_ALIVE.set(alive)
    try:
        return batcher.submit(rows)
    finally:
        CLIENT_ALIVE.reset(token)


def test_a_request_whose_client_left_stops_waiting_and_its_rows_never_run(
    make_batcher, graph: FakeGraph, monkeypatch
) -> None:
    monkeypatch.setattr(batcher_module, "CLIENT_CHECK_S", 0.1)
    batcher = make_batcher()
    graph.gate.clear()
    there = threading.Event()
    there.set()
    checks: list[float] = []

    def alive() -> bool:
        checks.append(time.monotonic())
        return there.is_set()

    with ThreadPoolExecutor(3) as pool:
        blocked = pool.submit(batcher.submit, ["blocked"])
        assert graph.entered.wait(5)
        started = time.monotonic()
        staying = pool.submit(submit_as_client, batcher, ["staying"], lambda: True)
        leaving = pool.submit(submit_as_client, batcher, ["leaving"], alive)
        wait_until(lambda: len(checks) >= 2)  # it asks every CLIENT_CHECK_S while it waits
        there.clear()
        with pytest.raises(ClientGone, match="the client left"):
            leaving.result(5)

        graph.gate.set()
        assert blocked.result(5) == ["BLOCKED"]
        assert staying.result(5) == ["STAYING"]
    assert checks[0] - started >= 0.1  # not before it has waited CLIENT_CHECK_S
    assert ["leaving"] not in graph.batches and ["staying", "leaving"] not in graph.batches


def test_a_request_answered_within_the_check_period_never_checks(
    make_batcher, graph: FakeGraph
) -> None:
    batcher = make_batcher()
    checks: list[str] = []

    assert submit_as_client(batcher, ["quick"], lambda: checks.append("asked") or False) == [
        "QUICK"
    ]
    assert checks == []


def test_a_client_check_that_fails_keeps_the_request(
    make_batcher, graph: FakeGraph, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(batcher_module, "CLIENT_CHECK_S", 0.05)
    batcher = make_batcher()
    graph.gate.clear()

    def broken() -> bool:
        raise OSError("bad file descriptor")

    with ThreadPoolExecutor(2) as pool:
        blocked = pool.submit(batcher.submit, ["blocked"])
        assert graph.entered.wait(5)
        waiting = pool.submit(submit_as_client, batcher, ["waiting"], broken)
        wait_until(lambda: "checking whether a client is still there failed" in caplog.text)
        graph.gate.set()
        assert blocked.result(5) == ["BLOCKED"]
        assert waiting.result(5) == ["WAITING"]


@pytest.mark.parametrize("batching", [True, False])
def test_a_request_s_own_batches_stop_once_its_client_has_gone(
    graph: FakeGraph, batching: bool, monkeypatch
) -> None:
    monkeypatch.setattr(batcher_module, "CLIENT_CHECK_S", 0.1)
    graph.delay_s = 0.15  # the first check comes after the first batch, before the second
    scheduler = make_scheduler("fake", graph, policy(max_batch_size=1, enabled=batching))

    with pytest.raises(ClientGone):
        submit_as_client(scheduler, ["a", "b", "c", "d"], lambda: False)
    assert len(graph.batches) == 1
    scheduler.close()


@pytest.mark.parametrize("batching", [True, False])
def test_a_request_s_own_batches_stop_at_its_deadline(graph: FakeGraph, batching: bool) -> None:
    """A request of many batches that runs them itself (it leads, or BATCHING=false) is not
    answered 504 only once all of them ran: the batches not started by the deadline are not."""
    graph.delay_s = 0.15  # batches start at 0 and 0.15 s (0.1 s before the deadline), not 0.3
    settings = policy(max_batch_size=1, timeout_s=0.25, enabled=batching)
    scheduler = make_scheduler("fake", graph, settings)

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        scheduler.submit(["a", "b", "c", "d", "e"])
    assert time.monotonic() - started < 0.6  # two batches of 0.15 s, not five
    assert len(graph.batches) == 2
    scheduler.close()


def test_a_failing_batch_fails_its_requests_not_the_batcher(make_batcher, graph) -> None:
    batcher = make_batcher()
    calls = []

    def flaky(rows):
        calls.append(rows)
        if len(calls) == 1:
            raise RuntimeError("graph exploded")
        return graph(rows)

    batcher.run_rows = flaky
    with pytest.raises(BatchFailed):
        batcher.submit(["a"])
    assert batcher.submit(["b"]) == ["B"]


def test_each_request_of_a_failed_batch_gets_its_own_error(make_batcher, graph) -> None:
    """One exception object raised in several threads would gather all their frames."""
    batcher = make_batcher(max_batch_size=4)
    graph.gate.clear()

    def failing(rows):
        graph(rows)
        raise RuntimeError("graph exploded")

    batcher.run_rows = failing
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(batcher.submit, [row]) for row in "abc"]
        assert graph.entered.wait(5)
        wait_until(lambda: len(batcher._rows) == 2)
        graph.gate.set()
        errors = [future.exception(5) for future in futures]

    assert all(isinstance(error, BatchFailed) for error in errors)
    assert len({id(error) for error in errors}) == 3
    assert errors[1].__cause__ is errors[2].__cause__  # b and c ran in one batch


class FailingObserver:
    def __init__(self) -> None:
        self.calls = 0

    def on_batch(self, *batch: object) -> None:
        self.calls += 1
        raise OSError(28, "No space left on device")


def test_a_failing_observer_fails_no_request_and_stalls_no_other(graph: FakeGraph) -> None:
    """The leader passes the lead on before it tells the observer: if that raised, the
    requests whose rows wait would sleep until their deadline."""
    observer = FailingObserver()
    batcher = DynamicBatcher("fake", graph, policy(max_batch_size=1, timeout_s=5), observer)
    graph.gate.clear()
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(batcher.submit, [row]) for row in "abc"]
        assert graph.entered.wait(5)
        wait_until(lambda: len(batcher._rows) == 2)
        started = time.monotonic()
        graph.gate.set()
        assert [future.result(5) for future in futures] == [["A"], ["B"], ["C"]]
    assert time.monotonic() - started < 2
    assert observer.calls == 3
    inline = InlineBatches("fake", graph, max_batch_size=1, observer=observer)
    assert inline.submit(["d", "e"]) == ["D", "E"]


def test_closing_runs_what_is_queued_and_later_rows_inline(graph: FakeGraph) -> None:
    batcher = DynamicBatcher("fake", graph, policy())
    graph.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        queued = pool.submit(batcher.submit, ["queued"])
        assert graph.entered.wait(5)
        batcher.close()
        graph.gate.set()
        assert queued.result(5) == ["QUEUED"]

    assert batcher.submit(["after close"]) == ["AFTER CLOSE"]


def test_batching_off_runs_each_request_alone_in_sorted_chunks(graph: FakeGraph) -> None:
    scheduler = make_scheduler("fake", graph, policy(enabled=False, max_batch_size=2))

    assert isinstance(scheduler, InlineBatches)
    assert scheduler.submit(["ccc", "a", "bb"]) == ["CCC", "A", "BB"]
    assert graph.batches == [["a", "bb"], ["ccc"]]


def test_the_queue_delay_counts_from_the_oldest_row(make_batcher, graph: FakeGraph) -> None:
    # A stream of announced requests must not put the batch off: the delay runs from the oldest.
    batcher = make_batcher(max_batch_size=8, max_queue_delay_s=1.0)
    barrier, first_in = threading.Barrier(3), threading.Event()

    def second() -> list[str]:
        with batcher.incoming():
            barrier.wait(5)
            assert first_in.wait(5)
            time.sleep(0.6)
            return batcher.submit(["second"])

    def late() -> None:
        with batcher.incoming():  # never submits before the batch has run
            barrier.wait(5)
            time.sleep(3.0)

    with ThreadPoolExecutor(2) as pool:
        others = [pool.submit(second), pool.submit(late)]
        with batcher.incoming():
            barrier.wait(5)
            started = time.monotonic()
            first_in.set()
            assert batcher.submit(["first"]) == ["FIRST"]
            waited = time.monotonic() - started
        assert others[0].result(5) == ["SECOND"]
        others[1].result(5)

    assert graph.batches == [["first", "second"]]
    assert 0.9 < waited < 1.4  # 1.0 s after the first row, not after the second (1.6 s)


def test_requests_whose_rows_are_running_no_longer_fill_the_queue(make_batcher) -> None:
    # Only rows still waiting count towards max_queue_size: a burst that is being served must
    # not refuse the next requests.
    batcher = make_batcher(max_batch_size=2, max_queue_size=3)
    gates = [threading.Event(), threading.Event()]
    calls: list[list[str]] = []

    def held_graph(rows: Sequence[str]) -> list[str]:
        calls.append(list(rows))
        if len(calls) <= len(gates):
            gates[len(calls) - 1].wait(10)
        return [row.upper() for row in rows]

    batcher.run_rows = held_graph
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(batcher.submit, ["x"])
        wait_until(lambda: len(calls) == 1)
        burst = []
        for i in range(3):
            burst.append(pool.submit(batcher.submit, [f"q{i}"]))
            wait_until(lambda n=i + 1: len(batcher._rows) == n)
        gates[0].set()
        wait_until(lambda: len(calls) == 2)  # two of the burst run; one waits

        later = pool.submit(batcher.submit, ["later"])  # 1 request waiting: room for it
        wait_until(lambda: len(batcher._rows) == 2 or later.done())
        gates[1].set()

        assert later.result(5) == ["LATER"]
        assert first.result(5) == ["X"]
        assert [f.result(5) for f in burst] == [["Q0"], ["Q1"], ["Q2"]]
