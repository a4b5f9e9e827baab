"""``tracekit traces list|show|serve``: read the traces that ``tracekit sidecar --local`` stored."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_VIEWER_ADDRESS = "127.0.0.1:2020"


def register(subparsers: Any) -> None:
    from tracekit.sidecar.settings import LOCAL_DB_ENV, default_db_path

    db_help = f"SQLite file the sidecar writes [env {LOCAL_DB_ENV}; default {default_db_path()}]"
    parser = subparsers.add_parser(
        "traces",
        help="list, show and browse the traces stored by `tracekit sidecar --local`",
        description="Read the local-mode store of `tracekit sidecar --local`.",
    )
    parser.add_argument("--db", type=Path, default=None, help=db_help)
    commands = parser.add_subparsers(dest="traces_command", metavar="COMMAND", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
        # SUPPRESS: given after the command it is set, else the parent's --db (or None) stays.
        sub.add_argument("--db", type=Path, default=argparse.SUPPRESS, help=db_help)
        return sub

    lst = command("list", "newest traces first: root, services, duration, errors")
    lst.add_argument("--service", metavar="S", help="only traces with a segment named S")
    lst.add_argument("--errors", action="store_true", help="only traces with an error/fault/throttle")
    lst.add_argument("--limit", type=int, default=50, help="at most N traces (default 50)")
    lst.set_defaults(handler=list_command)
    show = command("show", "one trace as a tree with timings, annotations, errors")
    show.add_argument("trace_id", metavar="TRACE_ID", help="e.g. 1-5759e988-bd862e3fe1be46a994272793")
    show.set_defaults(handler=show_command)
    serve = command("serve", "the trace viewer in the browser for the store, without a sidecar")
    serve.add_argument("--address", default=DEFAULT_VIEWER_ADDRESS, metavar="HOST:PORT",
                       help=f"where to serve it (default {DEFAULT_VIEWER_ADDRESS}; port 0: a free one)")
    serve.set_defaults(handler=serve_command)


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"tracekit traces {args.traces_command}: {message}", file=sys.stderr)
    return 2


def _path(args: argparse.Namespace) -> Path:
    from tracekit.sidecar.settings import default_db_path

    return Path(args.db) if args.db else default_db_path()


def _open(args: argparse.Namespace) -> Any:
    """The store, or the exit status after one line saying why not: 1 missing, 2 unreadable."""
    from tracekit.sidecar.store import StoreError, connect

    path = _path(args)
    if not path.exists():
        print(f"tracekit traces: no store at {path}: start `tracekit sidecar --local` first "
              "(or pass --db)", file=sys.stderr)
        return 1
    try:
        return connect(path)
    except StoreError as exc:
        return _fail(args, str(exc))


def list_command(args: argparse.Namespace) -> int:
    from tracekit.sidecar.store import TraceFilter, list_traces

    if args.limit < 1:
        return _fail(args, f"--limit={args.limit} is not valid: expected a whole number of at least 1")
    db = _open(args)
    if isinstance(db, int):
        return db
    where = TraceFilter(service=args.service, status="problem" if args.errors else None)
    traces = list_traces(db, where, limit=args.limit)
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
    if isinstance(db, int):
        return db
    documents = trace_documents(db, args.trace_id)
    if not documents:
        print(f"tracekit traces: trace {args.trace_id} is not in the store "
              "(see `tracekit traces list`)", file=sys.stderr)
        return 1
    print(f"trace {args.trace_id} ({len(documents)} documents)")
    print(render(documents))
    return 0


def serve_command(args: argparse.Namespace) -> int:
    """Serve the viewer until SIGINT/SIGTERM; 1 without a store, 2 on a bad address or store."""
    import signal
    import threading

    from tracekit._shared.settings import format_address, listen_address
    from tracekit.sidecar.viewer.server import ViewerServer

    try:
        address = listen_address(args.address)
    except ValueError as exc:
        return _fail(args, f"--address={args.address!r} is not valid: expected {exc}")
    db = _open(args)
    if isinstance(db, int):
        return db
    db.close()
    path = _path(args)
    try:
        server = ViewerServer(address, path)
    except OSError as exc:
        return _fail(args, f"cannot listen on {args.address}: {exc.strerror or exc} (a running "
                     "`tracekit sidecar --local` serves the viewer on its admin address already; "
                     "or pick another with --address HOST:PORT)")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"tracekit viewer: http://{format_address(server.address())}/ (store {path}); Ctrl-C stops",
          flush=True)
    stop.wait()
    server.stop()
    return 0
