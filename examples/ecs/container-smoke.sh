#!/usr/bin/env bash
# Build the sidecar image from the top-level Dockerfile WITHOUT a Docker daemon, run it, and check it:
# image facts (non-root, no compilers, HEALTHCHECK, ports), then a segment (UDP), a span (OTLP/HTTP)
# and an EMF line (TCP) sent to the container arrive in X-Ray and CloudWatch Logs (moto server on
# the host stands in for AWS), /health answers 200, /metrics counts them, the image's own
# HEALTHCHECK command passes, and SIGTERM ends the container with status 0.
#
# Needs root on Debian/Ubuntu (installs podman, buildah, runc, debootstrap with apt-get when missing)
# and the repo's .venv (tests/run.sh makes it). Base images cannot be pulled here, so a Debian
# bookworm base with python3 is bootstrapped once (debootstrap) and imported; it is cached as
# $BASE_IMAGE. Elsewhere: BASE_IMAGE=python:3.12-slim-bookworm uses the registry image instead.
#
#   examples/ecs/container-smoke.sh            # prints the time each step took
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
BASE_IMAGE=${BASE_IMAGE:-localhost/tracekit-base:bookworm}
IMAGE=${IMAGE:-localhost/tracekit-sidecar:smoke}
WORK=$(mktemp -d /var/tmp/tracekit-smoke.XXXXXX)
NAME=tracekit-smoke-$$
LOG_GROUP=/tracekit/smoke
LOG_STREAM=smoke-$$
STARTED=$(date +%s)
MOTO_PID=

step() { echo "== [$(($(date +%s) - STARTED)) s] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# podman without systemd logs harmless healthcheck-timer errors; keep its stderr out of the way.
pod() { podman --runtime runc "$@" 2>>"$WORK/podman.log"; }
cleanup() {
  pod rm -f "$NAME" >/dev/null || true
  if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step "tools"
if ! command -v podman >/dev/null || ! command -v buildah >/dev/null || ! command -v runc >/dev/null \
   || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc debootstrap >/dev/null
fi

if [[ "$BASE_IMAGE" == localhost/* ]] && ! pod image exists "$BASE_IMAGE"; then
  step "bootstrap the base image $BASE_IMAGE (debootstrap bookworm + python3)"
  debootstrap --variant=minbase --include=python3,python3-venv bookworm "$WORK/rootfs" \
    http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; exit 1; }
  # Trust the host's CAs in the build (pip behind a TLS-inspecting proxy); local base only.
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    install -D -m 644 /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
  fi
  tar -C "$WORK/rootfs" -c . | pod import - "$BASE_IMAGE" >/dev/null
fi

step "build $IMAGE (buildah, chroot isolation, docker format so HEALTHCHECK is kept)"
previous=$(pod image inspect --format '{{.Id}}' "$IMAGE" || true)
buildah bud --isolation chroot --format docker --layers=false --quiet \
  --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log"; exit 1; }
# Each run would otherwise leave the previous build behind, untagged (~300 MB).
if [ -n "$previous" ] && [ "$previous" != "$(pod image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  pod rmi "$previous" >/dev/null || true
fi

step "image facts"
inspect() { pod image inspect --format "$1" "$IMAGE"; }
user=$(inspect '{{.Config.User}}')
[ "$user" = "10001:10001" ] || fail "image user is '$user', expected 10001:10001"
health=$(inspect '{{json .Config.Healthcheck.Test}}')
[[ "$health" == *"/health"* ]] || fail "no HEALTHCHECK on /health: $health"
ports=$(inspect '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}')
for port in 2000/udp 2000/tcp 2020/tcp 4318/tcp 25888/tcp 25888/udp; do
  [[ " $ports" == *" $port "* ]] || fail "port $port is not EXPOSEd (got: $ports)"
done
# Lower limits than podman's defaults: a container without CAP_SYS_RESOURCE cannot raise them.
RUN=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=32768:32768)
pod run --rm "${RUN[@]}" --entrypoint python3 "$IMAGE" -c \
  "import shutil, sys; found = [c for c in ('gcc', 'cc', 'clang', 'c++', 'make') if shutil.which(c)]; sys.exit(f'compilers in the image: {found}' if found else 0)" \
  || fail "the final stage must not hold compilers"
echo "user $user; exposes $ports; size $(inspect '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"

step "start moto server (AWS stand-in) and the sidecar container (host network, free ports)"
read -r P_UDP P_ADMIN P_OTLP P_EMF P_AWS < <("$PY" - <<'EOF'
import socket
found = []
while len(found) < 5:
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        found.append(port)
print(*found)
EOF
)
"$(dirname "$PY")/moto_server" -H 127.0.0.1 -p "$P_AWS" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
# Addresses through TRACEKIT_SIDECAR_* variables (as in the ECS example), so the image's HEALTHCHECK
# finds the admin port the same way it would in a task.
pod run -d --name "$NAME" "${RUN[@]}" --network host --health-cmd none \
  -e AWS_ACCESS_KEY_ID=smoke -e AWS_SECRET_ACCESS_KEY=smoke -e AWS_REGION=us-east-1 \
  -e TRACEKIT_SIDECAR_UDP_ADDRESS="127.0.0.1:$P_UDP" -e TRACEKIT_SIDECAR_TCP_ADDRESS="127.0.0.1:$P_UDP" \
  -e TRACEKIT_SIDECAR_ADMIN_ADDRESS="127.0.0.1:$P_ADMIN" \
  -e TRACEKIT_SIDECAR_OTLP_ADDRESS="127.0.0.1:$P_OTLP" -e TRACEKIT_SIDECAR_EMF_ADDRESS="127.0.0.1:$P_EMF" \
  -e TRACEKIT_SIDECAR_EMF_LOG_GROUP="$LOG_GROUP" -e TRACEKIT_SIDECAR_EMF_LOG_STREAM="$LOG_STREAM" \
  "$IMAGE" --endpoint-url "http://127.0.0.1:$P_AWS" --logs-endpoint-url "http://127.0.0.1:$P_AWS" \
  --batch-timeout 0.2 >/dev/null

step "send a segment, a span and an EMF line; check X-Ray, CloudWatch Logs, /health, /metrics"
AWS_ACCESS_KEY_ID=smoke AWS_SECRET_ACCESS_KEY=smoke \
  "$PY" "$ROOT/examples/ecs/smoke_check.py" --udp "$P_UDP" --otlp "$P_OTLP" --emf "$P_EMF" \
  --admin "$P_ADMIN" --aws "http://127.0.0.1:$P_AWS" --log-group "$LOG_GROUP" --log-stream "$LOG_STREAM" \
  || { podman logs "$NAME" 2>&1 | tail -20; exit 1; }

step "the image's HEALTHCHECK command, run inside the container"
mapfile -t hc < <(inspect '{{json .Config.Healthcheck.Test}}' \
  | "$PY" -c 'import json, sys; print("\n".join(json.load(sys.stdin)[1:]))')
pod exec "$NAME" "${hc[@]}" || fail "HEALTHCHECK command failed"
echo "ok   ${hc[*]:0:2} ... exits 0"

step "SIGTERM: flush and exit 0 with a summary line"
pod stop --time 30 "$NAME" >/dev/null
code=$(pod inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$code" = 0 ] || { podman logs "$NAME" 2>&1 | tail -20; fail "exit status $code after SIGTERM"; }
podman logs "$NAME" 2>&1 | grep -q "sidecar stopped" || fail "no shutdown summary in the logs"
echo "ok   exit status 0; $(podman logs "$NAME" 2>&1 | grep "sidecar stopped" | cut -c1-160)"
step "container smoke test passed"
