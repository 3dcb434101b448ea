"""The metrics' declaration: bounded tenant labels, exemplars from the current trace, OpenMetrics
when the scraper asks for it, and the gauges read when scraped (breakers, certificate expiry)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from mesh.runtime import RESTART_REASON_ENV, announce_restart
from mesh.security import CertificateAuthority
from mesh.telemetry import METRICS, OTHER, Metrics, TenantLabels, exemplar, metrics_app
from mesh.telemetry._tenants import TOP_TENANTS_ENV, top_tenants_from_env

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def _tenant_values(metrics: Metrics, family: str) -> set[str]:
    return {
        sample.labels["tenant"]
        for metric in metrics.registry.collect()
        if metric.name == family
        for sample in metric.samples
        if "tenant" in sample.labels
    }


@settings(max_examples=60, deadline=None)
@given(
    top=st.integers(min_value=0, max_value=6),
    traffic=st.lists(st.sampled_from([f"t{i}" for i in range(40)] + [OTHER]), max_size=400),
)
def test_at_most_top_n_tenants_and_other_are_ever_exported(top: int, traffic: list[str]) -> None:
    """Whatever the traffic, a tenant label carries at most N tenant names plus 'other' — the
    series of a tenant that left the top N leave with it."""
    metrics = Metrics(top_tenants=top)
    metrics.tenants = TenantLabels(top, revise_every=7)  # revise often: many changes of membership
    for tenant in traffic:
        metrics.admitted("echo", "standard", tenant)
        metrics.finished("echo", "SUCCEEDED", tenant)
        for family in ("tidemesh_tasks_admitted", "tidemesh_tasks_finished"):
            values = _tenant_values(metrics, family)
            assert len(values - {OTHER}) <= top, values
            assert values - {OTHER} <= metrics.tenants.members


def test_a_busier_tenant_takes_the_place_of_the_weakest() -> None:
    """Full places go to the first tenants; one that sends far more takes the weakest's place at
    the next revision (its old series removed), while an equally busy one does not."""
    labels = TenantLabels(2, revise_every=1_000_000, clock=lambda: 0.0)
    metrics = Metrics(top_tenants=2)
    metrics.tenants = labels
    for tenant in ["a", "b", "a", "b", "b"]:
        metrics.admitted("echo", "standard", tenant)
    assert labels.members == {"a", "b"}
    for _ in range(3):
        assert labels.label("c") == OTHER
    labels.revise()
    assert labels.members == {"a", "b"}, "3 against a's 2 is within the hysteresis (1.5): no flapping"
    for _ in range(10):
        metrics.admitted("echo", "standard", "c")
    labels.revise()
    assert labels.members == {"b", "c"}
    assert _tenant_values(metrics, "tidemesh_tasks_admitted") == {"b", OTHER}  # a's series left with it
    assert labels.label("c") == "c" and labels.label("a") == OTHER


def test_counts_decay_so_the_top_follows_who_is_busy_now() -> None:
    now = [0.0]
    labels = TenantLabels(1, half_life_s=60, revise_every=1_000_000, clock=lambda: now[0])
    for _ in range(100):
        labels.label("old")
    now[0] = 60 * 10  # ten half-lives: old's 100 is now ~0.1
    for _ in range(5):
        labels.label("new")
    labels.revise()
    assert labels.members == {"new"}


def test_the_counts_themselves_are_bounded() -> None:
    labels = TenantLabels(2, revise_every=50, tracked=20)
    for i in range(10_000):
        labels.label(f"tenant-{i}")
    assert len(labels._counts) <= 20 + 50  # pruned at each revision, between them at most a revision's worth


def test_the_top_n_comes_from_the_environment() -> None:
    assert top_tenants_from_env({}) == 20
    assert top_tenants_from_env({TOP_TENANTS_ENV: "5"}) == 5
    for bad in ("many", "-1", "2.5"):
        with pytest.raises(ValueError, match=TOP_TENANTS_ENV):
            top_tenants_from_env({TOP_TENANTS_ENV: bad})
    assert TenantLabels(0).label("any") == OTHER


def _in_trace(trace_id: int, sampled: bool) -> object:
    span = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=trace_id,
            span_id=0x00F067AA0BA902B7,
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else 0),
        )
    )
    return otel_context.attach(trace.set_span_in_context(span))


def test_exemplars_carry_the_sampled_trace() -> None:
    """A step observed inside a sampled trace leaves that trace's id on its bucket; an unsampled
    trace or none leaves no exemplar."""
    assert exemplar() is None
    token = _in_trace(0x4BF92F3577B34DA6A3CE929D0E0E4736, sampled=False)
    try:
        assert exemplar() is None
    finally:
        otel_context.detach(token)  # type: ignore[arg-type]
    metrics = Metrics()
    token = _in_trace(0x4BF92F3577B34DA6A3CE929D0E0E4736, sampled=True)
    try:
        metrics.step_ran("echo", "echo", "ingestion", 0.003)
    finally:
        otel_context.detach(token)  # type: ignore[arg-type]
    body, content_type = metrics.render(OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text")
    found = [
        (sample.labels["le"], sample.exemplar.labels)
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "tidemesh_step_duration_seconds_bucket" and sample.exemplar
    ]
    assert found == [("0.005", {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"})]
    plain, plain_type = metrics.render("")
    assert plain_type.startswith("text/plain") and b"trace_id" not in plain


async def test_the_endpoint_serves_openmetrics_when_asked() -> None:
    metrics = Metrics()
    metrics.admitted("echo", "standard", "acme")
    async with TestClient(TestServer(metrics_app(metrics))) as client:
        text = await client.get("/metrics")
        assert text.headers["Content-Type"].startswith("text/plain")
        assert 'tidemesh_tasks_admitted_total{kind="echo",priority_class="standard",tenant="acme"} 1.0' in (
            await text.text()
        )
        open_metrics = await client.get("/metrics", headers={"Accept": f"{OPENMETRICS},text/plain;q=0.5"})
        assert open_metrics.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await open_metrics.text()).endswith("# EOF\n")


def test_sampled_gauges_are_read_at_scrape_time_until_withdrawn() -> None:
    metrics = Metrics()
    state = {"triton": 1.0}
    withdraw = metrics.inference_breaker_open.provide(lambda: [([name], value) for name, value in state.items()])

    def read() -> dict[str, float]:
        return {
            sample.labels["backend"]: sample.value
            for family in metrics.registry.collect()
            if family.name == "tidemesh_inference_breaker_open"
            for sample in family.samples
        }

    assert read() == {"triton": 1.0}
    state["triton"] = 0.0
    assert read() == {"triton": 0.0}
    withdraw()
    assert read() == {}


def test_certificate_expiry_is_read_from_the_file(tmp_path: Path) -> None:
    """The leaf's notAfter, read again once a renewal rewrote the file."""
    ca = CertificateAuthority(tmp_path / "pki").ensure()
    leaf = ca.issue("worker")
    metrics = Metrics()
    metrics.certificates.watch(leaf.cert, "leaf", "worker")
    metrics.certificates.watch(tmp_path / "missing.crt", "root", "worker")

    def expiry() -> dict[tuple[str, str], float]:
        return {
            (sample.labels["certificate"], sample.labels["component"]): sample.value
            for family in metrics.registry.collect()
            if family.name == "tidemesh_tls_certificate_expiry_timestamp_seconds"
            for sample in family.samples
        }

    expires = ca.expires_at("worker")
    assert expires is not None
    assert expiry() == {("leaf", "worker"): expires.timestamp()}  # the missing file is absent, not 0


async def test_a_restart_is_counted_and_dated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The restarted process counts its restart and exports when it happened (what the restart
    alert reads: a new process's counter starts at 1, which increase() cannot see)."""
    published: list[tuple[str, bytes]] = []

    class Broker:
        async def publish(self, subject: str, data: bytes) -> None:
            published.append((subject, data))

    monkeypatch.setenv(RESTART_REASON_ENV, json.dumps({"reason": "memory_cap", "at": 1_800_000_000.5}))
    before = METRICS.restarts.labels("worker", "memory_cap")._value.get()
    alert = await announce_restart(Broker(), "worker", "worker-7")  # type: ignore[arg-type]
    assert alert is not None and published and json.loads(published[0][1])["reason"] == "memory_cap"
    assert METRICS.restarts.labels("worker", "memory_cap")._value.get() == before + 1
    assert METRICS.last_restart.labels("worker", "memory_cap")._value.get() == 1_800_000_000.5
