"""A junk ordering-key state on a real nats-server is rebuilt once, written back, and never frees a key
whose task's last event is junk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from nats.aio.client import Client as NATS

from mesh.fabric import (
    ORDER_KEYS_BUCKET,
    EventLog,
    KeySequencer,
    Topology,
    WorkQueue,
    ensure_topology,
    event_subject,
    key_token,
    work_subject,
)
from mesh.fabric._ordering import _KeyState
from mesh.tasks import new_task_id
from mesh.v1 import task_pb2, work_pb2

pytestmark = pytest.mark.integration

TENANT = "ord-junk"
JUNK = b"\xff\xfe not a record \x00\x01 {"


@dataclass
class _Key:
    nc: NATS
    sequencer: KeySequencer
    events: EventLog
    token: str
    ordering_key: str
    rebuilds: int = 0

    async def task(self, *states: int) -> work_pb2.WorkItem:
        """A task of the key with these events stored, parked behind the key's earlier tasks."""
        spec = task_pb2.TaskSpec(task_id=new_task_id(), tenant=TENANT, kind="echo", ordering_key=self.ordering_key)
        after = 0
        for number, state in enumerate(states, start=1):
            event = task_pb2.TaskEvent(task_id=spec.task_id, sequence=number, state=state)
            if number == 1:
                event.spec.CopyFrom(spec)
            after = await self.events.append(event, after)
        item = work_pb2.WorkItem(spec=spec)
        await self.sequencer.park(item, work_subject("ingestion", task_pb2.PRIORITY_CLASS_STANDARD, TENANT))
        return item

    async def state(self) -> _KeyState:
        entry = await (await self.nc.jetstream().key_value(ORDER_KEYS_BUCKET)).get(self.token)
        return _KeyState.parse(entry.value)

    async def spoil(self) -> None:
        await (await self.nc.jetstream().key_value(ORDER_KEYS_BUCKET)).put(self.token, JUNK)


@pytest.fixture
async def key(nc: NATS) -> AsyncIterator[_Key]:
    js = nc.jetstream(timeout=5.0)
    await ensure_topology(js, Topology())
    events = EventLog(js, nc)
    sequencer = KeySequencer(js, await js.key_value(ORDER_KEYS_BUCKET), WorkQueue(nc, js), events)
    ordering_key = f"k-{new_task_id()}"
    found = _Key(nc, sequencer, events, key_token(TENANT, ordering_key), ordering_key)
    rebuild = sequencer._rebuild

    async def counted(token: str) -> _KeyState:
        found.rebuilds += 1
        return await rebuild(token)

    sequencer._rebuild = counted  # type: ignore[method-assign]
    yield found


async def test_rebuilt_key_state_is_written_back_once(key: _Key) -> None:
    """A junk key state is rebuilt from the key's tasks and written back: later steps read it, not rescan."""
    running = await key.task(task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_RUNNING)
    await key.spoil()
    for _ in range(3):
        await key.sequencer.advance(key.token)
    assert key.rebuilds == 1
    assert await key.state() == _KeyState(cursor=1, busy=True, task_id=running.spec.task_id)


async def test_a_task_whose_last_event_is_junk_keeps_its_key(key: _Key) -> None:
    """The running task's last event is junk: the rebuild reads the good event before it (RUNNING),
    so the key stays held and the next task of the key is not released alongside it."""
    running = await key.task(task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_RUNNING)
    await key.nc.jetstream().publish(event_subject(running.spec.task_id), JUNK)
    await key.spoil()
    waiting = await key.task(task_pb2.TASK_STATE_QUEUED)  # parking advances the key: rebuild
    assert key.rebuilds == 1
    state = await key.state()
    assert (state.busy, state.task_id) == (True, running.spec.task_id), f"{waiting.spec.task_id} was released"
