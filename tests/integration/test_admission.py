"""Admission's guarantees: bounded specs, idempotency keys bound to one request, and no task
left QUEUED without its work item or missing from the listing.

Through Envoy on the supervised mesh (gRPC and REST), and with an Admitter in-process
against its own nats-server where a fault has to be injected between two writes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aiohttp
import grpc
import grpc.aio
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from clients.sdk import Client
from mesh.errors import Conflict, InvalidArgument, Unavailable
from mesh.fabric import (
    IDEMPOTENCY_BUCKET,
    TASKS_STREAM,
    WORK_STREAM,
    EventLog,
    TaskIndex,
    Topology,
    WorkQueue,
    ensure_topology,
    work_subject,
)
from mesh.tasks import Limits
from mesh.v1 import gateway_pb2, gateway_pb2_grpc, task_pb2, work_pb2
from services.scheduler._admission import Admitter
from services.scheduler._reconcile import ReconcilePolicy, Reconciler
from tests.conftest import eventually
from tests.integration.conftest import Mesh, NatsServer

pytestmark = pytest.mark.integration


def _echo(tenant: str, text: str = "hi", **fields: object) -> task_pb2.TaskSpec:
    spec = task_pb2.TaskSpec(
        tenant=tenant, kind="echo", payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput(text=text))
    )
    for name, value in fields.items():
        setattr(spec, name, value)
    return spec


async def _rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def _field(error: grpc.aio.AioRpcError) -> str:
    return dict(error.trailing_metadata() or ()).get("tidemesh-field", "")  # type: ignore[arg-type]


@pytest.fixture
async def gateway(mesh: Mesh) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceStub]:
    async with mesh.public_channel() as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


# --- finding 7: the whole spec is bounded ---------------------------------------------------------


@pytest.mark.parametrize("size", [900 * 1024, 2 * 1024 * 1024])
async def test_huge_label_is_invalid_argument_through_envoy(
    gateway: gateway_pb2_grpc.GatewayServiceStub, size: int
) -> None:
    """A 900 KB or 2 MB label is INVALID_ARGUMENT naming the label (not accepted, not UNAVAILABLE)."""
    spec = _echo("limits")
    spec.labels["foo"] = "v" * size
    error = await _rpc_error(gateway.SubmitTask(gateway_pb2.SubmitTaskRequest(spec=spec), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert _field(error) == 'spec.labels["foo"]'
    batch = await _rpc_error(gateway.SubmitTasks(gateway_pb2.SubmitTasksRequest(specs=[_echo("limits"), spec])))
    assert batch.code() == grpc.StatusCode.INVALID_ARGUMENT and _field(batch) == 'specs[1].labels["foo"]'


@pytest.mark.parametrize(
    ("labels", "field"),
    [
        ({f"k{i}": "v" for i in range(33)}, "spec.labels"),
        ({"k" * 64: "v"}, 'spec.labels["' + "k" * 64 + '"]'),
        ({"k" * 100_000: "v"}, "spec.labels"),
        ({"bad key": "v"}, 'spec.labels["bad key"]'),
    ],
)
async def test_label_count_and_keys_are_bounded_through_envoy(
    gateway: gateway_pb2_grpc.GatewayServiceStub, labels: dict[str, str], field: str
) -> None:
    """Too many labels, over-long or malformed keys: INVALID_ARGUMENT naming the field."""
    spec = _echo("limits")
    spec.labels.update(labels)
    error = await _rpc_error(gateway.SubmitTask(gateway_pb2.SubmitTaskRequest(spec=spec), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and _field(error) == field


async def test_oversize_rest_fields_are_400_and_submits_still_work(mesh: Mesh) -> None:
    """REST: over-long keys and ids, and a 900 KB payload, get 400 naming the field; a normal submit
    (gRPC and REST) then still runs to the end."""
    base = f"{mesh.base_url}/v1/tasks"
    echo = {"kind": "echo", "tenant": "limits", "payload": {"text": "x"}}
    cases = [
        ({**echo, "idempotency_key": "k" * 5000}, "spec.idempotency_key"),
        ({**echo, "ordering_key": "k" * 5000}, "spec.ordering_key"),
        ({**echo, "task_id": "t" * 5000}, "spec.task_id"),
        ({**echo, "payload": {"text": "x" * 900 * 1024}}, "spec.payload"),
    ]
    async with aiohttp.ClientSession() as session:
        for body, field in cases:
            async with session.post(base, json=body) as response:
                assert response.status == 400, await response.text()
                assert (await response.json())["field"] == field
        async with session.post(base, json=echo) as response:
            assert response.status == 201
    async with Client(mesh.endpoint, tenant="limits") as client:
        submitted = await client.submit("echo", {"text": "after the limits"})
        events = [event async for event in client.watch(submitted.task_id)]
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED and events[-1].output.text == "after the limits"


# --- finding 9: an idempotency key is bound to the request it came with --------------------------


async def test_reused_idempotency_key_over_grpc(gateway: gateway_pb2_grpc.GatewayServiceStub) -> None:
    """Same key, same request → the original task (deduplicated); same key with another payload or
    another kind → FAILED_PRECONDITION naming `idempotency_key`."""
    key = f"key-{uuid.uuid4().hex}"
    spec = _echo("idem", "first", idempotency_key=key)
    first = await gateway.SubmitTask(gateway_pb2.SubmitTaskRequest(spec=spec), timeout=10)
    again = await gateway.SubmitTask(gateway_pb2.SubmitTaskRequest(spec=spec), timeout=10)
    assert not first.deduplicated and again.deduplicated and again.task_id == first.task_id
    other_payload = _echo("idem", "second", idempotency_key=key)
    other_kind = task_pb2.TaskSpec(
        tenant="idem",
        kind="embed",
        idempotency_key=key,
        payload=task_pb2.TaskPayload(embed=task_pb2.EmbedInput(text="first")),
    )
    for changed in (other_payload, other_kind):
        error = await _rpc_error(gateway.SubmitTask(gateway_pb2.SubmitTaskRequest(spec=changed), timeout=10))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
        assert (error.details() or "").startswith("idempotency_key:") and first.task_id in (error.details() or "")
        assert ("tidemesh-field", "idempotency_key") in tuple(error.trailing_metadata() or ())


async def test_reused_idempotency_key_over_rest(mesh: Mesh) -> None:
    """REST: the same body twice is 201 then 200 deduplicated; another payload under the key is 409
    naming `idempotency_key`."""
    base = f"{mesh.base_url}/v1/tasks"
    body = {"kind": "echo", "tenant": "idem", "payload": {"text": "one"}, "idempotency_key": uuid.uuid4().hex}
    async with aiohttp.ClientSession() as session:
        async with session.post(base, json=body) as response:
            assert response.status == 201
            task_id = (await response.json())["task_id"]
        async with session.post(base, json=body) as response:
            assert response.status == 200
            reply = await response.json()
            assert reply["task_id"] == task_id and reply["deduplicated"]
        for changed in ({**body, "payload": {"text": "two"}}, {**body, "kind": "embed"}):
            async with session.post(base, json=changed) as response:
                assert response.status == 409, await response.text()
                error = await response.json()
                assert error["error_class"] == "conflict" and error["message"].startswith("idempotency_key:")
                assert error["field"] == "idempotency_key", error


async def test_sdk_retries_with_the_same_key_still_dedupe(mesh: Mesh) -> None:
    """The SDK resending one spec (what its automatic retry does), or a caller repeating a submit
    whose relative deadline gives a new absolute one, finds the original task."""
    key = f"sdk-{uuid.uuid4().hex}"
    async with Client(mesh.endpoint, tenant="idem") as client:
        first = await client.submit("echo", {"text": "retried"}, idempotency_key=key, deadline_s=600)
        repeated = await client.submit("echo", {"text": "retried"}, idempotency_key=key, deadline_s=601)
        spec = client.spec("echo", {"text": "resent"}, idempotency_key=f"{key}-b")
        sent = await client.submit_many([spec])
        resent = await client.submit_many([spec])
    assert repeated.deduplicated and repeated.task_id == first.task_id
    assert resent[0].deduplicated and resent[0].task_id == sent[0].task_id


async def test_a_repeated_key_lists_its_task_once(mesh: Mesh) -> None:
    """The key's claim and the listing entry are written side by side; a repeat's entry is taken
    back, and the listing shows the one task, not the repeats."""
    tenant = f"listed-{uuid.uuid4().hex[:8]}"
    key = f"sdk-{uuid.uuid4().hex}"
    async with Client(mesh.endpoint, tenant=tenant) as client:
        answers = [await client.submit("echo", {"text": "once"}, idempotency_key=key) for _ in range(4)]
        listed, _ = await client.list_tasks(limit=50)
    assert {a.task_id for a in answers} == {answers[0].task_id}
    assert [task.spec.task_id for task in listed] == [answers[0].task_id]


# --- in-process admission against a private nats-server ------------------------------------------


class _LosesFirstItem(WorkQueue):
    """A work queue whose first put fails as a crash right after the QUEUED event would."""

    def __init__(self, nc: NATS, js: JetStreamContext) -> None:
        super().__init__(nc, js)
        self.failures_left = 1

    async def put_item(self, item: work_pb2.WorkItem, subject: str = "", copy: str = "") -> bool:
        if self.failures_left:
            self.failures_left -= 1
            raise Unavailable("work queue did not store the item: nats: timeout")  # as put_item maps a timeout
        return await super().put_item(item, subject, copy)


class _Fabric:
    def __init__(self, nc: NATS, js: JetStreamContext) -> None:
        self.nc = nc
        self.js = js
        self.events = EventLog(js, nc)
        self.work = _LosesFirstItem(nc, js)

    async def admitter(self, limits: Limits | None = None, index: TaskIndex | None = None) -> Admitter:
        idempotency = await self.js.key_value(IDEMPOTENCY_BUCKET)
        return Admitter(self.work, self.events, idempotency, limits or Limits(), index=index or TaskIndex(self.js))

    async def work_items(self, spec: task_pb2.TaskSpec) -> list[work_pb2.WorkItem]:
        """Every stored work item on the task's first-step subject (read without consuming)."""
        subject = work_subject("ingestion", task_pb2.PRIORITY_CLASS_STANDARD, spec.tenant)
        info = await self.js.stream_info(WORK_STREAM, subjects_filter=subject)
        count = (info.state.subjects or {}).get(subject, 0)
        items = []
        sequence = 0
        for _ in range(count):
            raw = await self.js.get_msg(WORK_STREAM, seq=sequence + 1, subject=subject, next=True)
            sequence = raw.seq or 0
            items.append(work_pb2.WorkItem.FromString(raw.data or b""))
        return items


@pytest.fixture
async def fabric(private_nats: NatsServer) -> AsyncIterator[_Fabric]:
    """A fresh nats-server of its own (so the reconciler sees only this test's tasks)."""
    nc = await private_nats.connect()
    js = nc.jetstream(timeout=5.0)
    await ensure_topology(js, Topology())
    try:
        yield _Fabric(nc, js)
    finally:
        await nc.close()


async def test_reconciler_enqueues_a_task_left_without_its_work_item(fabric: _Fabric) -> None:
    """A task whose first work item was never stored (admission cut short after QUEUED, no client
    retry) gets it from the reconciler once past the grace period; a second pass adds nothing."""
    admitter = await fabric.admitter()
    spec = _echo("recon", task_id="01reconciledtask000000000a")
    with pytest.raises(Unavailable):
        await admitter.admit(spec)
    last = await fabric.events.last(spec.task_id)
    assert last is not None and last.event.state == task_pb2.TASK_STATE_QUEUED
    assert await fabric.work_items(spec) == []
    reconciler = Reconciler(fabric.js, fabric.events, admitter, ReconcilePolicy(grace_s=0.2))

    async def item_stored() -> list[work_pb2.WorkItem]:
        await reconciler.run_pass()
        return await fabric.work_items(spec)

    items = await eventually(item_stored, timeout_s=10, what="the reconciler stores the lost work item")
    assert [item.spec.task_id for item in items] == [spec.task_id]
    assert items[0].last_event_stream_sequence == last.stream_sequence
    assert await reconciler.run_pass() == 0 and len(await fabric.work_items(spec)) == 1


async def test_reconciler_leaves_a_queued_task_with_its_item_alone(fabric: _Fabric) -> None:
    """A task waiting in the queue with its item stored still has exactly one item after a pass."""
    fabric.work.failures_left = 0
    admitter = await fabric.admitter()
    spec = _echo("recon", task_id="01reconciledtask000000000b")
    await admitter.admit(spec)
    reconciler = Reconciler(fabric.js, fabric.events, admitter, ReconcilePolicy(grace_s=0.0))
    await eventually(lambda: _settles(reconciler), timeout_s=10, what="the reconciler looks at the task")
    assert reconciler.requeued == 0 and len(await fabric.work_items(spec)) == 1


async def _settles(reconciler: Reconciler) -> bool:
    await reconciler.run_pass()
    return reconciler.settled >= 1


async def test_index_write_is_awaited_and_its_failure_surfaces(fabric: _Fabric) -> None:
    """With the listing stream gone, the index write raises, and admission answers UNAVAILABLE
    before writing the task (a retry then admits it whole); with it back, the task is listed."""
    fabric.work.failures_left = 0
    await fabric.js.delete_stream(TASKS_STREAM)
    index = TaskIndex(fabric.js)
    with pytest.raises(nats.errors.Error):
        await index.add("listed", "01listedtask0000000000000a")
    admitter = await fabric.admitter(index=index)
    spec = _echo("listed", task_id="01listedtask0000000000000b")
    with pytest.raises(Unavailable, match="task index"):
        await admitter.admit(spec)
    assert await fabric.events.last(spec.task_id) is None
    await ensure_topology(fabric.js, Topology())
    await admitter.admit(spec)
    assert (await index.page("listed", 10))[0] == [spec.task_id]


async def test_broker_size_refusal_is_invalid_argument(fabric: _Fabric) -> None:
    """A spec the broker refuses for its size (limits raised past it) is INVALID_ARGUMENT, not
    UNAVAILABLE: the backstop behind the spec limits."""
    fabric.work.failures_left = 0
    roomy = Limits(max_payload_bytes=4 << 20, max_spec_bytes=8 << 20)
    admitter = await fabric.admitter(limits=roomy)
    with pytest.raises(InvalidArgument) as caught:
        await admitter.admit(_echo("big", "x" * (2 << 20)))
    assert caught.value.field == "spec"


async def test_old_idempotency_records_are_still_read(fabric: _Fabric) -> None:
    """A key stored by an older tidemesh (the bare task id) still resolves to its task, and an
    unreadable record is a Conflict on the key rather than a retryable error."""
    fabric.work.failures_left = 0
    admitter = await fabric.admitter()
    original = await admitter.admit(_echo("legacy", "old", idempotency_key="old-key"))
    kv = await fabric.js.key_value(IDEMPOTENCY_BUCKET)
    stored_key = next(key for key in await kv.keys() if key.startswith("legacy."))
    await kv.put(stored_key, original.task_id.encode())
    again = await admitter.admit(_echo("legacy", "changed", idempotency_key="old-key"))
    assert again.deduplicated and again.task_id == original.task_id
    await kv.put(stored_key, b"{not json")
    with pytest.raises(Conflict, match="idempotency_key"):
        await admitter.admit(_echo("legacy", "old", idempotency_key="old-key"))


async def test_concurrent_submits_are_admitted_together_and_a_bad_one_fails_alone(
    gateway: gateway_pb2_grpc.GatewayServiceStub, mesh: Mesh
) -> None:
    """Submits of many callers share the gateway's coalesced admission: the one spec the scheduler
    refuses gets its own INVALID_ARGUMENT naming the field, and every other caller its task."""
    bad = _echo("together")
    bad.labels.update({f"k{i}": "v" for i in range(33)})
    specs = [_echo("together", f"t{i}") for i in range(40)]
    specs[7] = bad
    calls = [gateway.SubmitTask(gateway_pb2.SubmitTaskRequest(spec=spec), timeout=20) for spec in specs]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    refused = answers.pop(7)
    assert isinstance(refused, grpc.aio.AioRpcError) and refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _field(refused) == "spec.labels"
    ids = [answer.task_id for answer in answers if isinstance(answer, gateway_pb2.SubmitTaskResponse)]
    assert len(set(ids)) == 39
    async with Client(mesh.endpoint, tenant="together") as client:
        finals = [event async for event in client.watch_many(ids, final_only=True)]
    assert sorted(event.task_id for event in finals) == sorted(ids)
    assert {event.state for event in finals} == {task_pb2.TASK_STATE_SUCCEEDED}
