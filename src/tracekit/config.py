"""Configuration from arguments and the environment variables users already know.

Every bad value raises one ``ConfigError`` naming the variable, the value and the accepted form.
Reading the configuration never touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

EXPORTERS = ("xray", "otlp", "console", "none")
OTLP_PROTOCOLS = ("http/protobuf", "grpc")
DEFAULT_DAEMON = ("127.0.0.1", 2000)


class ConfigError(ValueError):
    """A configuration value is not accepted."""

    def __init__(self, name: str, value: object, accepted: str) -> None:
        super().__init__(f"{name}={value!r} is not valid: expected {accepted}")
        self.name, self.value, self.accepted = name, value, accepted


@dataclass(frozen=True)
class Config:
    """Resolved tracekit settings; build with :func:`load`."""

    service: str = "unknown_service"
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    disabled: bool = False
    exporters: tuple[str, ...] = ("xray",)
    otlp_endpoint: str | None = None
    otlp_protocol: str = "http/protobuf"
    otlp_headers: Mapping[str, str] = field(default_factory=dict)
    daemon_udp: tuple[str, int] = DEFAULT_DAEMON
    daemon_tcp: tuple[str, int] = DEFAULT_DAEMON
    xray_direct: bool = False
    """Send with PutTraceSegments (boto3) instead of UDP to a daemon."""
    region: str | None = None
    endpoint_url: str | None = None
    context_missing: str = "ignore"
    """What a tracekit call outside any trace does: ``ignore`` or ``log``."""
    max_queue: int = 2048
    """Finished spans waiting for export; more are dropped and counted."""
    annotate_all: bool = False
    sampling_rules: str | None = None
    """Local sampling rules (file or directory, tracekit or X-Ray SDK format) used when the
    centralized rules cannot be reached; default: 1 trace per second and 5%."""


def load(env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Resolve the configuration: explicit overrides win over the environment, which wins over defaults."""
    env = {k: v for k, v in (os.environ if env is None else env).items() if v.strip()}
    values: dict[str, Any] = {}
    service = env.get("OTEL_SERVICE_NAME") or env.get("AWS_XRAY_TRACING_NAME")
    attrs = _parse_pairs("OTEL_RESOURCE_ATTRIBUTES", env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    values["resource_attributes"] = attrs
    if service or "service.name" in attrs:
        values["service"] = service or attrs["service.name"]
    disabled = _parse_bool("OTEL_SDK_DISABLED", env.get("OTEL_SDK_DISABLED", "false"))
    if not _parse_bool("AWS_XRAY_SDK_ENABLED", env.get("AWS_XRAY_SDK_ENABLED", "true")):
        disabled = True
    values["disabled"] = disabled
    if "TRACEKIT_EXPORTERS" in env:
        values["exporters"] = parse_exporters("TRACEKIT_EXPORTERS", env["TRACEKIT_EXPORTERS"])
    if "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in env:
        values["otlp_endpoint"] = _check_url(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        )
    elif "OTEL_EXPORTER_OTLP_ENDPOINT" in env:
        base = _check_url("OTEL_EXPORTER_OTLP_ENDPOINT", env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        values["otlp_endpoint"] = base.rstrip("/") + "/v1/traces"
    proto_var = next(
        (v for v in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") if v in env),
        None,
    )
    if proto_var:
        values["otlp_protocol"] = _choice(proto_var, env[proto_var], OTLP_PROTOCOLS)
    headers_var = next(
        (v for v in ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") if v in env),
        None,
    )
    if headers_var:
        values["otlp_headers"] = _parse_pairs(headers_var, env[headers_var])
    if "AWS_XRAY_DAEMON_ADDRESS" in env:
        udp, tcp = parse_daemon_address(env["AWS_XRAY_DAEMON_ADDRESS"])
        values["daemon_udp"], values["daemon_tcp"] = udp, tcp
    if "AWS_XRAY_CONTEXT_MISSING" in env:
        values["context_missing"] = _context_missing(env["AWS_XRAY_CONTEXT_MISSING"])
    if "TRACEKIT_SAMPLING_RULES" in env:
        values["sampling_rules"] = env["TRACEKIT_SAMPLING_RULES"]
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        values["region"] = region
    values.update(_check_overrides(overrides))
    return Config(**values)


def parse_exporters(name: str, value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"xray,otlp"`` -> ``("xray", "otlp")``; ``none`` means no exporter at all."""
    items = value.split(",") if isinstance(value, str) else list(value) or ["none"]
    names = tuple(dict.fromkeys(i.strip().lower() for i in items if i.strip()))
    accepted = "a comma list of " + ", ".join(EXPORTERS)
    if not names or any(n not in EXPORTERS for n in names) or ("none" in names and len(names) > 1):
        raise ConfigError(name, value, accepted + " ('none' alone)")
    return () if "none" in names else names


def parse_daemon_address(value: str) -> tuple[tuple[str, int], tuple[str, int]]:
    """``host:port`` (both protocols) or ``tcp:host:port udp:host:port`` (either order)."""
    name = "AWS_XRAY_DAEMON_ADDRESS"
    accepted = "'host:port' or 'tcp:host:port udp:host:port'"
    parts = value.split()
    if len(parts) == 1 and not parts[0].startswith(("tcp:", "udp:")):
        addr = _host_port(name, parts[0], accepted)
        return addr, addr
    found: dict[str, tuple[str, int]] = {}
    for part in parts:
        proto, _, rest = part.partition(":")
        if proto not in ("tcp", "udp") or proto in found:
            raise ConfigError(name, value, accepted)
        found[proto] = _host_port(name, rest, accepted)
    if set(found) != {"tcp", "udp"}:
        raise ConfigError(name, value, accepted)
    return found["udp"], found["tcp"]


def _host_port(name: str, text: str, accepted: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(name, text, accepted)
    return host.strip("[]"), int(port)


def _check_url(name: str, url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(name, url, "an http:// or https:// URL")
    return url


def _parse_pairs(name: str, text: str) -> dict[str, str]:
    """W3C-baggage-like ``k1=v1,k2=v2`` as used by OTEL_RESOURCE_ATTRIBUTES and _HEADERS."""
    from urllib.parse import unquote

    result: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            shown = _masked(text) if name.endswith("_HEADERS") else text
            raise ConfigError(name, shown, "a comma list of key=value pairs")
        result[unquote(key.strip())] = unquote(val.strip())
    return result


def _masked(text: str) -> str:
    """Header lists carry credentials (``Authorization=Bearer ...``): errors show the keys only."""
    items = (item.partition("=") for item in text.split(","))
    return ",".join(f"{key}=***" if sep else "***" for key, sep, _ in items)


def _parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise ConfigError(name, text, "true or false")


def _choice(name: str, text: str, choices: tuple[str, ...]) -> str:
    if text.strip().lower() not in choices:
        raise ConfigError(name, text, " or ".join(choices))
    return text.strip().lower()


def _context_missing(text: str) -> str:
    mapping = {"ignore_error": "ignore", "log_error": "log", "runtime_error": "log"}
    value = text.strip().lower()
    if value in ("ignore", "log"):
        return value
    if value in mapping:
        return mapping[value]
    raise ConfigError("AWS_XRAY_CONTEXT_MISSING", text, "LOG_ERROR or IGNORE_ERROR")


_FIELD_NAMES = {f.name for f in fields(Config)}


def _check_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(overrides) - _FIELD_NAMES
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(name, overrides[name], "one of " + ", ".join(sorted(_FIELD_NAMES)))
    result = dict(overrides)
    if "exporters" in result and result["exporters"] is not None:
        result["exporters"] = parse_exporters("exporters", result["exporters"])
    if "otlp_protocol" in result:
        result["otlp_protocol"] = _choice("otlp_protocol", result["otlp_protocol"], OTLP_PROTOCOLS)
    if "context_missing" in result:
        result["context_missing"] = _context_missing(result["context_missing"])
    for name in ("daemon_udp", "daemon_tcp"):
        if result.get(name) is not None:
            result[name] = _address_override(name, result[name])
    queue = result.get("max_queue")
    if queue is not None and (not isinstance(queue, int) or isinstance(queue, bool) or queue < 1):
        raise ConfigError("max_queue", queue, "a whole number of spans, at least 1")
    return {k: v for k, v in result.items() if v is not None}


def _address_override(name: str, value: object) -> tuple[str, int]:
    """``"host:port"`` or ``(host, port)``: checked here, not when the first datagram fails."""
    accepted = "'host:port' or a (host, port) tuple"
    if isinstance(value, str):
        return _host_port(name, value, accepted)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        host, port = value
        if isinstance(host, str) and host and isinstance(port, int) and 0 < port < 65536:
            return host.strip("[]"), port
    raise ConfigError(name, value, accepted)


__all__ = ["Config", "ConfigError", "load", "parse_daemon_address", "parse_exporters", "replace"]
