"""RunTask: submit and stream to the final event in one call, through Envoy."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest

from clients.sdk import Client
from mesh.errors import InvalidArgument
from mesh.v1 import gateway_pb2, gateway_pb2_grpc, task_pb2
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.asyncio


async def test_run_streams_the_admission_then_every_event_to_the_final_one(mesh: Mesh) -> None:
    async with mesh.public_channel() as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        spec = task_pb2.TaskSpec(tenant="runs", kind="echo", payload=task_pb2.TaskPayload())
        spec.payload.echo.text = "one call"
        responses = [r async for r in stub.RunTask(gateway_pb2.RunTaskRequest(spec=spec), timeout=30)]
    first, events = responses[0], [r.event for r in responses[1:]]
    assert first.WhichOneof("kind") == "submitted" and first.submitted.sequence == 1
    assert {e.task_id for e in events} == {first.submitted.task_id}
    assert [e.sequence for e in events] == sorted({e.sequence for e in events})  # in order, no repeat
    assert events[0].state == task_pb2.TASK_STATE_QUEUED
    assert events[-1].final and events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    assert events[-1].output.text == "one call"
    assert all(r.WhichOneof("kind") == "event" for r in responses[1:])


async def test_many_concurrent_runs_each_see_their_own_task(mesh: Mesh) -> None:
    async with Client(mesh.endpoint, tenant="runs") as client:

        async def one(i: int) -> tuple[str, str]:
            events = [e async for e in client.run("echo", {"text": f"r{i}"})]
            assert len({e.task_id for e in events}) == 1 and events[-1].final
            return events[-1].output.text, task_pb2.TaskState.Name(events[-1].state)

        results = await asyncio.gather(*(one(i) for i in range(40)))
    assert results == [(f"r{i}", "TASK_STATE_SUCCEEDED") for i in range(40)]


async def test_a_bad_spec_is_invalid_argument_and_nothing_runs(mesh: Mesh) -> None:
    async with mesh.public_channel() as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        call = stub.RunTask(gateway_pb2.RunTaskRequest(), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [r async for r in call]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(caught.value.trailing_metadata() or ()).get("tidemesh-field") == "spec"
    async with Client(mesh.endpoint, tenant="runs") as client:
        with pytest.raises(InvalidArgument) as invalid:
            async for _ in client.run("echo", {"text": "x" * 2_000_000}):
                pass
    assert invalid.value.field.startswith("spec")


async def _client_resets(mesh: Mesh) -> int:
    status, text = await mesh.envoy_admin("/stats?filter=^http.ingress.downstream_rq_rx_reset$")
    assert status == 200, text
    return int(text.rsplit(":", 1)[1]) if ":" in text else 0


async def test_streams_that_reach_their_final_event_end_without_a_reset(mesh: Mesh) -> None:
    """The SDK lets a finished stream end rather than cancel it: Envoy counts no client reset for
    50 runs and 50 watches (a connection whose streams are mostly reset early is closed by Envoy
    as a rapid-reset flood)."""
    before = await _client_resets(mesh)
    async with Client(mesh.endpoint, tenant="runs") as client:

        async def run_one(i: int) -> None:
            async for event in client.run("echo", {"text": f"r{i}"}):
                if event.final:
                    break

        async def watch_one(i: int) -> None:
            submitted = await client.submit("echo", {"text": f"w{i}"})
            async for event in client.watch(submitted.task_id):
                if event.final:
                    break

        await asyncio.gather(*(run_one(i) for i in range(50)), *(watch_one(i) for i in range(50)))
    assert await _client_resets(mesh) == before
