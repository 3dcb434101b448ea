"""A real task whose work item cannot run here is dead-lettered as a schema mismatch; a forged item ends nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from clients.sdk import Client
from mesh.errors import NotFound
from mesh.fabric import Quarantine, event_subject
from mesh.tasks import new_task_id
from mesh.v1 import deadletter_pb2, task_pb2, work_pb2
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TENANT = "poison-unrun"
SUBJECT = f"tm.work.ingestion.standard.{TENANT}"


async def _queue_without_item(broker: NATS, spec: task_pb2.TaskSpec) -> int:
    """Store a task's QUEUED event as admission does, without its work item; its stream sequence."""
    event = task_pb2.TaskEvent(task_id=spec.task_id, sequence=1, state=task_pb2.TASK_STATE_QUEUED, spec=spec)
    event.timestamp.GetCurrentTime()
    ack = await broker.jetstream().publish(
        event_subject(spec.task_id),
        event.SerializeToString(),
        headers={"Nats-Expected-Last-Subject-Sequence": "0"},
    )
    return ack.seq


async def _put_item(broker: NATS, item: work_pb2.WorkItem) -> None:
    await broker.jetstream().publish(SUBJECT, item.SerializeToString())
    await broker.publish(f"tm.bell.ingestion.standard.{TENANT}")


async def test_an_unrunnable_item_of_a_real_task_dead_letters_it_and_a_forged_one_does_not(
    mesh: Mesh, broker: NATS
) -> None:
    """An item with an unknown kind whose task's QUEUED event holds the same spec ends that task
    DEAD_LETTERED (schema_mismatch, with a runbook); one naming another task with another spec is
    only quarantined, and that task stays QUEUED."""
    async with Client(mesh.endpoint, tenant=TENANT) as client:
        bystander = client.spec("echo", {"text": "mine"}, task_id=new_task_id())
        await _queue_without_item(broker, bystander)
        forged_spec = client.spec("echo", {"text": "forged"}, task_id=bystander.task_id)
        forged_spec.kind = "no-such-kind"
        await _put_item(broker, work_pb2.WorkItem(spec=forged_spec))

        genuine = client.spec("echo", {"text": "from a newer mesh"}, task_id=new_task_id())
        genuine.kind = "no-such-kind"
        queued_at = await _queue_without_item(broker, genuine)
        await _put_item(
            broker, work_pb2.WorkItem(spec=genuine, last_event_sequence=1, last_event_stream_sequence=queued_at)
        )
        async with asyncio.timeout(15):
            events = [e async for e in client.watch(genuine.task_id)]
        letter = await client.dead_letter(genuine.task_id)
        # The forged item came first on the same lane, so it has been handled by now.
        left_alone = await client.get(bystander.task_id)
        with pytest.raises(NotFound):
            await client.dead_letter(bystander.task_id)
    assert events[-1].state == task_pb2.TASK_STATE_DEAD_LETTERED and events[-1].final
    assert events[-1].error.error_class == "schema_mismatch" and "spec.kind" in events[-1].error.message
    assert letter.classification == deadletter_pb2.FAILURE_CLASS_SCHEMA_MISMATCH
    assert (REPO / letter.runbook).is_file(), letter.runbook
    assert letter.spec == genuine
    assert (left_alone.state, left_alone.last_sequence) == (task_pb2.TASK_STATE_QUEUED, 1)
    records = {r.task_id: r for r in await Quarantine(broker.jetstream(), broker).list("work") if r.subject == SUBJECT}
    assert records[bystander.task_id].classification == "schema_mismatch"
    assert records[genuine.task_id].classification == "schema_mismatch"
