"""The X-Ray segment-document schema (v1.0.0 as documented), as JSON Schema draft 2020-12.

Written from the public "AWS X-Ray segment documents" developer-guide page and aws-facts.md §3. It is
deliberately strict where the documentation is precise (ids, trace ids, required fields, annotation
keys and value types, namespaces, http/cause shapes) and closed (``additionalProperties: false``) on
segments and subsegments, so a misspelt field in a translator fails a test instead of being ignored
by X-Ray. A few rules JSON Schema cannot say (end after start, unique ids, one trace id, 64 KB) are
checked in Python by :func:`document_errors`.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

MAX_DOCUMENT_BYTES = 64 * 1024
"""A segment document is at most 64 kB (PutTraceSegments and the daemon)."""

ORIGINS = (
    "AWS::EC2::Instance",
    "AWS::ECS::Container",
    "AWS::ECS::EC2",
    "AWS::ECS::Fargate",
    "AWS::EKS::Container",
    "AWS::ElasticBeanstalk::Environment",
    "AWS::AppRunner::Service",
)
"""Origins a client may set; ``AWS::Lambda::Function`` belongs to the Lambda service itself."""

_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_STRINGS = {"type": "object", "additionalProperties": _STR}


def _closed(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False, **extra}


def _open(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


_HTTP = _closed(
    {
        "request": _closed(
            {
                "method": _STR,
                "url": _STR,
                "user_agent": _STR,
                "client_ip": _STR,
                "x_forwarded_for": _BOOL,
                "traced": _BOOL,
            }
        ),
        "response": _closed(
            {
                "status": {"type": "integer", "minimum": 100, "maximum": 599},
                "content_length": {"type": "integer", "minimum": 0},
            }
        ),
    }
)

_AWS = _open(
    {
        "account_id": _STR,
        "operation": _STR,
        "region": _STR,
        "request_id": _STR,
        "queue_url": _STR,
        "table_name": _STR,
        "retries": {"type": "integer", "minimum": 0},
        "ecs": _STRINGS,
        "ec2": _STRINGS,
        "eks": _STRINGS,
        "elastic_beanstalk": _open(
            {"environment_name": _STR, "version_label": _STR, "deployment_id": {"type": "number"}}
        ),
        "xray": _open({"sdk": _STR, "sdk_version": _STR, "auto_instrumentation": _BOOL}),
        "cloudwatch_logs": {"type": "array", "items": _open({"log_group": _STR, "arn": _STR})},
    }
)

_EXCEPTION = _closed(
    {
        "id": {"$ref": "#/$defs/id"},
        "message": _STR,
        "type": _STR,
        "remote": _BOOL,
        "truncated": {"type": "integer", "minimum": 0},
        "skipped": {"type": "integer", "minimum": 0},
        "cause": {"$ref": "#/$defs/id"},
        "stack": {
            "type": "array",
            "items": _closed({"path": _STR, "line": {"type": "integer"}, "label": _STR}),
        },
    }
)

_CAUSE = {
    "description": "an exception id (16 hex digits) or {working_directory, paths, exceptions}",
    "if": {"type": "string"},
    "then": {"$ref": "#/$defs/id"},
    "else": _closed(
        {
            "working_directory": _STR,
            "paths": {"type": "array", "items": _STR},
            "exceptions": {"type": "array", "items": _EXCEPTION},
        }
    ),
}

_ANNOTATIONS = {
    "description": "at most 50 annotations",
    "type": "object",
    "maxProperties": 50,
    "propertyNames": {
        "description": "annotation keys of [A-Za-z0-9_], 1-500 chars",
        "pattern": "^[A-Za-z0-9_]{1,500}$",
    },
    "additionalProperties": {
        "description": "annotation values: string (<= 1000 chars), number or bool",
        "type": ["string", "number", "boolean"],
        "maxLength": 1000,
    },
}

_METADATA = {
    "type": "object",
    "propertyNames": {
        "description": "a metadata namespace not starting with 'AWS.' (reserved)",
        "not": {"pattern": "^AWS\\."},
    },
    "additionalProperties": {"description": "namespace -> object of keys", "type": "object"},
}

_ENTITY_FIELDS = {
    "id": {"$ref": "#/$defs/id"},
    "start_time": {"$ref": "#/$defs/time"},
    "end_time": {"$ref": "#/$defs/time"},
    "in_progress": _BOOL,
    "http": _HTTP,
    "aws": _AWS,
    "error": _BOOL,
    "throttle": _BOOL,
    "fault": _BOOL,
    "cause": _CAUSE,
    "annotations": _ANNOTATIONS,
    "metadata": _METADATA,
    "subsegments": {"type": "array", "items": {"$ref": "#/$defs/subsegment"}},
    "links": {
        "type": "array",
        "items": _open({"trace_id": {"$ref": "#/$defs/trace_id"}, "id": {"$ref": "#/$defs/id"}}),
    },
}

_SEGMENT_FIELDS = {
    "name": {
        "description": "<= 200 chars: letters, digits, whitespace and _.:/%&#=+-@",
        "type": "string",
        "pattern": "^[\\w\\s.:/%&#=+\\-@]{1,200}$",
    },
    "trace_id": {"$ref": "#/$defs/trace_id"},
    "parent_id": {"$ref": "#/$defs/id"},
    "service": {"type": "object", "additionalProperties": _STR},
    "user": _STR,
    "origin": {"enum": list(ORIGINS)},
}

_SUBSEGMENT_FIELDS = {
    "name": {
        "description": "<= 200 chars, none of ?;*()!$~^<>",
        "type": "string",
        "pattern": "^[^?;*()!$~^<>]{1,200}$",
    },
    "namespace": {
        "description": "aws or remote as documented; the X-Ray SDKs also send local",
        "enum": ["aws", "remote", "local"],
    },
    "trace_id": {"$ref": "#/$defs/trace_id"},
    "parent_id": {"$ref": "#/$defs/id"},
    "type": {"const": "subsegment"},
    "precursor_ids": {"type": "array", "items": {"$ref": "#/$defs/id"}},
    "sql": _closed(
        {
            "connection_string": _STR,
            "url": _STR,
            "sanitized_query": _STR,
            "database_type": _STR,
            "database_version": _STR,
            "driver_version": _STR,
            "user": _STR,
            "preparation": {"enum": ["call", "statement"]},
        }
    ),
}


def _entity(fields: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    """A closed entity schema: the shared fields plus ``fields``; end_time XOR in_progress."""
    return _closed(
        {**_ENTITY_FIELDS, **fields},
        required=["name", "id", "start_time", *required],
        **{
            "if": {"required": ["in_progress"], "properties": {"in_progress": {"const": True}}},
            "then": {
                "description": "no end_time on an in-progress entity",
                "not": {"required": ["end_time"]},
            },
            "else": {"description": "end_time, or in_progress: true", "required": ["end_time"]},
        },
    )


SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:tracekit:tests:xray-segment-document",
    "if": {"required": ["type"]},
    "then": {"$ref": "#/$defs/independent_subsegment"},
    "else": {"$ref": "#/$defs/segment"},
    "$defs": {
        "id": {
            "description": "16 lower-case hex digits",
            "type": "string",
            "pattern": "^[0-9a-f]{16}$",
        },
        "trace_id": {
            "description": "1-<8 hex epoch seconds>-<24 hex>",
            "type": "string",
            "pattern": "^1-[0-9a-f]{8}-[0-9a-f]{24}$",
        },
        "time": {
            "description": "epoch seconds as a number (a value outside 2001..2286 means ms or ns)",
            "type": "number",
            "minimum": 1e9,
            "maximum": 1e10,
        },
        "segment": _entity(_SEGMENT_FIELDS, ("trace_id",)),
        "subsegment": _entity(_SUBSEGMENT_FIELDS, ()),
        "independent_subsegment": _entity(_SUBSEGMENT_FIELDS, ("type", "trace_id", "parent_id")),
    },
}

Draft202012Validator.check_schema(SCHEMA)
_VALIDATOR = Draft202012Validator(SCHEMA)


def document_errors(doc: object) -> list[str]:
    """Every problem with ``doc`` as a readable line (``$.path: message (rule)``); [] if valid."""
    problems = [_describe(e) for e in _VALIDATOR.iter_errors(doc)]
    if isinstance(doc, dict) and not problems:
        problems.extend(_semantic_errors(doc))
    return sorted(problems)


def validate_document(doc: object) -> None:
    """Raise AssertionError listing what is wrong when ``doc`` is not a valid segment document."""
    problems = document_errors(doc)
    if problems:
        shown = json.dumps(doc, default=repr)[:300]
        raise AssertionError(
            "invalid X-Ray segment document:\n  " + "\n  ".join(problems) + f"\ndocument: {shown}"
        )


def _describe(error: ValidationError) -> str:
    """``$.path: message (expected <the rule's description>)``."""
    rule = error.schema.get("description") if isinstance(error.schema, dict) else None
    text = error.message
    if error.validator == "not":  # the default message repeats the whole instance
        shown = "this object" if isinstance(error.instance, dict) else repr(error.instance)[:80]
        text = f"{shown} is not allowed"
    return f"{error.json_path}: {text}" + (f" (expected {rule})" if rule else "")


def _semantic_errors(doc: dict[str, Any]) -> list[str]:
    size = len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())
    problems = []
    if size > MAX_DOCUMENT_BYTES:
        problems.append(f"$: document is {size} bytes, more than {MAX_DOCUMENT_BYTES}")
    seen: set[str] = set()
    for path, entity in _walk(doc, "$"):
        if entity["id"] in seen:
            problems.append(f"{path}.id: {entity['id']} appears twice in one document")
        seen.add(entity["id"])
        if "end_time" in entity and entity["end_time"] < entity["start_time"]:
            problems.append(f"{path}.end_time: {entity['end_time']} is before start_time")
        if entity is not doc and entity.get("trace_id", doc["trace_id"]) != doc["trace_id"]:
            problems.append(f"{path}.trace_id: differs from the document's {doc['trace_id']}")
    return problems


def _walk(entity: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, entity)]
    for i, sub in enumerate(entity.get("subsegments", ())):
        found.extend(_walk(sub, f"{path}.subsegments[{i}]"))
    return found
