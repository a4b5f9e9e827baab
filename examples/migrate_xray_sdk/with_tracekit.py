"""The same order service on tracekit: the one-line change, at the top of the entry module.

Everything the X-Ray SDK records (captured functions, patch_all()'s AWS and HTTP subsegments,
annotations, metadata, exceptions) now becomes spans of tracekit's trace, sampled and sent by
tracekit (X-Ray daemon, PutTraceSegments or OTLP, as configured), never twice.
"""

import sys

import tracekit.xray_sdk

tracekit.xray_sdk.install()  # the one-line change; or TRACEKIT_XRAY_SDK_BRIDGE=true

import order_service  # noqa: E402 - the unchanged application, imported after the bridge

if __name__ == "__main__":
    order_service.main(sys.argv[1:])
