"""``tracekit dashboards ...``: validate, plan, apply, export, drift.

Exit codes as ``tracekit sampling``: 0 fine, 1 error (bad files, failed API call), 2 drift found
(``drift`` only). boto3 and PyYAML are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tracekit._shared import awscli, settings
from tracekit.dashboards import DEFAULT_PREFIX

DEFAULT_PATHS = ["observability"]
PLACEHOLDER_REGION = "us-east-1"
"""The widgets' region when neither the spec, --region nor the AWS configuration names one
(validate only; the other commands use the client's region)."""

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> None:
    """Add ``tracekit dashboards`` and its sub-commands."""
    top = subparsers.add_parser(
        "dashboards", help="CloudWatch dashboards, alarms and SLO burn-rate alerts as code",
        description="Keep CloudWatch dashboards and alarms, generated from spec files and the "
        "metrics tracekit emits, in step with an account.",
    )
    top.set_defaults(handler=lambda args: _help(top))
    handlers = awscli.plan_handlers(_make_plan, _apply_plan)
    sub = top.add_subparsers(dest="dashboards_command", metavar="COMMAND")
    _add(sub, "validate", _validate, "check the spec files and what they generate", aws=False)
    _add(sub, "plan", handlers["plan"], "show the changes that make CloudWatch match the files")
    _add(sub, "apply", handlers["apply"], "perform the plan (idempotent; retries throttling)")
    _add(sub, "drift", handlers["drift"], "exit 2 when the account differs from the files (for CI)")
    export = _add(sub, "export", _export, "write the live dashboards and alarms to a spec file",
                  files=False)
    export.add_argument("-o", "--output", help="file to write (.yaml or .json; default stdout)")


def _add(sub: Any, name: str, handler: Handler, text: str, *, aws: bool = True,
         files: bool = True) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text + ".")
    if files:
        parser.add_argument("paths", nargs="*", metavar="FILE",
                            help="spec files or directories (default: observability/)")
        parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                            help="value of ${NAME} in the files, e.g. alarm_topic=arn:aws:sns:... "
                            "(repeatable)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX,
                        help="name prefix of the dashboards and alarms tracekit manages "
                        f"(default {DEFAULT_PREFIX!r}); others are never touched")
    if aws:
        awscli.add_aws_options(parser, "CloudWatch endpoint, e.g. a local emulator")
    else:
        parser.add_argument("--region", help="region the widgets show (default: the spec's or "
                            "the AWS configuration's)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=handler)
    return parser


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _params(args: argparse.Namespace) -> dict[str, str] | None:
    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            awscli.emit(args, {"ok": False, "error": f"--param {item!r}"},
                        f"error: --param {item!r} is not NAME=VALUE")
            return None
        params[name] = value
    return params


def _load(args: argparse.Namespace, region: str) -> Any:
    """What the files generate, or None after printing every problem."""
    from tracekit.dashboards import build, spec

    params = _params(args)
    if params is None:
        return None
    specs, problems = spec.check(args.paths or DEFAULT_PATHS, params)
    desired, more = build.desired(specs, args.prefix, region)
    problems += more
    problems.sort(key=lambda p: (p.file, p.line))  # stable: in reading order within a line
    if problems:
        awscli.print_problems(args, problems)
        return None
    return desired


def _validate(args: argparse.Namespace) -> int:
    region = settings.region(args.region) or PLACEHOLDER_REGION
    desired = _load(args, region)
    if desired is None:
        return 1
    awscli.emit(args, {"ok": True, "dashboards": sorted(desired.dashboards),
                       "alarms": sorted(desired.alarms)},
                f"ok: {len(desired.dashboards)} dashboards, {len(desired.alarms)} alarms")
    return 0


def _client(args: argparse.Namespace) -> Any:
    return awscli.client(args, "cloudwatch")


def _make_plan(args: argparse.Namespace) -> Any:
    from tracekit.dashboards import plan

    client = _client(args)
    desired = _load(args, client.meta.region_name)
    if desired is None:
        return None
    return plan.make_plan(desired, plan.live(client, args.prefix))


def _apply_plan(args: argparse.Namespace, result: Any) -> Any:
    from tracekit.dashboards import plan

    return plan.apply(_client(args), result)


def _export(args: argparse.Namespace) -> int:
    import json

    from tracekit.dashboards import plan

    def run() -> int:
        doc = plan.export(_client(args), args.prefix)
        output: str | None = args.output
        if args.json or (output and output.endswith(".json")):
            text = json.dumps(doc, indent=2) + "\n"
        else:
            import yaml

            text = "# tracekit dashboards export: CloudWatch's dashboards and alarms in API form\n" + str(
                yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        if output:
            Path(output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0

    return awscli.aws_call(args, run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tracekit.dashboards.cli`` runs the same commands as ``tracekit dashboards``."""
    from tracekit.cli import main as tracekit_main

    return tracekit_main(["dashboards", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
