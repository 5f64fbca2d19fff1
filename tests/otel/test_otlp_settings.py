"""The OTLP configuration rules of the OpenTelemetry specification, as flowtel applies them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import flowtel
from flowtel.exporters import OtlpExporter
from flowtel.exporters.otlp._exporter import resolve_otlp_settings
from flowtel.tracing import _runtime


@pytest.mark.parametrize(
    ("env", "protocol", "expected"),
    [
        ({}, "http/protobuf", "http://localhost:4318/v1/traces"),
        ({}, "grpc", "http://localhost:4317"),
        # The general variable is a base URL: HTTP appends v1/traces, relative to its path.
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http/protobuf", "http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}, "http/protobuf", "http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://gw.example/otlp"}, "http/protobuf", "https://gw.example/otlp/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, "grpc", "http://collector:4317"),
        # The traces-specific variable is used exactly as given, and wins over the general one.
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318"}, "http/protobuf", "http://collector:4318"),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://a:1/custom", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:2"},
            "http/protobuf", "http://a:1/custom",
        ),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4317"}, "grpc", "collector:4317"),
    ],
)
def test_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], protocol: str, expected: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert resolve_otlp_settings(protocol=protocol).endpoint == expected


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),  # no path: the signal path is added
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("http://mlflow:5000/v1/traces", "http://mlflow:5000/v1/traces"),  # a path: used as given
        ("https://gw.example/otlp/traces", "https://gw.example/otlp/traces"),
    ],
)
def test_endpoint_argument_over_http(monkeypatch: pytest.MonkeyPatch, endpoint: str, expected: str) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://ignored:1/v1/traces")
    assert resolve_otlp_settings(endpoint).endpoint == expected


def test_protocol_from_environment_traces_specific_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_otlp_settings().protocol == "http/protobuf"  # the spec's default
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert resolve_otlp_settings().protocol == "grpc"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    assert resolve_otlp_settings().protocol == "http/protobuf"
    assert resolve_otlp_settings(protocol="grpc").protocol == "grpc"


@pytest.mark.parametrize(
    ("endpoint", "insecure_env", "insecure_arg", "expected"),
    [
        ("http://collector:4317", None, None, True),
        ("https://collector:4317", None, None, False),
        ("https://collector:4317", "true", None, False),  # the scheme decides when there is one
        ("collector:4317", None, None, False),  # no scheme: TLS unless told otherwise
        ("collector:4317", "true", None, True),
        ("collector:4317", "true", False, False),
    ],
)
def test_grpc_scheme_and_insecure(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, insecure_env: str | None, insecure_arg: bool | None, expected: bool
) -> None:
    if insecure_env is not None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_INSECURE", insecure_env)
    settings = resolve_otlp_settings(endpoint, protocol="grpc", insecure=insecure_arg)
    assert (settings.endpoint, settings.insecure) == (endpoint, expected)


def test_headers_timeout_compression_and_certificate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "general=1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "Api-Key=s%20ecret,tenant=acme")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")  # milliseconds, per the spec
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ca))

    settings = resolve_otlp_settings(headers={"X-Extra": "yes", "tenant": "override"})

    # Traces-specific headers replace the general ones; code adds to (and overrides) them.
    assert dict(settings.headers) == {"api-key": "s ecret", "tenant": "override", "x-extra": "yes"}
    assert settings.timeout == 2.5
    assert settings.compression == "gzip"
    assert settings.certificate_file == str(ca)
    assert "secret" not in repr(settings)  # headers hold credentials: never in repr

    assert resolve_otlp_settings(timeout=0.5, compression="none").timeout == 0.5


def test_short_timeout_in_environment_warns_about_the_unit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")
    with caplog.at_level(logging.WARNING, logger="flowtel"):
        assert resolve_otlp_settings().timeout == 0.03
    assert "milliseconds" in caplog.text


@pytest.mark.parametrize(
    ("env", "kwargs", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, {}, "http/protobuf"),
        ({}, {"protocol": "thrift"}, "not supported"),
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "soon"}, {}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"),
        ({}, {"timeout": 0}, "positive"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, {}, "gzip"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, {}, "http(s)://"),
        ({}, {"certificate_file": "/no/such/ca.pem"}, "no such file"),
        ({"OTEL_EXPORTER_OTLP_INSECURE": "maybe"}, {"endpoint": "c:4317", "protocol": "grpc"}, "true or false"),
    ],
)
def test_invalid_configuration_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], kwargs: dict[str, object], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(flowtel.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_otlp_settings(**kwargs)  # type: ignore[arg-type]


def test_conventions_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(flowtel.ConfigError, match="mlflow, genai, both"):
        OtlpExporter(conventions="semconv")  # type: ignore[arg-type]
    monkeypatch.setenv("FLOWTEL_OTLP_CONVENTIONS", "genai")
    assert OtlpExporter().conventions == "genai"


def test_destination_key_names_the_endpoint_without_credentials() -> None:
    exporter = OtlpExporter("https://user:pw@collector:4318", headers={"authorization": "Bearer s3cr3t"})
    assert exporter.destination_key is not None
    assert exporter.destination_key.startswith("otlp:http/protobuf:https://collector:4318/v1/traces#")
    assert "s3cr3t" not in exporter.destination_key and "pw" not in exporter.destination_key
    other_tenant = OtlpExporter("https://collector:4318", headers={"authorization": "Bearer other"})
    assert other_tenant.destination_key != exporter.destination_key


def test_environment_endpoint_adds_an_otlp_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    destinations = _runtime.default_destinations()
    otlp = [d.exporter for d in destinations if isinstance(d.exporter, OtlpExporter)]
    assert len(otlp) == 1 and otlp[0].settings.protocol == "grpc"
    assert otlp[0].settings.endpoint == "http://127.0.0.1:1"

    monkeypatch.setenv("FLOWTEL_OTLP_EXPORT", "false")
    assert not any(isinstance(d.exporter, OtlpExporter) for d in _runtime.default_destinations())
