"""Check a received request's SigV4 signature the way AWS does: recompute it with botocore."""

from __future__ import annotations

from typing import NamedTuple


class Authorization(NamedTuple):
    """The parts of an ``AWS4-HMAC-SHA256`` Authorization header."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def authorization(headers: dict[str, str]) -> Authorization | None:
    """The parsed Authorization header, or None when the request is not SigV4-signed."""
    received = {k.lower(): v for k, v in headers.items()}
    scheme, _, fields = received.get("authorization", "").partition(" ")
    if scheme != "AWS4-HMAC-SHA256":
        return None
    auth = dict(part.strip().split("=", 1) for part in fields.split(","))
    key_id, date, region, service, _ = auth["Credential"].split("/")
    return Authorization(key_id, date, region, service, tuple(auth["SignedHeaders"].split(";")),
                         auth["Signature"])


def expected_signature(url: str, headers: dict[str, str], body: bytes, secret: str) -> str | None:
    """The signature botocore computes for the request as received (signed headers, body, date,
    credential scope) with ``secret``; None when the request is not signed."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = authorization(headers)
    if auth is None:
        return None
    received = {k.lower(): v for k, v in headers.items()}
    signed = {name: received.get(name, "") for name in auth.signed_headers}
    request = AWSRequest(method="POST", url=url, data=body, headers=signed)
    request.context["timestamp"] = received["x-amz-date"]
    creds = Credentials(auth.access_key, secret, received.get("x-amz-security-token"))
    signer = SigV4Auth(creds, auth.service, auth.region)
    return str(signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request))


def sigv4_verifies(url: str, headers: dict[str, str], body: bytes, secret: str) -> bool:
    """True when the received signature is the one botocore recomputes with ``secret``."""
    auth = authorization(headers)
    return auth is not None and expected_signature(url, headers, body, secret) == auth.signature
