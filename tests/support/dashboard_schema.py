"""The CloudWatch dashboard body, as JSON Schema draft 2020-12.

Written from CloudWatch's published "Dashboard Body Structure and Syntax" (API reference) and
migration-and-aws-facts.md §3, not from tracekit's generator: top-level keys, the widget grid
(24 columns, height 1-1000), the widget types and the properties of metric, text, log and alarm
widgets, metric rows ``[Namespace, MetricName, DimName, DimValue, ..., {options}]`` and math rows
``[{"expression": ..., "id": ...}]``. Closed objects (``additionalProperties: false``) so that a
misspelt property fails a test instead of being ignored by the console. What JSON Schema cannot
say (dimension names and values in pairs, math ids that exist, widgets inside the grid) is checked
in Python by :func:`body_errors`.
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator

_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NUM = {"type": "number"}
_ID = {"type": "string", "pattern": "^[a-z][a-zA-Z0-9_]*$"}
_PERIOD = {"type": "integer", "anyOf": [{"enum": [1, 5, 10, 30]}, {"multipleOf": 60, "minimum": 60}]}


def _closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or [],
            "additionalProperties": False}


_RENDERING = _closed({
    "accountId": _STR, "color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"}, "label": _STR,
    "id": _ID, "period": _PERIOD, "region": _STR, "stat": _STR, "visible": _BOOL,
    "yAxis": {"enum": ["left", "right"]},
})
_MATH_ROW = {
    "type": "array", "minItems": 1, "maxItems": 1,
    "items": _closed({"expression": {"type": "string", "minLength": 1}, "id": _ID, "label": _STR,
                      "color": _STR, "period": _PERIOD, "region": _STR, "visible": _BOOL,
                      "yAxis": {"enum": ["left", "right"]}}, ["expression", "id"]),
}
_METRIC_ROW = {
    "type": "array", "minItems": 2,
    "prefixItems": [{"type": "string", "minLength": 1, "maxLength": 255},
                    {"type": "string", "minLength": 1, "maxLength": 255}],
    "items": {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 1024}, _RENDERING]},
}
_AXIS = _closed({"min": _NUM, "max": _NUM, "label": _STR, "showUnits": _BOOL})
_ANNOTATION = _closed({"value": _NUM, "label": _STR, "color": _STR, "visible": _BOOL,
                       "fill": {"enum": ["above", "below"]}, "yAxis": {"enum": ["left", "right"]}},
                      ["value"])
METRIC_PROPERTIES = _closed({
    "metrics": {"type": "array", "minItems": 1, "maxItems": 500,
                "items": {"anyOf": [_MATH_ROW, _METRIC_ROW]}},
    "accountId": _STR, "region": _STR, "period": _PERIOD, "stat": _STR, "title": _STR,
    "view": {"enum": ["timeSeries", "singleValue", "gauge", "bar", "pie"]}, "stacked": _BOOL,
    "liveData": _BOOL, "setPeriodToTimeRange": _BOOL, "sparkline": _BOOL, "trend": _BOOL,
    "legend": _closed({"position": {"enum": ["right", "bottom", "hidden"]}}),
    "yAxis": _closed({"left": _AXIS, "right": _AXIS}),
    "annotations": _closed({"horizontal": {"type": "array", "items": _ANNOTATION},
                            "vertical": {"type": "array"}}),
}, ["metrics", "region"])
TEXT_PROPERTIES = _closed({"markdown": {"type": "string", "minLength": 1},
                           "background": {"enum": ["solid", "transparent"]}}, ["markdown"])
LOG_PROPERTIES = _closed({
    "query": {"type": "string", "pattern": "^SOURCE '[^']+'"}, "region": _STR, "title": _STR,
    "view": {"enum": ["table", "timeSeries", "bar", "pie"]}, "stacked": _BOOL, "accountId": _STR,
}, ["query", "region"])
ALARM_PROPERTIES = _closed({"alarms": {"type": "array", "items": {"type": "string", "pattern": "^arn:"}},
                            "title": _STR, "sortBy": {"enum": ["default", "stateUpdatedTimestamp"]},
                            "states": {"type": "array"}}, ["alarms"])


def _widget(kind: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "if": {"properties": {"type": {"const": kind}}},
        "then": {"properties": {"properties": properties}},
    }


WIDGET = {
    "type": "object",
    "required": ["type", "properties"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["metric", "text", "log", "alarm", "explorer"]},
        "x": {"type": "integer", "minimum": 0, "maximum": 23},
        "y": {"type": "integer", "minimum": 0},
        "width": {"type": "integer", "minimum": 1, "maximum": 24},
        "height": {"type": "integer", "minimum": 1, "maximum": 1000},
        "properties": {"type": "object"},
    },
    "allOf": [_widget("metric", METRIC_PROPERTIES), _widget("text", TEXT_PROPERTIES),
              _widget("log", LOG_PROPERTIES), _widget("alarm", ALARM_PROPERTIES)],
}
DASHBOARD_BODY = _closed({
    "widgets": {"type": "array", "maxItems": 500, "items": WIDGET},
    "start": {"type": "string", "pattern": "^(-P(T?\\d+[WDHMS])+|\\d{4}-\\d\\d-\\d\\dT.*)$"},
    "end": _STR,
    "periodOverride": {"enum": ["auto", "inherit"]},
    "variables": {"type": "array"},
}, ["widgets"])
_VALIDATOR = Draft202012Validator(DASHBOARD_BODY)
_IDS = re.compile(r"\b[a-z][a-zA-Z0-9_]*\b")
_FUNCTIONS = {"min", "max", "sum", "avg", "abs", "fill", "if", "and", "or", "not", "metrics"}


def body_errors(body: Any) -> list[str]:
    """Every schema violation and grid or row problem of a dashboard body (empty when valid)."""
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _VALIDATOR.iter_errors(body)]
    if errors:
        return errors
    for index, widget in enumerate(body["widgets"]):
        where = f"widgets/{index}"
        if widget.get("x", 0) + widget.get("width", 6) > 24:
            errors.append(f"{where}: extends beyond the 24-column grid")
        if widget["type"] == "metric":
            errors += _row_errors(where, widget["properties"]["metrics"])
    return errors


def _row_errors(where: str, rows: list[list[Any]]) -> list[str]:
    errors, ids = [], set()
    for row in rows:
        options = row[-1] if isinstance(row[-1], dict) else {}
        ids.add(options.get("id"))
        if "expression" not in options and len([v for v in row if isinstance(v, str)]) % 2:
            errors.append(f"{where}: dimension names and values are not in pairs in {row}")
    for row in rows:
        expression = row[0].get("expression") if isinstance(row[0], dict) else None
        if expression:
            missing = {i for i in _IDS.findall(expression) if i.lower() not in _FUNCTIONS} - ids
            if missing:
                errors.append(f"{where}: {expression!r} uses ids no row has: {sorted(missing)}")
    return errors
