"""A byte-bounded queue drained in batches by worker threads.

Shared by everything that receives documents faster than it can deliver them one by one (the X-Ray
sender, the sidecar's local store): bounded memory, batches by size or age, flush and close with a
deadline, and every document that is not delivered counted under ``<prefix>.dropped.<reason>``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from tracekit._shared import stats

DOC_OVERHEAD = 64
"""Bytes counted per queued document on top of its length (object header, queue slot)."""

D = TypeVar("D", bound=str | bytes)


class BatchQueue(Generic[D]):
    """Call ``deliver(batch)`` from ``workers`` threads with up to ``max_batch`` queued documents."""

    def __init__(
        self,
        deliver: Callable[[list[D]], None],
        *,
        max_batch: int,
        max_bytes: int,
        workers: int = 1,
        max_wait: float = 1.0,
        stats_prefix: str,
        name: str = "tracekit-batch",
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_bytes < 1 or workers < 1:
            raise ValueError("max_batch, max_bytes and workers must be positive")
        self._deliver: Callable[[list[D]], None] = deliver
        self._max_batch = max_batch
        self._max_bytes = max_bytes
        self._max_wait = max_wait
        self._prefix = stats_prefix
        self._on_exit = on_exit
        self._pending: deque[D] = deque()
        self._bytes = 0
        self._inflight = 0
        self._oldest = 0.0
        self._urgent = 0
        self._closed = False
        self.aborted = threading.Event()
        """Set when ``close`` ran out of time: deliveries waiting to retry should give up."""
        self.abandoned = False
        """Set when ``close`` returned with deliveries still running: they were counted as
        ``dropped.unconfirmed_at_exit`` and must not be counted again."""
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, document: D) -> bool:
        """Queue one document; False (and counted) when closed or over the byte limit."""
        size = len(document) + DOC_OVERHEAD
        with self._lock:
            if self._closed:
                reason = "closed"
            elif self._bytes + size > self._max_bytes:
                reason = "buffer_full"
            else:
                pending = self._pending
                if not pending:
                    self._oldest = time.monotonic()
                pending.append(document)
                self._bytes += size
                if len(pending) == 1 or len(pending) % self._max_batch == 0:
                    self._ready.notify()
                return True
        self.count_dropped(reason)
        return False

    @property
    def buffered_bytes(self) -> int:
        """Bytes held: queued plus in-flight documents (what ``max_bytes`` bounds)."""
        return self._bytes

    @property
    def queued(self) -> int:
        """Documents waiting for a worker."""
        return len(self._pending)

    def flush(self, timeout: float) -> bool:
        """Deliver everything queued now; True when the queue emptied within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._urgent += 1
            self._ready.notify_all()
            try:
                while self._pending or self._inflight:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._idle.wait(left)
                return True
            finally:
                self._urgent -= 1

    def close(self, timeout: float) -> None:
        """Stop accepting, deliver the queue within ``timeout``, count the rest as dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        self.aborted.set()
        with self._lock:
            left = len(self._pending)
            self._pending.clear()
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

    def count_dropped(self, reason: str, n: int = 1) -> None:
        stats.incr(f"{self._prefix}.dropped.{reason}", n)

    def _work(self) -> None:
        try:
            while (batch := self._take()) is not None:
                try:
                    self._deliver(batch)
                except Exception as exc:  # a worker must never die
                    self.count_dropped("internal_error", len(batch))
                    stats.report(f"{self._prefix}.worker", exc)
                finally:
                    self._release(batch)
        finally:
            if self._on_exit is not None:
                self._on_exit()

    def _take(self) -> list[D] | None:
        """Wait for a full batch, an old enough partial one, a flush, or the end."""
        with self._lock:
            while True:
                pending = self._pending
                if pending:
                    waited = time.monotonic() - self._oldest
                    due = self._urgent or self._closed or waited >= self._max_wait
                    if len(pending) >= self._max_batch or due:
                        size = min(self._max_batch, len(pending))
                        batch = [pending.popleft() for _ in range(size)]
                        self._inflight += size
                        self._oldest = time.monotonic()
                        return batch
                    self._ready.wait(self._max_wait - waited)
                elif self._closed:
                    return None
                else:
                    self._ready.wait()

    def _release(self, batch: list[D]) -> None:
        size = sum(len(doc) for doc in batch) + DOC_OVERHEAD * len(batch)
        with self._lock:
            self._inflight -= len(batch)
            self._bytes -= size
            if not self._pending and not self._inflight:
                self._idle.notify_all()
