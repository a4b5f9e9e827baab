"""The ``tracekit`` command line. Each area registers its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from tracekit._shared.settings import VERSION, ConfigError

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
USER_ERRORS = (ConfigError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
"""Bad input a command can meet anywhere (a bad value, a path that cannot be read): one line, exit 2."""


class Parser(argparse.ArgumentParser):
    """Usage errors in one line that points to ``--help`` (sub-commands inherit the class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    try:
        return int(handler(args) or 0)
    except USER_ERRORS as exc:
        print(f"{_command(parser, args)}: {_message(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `tracekit ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 1


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``tracekit sampling cost``: the words that chose the command that failed."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _command(chosen, args)
    return parser.prog


def _message(exc: Exception) -> str:
    """``traffic.yaml: No such file or directory`` rather than ``[Errno 2] ...``."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
