"""Objects that must start afresh in a forked child (gunicorn ``--preload``, multiprocessing).

Threads do not survive a fork, a lock may be held by a thread that is gone, and what the parent
queued is the parent's to send: an object registered here has its ``forked()`` called in the child.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Protocol


class Forkable(Protocol):
    def forked(self) -> None: ...


_registered: weakref.WeakSet[Any] = weakref.WeakSet()


def reset_after_fork(obj: Forkable) -> None:
    """Have ``obj.forked()`` called in every forked child while ``obj`` lives."""
    _registered.add(obj)


def _in_child() -> None:
    for obj in list(_registered):
        obj.forked()


os.register_at_fork(after_in_child=_in_child)
