"""Embedded Metric Format: serialise batches into spec-valid documents, and validate documents.

Splitting happens here, whatever the source: at most 100 metrics per document and 100 values per
metric, one document per dimension set. ``validate`` is reused by the sidecar for documents it did
not write, so it reports every problem with its JSON path instead of stopping at the first.
"""

from __future__ import annotations

import functools
import json
from typing import Any, NamedTuple

from tracekit.metrics import spec
from tracekit.metrics.model import Batch, Dimensions, Kind, emitted

_encode = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False
).encode


def dumps(batch: Batch) -> list[str]:
    """The EMF documents for ``batch`` as compact JSON lines (no trailing newline).

    Documents are assembled from JSON fragments planned once per batch shape (names, dimension
    members, metric definitions): per flush only values, properties and the timestamp are
    formatted. Strings go through the JSON encoder; values are finite ints/floats whose ``repr`` is
    valid JSON. Properties never overwrite a dimension or a metric of the same name.
    """
    plan: list[_Group] | None = batch.memo.get("emf")
    if plan is None:
        plan = batch.memo["emf"] = _plan(batch)
    stamp = str(batch.timestamp_ms)
    lines: list[str] = []
    for group in plan:
        head = group.dimensions
        if batch.properties:
            head = _properties(batch.properties, group.taken) + head
        for chunk in group.chunks:
            pending = [
                (name, definition, emitted(kind, batch.values[index]))
                for index, name, definition, kind in chunk
            ]
            offset = 0
            while pending:
                lines.append(_document(head, group.directive, stamp, pending, offset))
                offset += spec.MAX_VALUES_PER_METRIC
                pending = [item for item in pending if len(item[2]) > offset]
    return lines


def fit(line: str, limit: int) -> list[str]:
    """``line`` as documents of at most ``limit`` UTF-8 bytes each (a UDP datagram), same content.

    The metrics are halved, then a lone metric's values, until each part fits; what cannot shrink
    further is returned as is (the caller counts it as too large). Only the rare oversized line
    pays for parsing.
    """
    if len(line.encode()) <= limit:
        return [line]
    doc = json.loads(line)
    (directive,) = doc["_aws"]["CloudWatchMetrics"]  # tracekit writes one directive per document
    metrics = directive["Metrics"]
    if len(metrics) > 1:
        half = len(metrics) // 2
        parts = [_only(doc, metrics[:half]), _only(doc, metrics[half:])]
    else:
        values = doc[metrics[0]["Name"]]
        if not isinstance(values, list) or len(values) < 2:
            return [line]
        half = len(values) // 2
        parts = [{**doc, metrics[0]["Name"]: chunk} for chunk in (values[:half], values[half:])]
    return [piece for part in parts for piece in fit(_encode(part), limit)]


def _only(doc: dict[str, Any], metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """``doc`` keeping only ``metrics`` (definitions and values); dimensions and properties stay."""
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    dropped = {m["Name"] for m in directive["Metrics"]} - {m["Name"] for m in metrics}
    meta = {**doc["_aws"], "CloudWatchMetrics": [{**directive, "Metrics": metrics}]}
    return {**{k: v for k, v in doc.items() if k not in dropped}, "_aws": meta}


def serialize(batch: Batch) -> list[dict[str, object]]:
    """``dumps`` parsed back into objects (for tests and tools; the hot path never needs it)."""
    return [json.loads(line) for line in dumps(batch)]


_Member = tuple[int, str, str, Kind]
"""Index into the batch, ``"name":`` fragment, metric definition JSON, kind."""


class _Group(NamedTuple):
    dimensions: str
    directive: str
    taken: frozenset[str]
    chunks: list[list[_Member]]


def _plan(batch: Batch) -> list[_Group]:
    """One group per dimension set, its metrics in chunks of at most 100 per document."""
    by_dims: dict[Dimensions, list[int]] = {}
    for index, series in enumerate(batch.series):
        by_dims.setdefault(series.dimensions, []).append(index)
    plan = []
    for dims, indexes in by_dims.items():
        keys = tuple(key for key, _ in dims)
        members: list[_Member] = []
        for index in indexes:
            series = batch.series[index]
            if series.name not in keys:  # a metric named like a dimension would overwrite it
                name, definition = _fragments(series.name, series.unit, series.resolution)
                members.append((index, name, definition, series.kind))
        step = spec.MAX_METRICS_PER_DOCUMENT
        plan.append(
            _Group(
                "".join(_member(key, value) for key, value in dims),
                _directive_head(batch.namespace, keys),
                frozenset(keys) | {batch.series[i].name for i in indexes} | {spec.METADATA_KEY},
                [members[start : start + step] for start in range(0, len(members), step)],
            )
        )
    return plan


def _properties(properties: dict[str, object], taken: frozenset[str]) -> str:
    return "".join(_property(k, v) for k, v in properties.items() if k not in taken)


def _property(key: str, value: object) -> str:
    """A property member; NaN, infinities or cycles (not JSON) go as their ``repr`` string, so the
    document stays parseable and its metrics are not lost."""
    try:
        return _member(key, value)
    except ValueError:
        return _member(key, repr(value))


def _document(
    head: str, directive: str, stamp: str, chunk: list[tuple[str, str, list[float]]], offset: int
) -> str:
    values: list[str] = []
    for name, _, emitted_values in chunk:
        part = (
            emitted_values[offset : offset + spec.MAX_VALUES_PER_METRIC]
            if offset or len(emitted_values) > spec.MAX_VALUES_PER_METRIC
            else emitted_values
        )
        values.append(
            name + (repr(part[0]) if len(part) == 1 else f"[{','.join(map(repr, part))}]")
        )
    definitions = ",".join(definition for _, definition, _ in chunk)
    return (
        f'{{{head}{",".join(values)},"_aws":{{"Timestamp":{stamp},"CloudWatchMetrics":'
        f"[{directive}{definitions}]}}]}}}}"
    )


_FRAGMENTS: dict[tuple[str, str, int], tuple[str, str]] = {}


def _fragments(name: str, unit: str, resolution: int) -> tuple[str, str]:
    """``"name":`` and the metric definition JSON, cached (bounded) per metric."""
    key = (name, unit, resolution)
    found = _FRAGMENTS.get(key)
    if found is None:
        definition: dict[str, object] = {"Name": name, "Unit": unit}
        if resolution == 1:
            definition["StorageResolution"] = 1
        found = (_encode(name) + ":", _encode(definition))
        if len(_FRAGMENTS) < 10_000:
            _FRAGMENTS[key] = found
    return found


def _member(key: str, value: object) -> str:
    return f"{_encode(key)}:{_encode(value)},"


@functools.lru_cache(maxsize=1024)
def _directive_head(namespace: str, keys: tuple[str, ...]) -> str:
    return f'{{"Namespace":{_encode(namespace)},"Dimensions":[{_encode(list(keys))}],"Metrics":['


def validate(doc: object) -> list[str]:
    """Every way ``doc`` breaks the EMF specification; an empty list means it is valid."""
    if not isinstance(doc, dict):
        return [f"$: expected a JSON object, got {type(doc).__name__}"]
    meta = doc.get("_aws")
    if not isinstance(meta, dict):
        return ["$._aws: missing or not an object; accepted: {Timestamp, CloudWatchMetrics}"]
    errors: list[str] = []
    stamp = meta.get("Timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int) or stamp < 0:
        errors.append(
            f"$._aws.Timestamp: {stamp!r} is not valid: expected epoch milliseconds (int)"
        )
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        return [*errors, "$._aws.CloudWatchMetrics: missing or not an array of metric directives"]
    for i, directive in enumerate(directives):
        errors.extend(_validate_directive(doc, directive, f"$._aws.CloudWatchMetrics[{i}]"))
    return errors


def _validate_directive(doc: dict[str, object], directive: object, where: str) -> list[str]:
    if not isinstance(directive, dict):
        return [f"{where}: expected an object with Namespace, Dimensions, Metrics"]
    errors = [
        f"{where}.Namespace: {p}" for p in [spec.check_namespace(directive.get("Namespace"))] if p
    ]
    errors.extend(_validate_dimension_sets(doc, directive.get("Dimensions"), f"{where}.Dimensions"))
    metrics = directive.get("Metrics")
    if not isinstance(metrics, list):
        return [*errors, f"{where}.Metrics: missing or not an array"]
    if len(metrics) > spec.MAX_METRICS_PER_DOCUMENT:
        errors.append(
            f"{where}.Metrics: {len(metrics)} metrics exceed {spec.MAX_METRICS_PER_DOCUMENT}"
        )
    for j, metric in enumerate(metrics):
        errors.extend(_validate_metric(doc, metric, f"{where}.Metrics[{j}]"))
    return errors


def _validate_dimension_sets(doc: dict[str, object], sets: object, where: str) -> list[str]:
    if not isinstance(sets, list):
        return [f"{where}: missing or not an array of arrays of dimension names"]
    errors: list[str] = []
    for i, keys in enumerate(sets):
        here = f"{where}[{i}]"
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            errors.append(f"{here}: expected an array of dimension names (strings)")
            continue
        if len(keys) > spec.MAX_DIMENSIONS:
            errors.append(f"{here}: {len(keys)} dimensions exceed {spec.MAX_DIMENSIONS}")
        for key in keys:
            value = doc.get(key)
            if not isinstance(value, str) or not 0 < len(value) <= spec.MAX_DIMENSION_VALUE:
                errors.append(
                    f"$.{key}: dimension referenced by {here} must be a top-level string of "
                    f"1-{spec.MAX_DIMENSION_VALUE} characters, got {value!r}"
                )
    return errors


def _validate_metric(doc: dict[str, object], metric: object, where: str) -> list[str]:
    if not isinstance(metric, dict):
        return [f"{where}: expected an object {{Name, Unit?, StorageResolution?}}"]
    name = metric.get("Name")
    problem = spec.check_name(name)
    if problem or not isinstance(name, str):
        return [f"{where}.Name: {problem}"]
    errors: list[str] = []
    if "Unit" in metric and (problem := spec.check_unit(name, metric["Unit"])):
        errors.append(f"{where}.Unit: {problem}")
    if "StorageResolution" in metric and (
        problem := spec.check_resolution(name, metric["StorageResolution"])
    ):
        errors.append(f"{where}.StorageResolution: {problem}")
    return errors + _validate_member(name, doc.get(name, _MISSING))


_MISSING = object()


def _validate_member(name: str, value: object) -> list[str]:
    where = f"$.{name}"
    if value is _MISSING:
        return [f"{where}: metric value missing: expected a number or an array of numbers"]
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not 0 < len(value) <= spec.MAX_VALUES_PER_METRIC:
        return [f"{where}: {len(value)} values: expected 1-{spec.MAX_VALUES_PER_METRIC}"]
    return [f"{where}: {p}" for p in (spec.check_value(name, v) for v in values) if p]
