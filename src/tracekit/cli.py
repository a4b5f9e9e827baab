"""The ``tracekit`` command line. Each area registers its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tracekit._shared.settings import VERSION

# (module, attribute): each ``register(subparsers)`` adds its commands; imports stay inside commands.
COMMAND_MODULES: tuple[str, ...] = (
    "tracekit.sidecar.demo",
    "tracekit.sidecar.cli",
    "tracekit.sidecar.traces_cli",
    "tracekit.sampling.cli",
    "tracekit.aws_lambda.layer",
    "tracekit.metrics.cli",
    "tracekit.dashboards.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracekit",
        description="Traces, metrics and logs for Python on AWS: X-Ray native, OpenTelemetry inside.",
    )
    parser.add_argument("--version", action="version", version=f"tracekit {VERSION}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    result = handler(args)
    return int(result or 0)



if __name__ == "__main__":
    sys.exit(main())
