"""Run code on a module as soon as it is imported, without importing it before anyone needs it.

tracekit sets process-wide defaults on modules a Lambda function often never loads (the global
propagators in ``opentelemetry.propagate``, context propagation for ``ThreadPoolExecutor``): importing
them only to set those costs ~2 ms of every cold start. :func:`when_imported` runs the hook at once
when the module is already there, otherwise right after its import finishes, before the importer
gets it, so whoever uses the module sees the same settings either way.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tracekit._shared import stats

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

Hook = Callable[[ModuleType], None]
_pending: dict[str, list[Hook]] = {}
_lock = threading.Lock()


def when_imported(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` once the module ``name`` is imported (now, if it already is)."""
    module = sys.modules.get(name)
    if module is not None:
        _run(hook, module)
        return
    with _lock:
        _pending.setdefault(name, []).append(hook)
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)


def _run(hook: Hook, module: ModuleType) -> None:
    try:
        hook(module)
    except Exception as exc:  # a failing hook must not fail the application's import
        stats.report("post_import", exc)


class _Finder:
    """First on ``sys.meta_path`` while hooks wait: finds nothing itself, only wraps the loader of a
    waited-for module (found by the finders after it) so that the hooks run after its code."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> ModuleSpec | None:
        if name not in _pending:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec: ModuleSpec | None = find(name, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)  # type: ignore[assignment]
                return spec
        return None


class _Loader:
    """The module's own loader, then the hooks waiting for it."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self.loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader  # the module keeps its own loader (resources, reloads)
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        with _lock:
            hooks = _pending.pop(module.__name__, [])
            if not _pending and _FINDER in sys.meta_path:
                sys.meta_path.remove(_FINDER)
        for hook in hooks:
            _run(hook, module)


_FINDER = _Finder()
