"""The span engine: configuration, the OpenTelemetry provider, X-Ray ids and propagation, the
public tracing API and the OTLP exporters."""
