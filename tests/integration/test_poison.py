"""Poison messages on a real mesh: a work item or event the mesh cannot parse is set aside, and the lane goes on."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS

from clients.sdk import Client
from mesh.fabric import EVENTS_STREAM, QUARANTINE_ALERT_SUBJECT, WORK_STREAM
from mesh.tasks import new_task_id
from mesh.v1 import task_pb2, work_pb2
from tests.integration.conftest import Mesh, quarantined

pytestmark = pytest.mark.integration

JUNK = b"\xff\xfe not a protobuf \x00\x01 {"


async def _worker_metric(mesh: Mesh, name: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(mesh.ops_url("worker-1", "/metrics"), ssl=mesh.internal_ssl()) as resp:
            text = await resp.text()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


async def test_malformed_work_items_are_quarantined_and_the_lane_goes_on(mesh: Mesh, broker: NATS) -> None:
    """Junk bytes and a work item of an unknown kind on tenant A's standard ingestion partition are
    quarantined (raw bytes, subject, classification), terminated and alerted; tenant B's standard
    echo on the same lane still succeeds within its bound."""
    js = broker.jetstream()
    alerts: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def on_alert(msg) -> None:  # type: ignore[no-untyped-def]
        alerts.put_nowait(json.loads(msg.data))

    await broker.subscribe(QUARANTINE_ALERT_SUBJECT, cb=on_alert)
    await broker.flush()
    subject = "tm.work.ingestion.standard.poison-a"
    junk_ack = await js.publish(subject, JUNK)
    await broker.publish("tm.bell.ingestion.standard.poison-a")
    forged_id = new_task_id()
    unknown_kind = work_pb2.WorkItem(
        spec=task_pb2.TaskSpec(
            task_id=forged_id,
            tenant="poison-a",
            kind="no-such-kind",
            payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput(text="x")),
        )
    )
    kind_ack = await js.publish(subject, unknown_kind.SerializeToString())
    await broker.publish("tm.bell.ingestion.standard.poison-a")

    async with Client(mesh.endpoint, tenant="poison-b") as client:
        submitted = await client.submit("echo", {"text": "still here"}, priority="standard")
        started = time.monotonic()
        async with asyncio.timeout(10):
            events = [e async for e in client.watch(submitted.task_id)]
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    assert time.monotonic() - started < 5.5

    junk = await quarantined(broker, "work", subject, junk_ack.seq)
    forged = await quarantined(broker, "work", subject, kind_ack.seq)
    assert (junk.raw, junk.classification) == (JUNK, "poison_input")
    assert forged.raw == unknown_kind.SerializeToString()
    assert (forged.classification, forged.task_id) == ("schema_mismatch", forged_id)
    assert "spec.kind" in forged.error
    for ack in (junk_ack, kind_ack):
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.get_msg(WORK_STREAM, seq=ack.seq)  # terminated: gone from the work queue
    alert = await asyncio.wait_for(alerts.get(), 10)
    assert alert["subject"] == subject and "raw_b64" not in alert
    assert 'classification="poison_input"' in await _worker_metric(mesh, "tidemesh_quarantined_total")


async def test_a_forged_undecodable_event_does_not_break_reading_a_task(mesh: Mesh, broker: NATS) -> None:
    """Junk stored on a finished task's event subject: GetTask and a watch still answer from the good
    events, and the junk is quarantined and removed from the chain."""
    js = broker.jetstream()
    async with Client(mesh.endpoint, tenant="poison-evt") as client:
        submitted = await client.submit("echo", {"text": "intact"})
        assert [e async for e in client.watch(submitted.task_id)][-1].state == task_pb2.TASK_STATE_SUCCEEDED
        subject = f"tm.evt.{submitted.task_id}"
        junk_ack = await js.publish(subject, JUNK)
        info = await client.get(submitted.task_id)
        assert info.state == task_pb2.TASK_STATE_SUCCEEDED
        watched = [e async for e in client.watch(submitted.task_id)]
        assert watched[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    record = await quarantined(broker, "events", subject, junk_ack.seq)
    assert (record.raw, record.classification, record.task_id) == (JUNK, "poison_input", submitted.task_id)
    assert record.stream_sequence == junk_ack.seq
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.get_msg(EVENTS_STREAM, seq=junk_ack.seq)
