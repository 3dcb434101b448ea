"""Envoy's own spans: with a collector, the front door traces over OTLP (gRPC or HTTP) to a cluster
of its own, flushing every second; without one it records nothing. Envoy accepts both renderings."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.edge import EdgeConfig, render_yaml
from mesh.supervisor._binaries import find_binary


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    hcm: dict[str, Any] = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_collector_gets_envoys_spans(protocol: str, tmp_path: Path) -> None:
    text = render_yaml(EdgeConfig(otlp_collector=("collector.internal", 4317, protocol), trace_sampling=0.25))
    config = yaml.safe_load(text)
    tracing = _hcm(config)["tracing"]
    assert tracing["provider"]["name"] == "envoy.tracers.opentelemetry"
    assert tracing["random_sampling"] == {"value": 25.0}
    otel = tracing["provider"]["typed_config"]
    if protocol == "grpc":
        assert otel["grpc_service"]["envoy_grpc"]["cluster_name"] == "otlp_collector"
    else:
        assert otel["http_service"]["http_uri"]["uri"] == "http://collector.internal:4317/v1/traces"
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "otlp_collector")
    assert cluster["type"] == "STRICT_DNS"  # a host name, resolved by Envoy
    layer = config["layered_runtime"]["layers"][0]["static_layer"]
    assert layer == {"tracing.opentelemetry.flush_interval_ms": 1000}
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    done = subprocess.run(
        [find_binary("envoy"), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_without_a_collector_envoy_records_no_span() -> None:
    config = yaml.safe_load(render_yaml(EdgeConfig()))
    assert "tracing" not in _hcm(config) and "layered_runtime" not in config
    assert [c["name"] for c in config["static_resources"]["clusters"]] == ["gateway_grpc", "gateway_http"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"otlp_collector": ("", 4317, "grpc")}, "otlp_collector"),
        ({"otlp_collector": ("h", 4317, "thrift")}, "otlp_collector"),
        ({"otlp_collector": ("h", 0, "grpc")}, "otlp_collector port"),
        ({"trace_sampling": 1.5}, "trace_sampling"),
    ],
)
def test_bad_tracing_settings_are_refused(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        EdgeConfig(**kwargs)


def test_a_bare_collector_address_is_plaintext_otlp() -> None:
    """`tidemesh up --otlp localhost:4317`: every process and Envoy send to http://localhost:4317."""
    from mesh.supervisor._plan import _collector, otlp_env, otlp_url

    env = otlp_env("localhost:4317", ratio=0.5)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4317"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.5"
    assert _collector(otlp_url("localhost:4317"), "grpc") == ("localhost", 4317, "grpc")
    assert _collector(otlp_url("https://collector:4317"), "grpc") is None  # Envoy's TLS to it: not rendered
    for bad, message in (("ftp://x", "otlp endpoint"), ("http://", "otlp endpoint")):
        with pytest.raises(ValueError, match=message):
            otlp_env(bad)
    with pytest.raises(ValueError, match="sampling ratio"):
        otlp_env("localhost:4317", ratio=2)


def test_the_otlp_exporter_and_envoys_own_otel_protos_both_import() -> None:
    """xds-protos carries an older copy of opentelemetry-proto's modules: `make venv` reinstalls the
    real one after it, and Envoy's modules that use those protos still load over it."""
    import envoy.extensions.stat_sinks.open_telemetry.v3.open_telemetry_pb2  # noqa: F401
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as OverHttp

    assert OTLPSpanExporter and OverHttp
