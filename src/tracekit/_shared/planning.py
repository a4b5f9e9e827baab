"""Apply a plan of changes to an AWS account, shared by every "as code" area (sampling rules,
dashboards and alarms): changes in order, throttling retried with backoff, stop at the first
other error, and a report of what was applied, what failed and what was not tried.

A change is anything with ``describe()`` (one human line), ``to_json()`` and ``blocked`` (why the
API cannot perform it; empty when it can).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

THROTTLE_CODES = ("ThrottledException", "ThrottlingException", "TooManyRequestsException",
                  "Throttling")


class Change(Protocol):
    @property
    def blocked(self) -> str: ...

    def describe(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


Call = Callable[[Any], Any]
"""One API call of a change, given the boto3 client."""


@dataclass
class ApplyReport:
    """What ``apply`` did: applied changes, the one that failed (and why), and those not tried."""

    applied: list[Any] = field(default_factory=list)
    failed: Any = None
    error: str = ""
    not_applied: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed is None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "applied": [c.to_json() for c in self.applied],
                "failed": self.failed.to_json() if self.failed else None, "error": self.error,
                "not_applied": [c.to_json() for c in self.not_applied]}

    def text(self) -> str:
        lines = [f"applied: {c.describe()}" for c in self.applied]
        lines = lines or ["no changes" if self.ok else "applied: nothing"]
        if self.failed:
            lines.append(f"FAILED: {self.failed.describe()}: {self.error}")
            lines += [f"not applied: {c.describe()}" for c in self.not_applied]
        return "\n".join(lines)


def apply_changes(
    client: Any,
    changes: Sequence[Change],
    calls: Callable[[Any], list[Call]],
    *,
    attempts: int = 6,
    sleep: Callable[[float], None] = time.sleep,
) -> ApplyReport:
    """Run each change's ``calls(change)``; a plan with a change the API cannot make is refused
    before any call, so that the account is not left half-changed."""
    report = ApplyReport()
    blocked = next((c for c in changes if c.blocked), None)
    if blocked is not None:
        report.failed, report.error = blocked, blocked.blocked
        report.not_applied = [c for c in changes if c is not blocked]
        return report
    for index, change in enumerate(changes):
        try:
            for call in calls(change):
                with_retry(lambda c=call: c(client), attempts, sleep)  # type: ignore[misc]
        except Exception as exc:
            report.failed, report.error = change, error_text(exc)
            report.not_applied = list(changes[index + 1 :])
            return report
        report.applied.append(change)
    return report


def with_retry(call: Callable[[], Any], attempts: int, sleep: Callable[[float], None]) -> Any:
    """``call()``, retried with jittered exponential backoff while AWS throttles it."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts - 1 or not is_throttle(exc):
                raise
            sleep(min(5.0, 0.2 * 2**attempt) * (0.5 + random.random() / 2))
    raise AssertionError("unreachable")  # pragma: no cover


def is_throttle(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code", "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in THROTTLE_CODES or status == 429


def error_text(exc: Exception) -> str:
    """``Code: Message`` of an API error, else the exception's type and text."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    if error:
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}"
    return f"{type(exc).__name__}: {exc}"
