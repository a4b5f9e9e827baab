"""The service map of a set of X-Ray documents: nodes, and edges with counts, rates and latencies.

Like X-Ray's: a node per service (segment name) and per downstream resource (a subsegment in the
``aws`` or ``remote`` namespace that no instrumented service answered), plus one ``client`` node for
the requests that entered the system. A remote call answered by an instrumented service (whose
segment names the call's subsegment as its parent) is an edge between the two services.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tracekit.xray.tree import Document, flatten

CLIENT = "client"
DOWNSTREAM = ("aws", "remote")


def service_map(documents: Iterable[Document]) -> dict[str, Any]:
    """``{"nodes": [...], "edges": [...]}``, each with its request statistics."""
    nodes = flatten(documents)
    by_id = {n.get("id"): n for n in nodes}
    answered = {n.get("parent_id"): n for n in nodes if _is_segment(n) and n.get("parent_id") in by_id}
    calls: dict[tuple[str, str], list[Document]] = {}
    served: dict[str, list[Document]] = {}
    kinds: dict[str, str] = {CLIENT: CLIENT}
    for node in nodes:
        if _is_segment(node):
            name = str(node.get("name", "?"))
            served.setdefault(name, []).append(node)
            kinds.setdefault(name, str(node.get("origin") or "service"))
            if node.get("parent_id") not in by_id:  # entered the system: a request from a client
                calls.setdefault((CLIENT, name), []).append(node)
                served.setdefault(CLIENT, []).append(node)
            continue
        if node.get("namespace") not in DOWNSTREAM:
            continue
        caller = _caller(node, by_id)
        if caller is None:
            continue
        callee = answered.get(node.get("id"))
        if callee is not None:
            target = str(callee.get("name", "?"))
        else:
            target = str(node.get("name", "?"))
            kinds.setdefault(target, str(node["namespace"]))
            served.setdefault(target, []).append(node)
        calls.setdefault((caller, target), []).append(node)
    return {
        "nodes": [{"name": name, "kind": kind, **_stats(served[name])}
                  for name, kind in sorted(kinds.items()) if name in served],
        "edges": [{"source": src, "target": dst, **_stats(spans)}
                  for (src, dst), spans in sorted(calls.items())],
    }  # fmt: skip


def _is_segment(node: Document) -> bool:
    return node.get("type") != "subsegment"


def _caller(node: Document, by_id: dict[Any, Document]) -> str | None:
    """The service whose segment holds ``node``; None when it sits inside another downstream call
    (the HTTP call under an AWS SDK call is the same request) or its segment is not stored."""
    seen = {id(node)}
    parent = by_id.get(node.get("parent_id"))
    while parent is not None and id(parent) not in seen:
        if _is_segment(parent):
            return str(parent.get("name", "?"))
        if parent.get("namespace") in DOWNSTREAM:
            return None
        seen.add(id(parent))
        parent = by_id.get(parent.get("parent_id"))
    return None


def _stats(spans: list[Document]) -> dict[str, Any]:
    """Requests, error/fault/throttle counts and rates, latency percentiles (ms, nearest rank)."""
    durations = sorted(
        (float(s["end_time"]) - float(s["start_time"])) * 1000
        for s in spans if s.get("end_time") is not None and s.get("start_time") is not None
    )  # fmt: skip
    out: dict[str, Any] = {"requests": len(spans)}
    for flag in ("error", "fault", "throttle"):
        count = sum(1 for s in spans if s.get(flag))
        out[flag + "s"] = count
        out[flag + "_rate"] = round(count / len(spans), 4) if spans else 0.0
    for pct in (50, 90, 99):
        out[f"p{pct}_ms"] = _percentile(durations, pct)
    return out


def _percentile(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    rank = max(1, -(-pct * len(values) // 100))  # ceil(pct/100 * n), nearest-rank
    return round(values[rank - 1], 3)
