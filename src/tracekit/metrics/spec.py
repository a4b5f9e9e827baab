"""CloudWatch metric limits and the checks shared by recording, EMF validation and PutMetricData.

Each check returns ``None`` when the input is accepted, or one message that says what was wrong,
where, and what is accepted, so the same text reaches the user whether it came from ``count()`` or
from ``emf.validate()`` in the sidecar.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

UNITS = frozenset(
    (
        "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
        "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
        "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
        "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
        "Terabits/Second", "Count/Second", "None",
    )
)  # fmt: skip
RESOLUTIONS = (1, 60)
MAX_NAME = 255
MAX_DIMENSIONS = 30
MAX_DIMENSION_VALUE = 1024
MAX_METRICS_PER_DOCUMENT = 100
MAX_VALUES_PER_METRIC = 100
VALUE_LIMIT = 2.0**360
METADATA_KEY = "_aws"
"""The EMF member holding the metadata: no metric, dimension or property may take its name."""
_NAMESPACE = re.compile(r"[a-zA-Z0-9._#:/-]{1,255}\Z")


class MetricError(ValueError):
    """A metric, dimension or namespace is not accepted by CloudWatch."""


def check_namespace(namespace: object) -> str | None:
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        return (
            f"namespace {namespace!r} is not valid: expected 1-255 characters of [a-zA-Z0-9._#:/-]"
        )
    if namespace.startswith("AWS/"):
        return f"namespace {namespace!r} is not valid: the AWS/ prefix is reserved for AWS services"
    return None


def check_name(name: object, what: str = "metric name") -> str | None:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        return f"{what} {short(name)} is not valid: expected a string of 1-{MAX_NAME} characters"
    if name == METADATA_KEY:
        return f"{what} {name!r} is not valid: it is the EMF metadata member"
    return None


def check_unit(metric: str, unit: object) -> str | None:
    if not isinstance(unit, str) or unit not in UNITS:
        return f"metric {metric!r}: unit {unit!r} is not a CloudWatch unit; accepted: " + ", ".join(
            sorted(UNITS)
        )
    return None


def check_resolution(metric: str, resolution: object) -> str | None:
    if resolution not in RESOLUTIONS or isinstance(resolution, bool):
        return (
            f"metric {metric!r}: storage resolution {resolution!r} is not valid: expected 1 or 60"
        )
    return None


def check_value(metric: str, value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"metric {metric!r}: value {short(value)} is not a number"
    if not -VALUE_LIMIT < value < VALUE_LIMIT:  # also False for NaN
        kind = "NaN" if value != value else "infinite" if math.isinf(value) else "out of range"
        return (
            f"metric {metric!r}: value {value!r} is {kind}: expected a finite number within ±2^360"
        )
    return None


def check_dimensions(
    metric: str, dimensions: Mapping[str, object], inherited: int = 0
) -> str | None:
    """Keys and values as CloudWatch wants them; ``inherited``: default and scope dimensions."""
    if len(dimensions) + inherited > MAX_DIMENSIONS:
        return (
            f"metric {metric!r}: {len(dimensions) + inherited} dimensions "
            f"({inherited} default/scope + {len(dimensions)}) exceed the limit of {MAX_DIMENSIONS}"
        )
    for key, value in dimensions.items():
        problem = check_name(key, f"metric {metric!r}: dimension name")
        if problem:
            return problem
        if not isinstance(value, str) or not 0 < len(value) <= MAX_DIMENSION_VALUE:
            return (
                f"metric {metric!r}: dimension {key!r} value {short(value)} is not valid: "
                f"expected a string of 1-{MAX_DIMENSION_VALUE} characters"
            )
    return None


def short(value: object) -> str:
    """``repr`` cut to 80 characters, for messages about arbitrary input."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
