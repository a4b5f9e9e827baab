"""Command-line pieces shared by the "as code" commands (``tracekit sampling``, ``tracekit
dashboards``): the AWS options, JSON or text output, a boto3 client from the options, API errors
as one line, and the plan / drift / apply commands over a plan object.

A plan object has ``changes``, ``empty``, ``blocked`` (the first change the API cannot make),
``to_json()`` and ``text()``. boto3 is imported only when a client is made.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from tracekit._shared.planning import ApplyReport


def add_aws_options(parser: argparse.ArgumentParser, endpoint_help: str) -> None:
    """``--region``, ``--endpoint-url`` and ``--profile``."""
    parser.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    parser.add_argument("--endpoint-url", help=endpoint_help)
    parser.add_argument("--profile", help="AWS named profile")


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """``data`` as JSON with ``--json``, else ``text``."""
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def print_problems(args: argparse.Namespace, problems: Sequence[Any]) -> None:
    """The files' problems, one ``file:line: field: problem`` line each (or as JSON)."""
    emit(args, {"ok": False, "problems": [p.to_json() for p in problems]},
         "\n".join(str(p) for p in problems))


def client(args: argparse.Namespace, service: str) -> Any:
    """A boto3 client from the AWS options; against a loopback endpoint (a local emulator or
    control plane) it works without an AWS configuration: region us-east-1, unsigned requests."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
    config = Config(retries={"mode": "standard", "max_attempts": 3})
    region = session.region_name
    if is_loopback(args.endpoint_url):
        region = region or "us-east-1"
        if session.get_credentials() is None:
            config = config.merge(Config(signature_version=UNSIGNED))
    return session.client(service, endpoint_url=args.endpoint_url, region_name=region,  # type: ignore[call-overload]
                          config=config)


def is_loopback(url: str | None) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname if url else None
    return host in ("localhost", "127.0.0.1", "::1")


def aws_call(args: argparse.Namespace, func: Callable[[], int]) -> int:
    """Run an AWS-backed command; an API or credentials error becomes one line and exit 1."""
    from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

    try:
        return func()
    except (BotoCoreError, ClientError) as exc:
        text = str(exc)
        if isinstance(exc, NoRegionError):
            text = "no AWS region: pass --region or set AWS_REGION"
        emit(args, {"ok": False, "error": text}, f"error: {text}")
        return 1


MakePlan = Callable[[argparse.Namespace], Any]
"""Builds the plan from the parsed options (or returns None after printing the files' problems)."""
ApplyPlan = Callable[[argparse.Namespace, Any], ApplyReport]
Handler = Callable[[argparse.Namespace], int]


def plan_handlers(make_plan: MakePlan, apply: ApplyPlan) -> dict[str, Handler]:
    """The ``plan``, ``drift`` and ``apply`` commands over one plan builder.

    ``plan`` exits 1 when the plan holds a change the API cannot make; ``drift`` exits 2 when the
    account differs from the files (for CI); ``apply`` exits 1 when a change failed.
    """

    def plan(args: argparse.Namespace) -> int:
        result = make_plan(args)
        if result is None:
            return 1
        emit(args, result.to_json(), result.text())
        return 1 if result.blocked else 0

    def drift(args: argparse.Namespace) -> int:
        result = make_plan(args)
        if result is None:
            return 1
        emit(args, {"drift": not result.empty, **result.to_json()},
             "drift:\n" + result.text() if not result.empty else "no drift")
        return 0 if result.empty else 2

    def apply_plan(args: argparse.Namespace) -> int:
        result = make_plan(args)
        if result is None:
            return 1
        report = apply(args, result)
        emit(args, report.to_json(), report.text())
        return 0 if report.ok else 1

    commands = {"plan": plan, "drift": drift, "apply": apply_plan}
    return {name: _as_aws_call(command) for name, command in commands.items()}


def _as_aws_call(command: Handler) -> Handler:
    return lambda args: aws_call(args, lambda: command(args))
