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

log="$TRACEKIT_SIDECAR_LOCAL_DB.log"
.venv/bin/tracekit sidecar --local 2> "$log" &
sidecar=$!
trap 'kill $sidecar 2>/dev/null || true' EXIT
for _ in $(seq 300); do  # its "sidecar started" log line, or its exit (a taken port...), within 30 s
  grep -q '"message": "sidecar started"' "$log" && break
  if ! kill -0 "$sidecar" 2>/dev/null; then
    .venv/bin/python - "$log" >&2 <<'PY'
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
logged = [json.loads(line) for line in lines if line.startswith('{"')]
errors = [entry["message"] for entry in logged if entry.get("level") == "error"]
print("\n".join(errors or lines[-5:]))
variable = re.search(r"TRACEKIT_SIDECAR_\w+_ADDRESS", " ".join(errors))
if variable:
    print(f"pick another port, e.g. {variable[0]}=127.0.0.1:PORT bash examples/demo.sh")
PY
    exit 1
  fi
  sleep 0.1
done
grep -q '"message": "sidecar started"' "$log" || { echo "the sidecar did not start in 30 s: see $log" >&2; exit 1; }
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
