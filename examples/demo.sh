#!/usr/bin/env bash
# The main job on an embedded default, no AWS account needed: makes .venv, installs tracekit,
# runs a traced example and prints what X-Ray and an OTLP backend receive from it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q -U pip uv
.venv/bin/uv pip install -q --python .venv/bin/python -e '.[all]'
exec .venv/bin/tracekit demo "$@"
