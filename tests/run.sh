#!/usr/bin/env bash
# The whole test suite on a fresh machine: makes .venv, installs tracekit-aws[dev], lints, type-checks, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q -U pip uv
.venv/bin/uv pip install -q --python .venv/bin/python -e '.[dev]'
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/firefox-esr ]; then
  # The trace viewer's browser tests drive Debian's headless Chromium (Playwright, executable_path)
  # and Firefox ESR (WebDriver BiDi).
  echo "== installing chromium, chromium-driver and firefox-esr (apt-get)"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver firefox-esr > /dev/null
fi
echo "== ruff"
.venv/bin/ruff check src tests bench examples
echo "== hadolint"
.venv/bin/hadolint Dockerfile
echo "== mypy (strict on src/tracekit)"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
