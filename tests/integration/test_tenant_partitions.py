"""Tenant partitions past the broker's consumer limit: the work stream declares its own (nats-server
2.15 caps a stream at 1 000 consumers otherwise), and a tenant whose partition the broker refuses
waits on its own while the lane goes on serving the other tenants."""

from __future__ import annotations

import uuid

import pytest

from mesh.fabric import IDEMPOTENCY_BUCKET, WORK_STREAM, EventLog, TaskIndex, Topology, WorkQueue, ensure_topology
from mesh.tasks import Limits
from mesh.v1 import task_pb2
from services.scheduler._admission import Admitter
from services.worker._dispatch import Dispatcher
from services.worker._runner import Runner
from tests.conftest import eventually
from tests.integration.conftest import NatsServer

pytestmark = pytest.mark.asyncio


def _echo(tenant: str) -> task_pb2.TaskSpec:
    spec = task_pb2.TaskSpec(tenant=tenant, kind="echo", task_id=f"01partition{uuid.uuid4().hex[:15]}")
    spec.payload.echo.text = tenant
    return spec


async def _state(events: EventLog, task_id: str) -> int:
    last = await events.last(task_id)
    return last.event.state if last else task_pb2.TASK_STATE_UNSPECIFIED


async def test_the_work_stream_declares_room_for_many_tenant_partitions(private_nats: NatsServer) -> None:
    nc = await private_nats.connect()
    try:
        js = nc.jetstream()
        await ensure_topology(js, Topology())
        assert (await js.stream_info(WORK_STREAM)).config.max_consumers == Topology().max_work_consumers >= 100_000
    finally:
        await nc.close()


async def test_a_refused_partition_waits_alone_and_the_lane_serves_the_others(private_nats: NatsServer) -> None:
    topology = Topology(max_work_consumers=2)
    nc = await private_nats.connect()
    try:
        js = nc.jetstream(timeout=5.0)
        await ensure_topology(js, topology)
        events = EventLog(js, nc)
        admitter = Admitter(
            WorkQueue(nc, js), events, await js.key_value(IDEMPOTENCY_BUCKET), Limits(), index=TaskIndex(js)
        )
        first = [_echo(tenant) for tenant in ("alpha", "beta", "gamma")]
        for spec in first:
            await admitter.admit(spec)
        runner = Runner.on_fabric(js, events, "w-partitions", None, ack_wait_s=topology.ack_wait_s)
        dispatcher = Dispatcher(nc, js, events, runner, ["ingestion"], 4, topology=topology)
        await dispatcher.start()
        try:

            async def two_done() -> bool:
                states = [await _state(events, spec.task_id) for spec in first]
                return states.count(task_pb2.TASK_STATE_SUCCEEDED) == 2

            await eventually(two_done, 20.0, "two of the three tenants' tasks succeed")
            waiting = [s for s in first if await _state(events, s.task_id) != task_pb2.TASK_STATE_SUCCEEDED]
            served = next(s.tenant for s in first if s not in waiting)
            # The refused tenant holds nothing up: more work of a served tenant still runs.
            later = _echo(served)
            await admitter.admit(later)

            async def later_done() -> bool:
                return await _state(events, later.task_id) == task_pb2.TASK_STATE_SUCCEEDED

            await eventually(later_done, 20.0, "a served tenant's next task succeeds")
            assert [await _state(events, s.task_id) for s in waiting] == [task_pb2.TASK_STATE_QUEUED]
            assert (await js.stream_info(WORK_STREAM)).state.consumer_count == 2
        finally:
            await dispatcher.shutdown(2.0)
    finally:
        await nc.close()
