"""The shared batching worker: bounded by items or bytes, counted drops, flush and close deadlines."""

from __future__ import annotations

import os
import threading
import time

import pytest

from tracekit._shared import stats as _stats
from tracekit._shared.batching import BatchQueue


def test_queue_is_bounded_by_items_and_counts_drops() -> None:
    _stats.reset()
    release = threading.Event()
    sent: list[int] = []

    def slow_send(batch: list[int]) -> None:
        release.wait(5)
        sent.extend(batch)

    queue: BatchQueue[int] = BatchQueue(
        slow_send, name="test.queue", max_items=3, max_batch=1, size=lambda _: 1
    )
    accepted = [queue.submit(i) for i in range(10)]
    assert accepted.count(True) == 3 and not accepted[-1]  # in flight counts against the limit
    assert _stats.stats()["test.queue.dropped.buffer_full"] == 7
    assert queue.flush(0.05) is False  # bounded wait while the sender is stuck
    release.set()
    assert queue.flush(5)
    assert sent == [0, 1, 2]
    assert queue.close(1)
    assert queue.submit(99) is False
    assert _stats.stats()["test.queue.dropped.closed"] == 1


def test_queue_is_bounded_by_bytes() -> None:
    _stats.reset()
    gate = threading.Event()
    queue: BatchQueue[bytes] = BatchQueue(
        lambda batch: gate.wait(5), name="test.bytes", max_bytes=1000, max_batch=10, max_wait=10
    )
    accepted = [queue.submit(b"x" * 100) for _ in range(10)]
    assert accepted.count(True) == 6  # 164 bytes each with the per-item overhead
    assert queue.buffered_bytes == 6 * 164
    gate.set()
    queue.close(2)
    assert queue.buffered_bytes == 0


def test_partial_batches_wait_at_most_max_wait() -> None:
    batches: list[list[int]] = []
    done = threading.Event()

    def deliver(batch: list[int]) -> None:
        batches.append(batch)
        done.set()

    queue: BatchQueue[int] = BatchQueue(
        deliver, name="test.wait", max_items=100, max_batch=50, size=lambda _: 1, max_wait=0.2
    )
    started = time.monotonic()
    for i in range(3):
        queue.submit(i)
    assert done.wait(2)
    assert 0.15 <= time.monotonic() - started < 1.5
    assert batches == [[0, 1, 2]]
    queue.close(1)


def test_close_counts_what_could_not_be_delivered() -> None:
    _stats.reset()
    stuck = threading.Event()
    queue: BatchQueue[int] = BatchQueue(
        lambda batch: stuck.wait(5), name="test.close", max_items=100, max_batch=2, size=lambda _: 1
    )
    for i in range(6):
        queue.submit(i)
    started = time.monotonic()
    assert queue.close(0.2) is False
    assert time.monotonic() - started < 1.0  # close keeps its deadline
    counts = _stats.stats()
    lost = counts.get("test.close.dropped.shutdown", 0) + counts["test.close.dropped.unconfirmed_at_exit"]
    assert lost == 6
    stuck.set()


def test_a_raising_deliver_is_counted_and_the_worker_survives() -> None:
    _stats.reset()
    calls: list[list[int]] = []

    def deliver(batch: list[int]) -> None:
        calls.append(batch)
        if len(calls) == 1:
            raise RuntimeError("boom")

    queue: BatchQueue[int] = BatchQueue(
        deliver, name="test.raise", max_items=10, max_batch=1, size=lambda _: 1
    )
    queue.submit(1)
    assert queue.flush(2)
    queue.submit(2)
    assert queue.flush(2)
    assert calls == [[1], [2]]
    assert _stats.stats()["test.raise.dropped.internal_error"] == 1
    queue.close(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_empty_and_sends_its_own() -> None:
    read, write = os.pipe()
    sent: list[int] = []
    gate = threading.Event()

    def deliver(batch: list[int]) -> None:
        gate.wait(5)
        sent.extend(batch)

    queue: BatchQueue[int] = BatchQueue(
        deliver, name="test.fork", max_items=10, max_batch=10, size=lambda _: 1
    )
    queue.submit(1)  # the parent's, still queued at fork time
    pid = os.fork()
    if pid == 0:  # the child: the parent's item is not resent, its own goes out
        gate.set()
        ok = queue.queued == 0 and queue.submit(2) and queue.flush(2) and sent == [2]
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    gate.set()
    assert queue.flush(2) and sent == [1]


def test_batches_are_cut_by_bytes_and_their_copies_count_against_the_limit() -> None:
    """A batch being delivered holds its copies too: the queue takes less meanwhile."""
    _stats.reset()
    release = threading.Event()
    batches: list[list[bytes]] = []

    def send(batch: list[bytes]) -> None:
        batches.append(batch)
        release.wait(5)

    queue: BatchQueue[bytes] = BatchQueue(
        send, name="test.copies", max_batch=50, max_bytes=10_000, max_batch_bytes=2_000, max_wait=5.0,
        delivery_copies=2.0, size=len,
    )  # fmt: skip
    assert all(queue.submit(b"x" * 1000) for _ in range(2))
    deadline = time.monotonic() + 5
    while not batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [len(b) for b in batches] == [2]  # 2,000 bytes: the batch is full by bytes
    assert queue.buffered_bytes == 6_000  # the batch and its two copies
    accepted = [queue.submit(b"x" * 1000) for _ in range(6)]
    assert accepted.count(True) == 4  # 6,000 + 4 x 1,000 = the limit
    release.set()
    assert queue.flush(5) and queue.buffered_bytes == 0
    assert [len(b) for b in batches] == [2, 2, 2]
    queue.close(1)


def test_a_flapping_upstream_logs_its_outage_lines_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    _stats.reset()
    caplog.set_level("WARNING", logger="tracekit")
    calls = {"n": 0}

    def flapping() -> tuple[bool, str] | None:  # every other attempt fails
        calls["n"] += 1
        return (True, "server_error") if calls["n"] % 2 else None

    queue: BatchQueue[int] = BatchQueue(
        lambda batch: None, name="test.flap", max_items=10, max_batch=1, size=lambda _: 1
    )
    for _ in range(5):
        assert queue.retry(flapping, retry_for=5, max_backoff=0.01) is None
    lines = [r.getMessage() for r in caplog.records if "test.flap: upstream" in r.getMessage()]
    assert len(lines) == 2 and "failing (server_error)" in lines[0] and "again" in lines[1], lines


def test_what_is_held_with_the_copies_of_batches_in_flight_never_passes_max_bytes() -> None:
    """Room is kept for the copies of each worker's batch, whatever sizes come and go."""
    import random

    _stats.reset()
    rng = random.Random(3)
    seen: list[int] = []

    def send(batch: list[bytes]) -> None:
        seen.append(queue.buffered_bytes)  # this batch and its copies are counted now
        time.sleep(rng.random() / 200)

    queue: BatchQueue[bytes] = BatchQueue(
        send, name="test.held", max_batch=50, max_bytes=20_000, max_batch_bytes=5_000, workers=3,
        delivery_copies=2.0, size=len,
    )  # fmt: skip

    def produce() -> None:
        for _ in range(1500):
            queue.submit(b"x" * rng.randrange(1, 1500))
            seen.append(queue.buffered_bytes)

    producers = [threading.Thread(target=produce) for _ in range(2)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    assert queue.flush(10) and queue.buffered_bytes == 0
    queue.close(1)
    assert max(seen) <= 20_000 and max(seen) > 10_000, max(seen)  # pressed against the limit
    assert _stats.stats()["test.held.dropped.buffer_full"] > 0
