"""Fit serialised segment documents into X-Ray's size limit: split, then trim, never silently.

A document over 64 KB (one UDP datagram) is split into its subsegments, each sent as an
independent subsegment document; what is still too large is trimmed, least useful parts first
(metadata, cause, annotations...), counted and logged once a minute.
"""

from __future__ import annotations

from tracekit._shared import stats
from tracekit.xray import protocol
from tracekit.xray.segments import Document, dumps

_TRIM_ORDER = ("metadata", "cause", "annotations", "sql", "http", "aws", "links")


def split_document(doc: Document, limit: int = protocol.MAX_DOCUMENT) -> list[bytes]:
    """Serialise ``doc``; over ``limit`` bytes, send subsegments separately, then trim."""
    payload = dumps(doc)
    if len(payload) <= limit:
        return [payload]
    subsegments = doc.pop("subsegments", None)
    if subsegments:
        stats.incr("xray.documents_split")
        parts = split_document(doc, limit)
        for sub in subsegments:
            sub.update(type="subsegment", trace_id=doc["trace_id"], parent_id=doc["id"])
            parts += split_document(sub, limit)
        return parts
    return _trim(doc, limit)


def _trim(doc: Document, limit: int) -> list[bytes]:
    dropped: list[str] = []
    for key in _TRIM_ORDER:
        if doc.pop(key, None) is not None:
            dropped.append(key)
            payload = dumps(doc)
            if len(payload) <= limit:
                stats.incr("xray.documents_trimmed")
                stats.warn_once_per_interval(
                    "xray.trim",
                    "tracekit: segment %s of trace %s was over %d bytes; dropped its %s",
                    doc.get("id"), doc.get("trace_id"), limit, ", ".join(dropped),
                )
                return [payload]
    doc["name"] = str(doc.get("name", "span"))[:200]
    payload = dumps(doc)
    if len(payload) <= limit:
        stats.incr("xray.documents_trimmed")
        return [payload]
    stats.incr("xray.documents_dropped.too_large")
    stats.report("xray.too_large", msg=f"tracekit: segment {doc.get('id')} cannot fit {limit} bytes")
    return []
