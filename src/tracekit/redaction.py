"""Keep secrets out of telemetry: one list of sensitive keys for logs, attributes and metadata."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"
DEFAULT_SENSITIVE = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "set-cookie",
    "api_key",
    "apikey",
    "x-api-key",
    "credential",
    "private_key",
    "session",
)

_extra: tuple[str, ...] = ()
_pattern = re.compile("|".join(re.escape(k) for k in DEFAULT_SENSITIVE), re.IGNORECASE)


def add_sensitive_keys(keys: Iterable[str]) -> None:
    """Extend the sensitive-key list (``TRACEKIT_REDACT_KEYS`` does the same from the environment)."""
    global _extra, _pattern
    _extra = tuple(dict.fromkeys((*_extra, *(k.lower() for k in keys if k))))
    words = (*DEFAULT_SENSITIVE, *_extra)
    _pattern = re.compile("|".join(re.escape(k) for k in words), re.IGNORECASE)


def is_sensitive(key: str) -> bool:
    """True when ``key`` contains a sensitive word, ignoring case and ``-``/``_`` differences."""
    return bool(_pattern.search(key) or _pattern.search(key.replace("-", "_")))


def redact(value: object, key: str = "") -> object:
    """Return ``value`` with every sensitive key's value replaced, recursing into dicts and lists."""
    if key and is_sensitive(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


add_sensitive_keys(os.environ.get("TRACEKIT_REDACT_KEYS", "").split(","))
