"""Configuration from the environment variables users already know (issue 2, item 2).

Every test passes ``env`` explicitly, so the process environment never leaks in.
"""

from __future__ import annotations

import pytest

from tracekit.tracing.config import DEFAULT_DAEMON, Config, ConfigError, load, parse_daemon_address


def test_defaults_with_an_empty_environment() -> None:
    cfg = load({})
    assert cfg == Config()
    assert cfg.service == "unknown_service"
    assert cfg.exporters == ("xray",)
    assert cfg.daemon_udp == cfg.daemon_tcp == DEFAULT_DAEMON == ("127.0.0.1", 2000)
    assert (cfg.disabled, cfg.otlp_endpoint, cfg.otlp_protocol) == (False, None, "http/protobuf")


# -- service and resource ---------------------------------------------------------------------------


def test_service_name_wins_over_resource_attribute() -> None:
    env = {"OTEL_SERVICE_NAME": "checkout", "OTEL_RESOURCE_ATTRIBUTES": "service.name=other"}
    assert load(env).service == "checkout"


def test_service_name_from_resource_attributes() -> None:
    cfg = load({"OTEL_RESOURCE_ATTRIBUTES": "service.name=cart, deployment.environment=prod"})
    assert cfg.service == "cart"
    assert cfg.resource_attributes == {"service.name": "cart", "deployment.environment": "prod"}


def test_resource_attributes_are_percent_decoded_and_empty_items_skipped() -> None:
    cfg = load({"OTEL_RESOURCE_ATTRIBUTES": "team=a%2Cb,,note=x%3Dy,empty="})
    assert cfg.resource_attributes == {"team": "a,b", "note": "x=y", "empty": ""}


def test_xray_tracing_name_is_a_fallback() -> None:
    assert load({"AWS_XRAY_TRACING_NAME": "legacy"}).service == "legacy"
    assert load({"AWS_XRAY_TRACING_NAME": "legacy", "OTEL_SERVICE_NAME": "new"}).service == "new"


def test_explicit_service_beats_the_environment() -> None:
    assert load({"OTEL_SERVICE_NAME": "env"}, service="arg").service == "arg"


# -- switches -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on", " True "])
def test_sdk_disabled_true_forms(value: str) -> None:
    assert load({"OTEL_SDK_DISABLED": value}).disabled is True


@pytest.mark.parametrize("value", ["false", "0", "no", "off", ""])
def test_sdk_disabled_false_forms(value: str) -> None:
    assert load({"OTEL_SDK_DISABLED": value}).disabled is False


def test_xray_sdk_enabled_false_disables() -> None:
    assert load({"AWS_XRAY_SDK_ENABLED": "false"}).disabled is True
    assert load({"AWS_XRAY_SDK_ENABLED": "true"}).disabled is False
    assert load({"AWS_XRAY_SDK_ENABLED": "true", "OTEL_SDK_DISABLED": "true"}).disabled is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("xray", ("xray",)),
        ("otlp", ("otlp",)),
        ("xray,otlp", ("xray", "otlp")),
        (" OTLP , xray ,console", ("otlp", "xray", "console")),
        ("xray,xray", ("xray",)),
        ("none", ()),
    ],
)
def test_exporters(value: str, expected: tuple[str, ...]) -> None:
    assert load({"TRACEKIT_EXPORTERS": value}).exporters == expected


def test_exporters_argument_overrides_environment() -> None:
    assert load({"TRACEKIT_EXPORTERS": "otlp"}, exporters=["console"]).exporters == ("console",)
    assert load({"TRACEKIT_EXPORTERS": "otlp"}, exporters=None).exporters == ("otlp",)


ALL_VARIABLES = [
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "AWS_XRAY_DAEMON_ADDRESS",
    "AWS_XRAY_SDK_ENABLED",
    "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_TRACING_NAME",
    "TRACEKIT_EXPORTERS",
]


@pytest.mark.parametrize("value", ["", "  "])
@pytest.mark.parametrize("name", ALL_VARIABLES)
def test_empty_value_means_unset(name: str, value: str) -> None:
    """OTel convention: an empty variable is an unset one (deployment templates often set "")."""
    assert load({name: value}) == load({})


def test_empty_exporters_argument_means_none() -> None:
    assert load({}, exporters=[]).exporters == ()


# -- OTLP -----------------------------------------------------------------------------------------


def test_otlp_base_endpoint_gets_the_traces_path() -> None:
    cfg = load({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert cfg.otlp_endpoint == "http://collector:4318/v1/traces"


def test_otlp_traces_endpoint_is_used_as_is_and_wins() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example.com/custom",
    }
    assert load(env).otlp_endpoint == "https://traces.example.com/custom"


@pytest.mark.parametrize("value", ["grpc", "http/protobuf", "GRPC"])
def test_otlp_protocol(value: str) -> None:
    assert load({"OTEL_EXPORTER_OTLP_PROTOCOL": value}).otlp_protocol == value.lower()


def test_otlp_traces_protocol_wins() -> None:
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}
    assert load(env).otlp_protocol == "grpc"


def test_otlp_headers() -> None:
    cfg = load({"OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc%20def, x-tenant=t1"})
    assert cfg.otlp_headers == {"api-key": "abc def", "x-tenant": "t1"}
    env = {"OTEL_EXPORTER_OTLP_HEADERS": "a=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=2"}
    assert load(env).otlp_headers == {"b": "2"}


# -- daemon address ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "udp", "tcp"),
    [
        ("127.0.0.1:3000", ("127.0.0.1", 3000), ("127.0.0.1", 3000)),
        ("xray-daemon:2000", ("xray-daemon", 2000), ("xray-daemon", 2000)),
        ("[::1]:2000", ("::1", 2000), ("::1", 2000)),
        ("tcp:10.0.0.1:2001 udp:10.0.0.2:2002", ("10.0.0.2", 2002), ("10.0.0.1", 2001)),
        ("udp:10.0.0.2:2002 tcp:10.0.0.1:2001", ("10.0.0.2", 2002), ("10.0.0.1", 2001)),
        ("  tcp:h:1   udp:h:65535 ", ("h", 65535), ("h", 1)),
    ],
)
def test_daemon_address_forms(value: str, udp: tuple[str, int], tcp: tuple[str, int]) -> None:
    assert parse_daemon_address(value) == (udp, tcp)
    cfg = load({"AWS_XRAY_DAEMON_ADDRESS": value})
    assert (cfg.daemon_udp, cfg.daemon_tcp) == (udp, tcp)


def test_lambda_daemon_address() -> None:
    cfg = load({"AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000"})
    assert cfg.daemon_udp == ("169.254.79.129", 2000)


# -- other AWS variables ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("LOG_ERROR", "log"), ("IGNORE_ERROR", "ignore"), ("RUNTIME_ERROR", "log"), ("log", "log")],
)
def test_context_missing(value: str, expected: str) -> None:
    """RUNTIME_ERROR is read as LOG_ERROR: tracekit never raises into the application."""
    assert load({"AWS_XRAY_CONTEXT_MISSING": value}).context_missing == expected


def test_region() -> None:
    assert load({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-1"}).region == "eu-west-1"
    assert load({"AWS_DEFAULT_REGION": "us-east-1"}).region == "us-east-1"


# -- overrides ------------------------------------------------------------------------------------


def test_overrides_win_and_none_means_not_given() -> None:
    cfg = load(
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        otlp_protocol="http/protobuf",
        max_queue=10,
        region=None,
    )
    assert (cfg.otlp_protocol, cfg.max_queue, cfg.region) == ("http/protobuf", 10, None)


# -- bad values: one clear error naming variable, value and accepted form ------------------------------

BAD_VALUES = [
    ("TRACEKIT_EXPORTERS", "xray,jaeger", "xray, otlp, console, none"),
    ("TRACEKIT_EXPORTERS", ",", "xray, otlp, console, none"),
    ("OTEL_SDK_DISABLED", "maybe", "true or false"),
    ("AWS_XRAY_SDK_ENABLED", "nope", "true or false"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "http/protobuf or grpc"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift", "http/protobuf or grpc"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "novalue", "key=value"),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "=x", "key=value"),
    ("OTEL_RESOURCE_ATTRIBUTES", "a=1,broken", "key=value"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318", "http:// or https:// URL"),
    ("AWS_XRAY_CONTEXT_MISSING", "PANIC", "LOG_ERROR or IGNORE_ERROR"),
]
MASKED = {"novalue": "***", "=x": "=***"}
"""Header lists are shown with their values masked (they carry credentials)."""


@pytest.mark.parametrize(("name", "value", "accepted"), BAD_VALUES)
def test_bad_value_raises_a_clear_error(name: str, value: str, accepted: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({name: value})
    err = info.value
    shown = MASKED.get(value, value) if name.endswith("_HEADERS") else value
    assert (err.name, err.value) == (name, shown)
    assert accepted in err.accepted
    assert name in str(err) and repr(shown) in str(err) and err.accepted in str(err)


def test_bad_headers_error_never_shows_header_values() -> None:
    """The error is printed and logged: the credentials in a header list must not be in it."""
    with pytest.raises(ConfigError) as info:
        load({"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer s3cr3t,api-key"})
    assert "s3cr3t" not in str(info.value) and "api-key" not in str(info.value)
    assert info.value.value == "Authorization=***,***"
    assert "OTEL_EXPORTER_OTLP_HEADERS" in str(info.value)


def test_bad_base_endpoint_names_the_variable_and_the_value_given() -> None:
    """The error must show what the user wrote, not the URL with ``/v1/traces`` appended."""
    with pytest.raises(ConfigError) as info:
        load({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
    assert (info.value.name, info.value.value) == ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
    assert "http:// or https:// URL" in info.value.accepted


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1",
        "127.0.0.1:",
        ":2000",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:port",
        "udp:127.0.0.1:2000",
        "tcp:127.0.0.1:2000",
        "tcp:127.0.0.1:2000 udp:127.0.0.1:2000 tcp:127.0.0.1:2001",
        "tcp:127.0.0.1:2000 tcp:127.0.0.1:2001",
        "http:127.0.0.1:2000 udp:127.0.0.1:2000",
        "a:1 b:2",
    ],
)
def test_bad_daemon_address(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({"AWS_XRAY_DAEMON_ADDRESS": value})
    err = info.value
    assert err.name == "AWS_XRAY_DAEMON_ADDRESS"
    assert str(err.value) in value
    assert err.accepted == "'host:port' or 'tcp:host:port udp:host:port'"
    assert "AWS_XRAY_DAEMON_ADDRESS" in str(err) and err.accepted in str(err)


def test_bad_override_names_the_argument() -> None:
    with pytest.raises(ConfigError) as info:
        load({}, exporter="xray")
    assert info.value.name == "exporter" and "exporters" in info.value.accepted
    with pytest.raises(ConfigError) as info:
        load({}, exporters=["zipkin"])
    assert info.value.name == "exporters"
    with pytest.raises(ConfigError, match="otlp_protocol"):
        load({}, otlp_protocol="udp")


@pytest.mark.parametrize(
    ("name", "value"),
    [("daemon_udp", "localhost"), ("daemon_udp", ("h", "2000")), ("daemon_tcp", ("h", 0)),
     ("daemon_udp", 2000), ("max_queue", 0), ("max_queue", "100")],
)
def test_bad_address_or_queue_override_is_refused_up_front(name: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        load({}, **{name: value})
    assert info.value.name == name and name in str(info.value)


def test_address_overrides_accept_both_forms() -> None:
    cfg = load({}, daemon_udp="127.0.0.1:3000", daemon_tcp=["[::1]", 3001])
    assert (cfg.daemon_udp, cfg.daemon_tcp) == (("127.0.0.1", 3000), ("::1", 3001))


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_loading_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-process-env")
    assert load().service == "from-process-env"
