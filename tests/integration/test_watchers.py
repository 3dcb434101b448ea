"""Watchers through Envoy on an auth-on mesh (streams hold credential leases, as `tidemesh up` runs
them): a stream resumed at the final event ends at once, one resumed past the last event is
OUT_OF_RANGE / 400 naming the field, and every watcher is released when its client goes away —
the gateway's `tidemesh_watchers` gauge returns to its baseline and its log has no
"asynchronous generator is already running" (issue 11, findings 3 and 4)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import grpc.aio
import pytest

from clients.sdk import Client
from mesh.errors import OutOfRange
from mesh.supervisor import Plan, Supervisor, admin_key, build_plan
from mesh.v1 import gateway_pb2, gateway_pb2_grpc, task_pb2
from tests.conftest import eventually
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

STREAMS = 40  # per protocol and case: enough that a leak per stream shows in the gauge
LONG = {"text": "a b c d", "chunks": 4, "chunk_delay_ms": 10_000}  # runs about 40 s


@dataclass(frozen=True)
class Secured:
    plan: Plan
    admin: str

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.plan.public_port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"ApiKey {self.admin}"}

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"ApiKey {self.admin}"),)

    @property
    def gateway_log(self) -> Path:
        return Path(self.plan.state_dir) / "logs" / "gateway.log"

    async def watchers(self) -> float:
        """The gateway's live watcher gauge, read from its Prometheus endpoint."""
        mesh = Mesh(self.plan)  # the ops port is mutual TLS: scrape as the operators' `cli` identity
        url, ssl = mesh.ops_url("gateway", "/metrics"), mesh.internal_ssl()
        async with aiohttp.ClientSession() as session, session.get(url, ssl=ssl) as response:
            text = await response.text()
        [value] = [line.split()[1] for line in text.splitlines() if line.startswith("tidemesh_watchers ")]
        return float(value)


@pytest.fixture(scope="module")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Secured]:
    state = tmp_path_factory.mktemp("watchers")
    plan = build_plan(state, public_port=0, workers=1, auth=True)
    async with Supervisor(plan):
        yield Secured(plan, admin_key(state))


async def _finished_task(secured: Secured) -> tuple[str, int]:
    """A task that has ended, and the sequence of its final event."""
    async with Client(secured.endpoint, tenant="watchers", credential=secured.admin) as client:
        task = await client.submit("echo", {"text": "done"})
        events = [event async for event in client.watch(task.task_id)]
    assert events[-1].final
    return task.task_id, events[-1].sequence


async def _back_to(secured: Secured, baseline: float, what: str) -> None:
    async def settled() -> bool:
        return await secured.watchers() == baseline

    await eventually(settled, timeout_s=10, what=what)


def _no_already_running(secured: Secured) -> None:
    log = secured.gateway_log.read_text(errors="replace")
    assert "already running" not in log, "the gateway closed a stream while its read was still running"


async def _sse_events(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> list[str]:
    """The event names of a whole SSE response (it must end by itself)."""
    async with session.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        body = await response.text()
    return [line.removeprefix("event: ") for line in body.splitlines() if line.startswith("event: ")]


async def test_streams_resumed_at_the_final_event_end_at_once(secured: Secured) -> None:
    """40 resumes at the final event per protocol (SSE Last-Event-ID, gRPC after_sequence, WebSocket
    subscribe) each end having sent no task event, and no watcher is left behind."""
    task_id, final = await _finished_task(secured)
    baseline = await secured.watchers()
    url = f"https://{secured.endpoint}/v1/tasks/{task_id}/events"
    async with asyncio.timeout(30):  # before the fix each of these never ended
        async with aiohttp.ClientSession() as session:
            headers = {**secured.headers, "Last-Event-ID": str(final)}
            names = await asyncio.gather(*(_sse_events(session, url, headers) for _ in range(STREAMS)))
            assert all(got == ["stream"] for got in names)  # the lease's id, then the end
            async with session.ws_connect(f"wss://{secured.endpoint}/v1/ws", headers=secured.headers) as ws:
                for _ in range(STREAMS):
                    await ws.send_json({"op": "subscribe", "task_id": task_id, "after_sequence": final})
                await ws.send_json({"op": "ping", "id": "after"})
                assert json.loads((await ws.receive()).data) == {"type": "pong", "id": "after"}  # no event first
                await _back_to(secured, baseline, "WebSocket subscriptions resumed at the end ended")
        async with Mesh(secured.plan).public_channel() as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)

            async def resume() -> list[gateway_pb2.WatchTaskResponse]:
                request = gateway_pb2.WatchTaskRequest(task_id=task_id, after_sequence=final)
                return [response async for response in stub.WatchTask(request, metadata=secured.metadata)]

            assert all(got == [] for got in await asyncio.gather(*(resume() for _ in range(STREAMS))))
    await _back_to(secured, baseline, "every resumed-at-the-end watcher ended")
    _no_already_running(secured)


async def test_streams_abandoned_mid_way_release_their_watchers(secured: Secured) -> None:
    """40 streams per protocol of a task that runs on, each abandoned after its first event (SSE
    connection closed, gRPC WatchTask and WatchTasks cancelled, WebSocket replaced, unsubscribed or
    closed): the gauge returns to its baseline while the task still runs."""
    baseline = await secured.watchers()
    async with Client(secured.endpoint, tenant="watchers", credential=secured.admin) as client:
        task = await client.submit("stream", LONG)
        url = f"https://{secured.endpoint}/v1/tasks/{task.task_id}/events"
        try:
            async with aiohttp.ClientSession() as session:

                async def sse_then_leave() -> None:
                    async with session.get(url, headers=secured.headers) as response:
                        async for line in response.content:
                            if line.startswith(b"event: task"):
                                break  # leaving the block closes the connection mid-stream

                await asyncio.gather(*(sse_then_leave() for _ in range(STREAMS)))
                async with Mesh(secured.plan).public_channel() as channel:
                    stub = gateway_pb2_grpc.GatewayServiceStub(channel)

                    async def grpc_then_cancel() -> None:
                        call = stub.WatchTask(
                            gateway_pb2.WatchTaskRequest(task_id=task.task_id), metadata=secured.metadata
                        )
                        await anext(aiter(call))
                        call.cancel()

                    async def many_then_cancel() -> None:
                        call = stub.WatchTasks(
                            gateway_pb2.WatchTasksRequest(task_ids=[task.task_id]), metadata=secured.metadata
                        )
                        await anext(aiter(call))
                        call.cancel()

                    await asyncio.gather(*(grpc_then_cancel() for _ in range(STREAMS)))
                    await asyncio.gather(*(many_then_cancel() for _ in range(STREAMS // 4)))
                ws_url = f"wss://{secured.endpoint}/v1/ws"
                async with session.ws_connect(ws_url, headers=secured.headers) as ws:
                    for index in range(STREAMS // 2):  # a subscribe replaces the one before it
                        await ws.send_json({"op": "subscribe", "task_id": task.task_id, "after_sequence": index % 2})
                    await ws.receive()
                    await ws.send_json({"op": "unsubscribe", "task_id": task.task_id})
                    await _back_to(secured, baseline, "replaced and unsubscribed WebSocket watchers ended")
                for _ in range(STREAMS // 2):
                    async with session.ws_connect(ws_url, headers=secured.headers) as ws:
                        await ws.send_json({"op": "subscribe", "task_id": task.task_id})
                        await ws.receive()
                    # leaving the block closes the connection with the subscription open
            await _back_to(secured, baseline, "every abandoned watcher was released")
            assert (await client.get(task.task_id)).state == task_pb2.TASK_STATE_RUNNING  # not ended by the task
        finally:
            await client.cancel(task.task_id)
    _no_already_running(secured)


async def test_resume_positions_past_the_stream_are_out_of_range_naming_the_field(secured: Secured) -> None:
    """Last-Event-ID 2^64 and after=10^30 → 400 naming the field; gRPC after_sequence 2^64-1 (uint64's
    largest) → OUT_OF_RANGE naming after_sequence; WebSocket after_sequence 10^30 → an error frame
    naming after_sequence, and the socket stays open. No watcher is left behind."""
    task_id, final = await _finished_task(secured)
    baseline = await secured.watchers()
    url = f"https://{secured.endpoint}/v1/tasks/{task_id}/events"
    async with asyncio.timeout(30), aiohttp.ClientSession() as session:
        for headers, query, field in [
            ({"Last-Event-ID": str(2**64)}, "", "Last-Event-ID"),
            ({"Last-Event-ID": str(final + 1)}, "", "Last-Event-ID"),
            ({}, f"?after={10**30}", "after"),
        ]:
            async with session.get(url + query, headers={**secured.headers, **headers}) as response:
                body = await response.json()
                assert response.status == 400, body
                assert body["error_class"] == "invalid_input" and body["field"] == field, body
        async with session.ws_connect(f"wss://{secured.endpoint}/v1/ws", headers=secured.headers) as ws:
            await ws.send_json({"op": "subscribe", "task_id": task_id, "after_sequence": 10**30})
            frame = json.loads((await ws.receive()).data)
            assert frame["type"] == "error" and frame["field"] == "after_sequence", frame
            assert frame["task_id"] == task_id
            await ws.send_json({"op": "ping", "id": "still-open"})
            assert json.loads((await ws.receive()).data) == {"type": "pong", "id": "still-open"}
        async with Mesh(secured.plan).public_channel() as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            # uint64 cannot carry 10^30: a client that wraps it sends 10^30 mod 2^64, also past the end.
            for after in (2**64 - 1, 10**30 % 2**64, final + 1):
                request = gateway_pb2.WatchTaskRequest(task_id=task_id, after_sequence=after)
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    _ = [response async for response in stub.WatchTask(request, metadata=secured.metadata)]
                assert raised.value.code() == grpc.StatusCode.OUT_OF_RANGE, raised.value
                assert ("tidemesh-field", "after_sequence") in tuple(raised.value.trailing_metadata() or ())
        async with Client(secured.endpoint, tenant="watchers", credential=secured.admin) as client:
            with pytest.raises(OutOfRange, match="after_sequence"):  # the SDK does not retry it
                _ = [event async for event in client.watch(task_id, after_sequence=final + 1)]
    await _back_to(secured, baseline, "no out-of-range watcher was left")
