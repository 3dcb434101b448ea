"""A worker's side of the measured load: its dispatcher counts and times what it runs (service
is the time an attempt holds its slot, not its wait), its heartbeat carries the meter's report
and its slots per pool, and a heartbeat that fails gives the report back to the meter."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import grpc
import grpc.aio
import pytest

from mesh.load import LoadMeter
from mesh.tasks import new_task_id
from mesh.v1 import status_pb2, task_pb2, worker_pb2
from services.worker._dispatch import Dispatcher
from services.worker._liveness import Liveness
from services.worker._load import pool_slots
from services.worker._remote import SessionState
from services.worker._runner import Runner
from services.worker._steps import StepContext
from tests.conftest import eventually
from tests.unit.fakes import MemoryFabric, MemoryLane, MemoryQuarantine

STEP_S = 0.15


async def test_the_dispatcher_times_each_attempts_slot_and_its_first_wait() -> None:
    """Three items into one slot, each step ~0.15 s: three attempts started and ended, each
    held its slot ~0.15 s; the waits grow as the items queue behind one another."""
    fabric = MemoryFabric()
    lanes: dict[str, MemoryLane] = {}
    meter = LoadMeter()

    async def step(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        await asyncio.sleep(STEP_S)
        return [task_pb2.TaskOutput(text="ok")]

    def open_lane(pool: str, name: str, rank: int) -> MemoryLane:
        lanes[name] = MemoryLane(pool, name, rank)
        return lanes[name]

    runner = Runner(fabric, fabric, fabric, fabric.bus, "w-1", None, 30.0, handlers=lambda kind, index: step)
    dispatcher = Dispatcher(
        fabric.bus,
        None,
        fabric,
        runner,
        ["ingestion"],
        concurrency=1,
        reserve=0,
        grace_s=0.05,
        open_lane=open_lane,
        quarantine=MemoryQuarantine(),
        meter=meter,
    )
    async with dispatcher:
        deliveries = []
        for _ in range(3):
            spec = task_pb2.TaskSpec(
                task_id=new_task_id(),
                tenant="acme",
                kind="echo",
                payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput()),
            )
            deliveries.append(await fabric.admit(spec))
        for delivery in deliveries:
            lanes["standard"].offer(delivery)

        async def all_acked() -> bool:
            return all(d.settled == "ack" for d in deliveries)

        await eventually(all_acked, 10.0, "every item acked")

        async def slot_free() -> bool:  # acked inside the step's job; its slot is given back after
            return dispatcher.in_flight == 0

        await eventually(slot_free, 5.0, "the slot given back")
    (piece,) = meter.take()
    assert (piece.pool, piece.priority_class) == ("ingestion", task_pb2.PRIORITY_CLASS_STANDARD)
    assert (piece.started, piece.first_started, piece.ended) == (3, 3, 3)
    assert (piece.buffered, piece.running) == (0, 0)
    assert all(STEP_S <= s < STEP_S + 0.2 for s in piece.service_s), list(piece.service_s)
    assert piece.service_s_total == pytest.approx(sum(piece.service_s))
    waits = sorted(piece.wait_s)
    assert waits[2] >= 2 * STEP_S * 0.9, waits  # the third waited for two steps before it


class Stub:
    """WorkerService as the liveness loop calls it; `fail` makes heartbeats fail."""

    def __init__(self) -> None:
        self.beats: list[worker_pb2.HeartbeatRequest] = []
        self.fail = False
        self.beat = asyncio.Event()

    async def RegisterWorker(self, request: Any, timeout: float) -> worker_pb2.RegisterWorkerResponse:  # noqa: ASYNC109
        reply = worker_pb2.RegisterWorkerResponse()
        reply.heartbeat_interval.FromMilliseconds(10)
        return reply

    async def Heartbeat(self, request: worker_pb2.HeartbeatRequest, timeout: float) -> worker_pb2.HeartbeatResponse:  # noqa: ASYNC109
        self.beat.set()
        if self.fail:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata())
        copy = worker_pb2.HeartbeatRequest()
        copy.CopyFrom(request)
        self.beats.append(copy)
        return worker_pb2.HeartbeatResponse()


async def test_heartbeats_carry_the_load_and_a_failed_one_gives_it_back() -> None:
    meter = LoadMeter()
    stub = Stub()
    status = status_pb2.WorkerStatus(worker_id="w-1", pools=["ingestion", "inference"], concurrency=8)
    dispatcher = SimpleNamespace(in_flight=0, completed=0, running_task_ids=[], in_flight_ack_subjects=[])
    liveness = Liveness(stub, status, dispatcher, meter=meter)  # type: ignore[arg-type]
    stub.fail = True
    meter.arrived("inference", "batch", 5)
    async with liveness:
        await asyncio.wait_for(stub.beat.wait(), 5.0)  # failed: the five arrivals stay in the meter
        meter.arrived("inference", "batch", 2)
        stub.fail = False

        async def reported() -> bool:
            return sum(s.arrived for b in stub.beats for s in b.load.slices) >= 7

        await eventually(reported, 5.0, "the arrivals reported")
        slots = stub.beats[-1].load.slots
    assert sum(s.arrived for b in stub.beats for s in b.load.slices) == 7  # once each, none lost
    assert [(s.pool, s.workers, s.slots, s.dedicated_slots) for s in slots] == [
        ("ingestion", 1, 8, 0),
        ("inference", 1, 8, 0),
    ]
    assert stub.beats[-1].worker.health == status_pb2.WORKER_HEALTH_DRAINING  # it left


def test_a_worker_offers_its_concurrency_in_each_pool_and_its_sessions_capacity_in_theirs() -> None:
    sessions = SimpleNamespace(
        sessions={
            "a": SimpleNamespace(state=SessionState.CONNECTED, pools=["u-a-x-v1"], capacity=4),
            "b": SimpleNamespace(state=SessionState.DETACHED, pools=["u-a-x-v1", "u-b-y-v1"], capacity=2),
            "c": SimpleNamespace(state=SessionState.ENDED, pools=["u-a-x-v1"], capacity=100),
        }
    )
    slots = {s.pool: s for s in pool_slots(["inference"], 16, sessions)}  # type: ignore[arg-type]
    assert (slots["inference"].workers, slots["inference"].slots, slots["inference"].dedicated_slots) == (1, 16, 16)
    user = slots["u-a-x-v1"]
    assert (user.workers, user.slots, user.dedicated_workers, user.dedicated_slots) == (2, 6, 1, 4)
    assert (slots["u-b-y-v1"].slots, slots["u-b-y-v1"].dedicated_slots) == (2, 0)
