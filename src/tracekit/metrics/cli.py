"""``tracekit emf-validate``: check EMF documents against the CloudWatch specification."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any, TextIO


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "emf-validate",
        help="check Embedded Metric Format documents (one JSON object per line)",
        description=(
            "Validate EMF documents, one JSON object per line, against the CloudWatch EMF "
            "specification (namespace, dimension sets <= 30 keys, <= 100 metrics and values, "
            "units, storage resolution, finite numbers). Prints FILE:LINE: problem for each "
            "problem; exits 1 when any document is invalid."
        ),
    )
    parser.add_argument(
        "files", nargs="*", default=["-"], help="files to read ('-' or nothing: standard input)"
    )
    parser.set_defaults(handler=validate_files)


def validate_files(args: argparse.Namespace) -> int:
    import json

    from tracekit.metrics import emf

    documents = invalid = 0
    for name, number, line in _lines(args.files):
        documents += 1
        try:
            problems = emf.validate(json.loads(line))
        except ValueError as exc:
            problems = [f"not JSON: {exc}"]
        for problem in problems:
            print(f"{name}:{number}: {problem}")
        invalid += bool(problems)
    print(f"{documents} documents, {invalid} invalid", file=sys.stderr)
    return 1 if invalid else 0


def _lines(files: list[str]) -> Iterator[tuple[str, int, str]]:
    for name in files:
        stream: TextIO = sys.stdin if name == "-" else open(name, encoding="utf-8")  # noqa: SIM115
        with stream:
            for number, line in enumerate(stream, 1):
                if line.strip():
                    yield name, number, line
