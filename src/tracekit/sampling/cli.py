"""``tracekit sampling ...``: validate, plan, apply, export, drift, explain, cost, import, serve.

Exit codes: 0 fine, 1 error (rule files with problems, failed API call), 2 drift found
(``drift``) or bad input (a usage error, a bad value, a file that cannot be read: one line on
stderr).
boto3 and PyYAML are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tracekit._shared import awscli
from tracekit._shared.settings import port, positive

DEFAULT_PATHS = ["sampling"]
PRICE_PER_MILLION = 5.00
"""USD per million traces recorded: AWS X-Ray list price (us-east-1) at the time of writing."""
FREE_TRACES = 100_000
"""Traces recorded per month in the X-Ray free tier."""

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> None:
    """Add ``tracekit sampling`` and its sub-commands."""
    top = subparsers.add_parser(
        "sampling", help="sampling rules as code (validate, plan, apply, drift...)",
        description="Keep X-Ray sampling rules in files and an account in step.",
    )
    top.set_defaults(handler=lambda args: _help(top))
    handlers = awscli.plan_handlers(_make_plan, _apply_plan)
    sub = top.add_subparsers(dest="sampling_command", metavar="COMMAND")
    _add(sub, "validate", _validate, "check rule files against every constraint of the X-Ray API",
         aws=False)
    plan = _add(sub, "plan", handlers["plan"], "show the create/update/delete steps that make X-Ray match")
    apply = _add(sub, "apply", handlers["apply"], "perform the plan (idempotent; retries throttling)")
    drift = _add(sub, "drift", handlers["drift"], "exit 2 when the live rules differ from the files (for CI)")
    for parser in (plan, apply, drift):
        parser.add_argument("--prune-unmanaged", action="store_true",
                            help="also delete live rules that tracekit did not create")
    export = _add(sub, "export", _export, "write the live rules to a rule file", files=False)
    export.add_argument("-o", "--output", help="file to write (.yaml or .json; default stdout)")
    explain = _add(sub, "explain", _explain, "which rule matches a request, and why not the others")
    for flag in ("--service", "--method", "--path"):
        explain.add_argument(flag, required=True, help=f"the request's {flag[2:]}")
    explain.add_argument("--host", help="the request's Host header")
    explain.add_argument("--service-type", help="the origin, e.g. AWS::ECS::Container")
    explain.add_argument("--live", action="store_true", help="use the account's rules, not files")
    _add_cost(sub)
    convert = _add(sub, "import", _import, "convert an X-Ray SDK local-rules file (v1/v2)",
                   aws=False, files=False)
    convert.add_argument("sdk_file", help="the X-Ray SDK sampling rules JSON file")
    convert.add_argument("-o", "--output", help="file to write (default stdout)")
    _add_serve(sub)


def _add(sub: Any, name: str, handler: Handler, text: str, *, aws: bool = True,
         files: bool = True) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text + ".")
    if files:
        parser.add_argument("paths", nargs="*", metavar="FILE",
                            help="rule files or directories (default: sampling/)")
    if aws:
        awscli.add_aws_options(parser, "X-Ray endpoint, e.g. a local control plane")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=handler)
    return parser


def _add_cost(sub: Any) -> None:
    cost = sub.add_parser(
        "cost", help="traces per month per rule and the X-Ray recording cost",
        description="Estimate traces recorded per month per rule for a request rate. Reservoirs "
        "are per account per second (X-Ray centralized sampling).")
    cost.add_argument("paths", nargs="*", metavar="FILE", help="rule files (default: sampling/)")
    cost.add_argument("--rps", type=positive(float), required=True, help="total requests per second")
    cost.add_argument("--traffic", metavar="FILE",
                      help="traffic mix (YAML/JSON: requests: [{service, method, path, host, "
                      "service_type, share}]); default: all traffic hits the Default rule")
    cost.add_argument("--price-per-million", type=positive(float, zero=True), default=PRICE_PER_MILLION,
                      help=f"USD per million traces recorded (default {PRICE_PER_MILLION:.2f}, "
                      "the X-Ray list price)")
    cost.add_argument("--free-traces", type=positive(int, zero=True), default=FREE_TRACES,
                      help=f"free traces per month (default {FREE_TRACES:,}, the free tier)")
    cost.add_argument("--json", action="store_true", help="machine-readable output")
    cost.set_defaults(handler=_cost)


def _add_serve(sub: Any) -> None:
    serve = sub.add_parser(
        "serve", help="run a local X-Ray sampling control plane (boto3/SDK compatible)",
        description="Serve the X-Ray sampling API on HTTP, backed by SQLite.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=port, default=2000, help="port (default 2000, the daemon's)")
    serve.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    serve.add_argument("--rules", metavar="DIR", dest="paths", action="append",
                       help="seed from these rule files (repeatable)")
    serve.set_defaults(handler=_serve, json=False)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _load(args: argparse.Namespace, sdk_file: str | None = None) -> Any:
    """The rule set from the given paths (or one SDK local-rules file), or None after printing
    every problem."""
    from tracekit.sampling import rules

    if sdk_file is None:
        ruleset, problems = rules.check(args.paths or DEFAULT_PATHS, require_files=True)
    else:
        ruleset, problems = rules.check([sdk_file], sdk_only=True)
    if problems:
        awscli.print_problems(args, problems)
        return None
    return ruleset


def _client(args: argparse.Namespace) -> Any:
    return awscli.client(args, "xray")


def _validate(args: argparse.Namespace) -> int:
    ruleset = _load(args)
    if ruleset is None:
        return 1
    names = [r.name for r in ruleset.ordered()]
    awscli.emit(args, {"ok": True, "rules": names, "tail": [t.name for t in ruleset.tail]},
          f"ok: {len(names)} rules ({', '.join(names)}), {len(ruleset.tail)} tail policies")
    return 0


def _make_plan(args: argparse.Namespace) -> Any:
    from tracekit.sampling import plan

    ruleset = _load(args)
    if ruleset is None:
        return None
    return plan.make_plan(ruleset, plan.live_rules(_client(args)), args.prune_unmanaged)


def _apply_plan(args: argparse.Namespace, result: Any) -> Any:
    from tracekit.sampling import plan

    return plan.apply(_client(args), result)


def _write(args: argparse.Namespace, ruleset: Any) -> None:
    """The rule file to ``--output`` or stdout; JSON for ``--json`` or a ``.json`` output."""
    from tracekit.sampling import rules

    output: str | None = args.output
    text = rules.dump(ruleset, json_format=args.json or bool(output and output.endswith(".json")))
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def _export(args: argparse.Namespace) -> int:
    from tracekit.sampling import plan

    def run() -> int:
        _write(args, plan.export(_client(args)))
        return 0

    return awscli.aws_call(args, run)


def _import(args: argparse.Namespace) -> int:
    ruleset = _load(args, sdk_file=args.sdk_file)
    if ruleset is None:
        return 1
    _write(args, ruleset)
    return 0


def _explain(args: argparse.Namespace) -> int:
    from tracekit.sampling.matching import SamplingRequest

    def run() -> int:
        if args.live:
            from tracekit.sampling import plan

            ordered = plan.live_rules(_client(args))
        else:
            ruleset = _load(args)
            if ruleset is None:
                return 1
            ordered = ruleset.ordered()
        request = SamplingRequest(service=args.service, service_type=args.service_type,
                                  host=args.host, method=args.method, path=args.path)
        steps = _explain_steps(ordered, request)
        matched = next((s["rule"] for s in steps if s["matches"]), None)
        awscli.emit(args, {"matched": matched, "steps": steps}, "\n".join(s["text"] for s in steps))
        return 0

    return awscli.aws_call(args, run)


def _explain_steps(ordered: Sequence[Any], request: Any) -> list[dict[str, Any]]:
    """Rules in evaluation order up to the first match, each with why it does (not) match."""
    from tracekit.sampling.matching import mismatches

    steps: list[dict[str, Any]] = []
    for rule in ordered:
        reasons = mismatches(rule, request)
        head = f"{rule.name!r} (priority {rule.priority})"
        text = (f"  no  {head}: " + "; ".join(reasons) if reasons else
                f"MATCH {head}: reservoir {rule.reservoir_size}/s, then {rule.fixed_rate:.0%}")
        steps.append({"rule": rule.name, "priority": rule.priority, "matches": not reasons,
                      "reasons": reasons, "text": text})
        if not reasons:
            break
    return steps


def _cost(args: argparse.Namespace) -> int:
    from tracekit.sampling import cost

    ruleset = _load(args)
    if ruleset is None:
        return 1
    mix = cost.load_traffic(args.traffic) if args.traffic else cost.DEFAULT_MIX
    estimate = cost.estimate(ruleset.ordered(), mix, args.rps, args.price_per_million,
                             args.free_traces)
    awscli.emit(args, estimate.to_json(), estimate.text())
    return 0


def _serve(args: argparse.Namespace) -> int:
    import sqlite3
    import threading

    from tracekit.sampling.controlplane import ControlPlane

    seed = _load(args) if args.paths else None
    if args.paths and seed is None:
        return 1
    try:
        plane = ControlPlane(args.db, args.host, args.port)
        plane.load_rules(seed.rules if seed else ())
        plane.start()
    except (OSError, sqlite3.Error) as exc:
        print(f"error: cannot serve on {args.host}:{args.port} from {args.db}: {exc}")
        return 1
    print(f"X-Ray sampling control plane on {plane.url} (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        plane.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tracekit.sampling.cli`` runs the same commands as ``tracekit sampling``."""
    from tracekit.cli import main as tracekit_main

    return tracekit_main(["sampling", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
