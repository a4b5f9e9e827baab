"""Sidecar settings: one table gives each setting its flag, environment variable, YAML key and help.

Precedence: command-line flag, then environment variable, then the YAML file (``--config``), then
the default. Every bad value raises :class:`tracekit.ConfigError` naming where it came from.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from tracekit._shared.settings import ConfigError, boolean, http_url, listen_address, positive, region

Address = tuple[str, int]


LOCAL_DB_ENV = "TRACEKIT_SIDECAR_LOCAL_DB"
"""The one variable naming the local store, read by the sidecar (``--local-db``) and ``tracekit traces``."""


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """``$TRACEKIT_SIDECAR_LOCAL_DB``, else ``$XDG_DATA_HOME/tracekit/traces.db`` (~/.local/share)."""
    env = os.environ if env is None else env
    if env.get(LOCAL_DB_ENV, "").strip():
        return Path(env[LOCAL_DB_ENV])
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tracekit" / "traces.db"


def _optional_address(text: str) -> Address | None:
    """``host:port``, or ``off`` for a receiver that should not run."""
    return None if text.strip().lower() == "off" else listen_address(text)


def _level(text: str) -> str:
    if text.lower() not in ("debug", "info", "warning", "error"):
        raise ValueError("debug, info, warning or error")
    return text.lower()


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[str], Any]
    help: str
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "TRACEKIT_SIDECAR_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("udp_address", listen_address, "UDP daemon-protocol listener", "HOST:PORT"),
    Option("tcp_address", listen_address, "TCP sampling proxy", "HOST:PORT"),
    Option("admin_address", listen_address, "/health and /metrics", "HOST:PORT"),
    Option("region", str, "AWS region (else AWS_REGION, AWS_DEFAULT_REGION, ECS metadata)"),
    Option("endpoint_url", http_url, "X-Ray-compatible endpoint instead of xray.REGION", "URL"),
    Option("memory_limit", positive(int), "MB of buffered documents, EMF lines and forwarded OTLP "
           "(a quarter each for the last two when on); beyond, drops are counted", "MB"),
    Option("workers", positive(int), "concurrent PutTraceSegments senders", "N"),
    Option("batch_timeout", positive(float), "seconds a partial batch (<50) waits", "S"),
    Option("retry_for", positive(float), "seconds a failing batch is retried, then dropped", "S"),
    Option("receive_buffer", positive(int), "MB of kernel UDP receive buffer (SO_RCVBUF)", "MB"),
    Option("shutdown_timeout", positive(float), "seconds to flush on SIGTERM/SIGINT", "S"),
    Option("telemetry_interval", positive(float), "seconds between PutTelemetryRecords", "S"),
    Option("health_window", positive(float), "/health is 503 after this long w/o upstream", "S"),
    Option("local", boolean, "local mode: store traces in SQLite, serve local sampling"),
    Option("local_db", Path, "SQLite file that local mode writes and traces reads", "PATH"),
    Option("local_retention", positive(int), "traces (and EMF lines) kept in local mode; oldest go",
           "N"),
    Option("sampling_dir", Path, "rule files for local sampling and --tail-sampling", "DIR"),
    Option("tail_sampling", boolean, "decide traces of apps with OTEL_TRACES_SAMPLER=xray_deferred "
           "after they end: the tail: policies, then the head rules (see sampling/README.md)"),
    Option("tail_idle", positive(float), "tail: decide once the root ended and the trace was "
           "quiet this long", "S"),
    Option("tail_max_wait", positive(float), "tail: decide at the latest this long after the "
           "trace's first document", "S"),
    Option("tail_buffer", positive(int), "tail: MB of buffered traces; beyond, drops are counted",
           "MB"),
    Option("log_level", _level, "debug, info, warning or error", "LEVEL"),
    Option("otlp_address", _optional_address, "OTLP/HTTP trace receiver (POST /v1/traces); 'off' "
           "disables it", "HOST:PORT"),
    Option("otlp_forward", http_url, "send received OTLP on to this URL (SigV4-signed for "
           "*.amazonaws.com)", "URL"),
    Option("otlp_translate", boolean, "turn OTLP spans into X-Ray documents (default: unless "
           "--otlp-forward)"),
    Option("emf_address", _optional_address, "EMF endpoint, TCP and UDP (CloudWatch agent "
           "protocol); 'off' disables it", "HOST:PORT"),
    Option("emf_log_group", str, "CloudWatch Logs group for EMF lines (created if missing)", "NAME"),
    Option("emf_log_stream", str, "log stream for EMF lines (default: the host name)", "NAME"),
    Option("logs_endpoint_url", http_url, "CloudWatch Logs endpoint instead of logs.REGION", "URL"),
)


@dataclass(frozen=True)
class Settings:
    """Resolved sidecar settings (see :data:`OPTIONS` for what each one means)."""

    udp_address: Address = ("127.0.0.1", 2000)
    tcp_address: Address = ("127.0.0.1", 2000)
    admin_address: Address = ("127.0.0.1", 2020)
    region: str | None = None
    endpoint_url: str | None = None
    memory_limit: int = 32
    workers: int = 4
    batch_timeout: float = 1.0
    retry_for: float = 60.0
    receive_buffer: int = 16
    shutdown_timeout: float = 10.0
    telemetry_interval: float = 60.0
    health_window: float = 150.0
    local: bool = False
    local_db: Path | None = None
    local_retention: int = 10000
    sampling_dir: Path = Path("sampling")
    tail_sampling: bool = False
    tail_idle: float = 5.0
    tail_max_wait: float = 30.0
    tail_buffer: int = 16
    log_level: str = "info"
    otlp_address: Address | None = ("127.0.0.1", 4318)
    """Where OpenTelemetry SDKs export by default (``http://localhost:4318``)."""
    otlp_forward: str | None = None
    otlp_translate: bool | None = None
    emf_address: Address | None = ("127.0.0.1", 25888)
    """The CloudWatch agent's EMF port, which aws-embedded-metrics and Powertools use by default."""
    emf_log_group: str = "/tracekit/emf"
    emf_log_stream: str | None = None
    logs_endpoint_url: str | None = None


MB = 1024 * 1024
SHARE = 4
"""EMF lines and forwarded OTLP requests each get 1/SHARE of ``--memory-limit`` when they are on."""


class Buffers(NamedTuple):
    """``--memory-limit`` in bytes, split between the sidecar's output buffers."""

    segments: int
    """X-Ray documents (UDP and translated OTLP) waiting for PutTraceSegments or the local store."""
    emf: int
    """EMF lines waiting for PutLogEvents or the local store."""
    otlp_forward: int
    """OTLP requests waiting for ``--otlp-forward``."""


class _BufferSettings(Protocol):
    @property
    def memory_limit(self) -> int: ...
    @property
    def emf_address(self) -> Address | None: ...
    @property
    def otlp_address(self) -> Address | None: ...
    @property
    def otlp_forward(self) -> str | None: ...


def buffers(settings: _BufferSettings) -> Buffers:
    """One limit for all buffers: what EMF and OTLP forwarding hold comes out of it, not on top, and
    X-Ray documents keep at least half, so a flood of metrics cannot crowd out traces."""
    total = settings.memory_limit * MB
    emf = total // SHARE if settings.emf_address is not None else 0
    forward = total // SHARE if settings.otlp_address is not None and settings.otlp_forward else 0
    return Buffers(total - emf - forward, emf, forward)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; the help names its environment variable, YAML key and default.

    Switches also get a ``--no-`` form, so a flag can turn off what the environment or the YAML
    file turned on.
    """
    parser.add_argument(
        "--config", metavar="FILE", help="YAML file with any of the settings below as keys "
        "(e.g. memory_limit: 64) [env TRACEKIT_SIDECAR_CONFIG]",
    )
    for opt in OPTIONS:
        text = f"{opt.help} [env {opt.env}; yaml {opt.name}; default {_default_text(opt.name)}]"
        if opt.parse is boolean:
            parser.add_argument(opt.flag, action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(opt.flag, metavar=opt.metavar or opt.name.upper(), help=text)


def _default_text(name: str) -> str:
    if name == "local_db":
        return str(default_db_path())
    value = getattr(Settings(), name)
    if value is None:
        return "unset"
    return f"{value[0]}:{value[1]}" if isinstance(value, tuple) else str(value)


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed flags, the environment and the YAML file, in that order."""
    env = os.environ if env is None else env
    config_path = getattr(args, "config", None) or env.get("TRACEKIT_SIDECAR_CONFIG")
    file_values = _read_yaml(config_path) if config_path else {}
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw, origin = _pick(opt, args, env, file_values, config_path)
        if raw is None:
            continue
        try:
            values[opt.name] = opt.parse(str(raw))
        except (ValueError, TypeError) as exc:
            raise ConfigError(origin, raw, str(exc) or opt.parse.__name__) from None
    values["region"] = region(values.get("region"), env)
    known = {f.name for f in fields(Settings)}
    return _consistent(Settings(**{k: v for k, v in values.items() if k in known}))


def _consistent(settings: Settings) -> Settings:
    """Refuse a health window that an idle sidecar cannot keep fresh: without traffic, only the
    telemetry calls show that X-Ray answers, so /health would turn 503 between two of them."""
    if not settings.local and settings.health_window <= settings.telemetry_interval:
        raise ConfigError(
            "--health-window", settings.health_window,
            f"more than --telemetry-interval ({settings.telemetry_interval:g} s), which keeps "
            "/health fresh when no documents are sent",
        )  # fmt: skip
    return settings


def _pick(
    opt: Option,
    args: argparse.Namespace,
    env: Mapping[str, str],
    file_values: Mapping[str, Any],
    config_path: str | None,
) -> tuple[Any, str]:
    flag_value = getattr(args, opt.name, None)
    if flag_value is not None:
        return flag_value, opt.flag
    if env.get(opt.env):
        return env[opt.env], opt.env
    if opt.name in file_values:
        return file_values[opt.name], f"{config_path}: {opt.name}"
    return None, ""


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("--config", path, f"a readable YAML file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError("--config", path, "a YAML mapping of setting: value")
    names = [opt.name for opt in OPTIONS]
    for key in data:
        if key not in names:
            raise ConfigError(f"{path}: {key}", data[key], "a known setting: " + ", ".join(names))
    return data


def ecs_region(env: Mapping[str, str] | None = None, timeout: float = 1.0) -> str | None:
    """The task's region from ECS task metadata v4 (the TaskARN), or None outside ECS."""
    env = os.environ if env is None else env
    base = env.get("ECS_CONTAINER_METADATA_URI_V4")
    if not base:
        return None
    try:
        with urllib.request.urlopen(f"{base.rstrip('/')}/task", timeout=timeout) as resp:
            arn = str(json.loads(resp.read()).get("TaskARN", ""))
    except (OSError, ValueError, AttributeError):
        return None
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[3] else None
