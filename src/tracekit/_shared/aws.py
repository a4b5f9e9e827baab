"""boto3 clients for background senders, made one way: botocore's standard retry mode (backoff with
jitter on throttling and 5xx) and bounded timeouts. boto3 is imported here, on the sender's thread,
never at import time."""

from __future__ import annotations

from typing import Any, Literal


def client(
    service: Literal["cloudwatch", "logs"],
    region: str | None,
    endpoint_url: str | None,
    *,
    max_attempts: int,
    read_timeout: float,
) -> Any:
    """A boto3 client for ``service`` with standard retries (``max_attempts`` in all)."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=5,
        read_timeout=read_timeout,
    )
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=config)
