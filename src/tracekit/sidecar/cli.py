"""``tracekit sidecar``: run the X-Ray daemon replacement (or its local mode)."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
A maintained drop-in for the X-Ray daemon (same ports, same protocol), with a health endpoint,
Prometheus metrics, retries, bounded memory and counted drops.

  UDP   udp-address    daemon protocol: {"format":"json","version":1}\\n<segment document>;
                       batches of <= 50 to PutTraceSegments, retried on throttling/5xx.
  TCP   tcp-address    sampling proxy for SDKs: POST /GetSamplingRules, /SamplingTargets,
                       /SamplingStatisticSummaries only (SigV4-signed with the task's
                       credentials); any other path gets 403; bodies over 64 KiB get 413.
  HTTP  admin-address  GET /health (200 ok / 503 + JSON reason; an ECS container healthCheck)
                       and GET /metrics (Prometheus text); with --local also the trace
                       viewer at / and its JSON under /api/.

--local needs no AWS account: documents go to a SQLite file (see --local-db), the TCP port
serves the local sampling control plane loaded from --sampling-dir, the admin address serves
the trace viewer at / (trace list, waterfall, service map, EMF metrics, sampling rules), and
`tracekit traces list|show|serve` read what was stored.

--tail-sampling holds the traces of applications that defer their sampling decision
(OTEL_TRACES_SAMPLER=xray_deferred) until they end (--tail-idle, --tail-max-wait), then keeps
them by the tail: policies of --sampling-dir (error responses) or else by its head rules; other
traces pass unchanged. Decisions are counted in /metrics (tracekit_sidecar_tail_*).

Every HTTP port (proxy, admin, OTLP) wants request headers within 5 s of connecting (15 s for the
next request on a kept-alive connection) and a body within 15 s; when its connections are all
taken, the one waiting longest for its headers is closed, so slow clients never lock out /health.
"""

EPILOG = """\
Settings come from flags, then TRACEKIT_SIDECAR_* variables, then the YAML file, then defaults.
The region is also read from AWS_REGION / AWS_DEFAULT_REGION and, on ECS, from the task metadata
(ECS_CONTAINER_METADATA_URI_V4). Credentials come from botocore's usual chain (task role on ECS).

SIGTERM or SIGINT: stop receiving, flush what is buffered within --shutdown-timeout, exit 0 and log
one JSON summary line (received, sent, rejected/dropped/unprocessed by reason). Logs are JSON lines
on stderr.

Example YAML (--config sidecar.yaml):
  udp_address: 0.0.0.0:2000
  memory_limit: 64
  workers: 8
"""


def register(subparsers: Any) -> None:
    from tracekit.sidecar.settings import add_arguments

    parser = subparsers.add_parser(
        "sidecar",
        help="run the X-Ray daemon replacement: UDP segments, sampling proxy, /health, /metrics",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the settings, bind, serve until a stop signal; 2 on bad settings, 1 on bind errors.

    Even the errors that stop it from starting are JSON log lines, like everything else it logs
    (log pipelines that parse the sidecar's output would otherwise miss the one line that matters).
    """
    import logging

    from tracekit._shared.settings import ConfigError
    from tracekit.sidecar import ingest, logs
    from tracekit.sidecar.runtime import ListenError, Sidecar
    from tracekit.sidecar.settings import resolve
    from tracekit.sidecar.store import StoreError

    logs.configure("info")
    logger = logging.getLogger("tracekit.sidecar")
    try:
        settings = resolve(args)
        logs.configure(settings.log_level)
        sidecar = Sidecar(settings)
        ingest.attach(sidecar)
    except (ConfigError, StoreError) as exc:
        logger.error("tracekit sidecar: %s", exc)
        return 2
    except ListenError as exc:
        logger.error("tracekit sidecar: %s", exc)
        return 1
    except OSError as exc:
        logger.error("tracekit sidecar: cannot start: %s", exc)
        return 1
    return sidecar.run()
