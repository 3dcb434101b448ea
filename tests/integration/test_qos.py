"""QoS tiers: GUARANTEED partials are stored and replayable; BEST_EFFORT partials travel live only
and a slow watcher loses some, told how many."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NATS

from clients.sdk import Client
from mesh.fabric import EventLog, Topology, ensure_topology, live_subject
from mesh.tasks import new_task_id
from mesh.v1 import task_pb2
from services.gateway._hub import EventHub
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

CHUNKS = {"text": "one two three four five six", "chunks": 6, "chunk_delay_ms": 100}


async def test_best_effort_partials_are_live_only_and_guaranteed_ones_are_stored(mesh: Mesh) -> None:
    async with Client(mesh.endpoint, tenant="qos") as client:
        lossy = await client.submit("stream", CHUNKS, qos="best_effort")
        seen = [e async for e in client.watch(lossy.task_id)]
        stored = [e async for e in client.watch(lossy.task_id)]  # a replay: what the store holds
        kept = await client.submit("stream", CHUNKS)
        replayed = [e async for e in client.watch(kept.task_id)]
    live = [e for e in seen if e.live_index]
    assert [e.live_index for e in live] == list(range(1, 7))  # every partial arrived, in order
    assert all(e.state == task_pb2.TASK_STATE_RUNNING and e.output.text for e in live)
    assert seen[-1].final and seen[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    assert not any(e.live_index for e in stored) and stored[-1].final  # partials were never stored
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))
    assert len([e for e in replayed if e.output.text and not e.final]) == 6  # guaranteed: all stored


async def test_a_slow_best_effort_watcher_drops_partials_and_is_told_how_many(nc: NATS) -> None:
    """A watcher that does not read while 20 partials arrive keeps 4 (its buffer here) and the
    next event it gets says 16 were dropped; the stored final event still arrives."""
    js = nc.jetstream()
    await ensure_topology(js, Topology())
    events = EventLog(js, nc)
    hub = EventHub(nc, events, live_buffer=4)
    await hub.start()
    task_id = new_task_id()
    queued = task_pb2.TaskEvent(task_id=task_id, sequence=1, state=task_pb2.TASK_STATE_QUEUED)
    running = task_pb2.TaskEvent(task_id=task_id, sequence=2, state=task_pb2.TASK_STATE_RUNNING)
    position = await events.append(queued, after_stream_sequence=0)
    position = await events.append(running, after_stream_sequence=position)
    try:
        stream = hub.watch(task_id)
        assert [(await anext(stream)).sequence for _ in range(2)] == [1, 2]  # replayed; now live
        following = asyncio.ensure_future(anext(stream))
        for index in range(1, 21):
            partial = task_pb2.TaskEvent(task_id=task_id, sequence=2, live_index=index, output={"text": str(index)})
            await nc.publish(live_subject(task_id), partial.SerializeToString())
        await nc.flush()
        received = [await asyncio.wait_for(following, 5)]
        final = task_pb2.TaskEvent(task_id=task_id, sequence=3, state=task_pb2.TASK_STATE_SUCCEEDED, final=True)
        await events.append(final, after_stream_sequence=position)
        while not received[-1].final:
            received.append(await asyncio.wait_for(anext(stream), 5))
    finally:
        await hub.close()
    live = [e.live_index for e in received if e.live_index]
    dropped = sum(e.dropped for e in received)
    # At most one partial was taken while the 20 arrived; the buffer held 4 more.
    assert len(live) <= 5 and live == sorted(live)
    assert len(live) + dropped == 20
    assert received[-1].sequence == 3  # the stored final event always arrives


async def test_a_slow_guaranteed_watcher_is_resumed_from_the_store(nc: NATS) -> None:
    """Live notices past the buffer (2 here) are dropped, yet the watcher misses nothing: it
    notices the gap and reads the rest from JetStream."""
    js = nc.jetstream()
    await ensure_topology(js, Topology())
    events = EventLog(js, nc)
    hub = EventHub(nc, events, stored_buffer=2)
    await hub.start()
    task_id = new_task_id()
    position = await events.append(
        task_pb2.TaskEvent(task_id=task_id, sequence=1, state=task_pb2.TASK_STATE_QUEUED), after_stream_sequence=0
    )
    try:
        stream = hub.watch(task_id)
        assert (await anext(stream)).sequence == 1
        following = asyncio.ensure_future(anext(stream))
        for sequence in range(2, 12):  # 10 events while the watcher is not reading
            event = task_pb2.TaskEvent(
                task_id=task_id, sequence=sequence, state=task_pb2.TASK_STATE_RUNNING, final=sequence == 11
            )
            position = await events.append(event, after_stream_sequence=position)
        await nc.flush()
        [inbox] = hub._watchers[task_id]
        assert inbox._queue.qsize() <= 2  # the slow watcher's buffer stayed bounded
        received = [await asyncio.wait_for(following, 5)]
        while not received[-1].final:
            received.append(await asyncio.wait_for(anext(stream), 5))
    finally:
        await hub.close()
    assert [e.sequence for e in received] == list(range(2, 12))
    assert all(e.dropped == 0 for e in received)  # guaranteed: nothing is reported lost
