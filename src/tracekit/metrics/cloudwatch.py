"""PutMetricData for hosts without a CloudWatch agent: a background batcher.

Each series becomes datums with ``Values``/``Counts`` (repeated values cost nothing extra; <= 150
distinct values per datum). Calls carry <= 1,000 datums and stay under 1 MB; botocore's standard
retry mode backs off on throttling and 5xx; what still fails is counted as dropped. boto3 is
imported on the sender thread, never on the caller's.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tracekit._shared import aws, stats
from tracekit._shared.batching import BatchQueue
from tracekit.metrics.model import Batch, Series, emitted

MAX_DATUMS = 1000
MAX_REQUEST_BYTES = 1_000_000
MAX_VALUES_PER_DATUM = 150
_Item = tuple[str, dict[str, Any]]


class PutMetricDataOutput:
    """Queue datums (bounded, drops counted) and send them from one daemon thread."""

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_queue: int = 20_000,
        linger: float = 1.0,
        max_attempts: int = 5,
        client: Any = None,
    ) -> None:
        self._region, self._endpoint_url, self._max_attempts = region, endpoint_url, max_attempts
        self._client, self._own_client = client, client is None
        self._worker: BatchQueue[_Item] = BatchQueue(
            self._send,
            name="metrics.cloudwatch",
            max_items=max_queue,
            max_batch=MAX_DATUMS,
            size=lambda _: 0,
            max_wait=linger,
            after_fork=self._forget_client,
        )

    def _forget_client(self) -> None:
        """After a fork: a client made here shares the parent's connection pool; make a new one."""
        if self._own_client:
            self._client = None

    def emit(self, batch: Batch) -> None:
        stamp = datetime.fromtimestamp(batch.timestamp_ms / 1000, UTC)
        for series, values in batch.items():
            for datum in datums(series, values, stamp):
                self._worker.submit((batch.namespace, datum))

    def flush(self, timeout: float) -> bool:
        return self._worker.flush(timeout)

    def close(self, timeout: float) -> None:
        self._worker.close(timeout)

    def _send(self, items: list[_Item]) -> None:
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for namespace, datum in items:
            by_namespace.setdefault(namespace, []).append(datum)
        client = self._get_client()
        for namespace, data in by_namespace.items():
            for chunk in split_by_size(data):
                try:
                    client.put_metric_data(Namespace=namespace, MetricData=chunk)
                    stats.incr("metrics.cloudwatch.sent", len(chunk))
                except Exception as exc:  # after botocore's own retries
                    stats.incr("metrics.cloudwatch.dropped.error", len(chunk))
                    stats.report("metrics.cloudwatch", exc)

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = aws.client(
                "cloudwatch",
                self._region,
                self._endpoint_url,
                max_attempts=self._max_attempts,
                read_timeout=10,
            )
        return self._client


def datums(series: Series, values: list[float], stamp: datetime) -> list[dict[str, Any]]:
    """One series as datums of <= 150 distinct values each, with their repeat counts."""
    base: dict[str, Any] = {
        "MetricName": series.name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in series.dimensions],
        "Timestamp": stamp,
        "Unit": series.unit,
        "StorageResolution": series.resolution,
    }
    counted = list(Counter(emitted(series.kind, values)).items())
    result = []
    for start in range(0, len(counted), MAX_VALUES_PER_DATUM):
        part = counted[start : start + MAX_VALUES_PER_DATUM]
        result.append(
            {**base, "Values": [float(v) for v, _ in part], "Counts": [float(c) for _, c in part]}
        )
    return result


def split_by_size(data: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Chunks of <= 1,000 datums whose estimated encoded size stays under 1 MB."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for datum in data:
        # Query-protocol encoding repeats the member path for every field: about 3x the JSON size.
        cost = 3 * len(json.dumps(datum, default=str)) + 200
        if current and (len(current) >= MAX_DATUMS or size + cost > MAX_REQUEST_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(datum)
        size += cost
    if current:
        chunks.append(current)
    return chunks
