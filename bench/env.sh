#!/usr/bin/env bash
# Creates .venv-bench: tracekit plus the real peers it is compared with (never tracekit dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench
fi
.venv-bench/bin/python -m pip install -q -U pip uv
.venv-bench/bin/uv pip install -q --python .venv-bench/bin/python -e '.[all]' -r bench/requirements.txt
echo .venv-bench/bin/python
