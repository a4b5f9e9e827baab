#!/usr/bin/env bash
# The main job on an embedded default, no AWS account needed: makes .venv, installs tracekit, starts
# `tracekit sidecar --local` (X-Ray daemon protocol, sampling rules from sampling/, SQLite store),
# runs a traced example app against it and prints the stored traces as trees.
# `.venv/bin/tracekit demo` then shows one trace received both as X-Ray documents and as OTLP spans.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q -U pip uv
.venv/bin/uv pip install -q --python .venv/bin/python -e '.[all]'
bash examples/sidecar_local/run.sh "$@"
echo "== next: .venv/bin/tracekit demo (one trace as X-Ray documents and as OTLP spans, with the same ids)"
