"""Poison records on real brokers: a KV entry or stream message the mesh cannot read is quarantined once,
skipped, and the reader goes on (credentials, inference registry, dead letters, listing index, ordering)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TypeVar

import pytest
from nats.aio.client import Client as NATS

from clients.sdk import Client
from mesh.errors import Unauthenticated
from mesh.fabric import (
    INFERENCE_BUCKET,
    ORDER_KEYS_BUCKET,
    WORKERS_BUCKET,
    Quarantine,
    Topology,
    ensure_topology,
    event_subject,
    key_token,
)
from mesh.tasks import new_task_id
from mesh.v1 import task_pb2
from services.gateway._auth import CREDENTIALS_BUCKET, Authenticator, CredentialStore
from tests.conftest import eventually
from tests.integration.conftest import Mesh, NatsServer, quarantined

pytestmark = pytest.mark.integration

JUNK = b"\xff\xfe not a record \x00\x01 {"
T = TypeVar("T")


async def test_unreadable_credential_records_do_not_stop_the_watch(nats_server: NatsServer) -> None:
    """Junk and a wrongly shaped key record in tm_credentials are quarantined; a valid key still
    authenticates, a revocation written after the junk still takes effect, and an unreadable
    revocation still revokes (fail closed)."""
    nc = await nats_server.connect()
    try:
        js = nc.jetstream()
        await ensure_topology(js, Topology())
        store = await CredentialStore.open(js)
        await store.start()
        authenticator = Authenticator(store, None)
        try:
            _, kept = await store.create_key("acme", ["read"])
            revoked_id, revoked = await store.create_key("acme", ["read"])
            doomed_id, doomed = await store.create_key("acme", ["read"])
            kv = await js.key_value(CREDENTIALS_BUCKET)
            await kv.put("apikey.junk01", JUNK)
            await kv.put("apikey.shape01", json.dumps({"digest": 1, "tenant": "acme"}).encode())
            await kv.put(f"revoked.{doomed_id}", JUNK)
            # Another replica's revocation, written after the junk.
            await kv.put(f"revoked.{revoked_id}", json.dumps({"reason": "leaked", "at": time.time()}).encode())

            async def revocation_applied() -> bool:
                return store.revoked(revoked_id) is not None

            await eventually(revocation_applied, timeout_s=20, what="the revocation written after the junk")
            with pytest.raises(Unauthenticated, match="leaked"):
                await authenticator.identify(api_key=revoked)
            with pytest.raises(Unauthenticated, match="revoked"):
                await authenticator.identify(api_key=doomed)
            assert (await authenticator.identify(api_key=kept)).tenant == "acme"
        finally:
            await store.close()
        junk = await quarantined(nc, "credentials", f"$KV.{CREDENTIALS_BUCKET}.apikey.junk01")
        shape = await quarantined(nc, "credentials", f"$KV.{CREDENTIALS_BUCKET}.apikey.shape01")
        bad_revocation = await quarantined(nc, "credentials", f"$KV.{CREDENTIALS_BUCKET}.revoked.{doomed_id}")
        assert (junk.raw, junk.classification) == (JUNK, "poison_input")
        assert shape.classification == "schema_mismatch"
        assert bad_revocation.classification == "poison_input"
        records = await Quarantine(js, nc).list("credentials")
        assert len(records) == 3, "each unreadable entry is recorded once"
    finally:
        await nc.close()


async def test_junk_registry_entries_leave_mesh_status_working(mesh: Mesh, broker: NATS) -> None:
    """Junk in tm_inference and tm_workers: GetMeshStatus still lists the workers and the good
    backends; the inference entry is quarantined and removed."""
    js = broker.jetstream()
    async with Client(mesh.endpoint, tenant="poison-status") as client:
        before = await client.status()
        inference = await js.key_value(INFERENCE_BUCKET)
        await inference.put("junk-instance.junk", JUNK)
        await (await js.key_value(WORKERS_BUCKET)).put("junk-worker", JUNK)
        after = await client.status()
    assert [w.worker_id for w in after.workers] == [w.worker_id for w in before.workers] != []
    assert {b.address for b in after.inference_backends} >= {b.address for b in before.inference_backends}
    record = await quarantined(broker, "inference", f"$KV.{INFERENCE_BUCKET}.junk-instance.junk")
    assert (record.raw, record.classification) == (JUNK, "poison_input")
    assert "junk-instance.junk" not in await inference.keys()


async def test_junk_dead_letter_records_leave_listing_working(mesh: Mesh, broker: NATS) -> None:
    """Junk on a new TM_DLQ subject and on top of a real record: ListDeadLetters still lists the
    real record, GetDeadLetter reads it, and both junk messages are quarantined."""
    js = broker.jetstream()
    async with Client(mesh.endpoint, tenant="poison-dlq") as client:
        submitted = await client.submit("embed", {"text": "hello", "model": "no-such-model"})
        assert [e async for e in client.watch(submitted.task_id)][-1].state == task_pb2.TASK_STATE_DEAD_LETTERED
        await eventually(lambda: client.dead_letters(tenant="poison-dlq"), timeout_s=20, what="the real dead letter")
        junk_subject, real_subject = f"tm.dlq.{new_task_id()}", f"tm.dlq.{submitted.task_id}"
        await js.publish(junk_subject, JUNK)
        await js.publish(real_subject, JUNK)
        listed = await client.dead_letters(tenant="poison-dlq")
        letter = await client.dead_letter(submitted.task_id)
        everyone = await client.dead_letters()
    assert [item.task_id for item in listed] == [submitted.task_id]
    assert letter.task_id == submitted.task_id and letter.spec.payload.embed.model == "no-such-model"
    assert submitted.task_id in [item.task_id for item in everyone]
    for subject in (junk_subject, real_subject):
        record = await quarantined(broker, "deadletters", subject)
        assert (record.raw, record.classification) == (JUNK, "poison_input")


def _queued(task_id: str, spec: task_pb2.TaskSpec) -> bytes:
    event = task_pb2.TaskEvent(task_id=task_id, sequence=1, state=task_pb2.TASK_STATE_QUEUED, spec=spec)
    event.timestamp.GetCurrentTime()
    return event.SerializeToString()


async def test_junk_listing_entries_leave_listing_and_the_reconciler_working(mesh: Mesh, broker: NATS) -> None:
    """A TM_TASKS entry naming no task id and a task whose QUEUED event has an unknown kind are
    quarantined by the reconciler, which still restores a task that lost its first work item;
    ListTasks still lists the tenant's tasks."""
    js = broker.jetstream()
    tenant = "poison-idx"
    async with Client(mesh.endpoint, tenant=tenant) as client:
        done = await client.submit("echo", {"text": "listed"})
        assert [e async for e in client.watch(done.task_id)][-1].state == task_pb2.TASK_STATE_SUCCEEDED
        junk_subject = f"tm.task.{tenant}.not!a~task"
        await js.publish(junk_subject, JUNK)
        unknown_id, lost_id = new_task_id(), new_task_id()
        unknown = client.spec("echo", {"text": "x"}, task_id=unknown_id)
        unknown.kind = "no-such-kind"
        lost = client.spec("echo", {"text": "found again"}, task_id=lost_id)
        for task_id, spec in ((unknown_id, unknown), (lost_id, lost)):
            await js.publish(f"tm.task.{tenant}.{task_id}", b"")
            await js.publish(event_subject(task_id), _queued(task_id, spec))

        async def lost_task_ran() -> bool:
            return (await client.get(lost_id)).state == task_pb2.TASK_STATE_SUCCEEDED

        await eventually(lost_task_ran, timeout_s=30, what="the reconciler to restore the lost task")
        listed = [task.spec.task_id for task in (await client.list_tasks())[0]]
    assert {done.task_id, lost_id} <= set(listed)
    junk = await quarantined(broker, "index", junk_subject)
    assert (junk.raw, junk.classification) == (JUNK, "schema_mismatch")
    bad_event = await quarantined(broker, "events", event_subject(unknown_id))
    assert (bad_event.classification, bad_event.task_id) == ("schema_mismatch", unknown_id)
    assert "spec.kind" in bad_event.error


async def test_junk_in_the_ordered_queue_and_key_state_does_not_jam_a_key(mesh: Mesh, broker: NATS) -> None:
    """Junk parked on an ordering key's TM_ORDERED subject is stepped over, and junk written over a
    key's KV state is rebuilt from the key's tasks: ordered tasks of both keys still run."""
    js = broker.jetstream()
    tenant = "poison-ord"
    parked_subject = f"tm.ord.{key_token(tenant, 'K1')}"
    await js.publish(parked_subject, JUNK)
    async with Client(mesh.endpoint, tenant=tenant) as client:
        after_junk = await client.submit("echo", {"text": "k1"}, ordering_key="K1")
        first = await client.submit("echo", {"text": "k2 first"}, ordering_key="K2")
        for task_id in (after_junk.task_id, first.task_id):
            async with asyncio.timeout(15):
                assert [e async for e in client.watch(task_id)][-1].state == task_pb2.TASK_STATE_SUCCEEDED
        token = key_token(tenant, "K2")
        await (await js.key_value(ORDER_KEYS_BUCKET)).put(token, JUNK)
        second = await client.submit("echo", {"text": "k2 second"}, ordering_key="K2")
        third = await client.submit("echo", {"text": "k2 third"}, ordering_key="K2")
        chains = []
        for task_id in (second.task_id, third.task_id):
            async with asyncio.timeout(15):
                chains.append([e async for e in client.watch(task_id)])
    assert [chain[-1].state for chain in chains] == [task_pb2.TASK_STATE_SUCCEEDED] * 2
    third_started = min(e.timestamp.ToNanoseconds() for e in chains[1] if e.state == task_pb2.TASK_STATE_RUNNING)
    assert chains[0][-1].timestamp.ToNanoseconds() <= third_started, "the rebuilt key still runs one at a time"
    parked = await quarantined(broker, "ordered", parked_subject)
    assert (parked.raw, parked.classification) == (JUNK, "poison_input")
    state = await quarantined(broker, "order_keys", f"$KV.{ORDER_KEYS_BUCKET}.{token}")
    assert (state.raw, state.classification) == (JUNK, "poison_input")
