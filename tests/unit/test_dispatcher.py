"""The dispatcher over in-memory lanes and fabric (`tests/unit/fakes.py`): bounded concurrency, bad
messages set aside while the lane goes on, cancels, and shutdown handing work back. (Tenant
partitions and doorbells on real NATS: tests/integration/test_tenant_partitions.py, test_scheduling.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mesh.lifecycle import State
from mesh.tasks import new_task_id
from mesh.v1 import task_pb2
from services.worker._dispatch import Dispatcher
from services.worker._runner import Runner
from services.worker._steps import StepContext
from tests.conftest import eventually
from tests.unit.fakes import MemoryDelivery, MemoryFabric, MemoryLane, MemoryQuarantine


class Steps:
    """A step handler the test holds open: counts who runs at once, finishes when released."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.most = 0
        self.release = asyncio.Event()
        self.cancelled: list[str] = []

    async def __call__(self, ctx: StepContext) -> list[task_pb2.TaskOutput]:
        task_id = ctx.spec.task_id
        self.running.add(task_id)
        self.most = max(self.most, len(self.running))
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(task_id)
            raise
        finally:
            self.running.discard(task_id)
        return [task_pb2.TaskOutput(text="ok")]


class Rig:
    def __init__(self, fabric: MemoryFabric, dispatcher: Dispatcher, lanes: dict[str, MemoryLane]) -> None:
        self.fabric, self.dispatcher, self.lanes = fabric, dispatcher, lanes

    async def admit(self, lane: str = "standard") -> MemoryDelivery:
        spec = task_pb2.TaskSpec(
            task_id=new_task_id(), tenant="acme", kind="echo", payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput())
        )
        delivery = await self.fabric.admit(spec)
        self.lanes[lane].offer(delivery)
        return delivery


@pytest.fixture
def steps() -> Steps:
    return Steps()


@pytest.fixture
async def rig(steps: Steps) -> AsyncIterator[Rig]:
    fabric = MemoryFabric()
    lanes: dict[str, MemoryLane] = {}

    def open_lane(pool: str, name: str, rank: int) -> MemoryLane:
        lanes[name] = MemoryLane(pool, name, rank)
        return lanes[name]

    runner = Runner(fabric, fabric, fabric, fabric.bus, "w-1", None, 30.0, handlers=lambda kind, index: steps)
    dispatcher = Dispatcher(
        fabric.bus,
        None,
        fabric,
        runner,
        ["ingestion"],
        concurrency=2,
        reserve=0,
        grace_s=0.05,
        open_lane=open_lane,
        quarantine=MemoryQuarantine(),
    )
    async with dispatcher:
        yield Rig(fabric, dispatcher, lanes)
    assert dispatcher.state is State.STOPPED


async def test_no_more_steps_run_at_once_than_the_slots_and_all_finish(rig: Rig, steps: Steps) -> None:
    deliveries = [await rig.admit() for _ in range(5)]
    await eventually(_probe(lambda: len(steps.running) == 2), 5.0, "two steps running")
    assert rig.dispatcher.in_flight == 2 and len(rig.dispatcher.running_task_ids) == 2
    steps.release.set()
    await eventually(_probe(lambda: all(d.settled == "ack" for d in deliveries)), 5.0, "every item acked")
    assert steps.most == 2 and rig.dispatcher.completed == 5 and rig.dispatcher.in_flight == 0
    assert all(rig.fabric.states(d.task_id)[-1] == "TASK_STATE_SUCCEEDED" for d in deliveries)


async def test_a_message_that_is_no_work_item_is_set_aside_and_the_lane_goes_on(rig: Rig, steps: Steps) -> None:
    junk = MemoryDelivery(rig.fabric, "tm.work.ingestion.standard.acme", b"\xff\xfe not a work item", 99, 1)
    rig.lanes["standard"].offer(junk)
    steps.release.set()
    after = await rig.admit()
    await eventually(_probe(lambda: after.settled == "ack"), 5.0, "the next item ran")
    assert junk.settled == "term"
    quarantine = rig.dispatcher._quarantine
    assert isinstance(quarantine, MemoryQuarantine) and [c for c, _ in quarantine.records] == ["poison_input"]


async def test_a_cancelled_task_stops_its_step_and_its_item_is_acked(rig: Rig, steps: Steps) -> None:
    delivery = await rig.admit()
    await eventually(_probe(lambda: delivery.task_id in steps.running), 5.0, "the step running")
    last = rig.fabric.chains[delivery.task_id][-1]
    cancelled = task_pb2.TaskEvent(
        task_id=delivery.task_id,
        sequence=last.event.sequence + 1,
        state=task_pb2.TASK_STATE_CANCELLED,
        final=True,
    )
    await rig.fabric.append(cancelled, last.stream_sequence)  # the scheduler writes CANCELLED, then notifies
    assert rig.dispatcher.cancel(delivery.task_id)
    await eventually(_probe(lambda: delivery.settled == "ack"), 5.0, "the cancelled item acked")
    assert steps.cancelled == [delivery.task_id] and rig.dispatcher.completed == 0
    assert not rig.dispatcher.cancel("not-running")


async def test_shutdown_hands_back_what_waits_and_what_outlives_the_grace(rig: Rig, steps: Steps) -> None:
    deliveries = [await rig.admit() for _ in range(4)]
    await eventually(_probe(lambda: len(steps.running) == 2), 5.0, "two steps running")
    await eventually(_probe(lambda: not rig.lanes["standard"].queue), 5.0, "the rest buffered")
    await rig.dispatcher.shutdown(0.05)
    assert [d.settled for d in deliveries] == ["nak"] * 4  # two buffered, two cut off at the grace
    assert sorted(steps.cancelled) == sorted(d.task_id for d in deliveries[:2])
    assert all(lane.closed for lane in rig.lanes.values()) and rig.dispatcher.state is State.STOPPED
    await rig.dispatcher.shutdown(0.05)  # again: nothing left to do
    with pytest.raises(RuntimeError, match="starts once"):
        await rig.dispatcher.start()


async def test_a_hurried_shutdown_hands_running_steps_back_without_waiting_out_the_grace(
    rig: Rig, steps: Steps
) -> None:
    """`hurry` (the remote worker running the steps is gone): a shutdown with a long grace hands
    the running steps back at once."""
    deliveries = [await rig.admit() for _ in range(2)]
    await eventually(_probe(lambda: len(steps.running) == 2), 5.0, "two steps running")
    draining = asyncio.create_task(rig.dispatcher.shutdown(30.0))
    await asyncio.sleep(0.1)
    assert not draining.done(), "the grace is waited out while the steps may still finish"
    rig.dispatcher.hurry()
    await asyncio.wait_for(draining, 5.0)
    assert [d.settled for d in deliveries] == ["nak"] * 2
    assert sorted(steps.cancelled) == sorted(d.task_id for d in deliveries)


def _probe(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return bool(condition())

    return probe
