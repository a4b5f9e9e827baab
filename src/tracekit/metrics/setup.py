"""Turn ``configure()`` arguments and the environment into a ``Recorder`` with its outputs."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence

from tracekit._shared import settings
from tracekit._shared.settings import ConfigError
from tracekit.metrics import names
from tracekit.metrics.recorder import Recorder
from tracekit.metrics.sinks import (
    DEFAULT_AGENT,
    AgentWriter,
    EmfOutput,
    FileWriter,
    Output,
    StreamWriter,
)

OUTPUT_FORMS = "stdout, file:PATH, agent, tcp://host:port, udp://host:port, cloudwatch, prometheus"
_ENVIRONMENTS = {
    "lambda": "stdout",
    "local": "stdout",
    "agent": "agent",
    "default": "agent",  # aws-embedded-metrics' name for "the agent"
    "ec2": "agent",
    "ecs": "agent",
}


def build_recorder(
    env: Mapping[str, str],
    *,
    namespace: str | None,
    outputs: Sequence[str | Output] | None,
    default_dimensions: Mapping[str, str] | None,
    service: str | None,
    flush_interval: float | None,
    max_combinations: int,
    scope_flush: bool,
    strict: bool,
) -> Recorder:
    """Arguments win over the environment (aws-embedded-metrics' and Powertools' variables)."""
    if namespace is None:
        namespace = (
            env.get("AWS_EMF_NAMESPACE") or env.get("POWERTOOLS_METRICS_NAMESPACE") or names.DEFAULT_NAMESPACE
        )
    follow = None
    if default_dimensions is None:
        default_dimensions = _service_dimension(env, service)
        if service is None:  # a later ``tracekit.configure(service=...)`` renames it
            follow = functools.partial(_service_dimension, env, None)
    if flush_interval is None:  # in Lambda the decorator flushes at the end of each invocation
        flush_interval = 0.0 if env.get("AWS_LAMBDA_FUNCTION_NAME") else 10.0
    if max_combinations < 1:
        raise ConfigError("max_dimension_combinations", max_combinations, "an integer >= 1")
    if flush_interval < 0:
        raise ConfigError("flush_interval", flush_interval, "seconds >= 0 (0: no interval flush)")
    if isinstance(outputs, str):  # one output given without a list
        outputs = [outputs]
    built = [make_output(o, env) for o in (outputs or [default_output(env)])]
    return Recorder(
        namespace,
        built,
        default_dimensions,
        max_combinations=max_combinations,
        flush_interval=flush_interval,
        scope_flush=scope_flush,
        strict=strict,
        follow_defaults=follow,
    )


def _service_dimension(env: Mapping[str, str], service: str | None) -> dict[str, str]:
    """``ServiceName``: the argument, else the shared service name (the one traces and logs carry),
    left out while no service is named anywhere."""
    service = service or settings.service_name(env if env is not os.environ else None)
    return {} if service == settings.DEFAULT_SERVICE else {names.SERVICE: service}


def default_output(env: Mapping[str, str]) -> str:
    """stdout in Lambda (its log agent extracts EMF), the CloudWatch agent anywhere else."""
    chosen = env.get("AWS_EMF_ENVIRONMENT", "").strip().lower()
    if chosen:
        if chosen not in _ENVIRONMENTS:
            accepted = "Lambda, Local, Agent (or Default), EC2 or ECS"
            raise ConfigError("AWS_EMF_ENVIRONMENT", chosen, accepted)
        return _ENVIRONMENTS[chosen]
    return "stdout" if env.get("AWS_LAMBDA_FUNCTION_NAME") else "agent"


def make_output(spec: str | Output, env: Mapping[str, str]) -> Output:
    """One ``outputs`` entry as an output; optional dependencies load only when named."""
    if not isinstance(spec, str):
        return spec
    if spec == "stdout":
        return EmfOutput(StreamWriter())
    if spec.startswith("file:") and len(spec) > 5:
        try:
            return EmfOutput(FileWriter(spec[5:]))
        except OSError as exc:
            raise ConfigError("outputs", spec, f"file:PATH of a writable file ({exc})") from None
    if spec == "agent":
        return EmfOutput(AgentWriter(env.get("AWS_EMF_AGENT_ENDPOINT") or DEFAULT_AGENT))
    if spec.startswith(("tcp://", "udp://")):
        return EmfOutput(AgentWriter(spec))
    if spec == "cloudwatch":
        from tracekit.metrics.cloudwatch import PutMetricDataOutput

        return PutMetricDataOutput(region=settings.region(env=env))
    if spec == "prometheus":
        from tracekit.metrics.prometheus import PrometheusOutput

        return PrometheusOutput()
    raise ConfigError("outputs", spec, OUTPUT_FORMS)
