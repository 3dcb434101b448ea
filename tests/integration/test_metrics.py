"""Metrics of a real mesh, scraped from its components' ops ports after a small workload: the RED
series count a succeeded, a retried and a dead-lettered task; their histograms' exemplars carry the
task's trace id; streams are counted per protocol; a tenant label never names more than the top N."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from clients.sdk import Client
from mesh.telemetry import OTHER
from mesh.v1 import gateway_pb2, task_pb2
from tests import observability
from tests.conftest import eventually
from tests.integration import _grpcweb
from tests.integration._metrics import COMPONENTS, Scrape, exemplars, scrape
from tests.integration.conftest import Mesh

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@contextlib.asynccontextmanager
async def hooks() -> AsyncIterator[Callable[[str], str]]:
    """Webhook targets: /flaky answers 503 once then 200 (one retry), /refuse always 400 (a dead letter)."""
    calls: dict[str, int] = {}

    async def answer(request: web.Request) -> web.Response:
        path = request.match_info["name"]
        calls[path] = calls.get(path, 0) + 1
        if path == "refuse" or (path == "flaky" and calls[path] == 1):
            return web.Response(status=400 if path == "refuse" else 503, text="no")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{name}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield lambda name: f"http://127.0.0.1:{port}/{name}"
    finally:
        await runner.cleanup()


def _delta(after: Scrape, before: Scrape, name: str, **labels: str) -> float:
    return after.total(name, **labels) - before.total(name, **labels)


async def test_red_series_count_a_succeeded_a_retried_and_a_dead_lettered_task(mesh: Mesh) -> None:
    """Three webhook tasks — one fine, one that fails once and is retried, one refused and
    dead-lettered — move the webhook step's counts by exactly what happened, and the histograms'
    exemplars lead to the dead-lettered task's trace."""
    before = {c: await scrape(mesh, c) for c in ("scheduler", "worker-1")}
    async with hooks() as url, Client(mesh.endpoint, tenant="metrics-red") as client:
        fine = [e async for e in client.run("webhook", {"url": url("fine"), "body": "a"})]
        retried = [e async for e in client.run("webhook", {"url": url("flaky"), "body": "b"})]
        refused = [e async for e in client.run("webhook", {"url": url("refuse"), "body": "c"})]
        letter = await client.dead_letter(refused[-1].task_id)
    assert [fine[-1].state, retried[-1].state] == [task_pb2.TASK_STATE_SUCCEEDED] * 2
    assert task_pb2.TASK_STATE_RETRYING in [e.state for e in retried]
    assert refused[-1].state == task_pb2.TASK_STATE_DEAD_LETTERED
    was, step = before["worker-1"], {"kind": "webhook", "step": "call", "pool": "post-processing"}

    async def counted() -> Scrape | None:  # a task's end is counted just after its final event is stored
        now = await scrape(mesh, "worker-1")
        return now if _delta(now, was, "tidemesh_tasks_finished_total", kind="webhook") == 3 else None

    worker = await eventually(counted, what="the three webhook tasks counted finished")
    scheduler = await scrape(mesh, "scheduler")

    assert _delta(scheduler, before["scheduler"], "tidemesh_tasks_admitted_total", kind="webhook") == 3
    assert _delta(worker, was, "tidemesh_step_duration_seconds_count", **step) == 4  # 1 + 2 attempts + 1
    assert _delta(worker, was, "tidemesh_step_errors_total", **step) == 2
    assert _delta(worker, was, "tidemesh_step_errors_total", **step, error_class="dependency_down") == 1
    assert _delta(worker, was, "tidemesh_step_errors_total", **step, error_class="invalid_input") == 1
    assert _delta(worker, was, "tidemesh_step_retries_total", **step) == 1
    assert _delta(worker, was, "tidemesh_step_retries_total", **step, classification="dependency_down") == 1
    assert _delta(worker, was, "tidemesh_dead_letters_total", kind="webhook") == 1
    assert _delta(worker, was, "tidemesh_dead_letters_total", kind="webhook", classification="poison_input") == 1
    assert _delta(worker, was, "tidemesh_tasks_finished_total", kind="webhook", state="SUCCEEDED") == 2
    assert _delta(worker, was, "tidemesh_tasks_finished_total", kind="webhook", state="DEAD_LETTERED") == 1
    # Queue wait: each task's first attempt only (a retry's wait is its backoff).
    waited = {"pool": "post-processing", "priority_class": "standard"}
    assert _delta(worker, was, "tidemesh_queue_wait_seconds_count", **waited) == 3
    assert worker.total("tidemesh_queue_wait_bound_seconds", priority_class="standard") == 5.0

    # The last webhook step observed was the refused one: its bucket's exemplar is that task's trace.
    trace_id = letter.trace_id
    assert trace_id and all(e.traceparent.split("-")[1] == trace_id for e in refused)
    steps = await exemplars(mesh, "worker-1", "tidemesh_step_duration_seconds_bucket", **step)
    assert trace_id in {e["trace_id"] for e in steps}, steps
    dead = await exemplars(mesh, "worker-1", "tidemesh_dead_letters_total", kind="webhook")
    assert dead and dead[-1]["trace_id"] == trace_id and len(dead[-1]["span_id"]) == 16


async def _sse(session: aiohttp.ClientSession, url: str) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    async with session.get(url) as response:
        assert response.status == 200
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                if events[-1].get("final"):
                    break
    return events


async def test_streams_are_counted_per_protocol_with_their_resumes(mesh: Mesh) -> None:
    """One finished task watched over gRPC (again from sequence 1: a resume), gRPC-Web, SSE
    (resumed with ?after=1) and WebSocket: each protocol's opened count moves by its streams."""
    async with Client(mesh.endpoint, tenant="metrics-streams") as client:
        task_id = [e async for e in client.run("echo", {"text": "watched"})][-1].task_id
        before = await scrape(mesh, "gateway")
        assert len([e async for e in client.watch(task_id)]) == 3
        assert len([e async for e in client.watch(task_id, after_sequence=1)]) == 2
    request = gateway_pb2.WatchTaskRequest(task_id=task_id)
    reply = await _grpcweb.call(mesh.endpoint, "mesh.v1.GatewayService/WatchTask", request)
    assert reply.grpc_status == 0 and len(reply.messages) == 3
    async with aiohttp.ClientSession() as session:
        assert len(await _sse(session, f"{mesh.base_url}/v1/tasks/{task_id}/events?after=1")) == 2
        async with session.ws_connect(f"{mesh.ws_url}/v1/ws") as ws:
            await ws.send_json({"op": "watch", "task_id": task_id})
            frames = []
            while not frames or not frames[-1]["event"].get("final"):
                frames.append(await ws.receive_json(timeout=10))
    after = await scrape(mesh, "gateway")
    opened = {
        p: _delta(after, before, "tidemesh_streams_opened_total", protocol=p)
        for p in after.values("tidemesh_streams_opened_total", "protocol")
    }
    assert opened == {"grpc": 2, "grpc-web": 1, "sse": 1, "websocket": 1} | {
        p: 0 for p in opened if p not in ("grpc", "grpc-web", "sse", "websocket")
    }
    resumes = {p: _delta(after, before, "tidemesh_stream_resumes_total", protocol=p) for p in opened}
    assert resumes == {"grpc": 1, "grpc-web": 0, "sse": 1, "websocket": 0}

    async def closed() -> bool:
        now = await scrape(mesh, "gateway")
        return all(
            now.total("tidemesh_streams_open", protocol=p) == before.total("tidemesh_streams_open", protocol=p)
            for p in opened
        )

    await eventually(closed, what="every stream counted closed again")


async def test_a_tenant_label_names_at_most_the_top_n(mesh: Mesh) -> None:
    """Past the top N (20 by default) tenants, new ones are counted as 'other': 25 new tenants
    leave at most 20 names and 'other' on the scheduler's and the worker's tenant series."""
    async with Client(mesh.endpoint) as client:
        specs = []
        for i in range(25):
            spec = client.spec("echo", {"text": f"tenant {i}"})
            spec.tenant = f"metrics-many-{i:02d}"
            specs.append(spec)
        ids = [r.task_id for r in await client.submit_many(specs)]
        assert len([e async for e in client.watch_many(ids, final_only=True)]) == 25
    scheduler, worker = await scrape(mesh, "scheduler"), await scrape(mesh, "worker-1")
    for scraped, family in ((scheduler, "tidemesh_tasks_admitted_total"), (worker, "tidemesh_tasks_finished_total")):
        tenants = scraped.values(family, "tenant")
        assert OTHER in tenants and len(tenants - {OTHER}) <= 20, sorted(tenants)
    # Every admission is still counted: under a tenant's name or under "other".
    assert scheduler.total("tidemesh_tasks_admitted_total", kind="echo") >= 25


# Named by a panel or a rule, but with no series until what they count happens: a restart, a
# saturated or failing backend, a fallback or spill, stranded user work, a rejected submit; the
# policy counter counts only what the running mesh violates (docs/runbooks/policies.md).
RARE = {
    "tidemesh_restarts_total",
    "tidemesh_last_restart_timestamp_seconds",
    "tidemesh_inference_failures_total",
    "tidemesh_inference_fallbacks_total",
    "tidemesh_inference_spills_total",
    "tidemesh_inference_refused_total",
    "tidemesh_inference_breaker_trips_total",
    "tidemesh_queue_without_worker",
    "tidemesh_tasks_rejected_total",
    "tidemesh_policy_violations_total",
    "tidemesh_tenant_queue_pending",
    "tidemesh_tenant_queue_oldest_age_seconds",
    "tidemesh_backend_model_queue_seconds_total",
    "tidemesh_backend_model_compute_seconds_total",
    "tidemesh_backend_model_executions_total",
}


async def test_every_dashboard_and_rule_metric_is_exported_by_the_mesh(mesh: Mesh) -> None:
    """Scraped from every component after a workload (this module's tasks, an embedding): each
    metric a dashboard panel, variable or alert rule reads is in the mesh's exposition, and all but
    the ones that count rare events have series."""
    async with Client(mesh.endpoint, tenant="metrics-names") as client:
        events = [e async for e in client.run("embed", {"text": "a sentence for the inference panels"})]
        assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    families: set[tuple[str, str]] = set()
    with_series: set[str] = set()
    for component in COMPONENTS:
        async with (
            aiohttp.ClientSession() as session,
            session.get(mesh.ops_url(component, "/metrics"), ssl=mesh.internal_ssl()) as response,
        ):
            text = await response.text()
        for family in text_string_to_metric_families(text):
            families.add((family.name, family.type))
            with_series |= {sample.name for sample in family.samples}
    exported = observability.series_names(families)
    used: dict[str, str] = {}
    for query in observability.queries():
        for name in observability.metric_names(query.expr):
            used.setdefault(name, query.where)
    for where, metric in observability.variable_metrics().items():
        used.setdefault(metric, where)
    missing = {name: where for name, where in used.items() if name not in exported}
    assert not missing, f"read by a dashboard or rule, exported by no component: {missing}"
    silent = {name: where for name, where in used.items() if name not in with_series and name not in RARE}
    assert not silent, f"no series after the workload: {silent}"
