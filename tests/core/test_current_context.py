"""tracekit's short path to the current context is OpenTelemetry's own: same variable, same rules."""

from __future__ import annotations

import contextvars

import pytest
from opentelemetry import context as api
from opentelemetry import trace

from tracekit._shared import stats
from tracekit.tracing import current


def test_what_tracekit_attaches_is_what_the_api_and_instrumentations_see() -> None:
    span = trace.NonRecordingSpan(trace.SpanContext(1, 2, False))
    token = current.attach(trace.set_span_in_context(span))
    try:
        assert trace.get_current_span() is span
        assert api.get_current() is current.get_current()
    finally:
        current.detach(token)
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_a_token_from_another_context_is_counted_not_raised() -> None:
    stats.reset()
    token = contextvars.copy_context().run(current.attach, api.Context())
    current.detach(token)  # the API logs this case; tracekit counts it and goes on
    assert stats.stats()["errors.context.detach"] == 1


def test_another_runtime_context_makes_tracekit_use_the_public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    class Other:
        _current_context = contextvars.ContextVar("other")

    monkeypatch.setattr(api, "_RUNTIME_CONTEXT", Other())
    assert current._variable() is None
