# The tracekit sidecar: X-Ray daemon replacement + OTLP/HTTP and EMF (CloudWatch agent) receivers.
#
#   docker build -t tracekit-sidecar .
#   docker run --network host -e AWS_REGION=us-east-1 tracekit-sidecar
#
# BASE_IMAGE must provide python3 (>= 3.11) with the venv module; the default is the official slim
# image. examples/ecs/container-smoke.sh builds with a locally bootstrapped Debian base instead.
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Everything the sidecar imports lives in one virtualenv that the final stage copies as is.
RUN python3 -m venv /opt/tracekit \
    && /opt/tracekit/bin/pip install --no-cache-dir ".[sidecar]" \
    && /opt/tracekit/bin/pip uninstall --yes pip setuptools

FROM ${BASE_IMAGE}
ENV PATH=/opt/tracekit/bin:$PATH \
    PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/tracekit tracekit
COPY --from=build /opt/tracekit /opt/tracekit
USER 10001:10001
WORKDIR /home/tracekit
# Defaults bind 127.0.0.1 (ECS awsvpc tasks share localhost); set TRACEKIT_SIDECAR_*_ADDRESS to
# 0.0.0.0:PORT for bridge networking.
#   2000/udp  X-Ray daemon protocol (segments)      2000/tcp  sampling proxy (GetSamplingRules...)
#   2020/tcp  /health and /metrics                  4318/tcp  OTLP/HTTP traces (/v1/traces)
#   25888/tcp+udp  EMF, the CloudWatch agent protocol
EXPOSE 2000/udp 2000/tcp 2020/tcp 4318/tcp 25888/tcp 25888/udp
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; a = os.environ.get('TRACEKIT_SIDECAR_ADMIN_ADDRESS', '127.0.0.1:2020').replace('0.0.0.0', '127.0.0.1'); u.urlopen(f'http://{a}/health', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tracekit", "sidecar"]
