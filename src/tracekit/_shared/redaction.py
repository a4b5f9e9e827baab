"""Keep secrets out of telemetry and logs: one list of sensitive keys for logs, attributes and
metadata, and :func:`mask_urls` for credentials written into URLs (``user:password@``, ``?token=``)."""

from __future__ import annotations

import functools
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
    extra = tuple(dict.fromkeys((*_extra, *(k.lower() for k in keys if k))))
    if extra == _extra:
        return  # nothing new (the usual case, on every configure): keep the compiled pattern and cache
    _extra = extra
    words = (*DEFAULT_SENSITIVE, *_extra)
    _pattern = re.compile("|".join(re.escape(k) for k in words), re.IGNORECASE)
    is_sensitive.cache_clear()


@functools.lru_cache(maxsize=4096)
def is_sensitive(key: str) -> bool:
    """True when ``key`` contains a sensitive word, ignoring case and ``-``/``_`` differences."""
    return bool(_pattern.search(key) or _pattern.search(key.replace("-", "_")))


MAX_DEPTH = 32
"""Deeper structures (or cycles) are cut here rather than recursing without end."""


def redact(value: object, key: str = "", _depth: int = 0) -> object:
    """Return ``value`` with every sensitive key's value replaced, recursing into dicts and lists."""
    if key and is_sensitive(key):
        return REDACTED
    if _depth >= MAX_DEPTH and isinstance(value, (dict, list, tuple)):
        return "[TOO DEEP]"
    if isinstance(value, dict):
        return {k: redact(v, str(k), _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, "", _depth + 1) for v in value]
    return value


_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@?#\"]+)@")
_QUERY = re.compile(r"(?P<sep>[?&;])(?P<key>[^=&;\s#?]+)=(?P<value>[^&;\s#'\"]*)")


def mask_urls(text: str) -> str:
    """``text`` with the user and password of every URL, and the values of query parameters with a
    sensitive name (``token``, ``password``...), replaced by :data:`REDACTED`.

    Applied to every log line and health body the sidecar writes, and to tracekit's warnings, so a
    URL given with credentials (``--endpoint-url``, ``--otlp-forward``) is never printed whole.
    """
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return _QUERY.sub(
        lambda m: f"{m['sep']}{m['key']}={REDACTED}" if is_sensitive(m["key"]) else m[0], text
    )


add_sensitive_keys(os.environ.get("TRACEKIT_REDACT_KEYS", "").split(","))
