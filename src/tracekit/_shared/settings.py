"""Settings that every part of tracekit resolves the same way, each in one place.

Traces, logs, metrics, the Lambda decorator and the sidecar all ask here for the service name, the
region and the version, and parse addresses, switches and URLs with the same functions, so one
setting means the same thing everywhere. Reading settings never touches the network.

Service name, first found wins:

1. ``tracekit.configure(service=...)`` (or ``set_service``);
2. ``OTEL_SERVICE_NAME``;
3. ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``;
4. ``AWS_XRAY_TRACING_NAME`` (the X-Ray SDK's variable);
5. ``POWERTOOLS_SERVICE_NAME``, then ``AWS_EMF_SERVICE_NAME``;
6. ``AWS_LAMBDA_FUNCTION_NAME`` (in Lambda, the function);
7. ``unknown_service`` (OpenTelemetry's default).

Region: the explicit value, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping
from typing import TypeVar

VERSION = "0.1.0"
"""The one place the version is written: ``tracekit.__version__``, the package metadata
(pyproject.toml reads it from here), the CLI, the X-Ray ``service.sdk_version`` and the OTel scope."""
DISTRIBUTION = "tracekit-aws"
"""The package index name (``tracekit`` there is an unrelated project); the import name is ``tracekit``."""
DEFAULT_SERVICE = "unknown_service"
SERVICE_VARIABLES = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "AWS_XRAY_TRACING_NAME",
    "POWERTOOLS_SERVICE_NAME",
    "AWS_EMF_SERVICE_NAME",
    "AWS_LAMBDA_FUNCTION_NAME",
)
"""Where the service name comes from, in order (``OTEL_RESOURCE_ATTRIBUTES``: its ``service.name``)."""
Address = tuple[str, int]
T = TypeVar("T")
N = TypeVar("N", int, float)


class ConfigError(ValueError):
    """A configuration value is not accepted: names the setting, the value and the accepted form."""

    def __init__(self, name: str, value: object, accepted: str) -> None:
        super().__init__(f"{name}={value!r} is not valid: expected {accepted}")
        self.name, self.value, self.accepted = name, value, accepted


def environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment with empty variables left out: an empty variable counts as unset."""
    return {k: v for k, v in (os.environ if env is None else env).items() if v.strip()}


# -- service name and region -------------------------------------------------------------------

_service: str | None = None


def set_service(name: str | None) -> None:
    """The service name given in code (``tracekit.configure(service=...)``); None forgets it."""
    global _service
    _service = name or None


def service_name(env: Mapping[str, str] | None = None) -> str:
    """The service name by the precedence in this module's docstring.

    Cheap enough for every log line: the name found in the process environment is remembered for
    as long as the variables it depends on keep their values.
    """
    if _service:
        return _service
    if env is not None:
        return service_from_env(env) or DEFAULT_SERVICE
    key = tuple(os.environ.get(name, "") for name in SERVICE_VARIABLES)
    found = _from_environ.get(key)
    if found is None:
        found = service_from_env() or DEFAULT_SERVICE
        _from_environ.clear()
        _from_environ[key] = found
    return found


_from_environ: dict[tuple[str, ...], str] = {}


def service_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The service name the environment gives, or None (a malformed attribute list is skipped:
    ``tracekit.configure`` reports it)."""
    env = environ(env)
    for name in SERVICE_VARIABLES:
        if name == "OTEL_RESOURCE_ATTRIBUTES":
            try:
                value = pairs(name, env.get(name, "")).get("service.name")
            except ConfigError:
                value = None
        else:
            value = env.get(name)
        if value:
            return value
    return None


def region(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The explicit region, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``; None when none is set."""
    env = environ(env)
    return explicit or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None


# -- parsers: each raises ValueError naming the accepted form; ``checked`` makes it a ConfigError --


def host_port(text: str) -> Address:
    """``host:port`` (``[::1]:2000`` for IPv6) to send to: a port 1-65535."""
    address = listen_address(text)
    if not address[1]:
        raise ValueError("'host:port' with a port 1-65535, e.g. 127.0.0.1:2000")
    return address


def listen_address(text: str) -> Address:
    """``host:port`` to listen on: a port 0-65535 (0: any free port)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("'host:port' with a port 0-65535, e.g. 127.0.0.1:2000")
    return host.strip("[]"), int(port)


def port(text: str) -> int:
    """A port to listen on, 0-65535 (0: any free port); an argparse ``type`` too."""
    if not text.strip().isdigit() or int(text) > 65535:
        raise ValueError("a port 0-65535")
    return int(text)


def family_of(host: str) -> socket.AddressFamily:
    """IPv6 for a host with colons (``::1``, from ``[::1]:2000``), else IPv4."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def format_address(address: Address) -> str:
    """``("::1", 2000)`` -> ``[::1]:2000``; the inverse of :func:`host_port`."""
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    return f"{host}:{address[1]}"


def boolean(text: str) -> bool:
    """``true/1/yes/on`` or ``false/0/no/off``, any case."""
    lowered = str(text).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError("true or false")


def http_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host."""
    from urllib.parse import urlsplit

    if not text.startswith(("http://", "https://")) or not urlsplit(text).hostname:
        raise ValueError("an http:// or https:// URL")
    return text


def positive(kind: Callable[[str], N], *, zero: bool = False) -> Callable[[str], N]:
    """A parser of finite numbers above 0 (``zero``: from 0): counts, rates, sizes, durations.

    An argparse ``type`` as well: its name makes argparse say ``invalid positive integer value``.
    """
    accepted = ("non-negative " if zero else "positive ") + ("integer" if kind is int else "number")

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise ValueError("a " + accepted) from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise ValueError("a " + accepted)
        return value

    parse.__name__ = accepted
    return parse


def checked(name: str, value: str, parse: Callable[[str], T]) -> T:
    """``parse(value)``, with its ValueError turned into a ConfigError naming ``name``."""
    try:
        return parse(value)
    except ValueError as exc:
        raise ConfigError(name, value, str(exc)) from None


def pairs(name: str, text: str) -> dict[str, str]:
    """W3C-baggage-like ``k1=v1,k2=v2`` (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_HEADERS``).

    Header lists carry credentials, so an error about a ``*_HEADERS`` variable shows keys only.
    """
    result: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            shown = masked_pairs(text) if name.upper().endswith("HEADERS") else text
            raise ConfigError(name, shown, "a comma list of key=value pairs")
        result[_unquoted(key.strip())] = _unquoted(val.strip())
    return result


def _unquoted(text: str) -> str:
    """Percent-decoded; urllib.parse (with ipaddress, ~2 ms of a Lambda cold start) only if needed."""
    if "%" not in text:
        return text
    from urllib.parse import unquote

    return unquote(text)


def masked_pairs(text: str) -> str:
    """``Authorization=Bearer x,k=v`` -> ``Authorization=***,k=***``."""
    items = (item.partition("=") for item in text.split(","))
    return ",".join(f"{key}=***" if sep else "***" for key, sep, _ in items)
