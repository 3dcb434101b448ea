"""End to end through Envoy's one public port: gRPC, gRPC-Web, grpcurl, WebSocket, REST."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import grpc
import grpc.aio
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.sdk import Client
from mesh.errors import InvalidArgument, NotFound
from mesh.supervisor import find_binary
from mesh.tasks import new_task_id
from mesh.v1 import gateway_pb2, gateway_pb2_grpc, task_pb2
from services.inference._minilm import MiniLM
from tests.conftest import eventually
from tests.integration import _grpcweb
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

GRPCURL = find_binary("grpcurl")


async def _run(client: Client, kind: str, payload: dict, **kwargs) -> list[task_pb2.TaskEvent]:  # type: ignore[type-arg]
    submitted = await client.submit(kind, payload, **kwargs)
    return [event async for event in client.watch(submitted.task_id)]


def _assert_contiguous(events: list[task_pb2.TaskEvent]) -> None:
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].final and not any(e.final for e in events[:-1])


async def test_echo_over_grpc_through_envoy(mesh: Mesh) -> None:
    """An echo task submitted via Envoy streams QUEUED → RUNNING → SUCCEEDED with its payload back."""
    async with Client(mesh.endpoint, tenant="e2e") as client:
        events = await _run(client, "echo", {"text": "hello mesh"}, priority="interactive")
    _assert_contiguous(events)
    assert [e.state for e in events] == [
        task_pb2.TASK_STATE_QUEUED,
        task_pb2.TASK_STATE_RUNNING,
        task_pb2.TASK_STATE_SUCCEEDED,
    ]
    assert events[0].spec.tenant == "e2e" and events[0].traceparent
    assert events[-1].output.text == "hello mesh"


async def test_stream_kind_streams_partial_chunks(mesh: Mesh) -> None:
    """The multi-step stream kind emits one partial chunk per piece, in order, with rising confidence."""
    text = "one two three four five six seven eight nine ten"
    async with Client(mesh.endpoint, tenant="e2e") as client:
        events = await _run(client, "stream", {"text": text, "chunks": 5, "chunk_delay_ms": 10})
    _assert_contiguous(events)
    partials = [e for e in events if e.HasField("output") and not e.final]
    assert [p.output.text for p in partials] == ["one two", "three four", "five six", "seven eight", "nine ten"]
    confidences = [p.partial_confidence for p in partials]
    assert confidences == sorted(confidences) and confidences[-1] == pytest.approx(1.0)
    assert {e.step for e in events[1:]} == {"plan", "emit"}
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED and events[-1].output.text == "5 chunks, 10 words"


async def test_embed_returns_real_minilm_vector(mesh: Mesh) -> None:
    """The embed kind returns the 384-dim MiniLM embedding, equal to encoding the text directly."""
    text = "NATS JetStream carries the work; Envoy is the front door."
    async with Client(mesh.endpoint, tenant="e2e") as client:
        events = await _run(client, "embed", {"text": text})
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    vector = np.array(events[-1].output.embedding.values, dtype=np.float32)
    expected = MiniLM.load().encode([text])[0]
    assert vector.shape == (384,)
    assert float(vector @ expected) > 0.9999


async def test_doc_embed_runs_ingest_embed_aggregate_across_the_pools(mesh: Mesh) -> None:
    """A long document is chunked in the ingestion pool, embedded in the inference pool (one streamed
    partial per chunk, confidence rising to 1), and aggregated in the post-processing pool into
    the normalized mean — each vector the real MiniLM embedding of its chunk."""
    words = [f"ship{i}" for i in range(250)]
    document = " ".join(words)
    async with Client(mesh.endpoint, tenant="docs") as client:
        events = await _run(client, "doc_embed", {"text": document, "chunk_words": 100})
        with pytest.raises(InvalidArgument, match=r"doc_embed\.text"):
            await client.submit("doc_embed", {"text": "   "})
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    steps = [e.step for e in events if e.state == task_pb2.TASK_STATE_RUNNING]
    assert steps[0] == "chunk" and "embed-chunks" in steps and steps[-1] == "aggregate"
    partials = [e for e in events if not e.final and e.output.HasField("embedding")]
    assert [round(e.partial_confidence, 2) for e in partials] == [0.4, 0.8, 1.0]  # words covered: 100, 200, 250
    chunks = [" ".join(words[i : i + 100]) for i in range(0, 250, 100)]
    expected = MiniLM.load().encode(chunks)
    got = np.array([list(e.output.embedding.values) for e in partials], dtype=np.float32)
    assert np.allclose(np.sum(got * expected, axis=1), 1.0, atol=1e-4)
    mean = expected.mean(axis=0)
    mean /= np.linalg.norm(mean)
    assert float(np.array(events[-1].output.embedding.values) @ mean) > 0.9999


async def test_resume_after_sequence_has_no_gap_or_duplicate(mesh: Mesh) -> None:
    """Watching from any sequence number yields exactly the events after it."""
    async with Client(mesh.endpoint, tenant="e2e") as client:
        submitted = await client.submit("stream", {"text": "a b c d", "chunks": 4, "chunk_delay_ms": 20})
        full = [e async for e in client.watch(submitted.task_id)]
        for after in range(len(full)):
            tail = [e async for e in client.watch(submitted.task_id, after_sequence=after)]
            assert [e.SerializeToString() for e in tail] == [e.SerializeToString() for e in full[after:]]


async def test_idempotent_submit_through_envoy(mesh: Mesh) -> None:
    """Two submits with one idempotency key return the same task id; the task runs once."""
    async with Client(mesh.endpoint, tenant="e2e") as client:
        first = await client.submit("echo", {"text": "x"}, idempotency_key="order-42")
        second = await client.submit("echo", {"text": "x"}, idempotency_key="order-42")
        assert second.task_id == first.task_id and second.deduplicated
        events = [e async for e in client.watch(first.task_id)]
    assert sum(e.state == task_pb2.TASK_STATE_RUNNING for e in events) == 1


async def test_invalid_input_names_the_field_over_grpc(mesh: Mesh) -> None:
    """Unknown kind, missing tenant, wrong payload and oversize payload are INVALID_ARGUMENT naming the field."""
    async with mesh.public_channel() as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        cases = {
            "spec.kind": task_pb2.TaskSpec(tenant="t", kind="teleport"),
            "spec.tenant": task_pb2.TaskSpec(kind="echo"),
            "spec.payload": task_pb2.TaskSpec(tenant="t", kind="echo"),
            "spec.payload.stream": task_pb2.TaskSpec(
                tenant="t", kind="echo", payload=task_pb2.TaskPayload(stream=task_pb2.StreamInput(chunks=1))
            ),
        }
        oversize = task_pb2.TaskSpec(
            tenant="t", kind="echo", payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput(text="x" * 70_000))
        )
        for field, spec in [*cases.items(), ("spec.payload", oversize)]:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.SubmitTask(gateway_pb2.SubmitTaskRequest(spec=spec))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.details().startswith(f"{field}:"), caught.value.details()
            assert ("tidemesh-field", field) in tuple(caught.value.trailing_metadata())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitTask(gateway_pb2.SubmitTaskRequest())
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "spec" in caught.value.details()
    async with Client(mesh.endpoint) as client:
        with pytest.raises(InvalidArgument) as sdk_error:
            await client.submit("echo", {"nope": 1})
        assert sdk_error.value.field == "payload.nope"  # the unknown field itself


async def test_grpc_web_submit_and_watch(mesh: Mesh) -> None:
    """A browser-style gRPC-Web request over HTTP/1.1 submits a task and server-streams its events."""
    spec = task_pb2.TaskSpec(
        tenant="web",
        kind="stream",
        payload=task_pb2.TaskPayload(stream=task_pb2.StreamInput(text="w x y", chunks=3)),
    )
    reply = await _grpcweb.call(
        mesh.endpoint, "mesh.v1.GatewayService/SubmitTask", gateway_pb2.SubmitTaskRequest(spec=spec)
    )
    assert reply.http_status == 200 and reply.grpc_status == 0, reply.trailers
    task_id = gateway_pb2.SubmitTaskResponse.FromString(reply.messages[0]).task_id
    stream = await _grpcweb.call(
        mesh.endpoint, "mesh.v1.GatewayService/WatchTask", gateway_pb2.WatchTaskRequest(task_id=task_id)
    )
    assert stream.grpc_status == 0, stream.trailers
    events = [gateway_pb2.WatchTaskResponse.FromString(m).event for m in stream.messages]
    _assert_contiguous(events)
    assert [e.output.text for e in events if e.HasField("output") and not e.final] == ["w", "x", "y"]


async def test_grpc_web_invalid_input_names_the_field(mesh: Mesh) -> None:
    """Through Envoy's gRPC-Web bridge a bad spec still gets INVALID_ARGUMENT naming the field."""
    spec = task_pb2.TaskSpec(tenant="web", kind="teleport")
    reply = await _grpcweb.call(
        mesh.endpoint, "mesh.v1.GatewayService/SubmitTask", gateway_pb2.SubmitTaskRequest(spec=spec)
    )
    assert reply.grpc_status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert reply.trailers.get("tidemesh-field") == "spec.kind"
    assert "spec.kind" in reply.trailers.get("grpc-message", "")


def _grpcurl(ca: str, *args: str) -> subprocess.CompletedProcess[str]:
    """grpcurl over TLS, verifying the public port against the mesh's root (as the README shows)."""
    return subprocess.run([GRPCURL, "-cacert", ca, *args], capture_output=True, text=True, timeout=20, check=False)


async def test_grpcurl_lists_checks_health_and_calls(mesh: Mesh) -> None:
    """grpcurl through Envoy lists the services (reflection), passes a health check and submits a task."""
    ca = mesh.plan.ca_path
    listed = await asyncio.to_thread(_grpcurl, ca, mesh.endpoint, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"mesh.v1.GatewayService", "grpc.health.v1.Health"} <= set(listed.stdout.split())
    health = await asyncio.to_thread(_grpcurl, ca, mesh.endpoint, "grpc.health.v1.Health/Check")
    assert health.returncode == 0 and '"SERVING"' in health.stdout, health.stderr
    body = json.dumps({"spec": {"tenant": "curl", "kind": "echo", "payload": {"echo": {"text": "via grpcurl"}}}})
    submitted = await asyncio.to_thread(_grpcurl, ca, "-d", body, mesh.endpoint, "mesh.v1.GatewayService/SubmitTask")
    assert submitted.returncode == 0, submitted.stderr
    reply = json.loads(submitted.stdout)
    task_id = reply.get("taskId") or reply["task_id"]
    watched = await asyncio.to_thread(
        _grpcurl, ca, "-d", json.dumps({"task_id": task_id}), mesh.endpoint, "mesh.v1.GatewayService/WatchTask"
    )
    assert watched.returncode == 0, watched.stderr
    assert '"via grpcurl"' in watched.stdout and "TASK_STATE_SUCCEEDED" in watched.stdout
    bad = await asyncio.to_thread(
        _grpcurl,
        ca,
        "-d",
        json.dumps({"spec": {"tenant": "curl", "kind": "nope"}}),
        mesh.endpoint,
        "mesh.v1.GatewayService/SubmitTask",
    )
    assert bad.returncode != 0 and "InvalidArgument" in bad.stderr and "spec.kind" in bad.stderr


async def test_health_of_every_service(mesh: Mesh) -> None:
    """Each service answers the standard gRPC health check directly (mutual TLS as the operator's CLI)."""
    for name in ("scheduler", "gateway", "inference", "worker-1"):
        async with mesh.internal_channel(name) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


async def test_cancel_interrupts_a_running_task(mesh: Mesh) -> None:
    """Cancelling a long stream task ends it with a final CANCELLED event and stops its chunks."""
    async with Client(mesh.endpoint, tenant="e2e") as client:
        submitted = await client.submit("stream", {"text": "slow", "chunks": 200, "chunk_delay_ms": 50})
        events: list[task_pb2.TaskEvent] = []
        async for event in client.watch(submitted.task_id):
            events.append(event)
            if event.HasField("output") and len(events) == 5:
                assert await client.cancel(submitted.task_id, "test") == task_pb2.TASK_STATE_CANCELLED
        assert events[-1].state == task_pb2.TASK_STATE_CANCELLED and events[-1].final
        _assert_contiguous(events)
        info = await client.get(submitted.task_id)
        assert info.state == task_pb2.TASK_STATE_CANCELLED
        # Cancelling a finished task keeps its state.
        assert await client.cancel(submitted.task_id) == task_pb2.TASK_STATE_CANCELLED
        with pytest.raises(NotFound):
            await client.cancel("no-such-task")


async def test_get_task_and_unknown_task(mesh: Mesh) -> None:
    """GetTask folds the event stream; an unknown id is NOT_FOUND for get and watch."""
    async with Client(mesh.endpoint, tenant="e2e") as client:
        events = await _run(client, "echo", {"text": "state"})
        info = await client.get(events[0].task_id)
        assert info.state == task_pb2.TASK_STATE_SUCCEEDED and info.result.text == "state"
        assert info.spec.kind == "echo" and info.last_sequence == events[-1].sequence
        with pytest.raises(NotFound):
            await client.get("missing")
        with pytest.raises(NotFound):
            [e async for e in client.watch("missing")]


async def test_websocket_watch_through_envoy(mesh: Mesh) -> None:
    """A WebSocket upgraded through Envoy streams a task's events as JSON; bad frames get an error."""
    async with Client(mesh.endpoint, tenant="ws") as client:
        submitted = await client.submit("stream", {"text": "p q", "chunks": 2})
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{mesh.ws_url}/v1/ws") as ws:
            await ws.send_str("{not json")
            error = await ws.receive_json(timeout=10)
            assert error["type"] == "error" and error["field"] == "frame"
            await ws.send_json({"op": "watch", "task_id": submitted.task_id})
            events = []
            while not events or not events[-1].get("final"):
                frame = await ws.receive_json(timeout=10)
                assert frame["type"] == "event", frame
                events.append(frame["event"])
    assert [int(e["sequence"]) for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["state"] == "TASK_STATE_SUCCEEDED"


async def test_rest_get_and_metrics(mesh: Mesh) -> None:
    """REST GET /v1/tasks/{id} through Envoy folds the task; every service exports Prometheus metrics."""
    async with Client(mesh.endpoint, tenant="rest") as client:
        events = await _run(client, "echo", {"text": "rest"})
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{mesh.base_url}/v1/tasks/{events[0].task_id}") as response:
            assert response.status == 200
            assert (await response.json())["state"] == "TASK_STATE_SUCCEEDED"
        async with session.get(f"{mesh.base_url}/v1/tasks/missing") as response:
            assert response.status == 404
        # The ops ports want a client certificate of the mesh (here the operator's).
        ops = mesh.internal_ssl()
        async with session.get(mesh.ops_url("scheduler", "/metrics"), ssl=ops) as response:
            assert 'tidemesh_tasks_admitted_total{kind="echo"' in await response.text()
        async with session.get(mesh.ops_url("worker-1", "/metrics"), ssl=ops) as response:
            assert "tidemesh_events_published_total" in await response.text()


async def test_status_reports_queues_and_workers(mesh: Mesh) -> None:
    """GetMeshStatus lists every (pool, lane) queue and the registered worker as alive."""
    async with Client(mesh.endpoint) as client:

        async def alive_worker() -> gateway_pb2.GetMeshStatusResponse | None:
            status = await client.status()
            return status if any(w.health == 1 for w in status.workers) else None

        status = await eventually(alive_worker, what="worker registered via heartbeat")
    assert len(status.queues) == 12
    assert {q.pool for q in status.queues} == {"ingestion", "orchestration", "inference", "post-processing"}


async def test_trace_context_flows_from_client_to_worker(mesh: Mesh) -> None:
    """A client's W3C traceparent crosses Envoy, gateway, scheduler (gRPC metadata) and the work
    queue (NATS headers): every event and the worker's log lines carry the same trace id."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    metadata = (("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),)
    async with mesh.public_channel() as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        spec = task_pb2.TaskSpec(
            tenant="trace", kind="echo", payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput(text="t"))
        )
        reply = await stub.SubmitTask(gateway_pb2.SubmitTaskRequest(spec=spec), metadata=metadata)
        events = [r.event async for r in stub.WatchTask(gateway_pb2.WatchTaskRequest(task_id=reply.task_id))]
    assert events and all(e.traceparent.split("-")[1] == trace_id for e in events), [e.traceparent for e in events]
    log_file = Path(mesh.plan.state_dir) / "logs" / "worker-1.log"

    async def worker_logged_trace() -> bool:
        lines = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
        return any(line.get("trace_id") == trace_id and line.get("task_id") == reply.task_id for line in lines)

    await eventually(worker_logged_trace, what="worker log line with the task's trace id")


async def test_batch_submit_and_watch_many(mesh: Mesh) -> None:
    """SubmitTasks admits a batch in order; WatchTasks streams each task's final event exactly once."""
    async with Client(mesh.endpoint, tenant="batch") as client:
        specs = [client.spec("echo", {"text": f"item {i}"}) for i in range(50)]
        results = await client.submit_many(specs)
        ids = [r.task_id for r in results]
        assert len(set(ids)) == 50
        finals = [e async for e in client.watch_many(ids, final_only=True)]
        assert sorted(e.task_id for e in finals) == sorted(ids)
        assert {e.task_id: e.output.text for e in finals} == {ids[i]: f"item {i}" for i in range(50)}
        full = [e async for e in client.watch_many(ids[:5], final_only=False)]
        for task_id in ids[:5]:
            sequences = [e.sequence for e in full if e.task_id == task_id]
            assert sequences == list(range(1, len(sequences) + 1)) and len(sequences) == 3
        bad = [client.spec("echo", {"text": "ok"}), task_pb2.TaskSpec(tenant="batch", kind="teleport")]
        with pytest.raises(InvalidArgument) as caught:
            await client.submit_many(bad)
        assert caught.value.field == "specs[1].kind"
        with pytest.raises(NotFound):
            [e async for e in client.watch_many([ids[0], "missing-task"])]


async def _sse(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> list[dict]:  # type: ignore[type-arg]
    """Read a task's SSE stream until its final event; returns the events with their SSE ids."""
    events = []
    async with session.get(url, headers=headers or {}) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        block: dict[str, str] = {}
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if "data" in block:
                    events.append({"id": int(block["id"]), **json.loads(block["data"])})
                    if events[-1].get("final"):
                        return events
                block = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                block[key] = value
    return events


async def test_rest_submit_and_sse_stream_with_resume(mesh: Mesh) -> None:
    """POST /v1/tasks through Envoy admits a task; its SSE stream carries every event with
    `id:` = sequence; Last-Event-ID resumes exactly after it; bad input gets a clear 4xx."""
    base = f"{mesh.base_url}/v1/tasks"
    body = {"kind": "stream", "tenant": "sse", "payload": {"text": "s1 s2 s3", "chunks": 3}}
    async with aiohttp.ClientSession() as session:
        async with session.post(base, json=body) as response:
            assert response.status == 201
            task_id = (await response.json())["task_id"]
        full = await _sse(session, f"{base}/{task_id}/events")
        assert [e["id"] for e in full] == list(range(1, len(full) + 1))
        assert [int(e["sequence"]) for e in full] == [e["id"] for e in full]
        assert full[-1]["state"] == "TASK_STATE_SUCCEEDED"
        resumed = await _sse(session, f"{base}/{task_id}/events", {"Last-Event-ID": "3"})
        assert resumed == full[3:]
        async with session.get(f"{base}/{task_id}/events", headers={"Last-Event-ID": "x"}) as response:
            assert response.status == 400 and (await response.json())["field"] == "Last-Event-ID"
        async with session.post(base, data="{not json") as response:
            assert response.status == 400 and (await response.json())["field"] == "body"
        async with session.post(base, json={"kind": "teleport", "tenant": "sse"}) as response:
            assert response.status == 400 and (await response.json())["field"] == "kind"
        async with session.post(base, json={"kind": "echo", "payload": {"text": "x"}}) as response:
            assert response.status == 400 and (await response.json())["field"] == "spec.tenant"
        async with session.get(f"{base}/missing/events") as response:
            assert response.status == 404


async def test_websocket_is_bidirectional(mesh: Mesh) -> None:
    """Over one WebSocket through Envoy: submit, subscribe, ping, cancel; malformed frames get an
    error frame and the connection stays usable."""
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{mesh.ws_url}/v1/ws") as ws:
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive_json(timeout=10))["field"] == "frame"
        await ws.send_str("[1, 2]")
        assert (await ws.receive_json(timeout=10))["field"] == "frame"
        await ws.send_json({"op": "teleport", "id": "x"})
        unknown = await ws.receive_json(timeout=10)
        assert (unknown["field"], unknown["id"]) == ("op", "x")
        await ws.send_json({"op": "subscribe", "task_id": "t", "after_sequence": -1})
        assert (await ws.receive_json(timeout=10))["field"] == "after_sequence"
        await ws.send_json({"op": "submit", "id": "bad", "task": {"kind": "echo", "payload": {"text": "no tenant"}}})
        assert (await ws.receive_json(timeout=10))["field"] == "spec.tenant"

        await ws.send_json({"op": "ping", "id": "p1"})
        assert await ws.receive_json(timeout=10) == {"type": "pong", "id": "p1"}
        await ws.send_json(
            {"op": "submit", "id": "s1", "task": {"kind": "echo", "tenant": "ws", "payload": {"text": "hi"}}}
        )
        submitted = await ws.receive_json(timeout=10)
        assert submitted["type"] == "submitted" and submitted["id"] == "s1"
        slow = {"kind": "stream", "tenant": "ws", "payload": {"text": "z", "chunks": 100, "chunk_delay_ms": 100}}
        await ws.send_json({"op": "submit", "id": "s2", "task": slow})
        long_task = (await ws.receive_json(timeout=10))["task_id"]
        await ws.send_json({"op": "subscribe", "task_id": submitted["task_id"]})
        await ws.send_json({"op": "subscribe", "task_id": long_task})
        finals: dict[str, str] = {}
        cancelled_reply = None
        while len(finals) < 2 or cancelled_reply is None:
            frame = await ws.receive_json(timeout=20)
            if frame["type"] == "event":
                event = frame["event"]
                if event["taskId"] == long_task and event.get("output") and cancelled_reply is None:
                    await ws.send_json({"op": "cancel", "id": "c1", "task_id": long_task})
                    cancelled_reply = "sent"
                if event.get("final"):
                    finals[event["taskId"]] = event["state"]
            elif frame["type"] == "cancelled":
                assert frame["id"] == "c1" and frame["state"] == "TASK_STATE_CANCELLED"
                cancelled_reply = frame["state"]
        assert finals == {submitted["task_id"]: "TASK_STATE_SUCCEEDED", long_task: "TASK_STATE_CANCELLED"}


async def test_rest_cancel_and_openapi_document(mesh: Mesh) -> None:
    """POST /v1/tasks/{id}/cancel cancels a running task through Envoy, with clear errors for a
    missing task and a bad body; GET /v1/openapi.json describes every REST operation."""
    base = f"{mesh.base_url}/v1"
    async with aiohttp.ClientSession() as session:
        slow = {"kind": "stream", "tenant": "rest", "payload": {"text": "a b c", "chunks": 50, "chunk_delay_ms": 200}}
        async with session.post(f"{base}/tasks", json=slow) as response:
            task_id = (await response.json())["task_id"]
        async with session.post(f"{base}/tasks/{task_id}/cancel", json={"reason": "enough"}) as response:
            assert response.status == 200
            assert await response.json() == {"task_id": task_id, "state": "TASK_STATE_CANCELLED"}
        async with session.post(f"{base}/tasks/{task_id}/cancel") as response:  # again: keeps its state
            assert (await response.json())["state"] == "TASK_STATE_CANCELLED"
        async with session.post(f"{base}/tasks/nope/cancel") as response:
            assert response.status == 404
        async with session.post(f"{base}/tasks/{task_id}/cancel", json={"reason": 7}) as response:
            assert response.status == 400
            assert (await response.json())["field"] == "reason"
        async with session.post(f"{base}/tasks/{task_id}/cancel", data="{oops") as response:
            assert response.status == 400
            assert (await response.json())["field"] == "body"
        # Found by Schemathesis: each once answered 500.
        for method, path, body in [
            ("GET", "/tasks/%20/events", None),
            ("GET", "/tasks/a.b", None),
            ("POST", "/tasks/a%2Ab/cancel", None),
            ("POST", "/tasks", b'{"kind": "echo", "tenant": "t", "priority": {}}'),
            ("POST", f"/tasks/{task_id}/cancel", b"\xff\x0e\xfe"),
        ]:
            async with session.request(method, f"{base}{path}", data=body) as response:
                answer = await response.json()
                assert response.status == 400, (path, answer)
                assert answer["field"] in {"task_id", "priority", "body"}
        async with session.get(f"{base}/openapi.json") as response:
            document = await response.json()
    assert document["openapi"].startswith("3.1")
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert operations == {
        "submitTask",
        "listTasks",
        "getTask",
        "cancelTask",
        "streamTaskEvents",
        "refreshStreamCredential",
    }


async def test_list_a_tenants_tasks_newest_first_in_pages(mesh: Mesh) -> None:
    """ListTasks (gRPC) and GET /v1/tasks (REST) page through one tenant's tasks, newest first."""
    tenant = f"list-{new_task_id()[-6:].lower()}"
    async with Client(mesh.endpoint, tenant=tenant) as client:
        submitted = [await client.submit("echo", {"text": str(i)}) for i in range(3)]
        for task in submitted:
            [e async for e in client.watch(task.task_id)]
        newest_first = [task.task_id for task in reversed(submitted)]

        async def indexed() -> list[task_pb2.TaskInfo] | None:
            tasks, _ = await client.list_tasks(limit=10)
            return tasks if len(tasks) == 3 else None

        tasks = await eventually(indexed, what="the index lists all three tasks")
        assert [t.spec.task_id for t in tasks] == newest_first
        assert all(t.state == task_pb2.TASK_STATE_SUCCEEDED for t in tasks)
        first, token = await client.list_tasks(limit=2)
        second, last = await client.list_tasks(limit=2, page_token=token)
        assert [t.spec.task_id for t in first + second] == newest_first and last == ""
        with pytest.raises(InvalidArgument, match="limit"):
            await client.list_tasks(limit=501)
    async with aiohttp.ClientSession() as session:
        url = f"{mesh.base_url}/v1/tasks"
        async with session.get(url, params={"tenant": tenant, "limit": "2"}) as response:
            page = await response.json()
        assert [t["spec"]["taskId"] for t in page["tasks"]] == newest_first[:2]
        assert page["next_page_token"] == newest_first[1]
        async with session.get(url) as response:
            assert response.status == 400 and (await response.json())["field"] == "tenant"


async def test_list_filters_by_kind_state_and_creation_time_over_grpc_and_rest(mesh: Mesh) -> None:
    """ListTasks and GET /v1/tasks filter on the server: by kind, by states, by a creation window
    [after, before); filtered pages page on with tokens valid under any filter; each bad filter
    value is INVALID_ARGUMENT / 400 naming its field."""
    tenant = f"filter-{new_task_id()[-6:].lower()}"
    async with Client(mesh.endpoint, tenant=tenant) as client:
        first_echo = await client.submit("echo", {"text": "a"})
        short_stream = await client.submit("stream", {"text": "x y", "chunks": 2})
        second_echo = await client.submit("echo", {"text": "b"})
        for task in (first_echo, short_stream, second_echo):
            [e async for e in client.watch(task.task_id)]
        long_stream = await client.submit("stream", {"text": "a b c", "chunks": 50, "chunk_delay_ms": 200})
        await client.cancel(long_stream.task_id)
        [e async for e in client.watch(long_stream.task_id)]

        async def all_four() -> list[task_pb2.TaskInfo] | None:
            tasks, _ = await client.list_tasks(limit=10)
            return tasks if len(tasks) == 4 else None

        everything = await eventually(all_four, what="the index lists all four tasks")
        ids = [t.spec.task_id for t in everything]
        assert ids == [long_stream.task_id, second_echo.task_id, short_stream.task_id, first_echo.task_id]
        created = {t.spec.task_id: t.created.ToDatetime(tzinfo=UTC) for t in everything}

        async def listed(**filters: object) -> list[str]:
            tasks, token = await client.list_tasks(limit=10, **filters)  # type: ignore[arg-type]
            assert token == ""
            return [t.spec.task_id for t in tasks]

        assert await listed(kind="echo") == [second_echo.task_id, first_echo.task_id]
        assert await listed(states=["cancelled"]) == [long_stream.task_id]
        assert await listed(kind="stream", states=["succeeded", "failed"]) == [short_stream.task_id]
        assert await listed(kind="acme.nothing") == []
        window = {"created_after": created[short_stream.task_id], "created_before": created[long_stream.task_id]}
        assert await listed(**window) == [second_echo.task_id, short_stream.task_id]  # after inclusive, before not
        assert await listed(created_after=created[long_stream.task_id] + timedelta(hours=1)) == []

        # One echo a page: each page is full, the last has no token; a filtered page's token goes on unfiltered.
        page, token = await client.list_tasks(limit=1, kind="echo")
        assert [t.spec.task_id for t in page] == [second_echo.task_id] and token == second_echo.task_id
        page, token = await client.list_tasks(limit=1, kind="echo", page_token=token)
        assert [t.spec.task_id for t in page] == [first_echo.task_id] and token == ""
        page, _ = await client.list_tasks(limit=10, page_token=second_echo.task_id)
        assert [t.spec.task_id for t in page] == [short_stream.task_id, first_echo.task_id]

        for filters, field in [
            ({"states": [0]}, "states[0]"),
            ({"states": [99]}, "states[0]"),
            ({"kind": "Not A Kind"}, "kind"),
            (
                {"created_after": created[long_stream.task_id], "created_before": created[first_echo.task_id]},
                "created_before",
            ),
        ]:
            with pytest.raises(InvalidArgument) as caught:
                await client.list_tasks(**filters)  # type: ignore[arg-type]
            assert caught.value.field == field, (filters, caught.value)

    def rfc3339(moment: datetime) -> str:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    async with aiohttp.ClientSession() as session:
        url = f"{mesh.base_url}/v1/tasks"

        async def rest(params: list[tuple[str, str]]) -> tuple[int, dict]:  # type: ignore[type-arg]
            async with session.get(url, params=[("tenant", tenant), *params]) as response:
                return response.status, await response.json()

        status, body = await rest([("kind", "echo"), ("state", "SUCCEEDED")])
        assert status == 200 and [t["spec"]["taskId"] for t in body["tasks"]] == [
            second_echo.task_id,
            first_echo.task_id,
        ]
        status, body = await rest([("state", "TASK_STATE_CANCELLED"), ("state", "FAILED")])
        assert [t["spec"]["taskId"] for t in body["tasks"]] == [long_stream.task_id]
        window_params = [
            ("created_after", rfc3339(created[short_stream.task_id])),
            ("created_before", rfc3339(created[long_stream.task_id])),
        ]
        status, body = await rest(window_params)
        assert [t["spec"]["taskId"] for t in body["tasks"]] == [second_echo.task_id, short_stream.task_id]
        status, body = await rest([("kind", "echo"), ("limit", "1")])
        assert body["next_page_token"] == second_echo.task_id
        for params, field in [
            ([("state", "bogus")], "state"),
            ([("created_after", "yesterday")], "created_after"),
            ([("created_after", window_params[1][1]), ("created_before", window_params[0][1])], "created_before"),
            ([("kind", "")], "kind"),
            ([("states", "QUEUED")], "states"),  # a misspelt filter is refused, never ignored
        ]:
            status, body = await rest(params)
            assert status == 400 and body["field"] == field, (params, body)
