"""An in-memory EMF capture, and a JSON-schema check written from the EMF spec (not our code)."""

from __future__ import annotations

import io
import json
from typing import Any

import jsonschema

import tracekit.metrics as metrics
from tracekit.metrics import emf
from tracekit.metrics.sinks import EmfOutput, StreamWriter

UNITS = [
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
    "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second",
    "Count/Second", "None",
]  # fmt: skip

# Written from the CloudWatch EMF specification (aws-facts.md §8), independently of emf.validate.
EMF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "properties": {
                            "Namespace": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 255,
                                "pattern": "^[a-zA-Z0-9._#:/-]+$",
                            },
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "maxItems": 30,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 255},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "properties": {
                                        "Name": {
                                            "type": "string",
                                            "minLength": 1,
                                            "maxLength": 255,
                                        },
                                        "Unit": {"enum": UNITS},
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def assert_valid_emf(doc: dict[str, Any]) -> None:
    """Schema check plus the cross-references a JSON schema cannot express."""
    jsonschema.validate(doc, EMF_SCHEMA)
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                assert isinstance(doc[key], str) and 0 < len(doc[key]) <= 1024, key
        for metric in directive["Metrics"]:
            value = doc[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 0 < len(values) <= 100
            assert all(isinstance(v, (int, float)) and abs(v) < 2.0**360 for v in values)
    assert emf.validate(doc) == []


class Capture:
    """EMF lines written by the configured recorder, parsed and schema-checked."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.output = EmfOutput(StreamWriter(self.stream))

    def docs(self) -> list[dict[str, Any]]:
        metrics.flush(1.0)
        found = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        for doc in found:
            assert_valid_emf(doc)
        return found

    def values(self, name: str) -> list[float]:
        result: list[float] = []
        for doc in self.docs():
            if name in doc:
                value = doc[name]
                result.extend(value if isinstance(value, list) else [value])
        return result
