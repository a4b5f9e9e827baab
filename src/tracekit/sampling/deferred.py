"""``OTEL_TRACES_SAMPLER=xray_deferred``: record every new trace and let the sidecar decide.

Head rules decide before the response exists, so they cannot keep "every error". With this sampler
an application records all root spans and marks each local root, in its X-Ray document, as awaiting
the sidecar's tail decision (``tracekit sidecar --tail-sampling``, see sampling/README.md). The mark
is a metadata namespace, which the X-Ray document form keeps and X-Ray does not index; the sidecar
removes it before forwarding. Without a tail-sampling sidecar every trace is simply kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

MARK_NAMESPACE = "tracekit"
"""The metadata namespace of the mark (``metadata.tracekit.tail``) in the X-Ray document."""
MARK = {"tail": "deferred"}
MARK_ATTRIBUTE = "aws.xray.metadata." + MARK_NAMESPACE
"""The span attribute the X-Ray translator turns into ``metadata.tracekit``."""


class DeferredSampler(Sampler):
    """Samples every root span it is asked about and marks it for the sidecar's tail decision."""

    _attributes = {MARK_ATTRIBUTE: json.dumps(MARK)}

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent_state = get_current_span(parent_context).get_span_context().trace_state
        return SamplingResult(Decision.RECORD_AND_SAMPLE, self._attributes, parent_state)

    def get_description(self) -> str:
        return "XRayDeferred"


def is_marked(document: Mapping[str, Any]) -> bool:
    """True for a document a :class:`DeferredSampler` marked (the local root of a deferred trace)."""
    metadata = document.get("metadata")
    mark = metadata.get(MARK_NAMESPACE) if isinstance(metadata, Mapping) else None
    return isinstance(mark, Mapping) and mark.get("tail") == MARK["tail"]


def unmark(document: dict[str, Any]) -> None:
    """Remove the mark (and an emptied ``metadata``) before the document leaves the sidecar."""
    metadata = document.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop(MARK_NAMESPACE, None)
        if not metadata:
            del document["metadata"]
