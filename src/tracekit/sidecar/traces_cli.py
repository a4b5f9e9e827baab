"""``tracekit traces list|show``: read the traces that ``tracekit sidecar --local`` stored."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    from tracekit.sidecar.settings import default_db_path

    parser = subparsers.add_parser(
        "traces",
        help="list and show the traces stored by `tracekit sidecar --local`",
        description="Read the local-mode store of `tracekit sidecar --local`.",
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        help=f"SQLite file the sidecar writes [env TRACEKIT_LOCAL_DB; default {default_db_path()}]",
    )
    commands = parser.add_subparsers(dest="traces_command", metavar="COMMAND", required=True)
    lst = commands.add_parser("list", help="newest traces first: root, services, duration, errors")
    lst.add_argument("--service", metavar="S", help="only traces with a segment named S")
    lst.add_argument("--errors", action="store_true", help="only traces with an error/fault/throttle")
    lst.add_argument("--limit", type=int, default=50, help="at most N traces (default 50)")
    lst.set_defaults(handler=list_command)
    show = commands.add_parser("show", help="one trace as a tree with timings, annotations, errors")
    show.add_argument("trace_id", metavar="TRACE_ID", help="e.g. 1-5759e988-bd862e3fe1be46a994272793")
    show.set_defaults(handler=show_command)


def _open(args: argparse.Namespace) -> Any:
    from tracekit.sidecar.settings import default_db_path
    from tracekit.sidecar.store import connect

    path = args.db or default_db_path()
    if not path.exists():
        print(f"tracekit traces: no store at {path}: start `tracekit sidecar --local` first "
              "(or pass --db)", file=sys.stderr)
        return None
    return connect(path)


def list_command(args: argparse.Namespace) -> int:
    from tracekit.sidecar.store import list_traces

    db = _open(args)
    if db is None:
        return 1
    traces = list_traces(db, service=args.service, errors=args.errors, limit=args.limit)
    if not traces:
        print("no traces stored" + (" matching the filters" if args.service or args.errors else ""))
        return 0
    print(f"{'TRACE ID':35} {'STARTED':8} {'DURATION':>11} {'DOCS':>4}  {'ROOT':40} SERVICES")
    for t in traces:
        started = time.strftime("%H:%M:%S", time.localtime(t.start))
        duration = "in progress" if t.duration_ms is None else f"{t.duration_ms:.1f} ms"
        root = f"{t.root} {t.request or ''}".strip()[:40]
        flag = "  ERROR" if t.problem else ""
        print(f"{t.trace_id:35} {started:8} {duration:>11} {t.documents:>4}  {root:40} "
              f"{','.join(t.services)}{flag}")
    return 0


def show_command(args: argparse.Namespace) -> int:
    from tracekit.sidecar.store import trace_documents
    from tracekit.xray.tree import render

    db = _open(args)
    if db is None:
        return 1
    documents = trace_documents(db, args.trace_id)
    if not documents:
        print(f"tracekit traces: trace {args.trace_id} is not in the store "
              "(see `tracekit traces list`)", file=sys.stderr)
        return 1
    print(f"trace {args.trace_id} ({len(documents)} documents)")
    print(render(documents))
    return 0
