"""Configuration from arguments and the environment variables users already know.

Every bad value raises one ``ConfigError`` naming the variable, the value and the accepted form.
Reading the configuration never touches the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from tracekit._shared import settings
from tracekit._shared.settings import ConfigError, checked, http_url

EXPORTERS = ("xray", "otlp", "console", "none")
OTLP_PROTOCOLS = ("http/protobuf", "grpc")
SIGV4_MODES = ("auto", "xray", "logs", "off")
"""``auto``: sign requests to ``*.amazonaws.com`` for the service in the host name."""
DEFAULT_DAEMON = ("127.0.0.1", 2000)


_EMPTY: Mapping[str, str] = MappingProxyType({})


class Config(NamedTuple):
    """Resolved tracekit settings; build with :func:`load`.

    A NamedTuple, not a dataclass: it is defined on every Lambda cold start, where a dataclass of
    this size costs ~1 ms to build."""

    service: str = settings.DEFAULT_SERVICE
    resource_attributes: Mapping[str, str] = _EMPTY
    disabled: bool = False
    exporters: tuple[str, ...] = ("xray",)
    otlp_endpoint: str | None = None
    otlp_protocol: str = "http/protobuf"
    otlp_headers: Mapping[str, str] = _EMPTY
    otlp_sigv4: str = "auto"
    """SigV4-sign OTLP requests: ``auto`` (AWS hosts), ``xray``/``logs`` (always, as that service),
    ``off``."""
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
    instrument: tuple[str, ...] = ()
    """Libraries whose calls are traced (``TRACEKIT_INSTRUMENT``: ``botocore,requests``, ``all``)."""
    sql_query: bool = False
    """Keep database statements in X-Ray's ``sql.sanitized_query`` (``TRACEKIT_SQL_QUERY``)."""
    xray_sdk_bridge: bool = False
    """Record the X-Ray SDK's ``xray_recorder`` into tracekit (``TRACEKIT_XRAY_SDK_BRIDGE``)."""
    flush_timeout: float = 5.0
    """Seconds the exit flush (every exporter, at interpreter exit) may take, whatever the upstream
    does (``TRACEKIT_FLUSH_TIMEOUT``); what is unsent then is lost, counted as ``exit.flush_timeout``."""
    lean: bool = True
    """Use tracekit's lean spans when only X-Ray (or nothing) exports and no SDK span processor is
    given (``TRACEKIT_LEAN``); ``false`` always uses the OpenTelemetry SDK."""
    sampling_rules: str | None = None
    """Local sampling rules (file or directory, tracekit or X-Ray SDK format) used when the
    centralized rules cannot be reached; default: 1 trace per second and 5%."""


def load(env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Resolve the configuration: explicit overrides win over the environment, which wins over defaults."""
    env = settings.environ(env)
    values: dict[str, Any] = {}
    values["resource_attributes"] = settings.pairs(
        "OTEL_RESOURCE_ATTRIBUTES", env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    )
    values["service"] = settings.service_from_env(env) or settings.DEFAULT_SERVICE
    disabled = checked("OTEL_SDK_DISABLED", env.get("OTEL_SDK_DISABLED", "false"), settings.boolean)
    if not checked("AWS_XRAY_SDK_ENABLED", env.get("AWS_XRAY_SDK_ENABLED", "true"), settings.boolean):
        disabled = True
    values["disabled"] = disabled
    if "TRACEKIT_EXPORTERS" in env:
        values["exporters"] = parse_exporters("TRACEKIT_EXPORTERS", env["TRACEKIT_EXPORTERS"])
    if "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in env:
        values["otlp_endpoint"] = checked(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], http_url
        )
    elif "OTEL_EXPORTER_OTLP_ENDPOINT" in env:
        base = checked("OTEL_EXPORTER_OTLP_ENDPOINT", env["OTEL_EXPORTER_OTLP_ENDPOINT"], http_url)
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
        values["otlp_headers"] = settings.pairs(headers_var, env[headers_var])
    values["otlp_sigv4"] = sigv4_mode(env, "traces")
    if "AWS_XRAY_DAEMON_ADDRESS" in env:
        udp, tcp = parse_daemon_address(env["AWS_XRAY_DAEMON_ADDRESS"])
        values["daemon_udp"], values["daemon_tcp"] = udp, tcp
    if "AWS_XRAY_CONTEXT_MISSING" in env:
        values["context_missing"] = _context_missing(env["AWS_XRAY_CONTEXT_MISSING"])
    if "TRACEKIT_INSTRUMENT" in env:
        values["instrument"] = instrument_names("TRACEKIT_INSTRUMENT", env["TRACEKIT_INSTRUMENT"])
    if "TRACEKIT_SQL_QUERY" in env:
        values["sql_query"] = checked("TRACEKIT_SQL_QUERY", env["TRACEKIT_SQL_QUERY"], settings.boolean)
    if "TRACEKIT_XRAY_SDK_BRIDGE" in env:
        values["xray_sdk_bridge"] = checked(
            "TRACEKIT_XRAY_SDK_BRIDGE", env["TRACEKIT_XRAY_SDK_BRIDGE"], settings.boolean
        )
    if "TRACEKIT_FLUSH_TIMEOUT" in env:
        values["flush_timeout"] = checked(
            "TRACEKIT_FLUSH_TIMEOUT", env["TRACEKIT_FLUSH_TIMEOUT"], settings.positive(float, zero=True)
        )
    if "TRACEKIT_LEAN" in env:
        values["lean"] = checked("TRACEKIT_LEAN", env["TRACEKIT_LEAN"], settings.boolean)
    if "TRACEKIT_SAMPLING_RULES" in env:
        values["sampling_rules"] = env["TRACEKIT_SAMPLING_RULES"]
    values["region"] = settings.region(env=env)
    values.update(_check_overrides(overrides))
    cfg = Config(**values)
    if cfg.otlp_sigv4 in ("xray", "logs") and cfg.otlp_protocol == "grpc" and "otlp" in cfg.exporters:
        raise ConfigError("TRACEKIT_OTLP_SIGV4", cfg.otlp_sigv4,
                          "'off' or 'auto' with OTLP over gRPC (AWS's OTLP endpoints are HTTP only)")
    return cfg


def sigv4_mode(env: Mapping[str, str], signal: str) -> str:
    """``TRACEKIT_OTLP_<SIGNAL>_SIGV4``, else ``TRACEKIT_OTLP_SIGV4``, else ``auto``."""
    for name in (f"TRACEKIT_OTLP_{signal.upper()}_SIGV4", "TRACEKIT_OTLP_SIGV4"):
        if name in env:
            return _choice(name, env[name], SIGV4_MODES)
    return "auto"


def parse_exporters(name: str, value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"xray,otlp"`` -> ``("xray", "otlp")``; ``none`` means no exporter at all."""
    items = value.split(",") if isinstance(value, str) else list(value) or ["none"]
    names = tuple(dict.fromkeys(i.strip().lower() for i in items if i.strip()))
    accepted = "a comma list of " + ", ".join(EXPORTERS)
    if not names or any(n not in EXPORTERS for n in names) or ("none" in names and len(names) > 1):
        raise ConfigError(name, value, accepted + " ('none' alone)")
    return () if "none" in names else names


def instrument_names(name: str, value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"botocore,requests"``, ``all`` or ``none``: checked here, imported only when applied."""
    from tracekit.tracing import instrument

    return instrument.parse(name, value)


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


_FIELD_NAMES = set(Config._fields)


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
    if "otlp_sigv4" in result:
        result["otlp_sigv4"] = _choice("otlp_sigv4", result["otlp_sigv4"], SIGV4_MODES)
    if "context_missing" in result:
        result["context_missing"] = _context_missing(result["context_missing"])
    for name in ("daemon_udp", "daemon_tcp"):
        if result.get(name) is not None:
            result[name] = _address_override(name, result[name])
    if result.get("instrument") is not None:
        result["instrument"] = instrument_names("instrument", result["instrument"])
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


__all__ = [
    "Config", "ConfigError", "load", "parse_daemon_address", "parse_exporters", "sigv4_mode",
]


def _host_port(name: str, text: str, accepted: str) -> tuple[str, int]:
    try:
        return settings.host_port(text)
    except ValueError:
        raise ConfigError(name, text, accepted) from None
