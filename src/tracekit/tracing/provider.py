"""``tracekit.configure``: one OpenTelemetry tracer provider wired to X-Ray and/or OTLP.

Idempotent and thread-safe: the first call (explicit, or implicit on first use) builds the provider;
later calls with the same arguments return it, and calls with new arguments replace the exporters.
Nothing here touches the network: exporters connect lazily from their own threads.
"""

from __future__ import annotations

import atexit
import contextvars
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from tracekit._shared import post_import, settings, stats
from tracekit.tracing import config as _config
from tracekit.tracing import lean
from tracekit.tracing.lean import LeanTracerProvider
from tracekit.tracing.propagation import XRayPropagator, decision_requested
from tracekit.xray.ids import XRayIdGenerator

if TYPE_CHECKING:  # imported only when needed: the SDK (see _lean_enough), executors (post_import)
    from concurrent.futures import ThreadPoolExecutor

    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult

Provider: TypeAlias = "TracerProvider | LeanTracerProvider"
"""What ``configure`` builds: the lean provider, or the SDK's when something needs the SDK."""

_lock = threading.RLock()
_state: dict[str, Any] = {}


def configure(
    service: str | None = None,
    exporters: Sequence[str] | str | None = None,
    **overrides: Any,
) -> Provider | None:
    """Set up tracing once for this process; returns the provider (``None`` when disabled).

    ``exporters`` is any of ``xray``, ``otlp``, ``console`` (default from ``TRACEKIT_EXPORTERS``,
    else ``xray``). Other keyword arguments override :class:`tracekit.tracing.config.Config` fields, plus
    ``sampler`` (an OTel ``Sampler``) and ``span_processors`` (extra processors, e.g. for tests).
    """
    sampler = overrides.pop("sampler", None)
    extra_processors = tuple(overrides.pop("span_processors", ()))
    cfg = _config.load(service=service, exporters=exporters, **overrides)
    key = (cfg, sampler, extra_processors)
    with _lock:
        if _state.get("key") == key:
            provider: Provider | None = _state.get("provider")
            return provider
        shutdown()
        _state["key"] = key
        settings.set_service(service)  # logs, metrics and Lambda name the same service
        _state["config"] = cfg
        if cfg.disabled:
            _state["provider"] = None
            return None
        provider = _build_provider(cfg, sampler, extra_processors)
        _state["provider"] = provider
        if not _state.get("atexit_registered"):
            atexit.register(_exit_flush)
            _state["atexit_registered"] = True
        _state["tracer"] = provider.get_tracer("tracekit", settings.VERSION)
        _install_globals(provider)
        if cfg.instrument or cfg.xray_sdk_bridge:
            from tracekit.tracing import instrument

            instrument.enable(cfg.instrument)
            if cfg.xray_sdk_bridge:
                instrument.bridge_xray_sdk()
        return provider


def get_tracer() -> trace.Tracer | None:
    """The tracer behind tracekit's API; configures with defaults on first use."""
    tracer: trace.Tracer | None = _state.get("tracer")
    if tracer is None and "key" not in _state:
        _configure_on_first_use()
        tracer = _state.get("tracer")
    return tracer


def _configure_on_first_use() -> None:
    """Defaults from the environment, unless a ``configure`` call got the lock first.

    Checked again under the lock: a call racing an explicit ``configure`` (which empties the state
    while it replaces the provider) must wait for it, not replace the user's setup with defaults.
    """
    with _lock:
        if "key" in _state:
            return
        try:
            configure()
        except Exception as exc:
            bad_setting = isinstance(exc, settings.ConfigError)
            stats.report("configure", exc, f"tracekit: tracing is off: {exc}" if bad_setting else None)
            _state["key"] = None


def is_configured() -> bool:
    """True once ``configure`` ran, explicitly or on first use (integrations keep the user's setup)."""
    return "key" in _state


def current_config() -> _config.Config:
    """The configuration in force (defaults from the environment before ``configure``)."""
    cfg: _config.Config | None = _state.get("config")
    if cfg is None:
        try:
            cfg = _config.load()
        except settings.ConfigError:
            cfg = _config.Config()
    return cfg


def force_flush(timeout: float = 5.0) -> bool:
    """Send every finished span now; True when all exporters finished within ``timeout``."""
    provider: Provider | None = _state.get("provider")
    if provider is None:
        return True
    try:
        return bool(provider.force_flush(int(timeout * 1000)))
    except Exception as exc:
        stats.report("flush", exc)
        return False


def shutdown() -> None:
    """Flush and stop the current provider (tests and re-configuration)."""
    with _lock:
        provider: Provider | None = _state.pop("provider", None)
        _state.pop("tracer", None)
        _state.pop("key", None)
        _state.pop("config", None)
        settings.set_service(None)
        if provider is not None:
            try:
                provider.shutdown()
            except Exception as exc:
                stats.report("shutdown", exc)


def _exit_flush() -> None:
    """At interpreter exit: flush and stop the exporters, waiting at most ``flush_timeout``.

    The work runs on a daemon thread so that an upstream that hangs, refuses or does not resolve
    costs the application's exit that long and no more; daemon threads end with the interpreter.
    """
    if _state.get("provider") is None:
        return
    timeout = current_config().flush_timeout
    worker = threading.Thread(target=shutdown, name="tracekit-exit-flush", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        stats.incr("exit.flush_timeout")
        stats.warn_once_per_interval(
            "exit.flush_timeout", "tracekit: exit flush stopped after %g s (TRACEKIT_FLUSH_TIMEOUT): "
            "spans not yet sent are lost", timeout,
        )  # fmt: skip


def _build_provider(
    cfg: _config.Config, sampler: Sampler | None, extra: tuple[SpanProcessor, ...]
) -> Provider:
    attributes: dict[str, str] = {**cfg.resource_attributes, "service.name": cfg.service}
    root = sampler or _default_sampler(cfg)
    provider: Provider
    if _lean_enough(cfg, extra):
        provider = LeanTracerProvider(
            lean.Resource(attributes), XRayParentBased(root, lean=True), XRayIdGenerator()
        )
    else:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider(
            resource=Resource.create(attributes),
            sampler=XRayParentBased(root),  # type: ignore[arg-type]  # a Sampler by its methods
            id_generator=XRayIdGenerator(),  # type: ignore[arg-type]  # IdGenerator's methods
            shutdown_on_exit=False,  # _exit_flush does it, within the flush timeout
        )
    for processor in (*_exporter_processors(cfg), *extra, *_sampler_processors(root)):
        provider.add_span_processor(processor)
    return provider


def _lean_enough(cfg: _config.Config, extra: tuple[SpanProcessor, ...]) -> bool:
    """Lean spans serve X-Ray output; OTLP, console and extra processors get the SDK's spans."""
    return cfg.lean and not extra and set(cfg.exporters) <= {"xray"}


def _exporter_processors(cfg: _config.Config) -> list[SpanProcessor]:
    processors: list[SpanProcessor] = []
    for name in cfg.exporters:
        if name == "xray":
            processors.append(_xray_processor(cfg))
        elif name == "otlp":
            from tracekit.tracing.otlp import otlp_processor

            processors.append(otlp_processor(cfg))
        elif name == "console":
            from tracekit.tracing.otlp import console_processor

            processors.append(console_processor())
    return processors


def _xray_processor(cfg: _config.Config) -> SpanProcessor:  # by its methods
    from tracekit.xray.processor import XRaySpanProcessor
    from tracekit.xray.transports import SegmentSink, UdpSink

    sink: SegmentSink
    if cfg.xray_direct:
        from tracekit.xray.sender import SegmentSender

        sink = SegmentSender(cfg.region, cfg.endpoint_url, workers=1)
    else:
        sink = UdpSink(cfg.daemon_udp)
    return XRaySpanProcessor(  # type: ignore[return-value]
        sink, max_queue=cfg.max_queue, annotate_all=cfg.annotate_all, sql_query=cfg.sql_query
    )


def _default_sampler(cfg: _config.Config) -> Sampler:
    """``OTEL_TRACES_SAMPLER`` when set, else X-Ray centralized sampling via the daemon."""
    import os

    name = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    arg = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "")
    if name in ("always_on", "parentbased_always_on"):
        return lean.ALWAYS_ON  # type: ignore[return-value]  # the SDK's, without importing the SDK
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, TraceIdRatioBased

    if name in ("always_off", "parentbased_always_off"):
        return ALWAYS_OFF
    if name in ("traceidratio", "parentbased_traceidratio"):
        try:
            return TraceIdRatioBased(float(arg or "1"))
        except ValueError as exc:
            raise settings.ConfigError("OTEL_TRACES_SAMPLER_ARG", arg, "a number 0..1") from exc
    if name in ("xray_deferred", "parentbased_xray_deferred"):
        from tracekit.sampling.deferred import DeferredSampler

        return DeferredSampler()
    if name not in ("", "xray", "parentbased_xray"):
        raise settings.ConfigError(
            "OTEL_TRACES_SAMPLER", name,
            "always_on, always_off, traceidratio, xray or xray_deferred (+parentbased_)",
        )
    return _xray_sampler(cfg)


def _xray_sampler(cfg: _config.Config) -> Sampler:
    try:
        from tracekit.sampling.sampler import XRaySampler
    except ImportError:
        return lean.ALWAYS_ON  # type: ignore[return-value]
    from tracekit.xray.segments import origin_for

    host, port = cfg.daemon_tcp
    sampler: Sampler = XRaySampler(
        service_name=cfg.service,
        origin=origin_for(cfg.resource_attributes),
        endpoint=f"http://{host}:{port}",
        local_rules=cfg.sampling_rules,
    )
    return sampler


def _sampler_processors(sampler: Sampler) -> list[SpanProcessor]:
    factory = getattr(sampler, "stats_processor", None)
    return [factory()] if callable(factory) else []


class XRayParentBased:
    """Honour the caller's decision; ask ``root`` only for new traces and ``Sampled=?`` headers.

    An SDK ``Sampler`` by its methods. Its results are the SDK's, or with ``lean=True`` those of
    :mod:`tracekit.tracing.lean` (same fields), so that the lean path does not import the SDK;
    ``root`` may be either kind.
    """

    def __init__(self, root: Sampler, *, lean: bool = False) -> None:
        self._always_on = lean and getattr(root, "get_description", str)() == "AlwaysOnSampler"
        """Lean spans under ALWAYS_ON (the SDK's or tracekit's): answered here, nothing to convert."""
        if lean:
            from tracekit.tracing.lean import Decision, SamplingResult
        else:
            from opentelemetry.sdk.trace.sampling import Decision, SamplingResult  # type: ignore[assignment]
        self.root = root
        self._decision: Any = Decision
        self._result: Any = SamplingResult
        self._same_kind: dict[Any, Any] = {decision: decision for decision in Decision}

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        open_decision = parent.is_remote and decision_requested(parent_context)
        decisions = self._decision
        if parent.is_valid and not open_decision:
            sampled = parent.trace_flags.sampled
            decision = decisions.RECORD_AND_SAMPLE if sampled else decisions.DROP
            return self._result(decision, attributes if sampled else None, parent.trace_state)  # type: ignore[no-any-return]
        if self._always_on:
            return self._result(decisions.RECORD_AND_SAMPLE, attributes, parent.trace_state)  # type: ignore[no-any-return]
        try:
            result = self.root.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        except Exception as exc:  # a sampler bug must not fail the request
            stats.report("sampler", exc)
            return self._result(decisions.DROP, None, None)  # type: ignore[no-any-return]
        decision = self._same_kind.get(result.decision) or decisions[result.decision.name]
        # The SDK starts a span with the sampler's attributes only: keep the caller's too.
        kept: Attributes = result.attributes
        if attributes and kept is not attributes and decision.is_recording():
            kept = {**attributes, **(kept or {})}
        if decision is result.decision and kept is result.attributes:
            return result
        return self._result(decision, kept, result.trace_state)  # type: ignore[no-any-return]

    def get_description(self) -> str:
        return f"XRayParentBased{{root={self.root.get_description()}}}"


def _install_globals(provider: Provider) -> None:
    """Make tracekit's provider and propagators the process-wide OTel defaults (once)."""
    if _state.get("globals_installed"):
        _state["proxy_provider"].target = provider
        return
    proxy = _SwitchableProvider(provider)
    trace.set_tracer_provider(proxy)
    # Set on these modules when something imports them: a Lambda function may never need either.
    post_import.when_imported("opentelemetry.propagate", _install_propagators)
    post_import.when_imported("concurrent.futures.thread", _propagate_context_to_executors)
    _state["globals_installed"] = True
    _state["proxy_provider"] = proxy


class _SwitchableProvider(trace.TracerProvider):
    """OTel allows one global provider per process; this lets ``configure`` swap what is behind it."""

    def __init__(self, target: Provider) -> None:
        self.target = target

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _SwitchableTracer(self, args, kwargs)


class _SwitchableTracer(trace.Tracer):
    def __init__(self, owner: _SwitchableProvider, args: Any, kwargs: Any) -> None:
        self._owner, self._args, self._kwargs = owner, args, kwargs
        self._cached: tuple[Provider, trace.Tracer] | None = None

    def _tracer(self) -> trace.Tracer:
        cached, target = self._cached, self._owner.target
        if cached is None or cached[0] is not target:
            cached = self._cached = (target, target.get_tracer(*self._args, **self._kwargs))
        return cached[1]

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._tracer().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._tracer().start_as_current_span(*args, **kwargs)


def _install_propagators(propagate: ModuleType) -> None:
    """W3C trace context and X-Ray headers, extracted and injected by every instrumentation."""
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator(), XRayPropagator()]))


def _propagate_context_to_executors(thread: ModuleType) -> None:
    """Run ``ThreadPoolExecutor`` work in the submitter's context, so parents stay right."""
    executor: type[ThreadPoolExecutor] = thread.ThreadPoolExecutor
    original = executor.submit
    if getattr(original, "__tracekit__", False):
        return

    def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return original(self, contextvars.copy_context().run, fn, *args, **kwargs)

    submit.__tracekit__ = True  # type: ignore[attr-defined]
    submit.__doc__ = original.__doc__
    executor.submit = submit  # type: ignore[method-assign,assignment]

