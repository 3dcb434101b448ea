"""Junk as large as the broker accepts is still quarantined (its record fits the server's max_payload)."""

from __future__ import annotations

import asyncio
import hashlib
import time

import nats.js.errors
import pytest
from nats.aio.client import Client as NATS

from clients.sdk import Client
from mesh.fabric import EVENTS_STREAM, WORK_STREAM, EventLog, QuarantineRecord, Topology, ensure_topology
from mesh.fabric._subjects import event_subject
from mesh.tasks import new_task_id
from mesh.v1 import task_pb2
from tests.integration.conftest import Mesh, quarantined

pytestmark = pytest.mark.integration


def _junk(size: int) -> bytes:
    """Bytes that are no protobuf message (0xff is never a valid tag), `size` long."""
    return (b"\xff\xfe junk \x00" * (size // 9 + 1))[:size]


def _assert_describes(record: QuarantineRecord, junk: bytes, max_payload: int) -> None:
    summary = record.summary()
    assert summary["raw_length"] == len(junk) and summary["raw_sha256"] == hashlib.sha256(junk).hexdigest()
    assert record.truncated and junk.startswith(record.raw) and 0 < len(record.raw) < max_payload


async def test_junk_event_of_max_payload_is_set_aside_and_the_chain_goes_on(nc: NATS) -> None:
    """A junk event of the server's whole max_payload on a task's chain is quarantined (truncated,
    with its length and sha256) and deleted, so a writer fenced on the last good event appends."""
    js = nc.jetstream(timeout=5.0)
    await ensure_topology(js, Topology())
    events = EventLog(js, nc)
    task_id = new_task_id()
    queued = task_pb2.TaskEvent(task_id=task_id, sequence=1, state=task_pb2.TASK_STATE_QUEUED)
    queued_seq = await events.append(queued, 0)
    junk = _junk(nc.max_payload)
    junk_ack = await js.publish(event_subject(task_id), junk)

    last = await events.last(task_id)
    assert last is not None and last.stream_sequence == queued_seq
    running = task_pb2.TaskEvent(task_id=task_id, sequence=2, state=task_pb2.TASK_STATE_RUNNING)
    assert await events.append(running, queued_seq) > junk_ack.seq  # not ChainMoved: the junk is gone
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.get_msg(EVENTS_STREAM, seq=junk_ack.seq)
    _assert_describes(await quarantined(nc, "events", event_subject(task_id), junk_ack.seq), junk, nc.max_payload)


async def test_junk_work_item_of_max_payload_is_quarantined_and_the_lane_goes_on(mesh: Mesh, broker: NATS) -> None:
    """A junk work item of the broker's whole max_payload is quarantined (truncated, length and
    sha256) and terminated, not redelivered until dropped; another tenant's echo on the lane runs."""
    js = broker.jetstream(timeout=5.0)
    subject = "tm.work.ingestion.standard.poison-big"
    junk = _junk(broker.max_payload)
    junk_ack = await js.publish(subject, junk)
    await broker.publish("tm.bell.ingestion.standard.poison-big")
    record = await quarantined(broker, "work", subject, junk_ack.seq)
    _assert_describes(record, junk, broker.max_payload)
    assert record.classification == "poison_input"
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.get_msg(WORK_STREAM, seq=junk_ack.seq)  # terminated: gone from the work queue
    async with Client(mesh.endpoint, tenant="poison-big-b") as client:
        submitted = await client.submit("echo", {"text": "after the big one"}, priority="standard")
        started = time.monotonic()
        async with asyncio.timeout(10):
            states = [e.state async for e in client.watch(submitted.task_id)]
    assert states[-1] == task_pb2.TASK_STATE_SUCCEEDED and time.monotonic() - started < 5.5
