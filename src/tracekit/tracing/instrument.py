"""``tracekit.instrument(...)`` / ``TRACEKIT_INSTRUMENT``: trace outbound calls with the OpenTelemetry
contrib instrumentations (AWS SDK, HTTP clients, databases).

Each name maps to one contrib package, installed with a tracekit extra (``instrument-aws``,
``instrument-http``, ``instrument-sql``). Nothing is imported until a name is asked for. A missing
package or library gives one warning line and a count (``instrument.missing``), never an exception:
the application runs, untraced. An unknown name is a configuration mistake: ``ConfigError``.
Their spans become X-Ray subsegments shaped like the X-Ray SDK's patchers (``xray/segments.py``).
The X-Ray SDK bridge (``xray_sdk_bridge.py``) is installed from here too, for the same reason: its
optional dependency is imported only when asked for, and a missing one is one line, not an error.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tracekit._shared import stats
from tracekit._shared.settings import ConfigError


@dataclass(frozen=True)
class Instrumentation:
    """One contrib instrumentation: where its instrumentor lives and which extra installs it."""

    module: str
    instrumentor: str
    extra: str

    @property
    def package(self) -> str:
        return "opentelemetry-instrumentation-" + self.module.rsplit(".", 1)[-1].replace("_", "-")


_HTTP, _SQL = "instrument-http", "instrument-sql"
INSTRUMENTATIONS: dict[str, Instrumentation] = {
    "botocore": Instrumentation("opentelemetry.instrumentation.botocore", "BotocoreInstrumentor",
                                "instrument-aws"),
    "requests": Instrumentation("opentelemetry.instrumentation.requests", "RequestsInstrumentor", _HTTP),
    "httpx": Instrumentation("opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor", _HTTP),
    "urllib": Instrumentation("opentelemetry.instrumentation.urllib", "URLLibInstrumentor", _HTTP),
    "urllib3": Instrumentation("opentelemetry.instrumentation.urllib3", "URLLib3Instrumentor", _HTTP),
    "aiohttp-client": Instrumentation("opentelemetry.instrumentation.aiohttp_client",
                                      "AioHttpClientInstrumentor", _HTTP),
    "sqlite3": Instrumentation("opentelemetry.instrumentation.sqlite3", "SQLite3Instrumentor", _SQL),
    "psycopg": Instrumentation("opentelemetry.instrumentation.psycopg", "PsycopgInstrumentor", _SQL),
    "pymysql": Instrumentation("opentelemetry.instrumentation.pymysql", "PyMySQLInstrumentor", _SQL),
    "redis": Instrumentation("opentelemetry.instrumentation.redis", "RedisInstrumentor", _SQL),
}
ALIASES = {"boto3": "botocore", "aiohttp": "aiohttp-client"}
ACCEPTED = "a comma list of " + ", ".join([*INSTRUMENTATIONS, *ALIASES]) + "; or all, or none"

_lock = threading.Lock()
_enabled: set[str] = set()


def parse(name: str, value: str | Iterable[str]) -> tuple[str, ...]:
    """``"botocore,requests"`` -> ``("botocore", "requests")``; ``all``: every one; ``none``: ()."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [ALIASES.get(n, n) for n in (i.strip().lower() for i in items) if n]
    if names == ["none"]:
        return ()
    if names == ["all"]:
        return ("all",)
    wrong = [n for n in names if n not in INSTRUMENTATIONS]
    if wrong:
        raise ConfigError(name, value if isinstance(value, str) else ",".join(items), ACCEPTED)
    return tuple(dict.fromkeys(names))


def enable(names: Iterable[str], *, quiet: bool = False) -> list[str]:
    """Instrument ``names`` (already parsed); idempotent, thread-safe, never raises. ``quiet``: a
    default rather than the user's choice, so what is missing is skipped without a word."""
    names = tuple(names)
    every = names == ("all",)
    with _lock:
        for name in INSTRUMENTATIONS if every else names:
            if name not in _enabled and _enable_one(name, INSTRUMENTATIONS[name], not (every or quiet)):
                _enabled.add(name)
        return sorted(_enabled)


def enabled() -> list[str]:
    """The names instrumented so far in this process."""
    return sorted(_enabled)


def _enable_one(name: str, spec: Instrumentation, explicit: bool) -> bool:
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        if exc.name and not spec.module.startswith(exc.name):
            return _missing(name, explicit, f"{exc.name} is not installed")
        return _missing(name, explicit, f"{spec.package} is not installed "
                                        f"(pip install 'tracekit-aws[{spec.extra}]')")
    from opentelemetry.instrumentation.dependencies import DependencyConflictError

    try:
        getattr(module, spec.instrumentor)().instrument(
            raise_exception_on_conflict=True, **_options(name)
        )
    except DependencyConflictError as exc:
        return _missing(name, explicit, str(exc.conflict))
    except Exception as exc:
        stats.report(f"instrument.{name}", exc)
        return False
    stats.incr("instrument.enabled")
    return True


def _missing(name: str, explicit: bool, why: str) -> bool:
    """One line for a name the user asked for; ``all`` skips what is not there without a word."""
    stats.incr("instrument.missing" if explicit else "instrument.skipped")
    if explicit:
        stats.warn_once_per_interval(f"instrument.{name}", "tracekit: %s not traced: %s", name, why)
    return False


def _options(name: str) -> dict[str, Any]:
    if name == "botocore":
        from tracekit.tracing import aws_calls

        return aws_calls.instrumentor_options()
    return {}


def bridge_xray_sdk() -> bool:
    """Install the X-Ray SDK bridge (``tracing/xray_sdk_bridge.py``); never raises."""
    try:
        from tracekit.tracing import xray_sdk_bridge
    except ImportError as exc:
        stats.incr("xray_sdk.missing")
        stats.warn_once_per_interval("xray_sdk.missing", "tracekit: X-Ray SDK bridge not installed: %s "
                                     "(pip install 'tracekit-aws[xray-sdk]')", exc)
        return False
    try:
        return xray_sdk_bridge.install()
    except Exception as exc:
        stats.report("xray_sdk.install", exc)
        return False


def unbridge_xray_sdk() -> None:
    try:
        from tracekit.tracing import xray_sdk_bridge
    except ImportError:
        return
    xray_sdk_bridge.uninstall()


def disable() -> None:
    """Undo every instrumentation enabled here (tests; a process normally keeps them)."""
    with _lock:
        for name in sorted(_enabled):
            spec = INSTRUMENTATIONS[name]
            try:
                getattr(importlib.import_module(spec.module), spec.instrumentor)().uninstrument()
            except Exception as exc:
                stats.report(f"instrument.{name}", exc)
        _enabled.clear()
