"""The fabric on a real nats-server: topology, fenced event chains, admission."""

from __future__ import annotations

import nats.js.api as api
import pytest
from nats.aio.client import Client as NATS

from mesh.errors import InvalidArgument
from mesh.fabric import (
    EVENTS_STREAM,
    IDEMPOTENCY_BUCKET,
    WORK_STREAM,
    Chain,
    ChainMoved,
    EventLog,
    Topology,
    WorkQueue,
    ensure_topology,
    ensure_work_consumer,
    fold,
)
from mesh.tasks import Limits, new_task_id
from mesh.v1 import task_pb2, work_pb2
from services.scheduler._admission import Admitter
from services.worker._runner import Runner

pytestmark = pytest.mark.integration


def _event(task_id: str, sequence: int, state: int, **fields: object) -> task_pb2.TaskEvent:
    event = task_pb2.TaskEvent(task_id=task_id, sequence=sequence, state=state, **fields)  # type: ignore[arg-type]
    event.timestamp.GetCurrentTime()
    return event


async def test_topology_is_created_idempotently(nc: NATS) -> None:
    """Declaring the topology twice leaves one work stream and one event stream; a whole-lane
    consumer left by an older version is removed (it would overlap the tenant partitions), and
    tenant-partition consumers are declared idempotently side by side."""
    js = nc.jetstream()
    await ensure_topology(js, Topology())
    legacy = api.ConsumerConfig(
        durable_name="work-inference-batch",
        filter_subject="tm.work.inference.batch.>",
        ack_policy=api.AckPolicy.EXPLICIT,
    )
    await js.add_consumer(WORK_STREAM, legacy)
    await ensure_topology(js, Topology())
    work = await js.stream_info(WORK_STREAM)
    events = await js.stream_info(EVENTS_STREAM)
    assert work.config.subjects == ["tm.work.>"]
    assert events.config.allow_direct is True
    for _ in range(2):
        for tenant in ("acme", "globex"):
            await ensure_work_consumer(js, Topology(), "inference", "batch", tenant)
    consumers = {c.name: c.config.filter_subject for c in await js.consumers_info(WORK_STREAM)}
    assert consumers == {
        "work-inference-batch-acme": "tm.work.inference.batch.acme",
        "work-inference-batch-globex": "tm.work.inference.batch.globex",
    }
    await js.key_value(IDEMPOTENCY_BUCKET)


async def test_event_chain_is_fenced(nc: NATS) -> None:
    """An append naming a stale predecessor is refused, so two writers cannot interleave."""
    js = nc.jetstream()
    await ensure_topology(js, Topology())
    log = EventLog(js, nc)
    task_id = new_task_id()
    first = await log.append(_event(task_id, 1, task_pb2.TASK_STATE_QUEUED), after_stream_sequence=0)
    second = await log.append(_event(task_id, 2, task_pb2.TASK_STATE_RUNNING), after_stream_sequence=first)
    with pytest.raises(ChainMoved):
        await log.append(_event(task_id, 2, task_pb2.TASK_STATE_RUNNING), after_stream_sequence=first)
    with pytest.raises(ChainMoved):  # a second QUEUED for an existing id
        await log.append(_event(task_id, 1, task_pb2.TASK_STATE_QUEUED), after_stream_sequence=0)
    final = _event(task_id, 3, task_pb2.TASK_STATE_SUCCEEDED, final=True, output=task_pb2.TaskOutput(text="done"))
    await log.append(final, after_stream_sequence=second)
    stored = [s.event async for s in log.read(task_id)]
    assert [e.sequence for e in stored] == [1, 2, 3]
    assert [e.sequence async for e in _events(log, task_id, after=1)] == [2, 3]
    last = await log.last(task_id)
    assert last is not None and last.event.final
    info = fold(stored)
    assert info.state == task_pb2.TASK_STATE_SUCCEEDED and info.result.text == "done"
    assert await log.last(new_task_id()) is None


async def _events(log: EventLog, task_id: str, after: int):  # type: ignore[no-untyped-def]
    async for stored in log.read(task_id, after):
        yield stored.event


async def test_admission_stores_event_and_work_item(nc: NATS) -> None:
    """An admitted task has its QUEUED event (with the spec) and its first work item in JetStream."""
    js = nc.jetstream()
    await ensure_topology(js, Topology())
    admitter = Admitter(WorkQueue(nc, js), EventLog(js, nc), await js.key_value(IDEMPOTENCY_BUCKET), Limits())
    spec = task_pb2.TaskSpec(
        tenant="acme",
        kind="echo",
        payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput(text="hi")),
        priority_class=task_pb2.PRIORITY_CLASS_INTERACTIVE,
    )
    reply = await admitter.admit(spec)
    first = await EventLog(js, nc).first(reply.task_id)
    assert first is not None and first.event.state == task_pb2.TASK_STATE_QUEUED
    assert first.event.spec.payload.echo.text == "hi"
    raw = await js.get_last_msg(WORK_STREAM, "tm.work.ingestion.interactive.acme")
    item = work_pb2.WorkItem.FromString(raw.data)
    assert item.spec.task_id == reply.task_id
    assert item.last_event_stream_sequence == first.stream_sequence


async def test_idempotency_key_returns_the_original_task(nc: NATS) -> None:
    """A repeated submit with the same key gets the first task id back and queues nothing new."""
    js = nc.jetstream()
    await ensure_topology(js, Topology())
    admitter = Admitter(WorkQueue(nc, js), EventLog(js, nc), await js.key_value(IDEMPOTENCY_BUCKET), Limits())
    key = new_task_id()
    spec = task_pb2.TaskSpec(
        tenant="acme",
        kind="echo",
        idempotency_key=key,
        payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput(text="once")),
    )
    first = await admitter.admit(spec)
    again = await admitter.admit(spec)
    other_tenant = task_pb2.TaskSpec()
    other_tenant.CopyFrom(spec)
    other_tenant.tenant = "globex"
    third = await admitter.admit(other_tenant)
    assert (again.task_id, again.deduplicated) == (first.task_id, True)
    assert first.deduplicated is False
    assert third.task_id != first.task_id  # keys are scoped per tenant


async def test_admission_rejects_bad_specs_without_storing(nc: NATS) -> None:
    """Invalid specs raise InvalidArgument naming the field and leave no event behind."""
    js = nc.jetstream()
    await ensure_topology(js, Topology())
    admitter = Admitter(
        WorkQueue(nc, js), EventLog(js, nc), await js.key_value(IDEMPOTENCY_BUCKET), Limits(max_payload_bytes=64)
    )
    task_id = new_task_id()
    cases = {
        "spec.kind": task_pb2.TaskSpec(task_id=task_id, tenant="t", kind="nope"),
        "spec.tenant": task_pb2.TaskSpec(task_id=task_id, kind="echo"),
        "spec.payload": task_pb2.TaskSpec(
            task_id=task_id,
            tenant="t",
            kind="echo",
            payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput(text="x" * 100)),
        ),
    }
    for field, spec in cases.items():
        with pytest.raises(InvalidArgument) as caught:
            await admitter.admit(spec)
        assert caught.value.field == field
    assert await EventLog(js, nc).last(task_id) is None


async def test_a_redelivery_whose_count_was_lost_still_finishes_the_task(nc: NATS) -> None:
    """The broker can lose a delivery count in a crash, so a redelivered item arrives as
    delivery 1 after its first run wrote RUNNING. The runner recognises the same item by its
    stream sequence and runs the step again, instead of taking it for a second copy and
    dropping it (which left the task RUNNING forever)."""
    js = nc.jetstream()
    topology = Topology()
    await ensure_topology(js, topology)
    events = EventLog(js, nc)
    admitter = Admitter(WorkQueue(nc, js), events, await js.key_value(IDEMPOTENCY_BUCKET), Limits())
    tenant = f"lost-{new_task_id()[-8:]}"
    spec = task_pb2.TaskSpec(
        tenant=tenant, kind="echo", payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput(text="x"))
    )
    task_id = (await admitter.admit(spec)).task_id
    await ensure_work_consumer(js, topology, "ingestion", "standard", tenant)
    sub = await js.pull_subscribe_bind(durable=f"work-ingestion-standard-{tenant}", stream=WORK_STREAM)
    [msg] = await sub.fetch(batch=1, timeout=5)
    assert msg.metadata.num_delivered == 1
    item = work_pb2.WorkItem.FromString(msg.data)
    # The first run wrote RUNNING, then the broker died before it could finish.
    first_run = Chain(
        task_id=task_id,
        sequence=item.last_event_sequence,
        stream_sequence=item.last_event_stream_sequence,
        attempt=1,
        worker_id="crashed",
        step="echo",
        traceparent="",
        work_item_sequence=msg.metadata.sequence.stream,
    )
    await first_run.emit(events, task_pb2.TASK_STATE_RUNNING)
    await Runner.on_fabric(js, events, "survivor", None, ack_wait_s=5.0).run(msg)
    last = await events.last(task_id)
    assert last is not None and last.event.state == task_pb2.TASK_STATE_SUCCEEDED
