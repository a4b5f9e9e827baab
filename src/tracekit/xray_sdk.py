"""``tracekit.xray_sdk.install()``: code written for the AWS X-Ray SDK for Python records into tracekit.

Every segment and subsegment ``xray_recorder`` makes (``@xray_recorder.capture``, ``begin_subsegment``,
the SDK's patchers from ``patch_all()``, its Flask middleware) becomes a span of the current tracekit
trace, nested with tracekit's spans; tracekit samples and sends, once. Also turned on by
``TRACEKIT_XRAY_SDK_BRIDGE=true`` when tracekit configures. Needs ``pip install 'tracekit-aws[xray-sdk]'``;
aws_xray_sdk is imported only when installing.
"""

from __future__ import annotations

from tracekit.tracing import provider
from tracekit.tracing.instrument import bridge_xray_sdk, unbridge_xray_sdk


def install() -> bool:
    """Bridge the X-Ray SDK's recorder into tracekit; False (one logged line) without aws-xray-sdk."""
    provider.get_tracer()  # tracekit configures on first use, as with any tracekit call
    return bridge_xray_sdk()


def uninstall() -> None:
    """Give ``xray_recorder`` back its own class, context and emitter."""
    unbridge_xray_sdk()


__all__ = ["install", "uninstall"]
