"""The one background batching worker: a bounded queue drained in batches by worker threads.

Every batched sender uses it: PutTraceSegments, PutLogEvents, PutMetricData, the CloudWatch agent
writer, OTLP forwarding and the sidecar's local store. The caller never blocks on I/O; memory is
bounded by bytes and/or items; a partial batch waits at most ``max_wait`` for company; flush and
close take a deadline; and every item that is not delivered is counted under
``<name>.dropped.<reason>`` in :mod:`tracekit._shared.stats`:

- ``buffer_full``: refused because the queue was at its limit;
- ``closed``: submitted after ``close``;
- ``shutdown``: still queued when ``close`` ran out of time;
- ``unconfirmed_at_exit``: handed to ``deliver`` and not finished when ``close`` returned;
- ``internal_error``: ``deliver`` raised (it should count its own failures by reason instead).

:meth:`BatchQueue.retry` is the one retry loop of the senders that use it: capped exponential
backoff with full jitter within a time budget, ended early by ``close``; it logs one warning when
the upstream starts failing and one when it answers again (an outage is two lines, not silence and
not a line per batch; each kind at most once a minute, so a flapping upstream is not a flood).

Threads start with the first item, so building a sender costs nothing; in a forked child (gunicorn
``--preload``, multiprocessing) the queue starts empty, since the parent delivers what it queued.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from tracekit._shared import stats
from tracekit._shared.forking import reset_after_fork

T = TypeVar("T")
Attempt = Callable[[], "tuple[bool, str] | None"]
"""One try at delivering: None when done, else (worth retrying?, reason)."""
ITEM_OVERHEAD = 64
"""Bytes counted per queued ``str``/``bytes`` item on top of its length (object header, queue slot)."""


CLOSE_RESERVE = 0.5
MAX_CLOSE_RESERVE = 2.5
"""Share of ``close``'s time (at most this many seconds) kept for in-flight calls to finish."""


def item_size(item: Any) -> int:
    """The default ``size``: the length of a ``str``/``bytes`` item plus :data:`ITEM_OVERHEAD`."""
    return len(item) + ITEM_OVERHEAD


class QueuedSink(Generic[T]):
    """The sink face (submit, flush, close, what is held) of a sender whose items wait in a
    :class:`BatchQueue` called ``_queue``."""

    _queue: BatchQueue[T]

    def submit(self, item: T) -> bool:
        """Queue one item; False (and counted) when it cannot be kept."""
        return self._queue.submit(item)

    def submit_many(self, items: Sequence[T]) -> int:
        """Queue each, in order; how many were kept."""
        return sum(self._queue.submit(item) for item in items)

    def flush(self, timeout: float) -> bool:
        """Deliver everything queued now; True when done within ``timeout`` seconds."""
        return self._queue.flush(timeout)

    def close(self, timeout: float) -> None:
        """Stop accepting, deliver the queue within ``timeout``, count the rest as dropped."""
        self._queue.close(timeout)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held, queued or in flight (what the byte limit bounds)."""
        return self._queue.buffered_bytes

    @property
    def queued(self) -> int:
        """Items waiting for a worker."""
        return self._queue.queued


class BatchQueue(Generic[T]):
    """Call ``deliver(batch)`` from ``workers`` threads with up to ``max_batch`` queued items.

    ``deliver`` counts its own outcomes (sent, dropped by reason); the queue counts what never
    reached it. Retrying deliveries should give up when :attr:`aborted` is set.
    """

    def __init__(
        self,
        deliver: Callable[[list[T]], None],
        *,
        name: str,
        max_batch: int,
        max_bytes: int | None = None,
        max_items: int | None = None,
        size: Callable[[T], int] = item_size,
        workers: int = 1,
        max_wait: float = 0.0,
        on_exit: Callable[[], None] | None = None,
        after_fork: Callable[[], None] | None = None,
        max_batch_bytes: int | None = None,
        delivery_copies: float = 0.0,
    ) -> None:
        """``max_batch_bytes`` caps a batch's size (at least one item); ``delivery_copies`` is how
        many copies of a batch ``deliver`` makes (a request body...): a batch being delivered
        counts ``1 + delivery_copies`` times its size against ``max_bytes``, so that the limit
        bounds the memory really held, not only the queue. Room for the copies of ``workers``
        batches is kept free (:meth:`_reserve_for_copies`), so what is held never passes
        ``max_bytes``."""
        if max_batch < 1 or workers < 1 or (max_bytes or 1) < 1 or (max_items or 1) < 1:
            raise ValueError("max_batch, max_bytes, max_items and workers must be positive")
        self.name = name
        self._deliver = deliver
        self._max_batch = max_batch
        self._max_bytes = max_bytes
        self._max_items = max_items
        self._size = size
        self._max_batch_bytes = max_batch_bytes
        self._copies = delivery_copies
        self._reserve = self._reserve_for_copies(workers)
        self._workers = workers
        self._max_wait = max_wait
        self._on_exit = on_exit
        self._after_fork = after_fork
        self._reset()
        reset_after_fork(self)

    def _reserve_for_copies(self, workers: int) -> int:
        """Bytes of ``max_bytes`` kept for the copies of batches being delivered: ``workers``
        batches of at most ``max_batch_bytes``, which is lowered when needed so that items keep at
        least ``1 / (1 + delivery_copies)`` of the limit."""
        if self._max_bytes is None or not self._copies:
            return 0
        cap = max(1, int(self._max_bytes / (1 + self._copies) / workers))
        self._max_batch_bytes = min(self._max_batch_bytes or cap, cap)
        return int(workers * self._copies * self._max_batch_bytes)

    def _reset(self) -> None:
        """Empty state: at construction and in a forked child."""
        self._pending: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._queued_bytes = 0
        self._inflight = 0
        self._oldest = 0.0
        self._urgent = 0
        self._closed = False
        self._down_since: float | None = None
        self._threads: list[threading.Thread] = []
        self.aborted = threading.Event()
        """Set when ``close`` ran out of time: deliveries waiting to retry should give up."""
        self.abandoned = False
        """Set when ``close`` returned: deliveries still running were counted as
        ``dropped.unconfirmed_at_exit`` and must not count their outcome again."""
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)

    # -- the caller's side ------------------------------------------------------------------------

    def submit(self, item: T) -> bool:
        """Queue one item; False (and counted) when closed or full. Never blocks, never raises."""
        size = self._size(item)
        with self._lock:
            if self._closed:
                reason = "closed"
            elif self._full(size):
                reason = "buffer_full"
            else:
                pending = self._pending
                if not pending:
                    self._oldest = time.monotonic()
                pending.append((item, size))
                self._bytes += size
                self._queued_bytes += size
                if not self._threads:
                    self._start()
                if len(pending) == 1 or len(pending) % self._max_batch == 0 or self._bytes_ready():
                    self._ready.notify()
                return True
        self.count_dropped(reason)
        return False

    def _full(self, size: int) -> bool:
        held = len(self._pending) + self._inflight
        over_items = self._max_items is not None and held >= self._max_items
        if over_items or self._max_bytes is None:
            return over_items
        if not self._reserve:
            return self._bytes + size > self._max_bytes
        # Items held (queued or being delivered, without copies) plus the copies of ``workers`` full
        # batches: what is held never passes ``max_bytes``, however batches come and go.
        items = self._queued_bytes + (self._bytes - self._queued_bytes) / (1 + self._copies)
        too_big = size > (self._max_batch_bytes or 0)  # alone in a batch, its copies would not fit
        return too_big or items + size > self._max_bytes - self._reserve

    @property
    def buffered_bytes(self) -> int:
        """Bytes held: queued plus in-flight items (what ``max_bytes`` bounds)."""
        return self._bytes

    @property
    def queued(self) -> int:
        """Items waiting for a worker."""
        return len(self._pending)

    def flush(self, timeout: float) -> bool:
        """Deliver everything queued now; True when the queue emptied within ``timeout`` seconds."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            self._urgent += 1
            self._ready.notify_all()
            try:
                while self._pending or self._inflight:
                    left = deadline - time.monotonic()
                    if left <= 0 or not any(t.is_alive() for t in self._threads):
                        return False
                    self._idle.wait(left)
                return True
            finally:
                self._urgent -= 1

    def close(self, timeout: float) -> bool:
        """Stop accepting, deliver the queue within ``timeout``, count the rest as dropped.

        New batches start until :data:`CLOSE_RESERVE` of the time is left; that last part is for
        the calls already made to be answered, so that what arrived is counted as delivered, not
        as ``unconfirmed_at_exit``.
        """
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        deadline = time.monotonic() + timeout
        done = self.flush(timeout - min(timeout * CLOSE_RESERVE, MAX_CLOSE_RESERVE))
        self.aborted.set()
        with self._lock:
            left = len(self._pending)
            self._pending.clear()
            self._bytes -= self._queued_bytes
            self._queued_bytes = 0
            self._ready.notify_all()
        if left:
            self.count_dropped("shutdown", left)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 0.1)
        with self._lock:
            self.abandoned = True
            unconfirmed = self._inflight
        if unconfirmed:
            self.count_dropped("unconfirmed_at_exit", unconfirmed)
        return done and not left

    def count_dropped(self, reason: str, n: int = 1) -> None:
        stats.incr(f"{self.name}.dropped.{reason}", n)

    def retry(
        self,
        attempt: Attempt,
        *,
        retry_for: float,
        max_backoff: float = 5.0,
        on_retry: Callable[[str], None] | None = None,
    ) -> str | None:
        """Call ``attempt`` until it is done, refused for good, out of time, or the queue closed.

        Returns None when delivered, else the reason to count the batch as dropped: the attempt's
        own (not worth retrying), ``retries_exhausted`` (``retry_for`` seconds passed) or
        ``shutdown`` (:meth:`close` ran out of time). ``on_retry(reason)`` runs before each wait.
        """
        give_up = time.monotonic() + retry_for
        tries = 0
        while (failure := attempt()) is not None:
            retry, reason = failure
            if not retry:
                return reason
            self._outage(reason, retry_for)
            tries += 1
            delay = random.uniform(0, min(max_backoff, 0.05 * 2**tries))
            if time.monotonic() + delay > give_up:
                return "retries_exhausted"
            if on_retry is not None:
                on_retry(reason)
            if self.aborted.wait(delay):
                return "shutdown"
        self._outage(None, retry_for)
        return None

    def _outage(self, reason: str | None, retry_for: float) -> None:
        """Log when the upstream starts failing (``reason``) and when it answers again (None)."""
        now = time.monotonic()
        with self._lock:
            since = self._down_since
            if (reason is None) == (since is None):
                return  # no change
            self._down_since = now if reason is not None else None
        # Rate-limited per kind like every tracekit warning: a flapping upstream is not a flood.
        if reason is not None:
            stats.warn_once_per_interval(
                f"{self.name}.upstream_failing",
                "tracekit: %s: upstream failing (%s); each batch is retried for up to %g s",
                self.name, reason, retry_for,
            )  # fmt: skip
        else:
            stats.warn_once_per_interval(
                f"{self.name}.upstream_back", "tracekit: %s: upstream answering again after %.1f s",
                self.name, now - (since or now),
            )  # fmt: skip

    # -- the workers' side ------------------------------------------------------------------------

    def _start(self) -> None:
        """Called under the lock with the first item."""
        for i in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"tracekit-{self.name}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        try:
            while (taken := self._take()) is not None:
                batch, held = taken
                items = [item for item, _ in batch]
                try:
                    self._deliver(items)
                except Exception as exc:  # a worker must never die
                    self.count_dropped("internal_error", len(items))
                    stats.report(f"{self.name}.worker", exc)
                finally:
                    del items
                    self._release(len(batch), held)
        finally:
            if self._on_exit is not None:
                self._on_exit()

    def _take(self) -> tuple[list[tuple[T, int]], int] | None:
        """Wait for a full batch, an old enough partial one, a flush, or the end.

        Returns the batch and the bytes it holds while delivered (its size and its copies).
        """
        with self._lock:
            while True:
                pending = self._pending
                if pending:
                    waited = time.monotonic() - self._oldest
                    due = self._urgent or self._closed or waited >= self._max_wait
                    if len(pending) >= self._max_batch or due or self._bytes_ready():
                        batch = self._cut(pending)
                        size = sum(s for _, s in batch)
                        extra = int(size * self._copies)
                        self._bytes += extra
                        self._inflight += len(batch)
                        self._oldest = time.monotonic()
                        return batch, size + extra
                    self._ready.wait(self._max_wait - waited)
                elif self._closed:
                    return None
                else:
                    self._ready.wait()

    def _bytes_ready(self) -> bool:
        """A batch is full by bytes (called under the lock)."""
        limit = self._max_batch_bytes
        return limit is not None and self._queued_bytes >= limit

    def _cut(self, pending: deque[tuple[T, int]]) -> list[tuple[T, int]]:
        """Up to ``max_batch`` items and ``max_batch_bytes`` bytes (at least one item)."""
        batch = [pending.popleft()]
        size = batch[0][1]
        limit = self._max_batch_bytes
        while pending and len(batch) < self._max_batch:
            if limit is not None and size + pending[0][1] > limit:
                break
            item = pending.popleft()
            size += item[1]
            batch.append(item)
        self._queued_bytes -= size
        return batch

    def _release(self, count: int, held: int) -> None:
        with self._lock:
            self._inflight -= count
            self._bytes -= held
            if not self._pending and not self._inflight:
                self._idle.notify_all()

    def forked(self) -> None:
        """In a forked child: empty, no threads (they start with the next item), fresh locks."""
        closed = self._closed
        self._reset()
        self._closed = closed
        if self._after_fork is not None:
            self._after_fork()
