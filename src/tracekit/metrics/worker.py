"""A bounded queue drained in batches by one daemon thread: the caller never blocks on I/O.

Shared by the agent socket writer, the PutMetricData batcher and the CloudWatch Logs shipper.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Literal, Protocol, TypeVar

from tracekit._shared import stats

T = TypeVar("T")


class Forkable(Protocol):
    def forked(self) -> None: ...


_forkable: weakref.WeakSet[Any] = weakref.WeakSet()


def reset_after_fork(obj: Forkable) -> None:
    """Have ``obj.forked()`` called in every forked child (gunicorn --preload, multiprocessing)
    while ``obj`` lives: threads do not survive a fork and locks may be held by threads gone."""
    _forkable.add(obj)


def _forked() -> None:
    for obj in list(_forkable):
        obj.forked()


os.register_at_fork(after_in_child=_forked)


def aws_client(
    service: Literal["cloudwatch", "logs"],
    region: str | None,
    endpoint_url: str | None,
    *,
    max_attempts: int,
    read_timeout: float,
) -> Any:
    """A boto3 client for a background sender: botocore's standard retry mode (backoff with jitter
    on throttling and 5xx) and bounded timeouts. boto3 is imported here, on the sender's thread."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=5,
        read_timeout=read_timeout,
    )
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=config)


class BatchWorker(Generic[T]):
    """Queue up to ``max_items``; ``send`` gets up to ``max_batch`` items at a time on the thread.

    ``linger`` lets a partial batch wait for more items (fewer, fuller API calls); a flush or close
    cuts the wait short. ``send`` must not raise; if it does the batch is counted as dropped.
    """

    def __init__(
        self,
        name: str,
        send: Callable[[list[T]], None],
        *,
        max_items: int,
        max_batch: int,
        linger: float = 0.0,
        after_fork: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._after_fork = after_fork
        self._send = send
        self._max_items = max_items
        self._max_batch = max_batch
        self._linger = linger
        self._queue: deque[T] = deque()
        self._cond = threading.Condition()
        self._busy = 0
        """Items handed to ``send`` and not finished yet."""
        self._urgent = False
        self._closed = False
        self._thread: threading.Thread | None = None
        reset_after_fork(self)

    def put(self, item: T) -> bool:
        """Queue ``item``; False when full or closed (counted: ``<name>.dropped.queue_full``)."""
        with self._cond:
            if self._closed or len(self._queue) >= self._max_items:
                stats.incr(f"{self.name}.dropped.queue_full")
                return False
            self._queue.append(item)
            if self._thread is None:
                self._start()
            if len(self._queue) == 1 or len(self._queue) >= self._max_batch:
                self._cond.notify_all()
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far was handed to ``send``; False on timeout."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
            self._urgent = False
        return True

    def close(self, timeout: float) -> bool:
        """Flush, then stop the thread; later ``put`` calls return False.

        Items still queued at the deadline keep going out while the process lives, but at exit
        the daemon thread dies with them: they are counted as ``<name>.unsent_at_close``.
        """
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            unsent = len(self._queue) + self._busy
        if unsent:
            stats.incr(f"{self.name}.unsent_at_close", unsent)
        return done

    def forked(self) -> None:
        """In a forked child: the sender thread did not survive, its lock may be held, and the
        queued items are the parent's to send (sending them here too would count them twice).
        ``after_fork`` drops what the parent's connections were (a socket, a boto3 client)."""
        self._cond = threading.Condition()
        self._queue.clear()
        self._busy, self._urgent, self._thread = 0, False, None
        if self._after_fork is not None:
            self._after_fork()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"tracekit-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._send(batch)
            except Exception as exc:  # the thread must survive any sender bug
                stats.incr(f"{self.name}.dropped.send_error", len(batch))
                stats.report(f"{self.name}.send", exc)
            with self._cond:
                self._busy = 0
                self._cond.notify_all()

    def _next_batch(self) -> list[T] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            if self._linger and len(self._queue) < self._max_batch and not self._urgent:
                self._cond.wait(self._linger)
            count = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(count)]
            self._busy = len(batch)
            return batch
