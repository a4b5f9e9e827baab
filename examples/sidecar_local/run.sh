#!/usr/bin/env bash
# Local mode end to end, no AWS account: start `tracekit sidecar --local`, run a traced app
# against it, stop the sidecar (it flushes), then list the stored traces and show the failed one;
# it ends with the command that shows them in the browser.
# Ports and the store path can be moved with TRACEKIT_SIDECAR_* / TRACEKIT_SIDECAR_LOCAL_DB.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q -U pip uv
  .venv/bin/uv pip install -q --python .venv/bin/python -e '.[all]'
fi
export TRACEKIT_SIDECAR_LOCAL_DB="${TRACEKIT_SIDECAR_LOCAL_DB:-$(mktemp -d)/traces.db}"
export TRACEKIT_SIDECAR_UDP_ADDRESS="${TRACEKIT_SIDECAR_UDP_ADDRESS:-127.0.0.1:2000}"
export TRACEKIT_SIDECAR_TCP_ADDRESS="${TRACEKIT_SIDECAR_TCP_ADDRESS:-127.0.0.1:2000}"
export TRACEKIT_SIDECAR_ADMIN_ADDRESS="${TRACEKIT_SIDECAR_ADMIN_ADDRESS:-127.0.0.1:2020}"
export AWS_XRAY_DAEMON_ADDRESS="tcp:$TRACEKIT_SIDECAR_TCP_ADDRESS udp:$TRACEKIT_SIDECAR_UDP_ADDRESS"
export OTEL_TRACES_SAMPLER="${OTEL_TRACES_SAMPLER:-always_on}"

.venv/bin/tracekit sidecar --local 2> "$TRACEKIT_SIDECAR_LOCAL_DB.log" &
sidecar=$!
trap 'kill $sidecar 2>/dev/null || true' EXIT
.venv/bin/python - <<PY
import time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen("http://$TRACEKIT_SIDECAR_ADMIN_ADDRESS/health", timeout=1)
        break
    except OSError:
        time.sleep(0.05)
else:
    raise SystemExit("the sidecar did not start: see $TRACEKIT_SIDECAR_LOCAL_DB.log")
PY
echo "== sidecar --local is up (store: $TRACEKIT_SIDECAR_LOCAL_DB); running examples/sidecar_local/app.py"
.venv/bin/python examples/sidecar_local/app.py
kill -TERM $sidecar && wait $sidecar
echo "== tracekit traces list"
.venv/bin/tracekit traces list
echo "== tracekit traces list --errors"
.venv/bin/tracekit traces list --errors
failed=$(.venv/bin/tracekit traces list --errors | awk 'NR == 2 {print $1}')
echo "== tracekit traces show $failed"
.venv/bin/tracekit traces show "$failed"
echo "== browse them in the trace viewer (the sidecar serves it at http://$TRACEKIT_SIDECAR_ADMIN_ADDRESS/ while it runs):"
echo "   .venv/bin/tracekit traces serve --db $TRACEKIT_SIDECAR_LOCAL_DB --address $TRACEKIT_SIDECAR_ADMIN_ADDRESS"
echo "   then open http://$TRACEKIT_SIDECAR_ADMIN_ADDRESS/"
