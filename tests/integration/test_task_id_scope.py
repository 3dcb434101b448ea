"""Client-chosen task ids are scoped to their tenant, on a real mesh with auth, through Envoy:
two tenants choosing one id get two tasks that never meet (submit, get, watch, cancel, list,
idempotency keys), another tenant's task stays NOT_FOUND, and an admin reads both by their ids.
An Admitter on a private nats-server checks the scheduler's own refusal."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from clients.sdk import Client
from mesh.errors import Conflict, NotFound
from mesh.fabric import IDEMPOTENCY_BUCKET, EventLog, TaskIndex, Topology, WorkQueue, ensure_topology
from mesh.supervisor import Supervisor, admin_key, build_plan
from mesh.tasks import Limits
from mesh.v1 import task_pb2
from services.scheduler._admission import Admitter
from tests.integration.conftest import NatsServer

pytestmark = pytest.mark.integration

A, B = "scope-a", "scope-b"
SLOW = {"text": "a b c d e f", "chunks": 6, "chunk_delay_ms": 300}  # about 2 s of partial results


@dataclass(frozen=True)
class TwoTenants:
    """A mesh with auth, an admin key, and a submit+read API key for each of tenants A and B."""

    endpoint: str
    admin: str
    keys: dict[str, str]

    @property
    def base(self) -> str:
        return f"https://{self.endpoint}"

    def client(self, tenant: str | None = None) -> Client:
        """A tenant's SDK client (its own key); `None`: the admin's."""
        credential = self.admin if tenant is None else self.keys[tenant]
        return Client(self.endpoint, tenant=tenant or "default", credential=credential)

    def http(self, tenant: str) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(headers={"Authorization": f"ApiKey {self.keys[tenant]}"})


@pytest.fixture(scope="module")
async def mesh2(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TwoTenants]:
    """The one place this module starts a mesh: the secure default (the session trusts its root)."""
    state = tmp_path_factory.mktemp("scoped")
    plan = build_plan(state, public_port=0, workers=1, auth=True)
    async with Supervisor(plan):
        mesh = TwoTenants(f"127.0.0.1:{plan.public_port}", admin_key(state), {})
        async with mesh.client() as admin:
            for tenant in (A, B):
                mesh.keys[tenant] = (await admin.create_api_key(tenant, ["submit", "read"], name="scope")).api_key
        yield mesh


def _name() -> str:
    return f"job-{uuid.uuid4().hex[:10]}"


async def _final(client: Client, task_id: str) -> task_pb2.TaskEvent:
    async with asyncio.timeout(30):
        events = [event async for event in client.watch(task_id)]
    return events[-1]


async def test_two_tenants_choosing_one_id_each_run_their_own_task(mesh2: TwoTenants) -> None:
    """A (gRPC) and B (REST) submit with the same task_id: neither is deduplicated, each task runs
    with its own result, each tenant's get and list by that id show only its own task, and A's
    retry, with the chosen id or with the id it got back, is deduplicated into A's task."""
    name = _name()
    async with mesh2.client(A) as a, mesh2.client(B) as b, mesh2.http(B) as rest:
        first = await a.submit("echo", {"text": "from a"}, task_id=name)
        body = {"kind": "echo", "payload": {"text": "from b"}, "task_id": name}
        async with rest.post(f"{mesh2.base}/v1/tasks", json=body) as response:
            theirs = await response.json()
            assert response.status == 201 and not theirs["deduplicated"], theirs
        assert not first.deduplicated and first.task_id != theirs["task_id"]
        assert first.task_id.startswith(name) and theirs["task_id"].startswith(name)

        assert (await _final(a, first.task_id)).output.text == "from a"
        assert (await _final(b, theirs["task_id"])).output.text == "from b"
        mine = await a.get(name)
        assert (mine.spec.tenant, mine.result.text) == (A, "from a")
        other = await b.get(name)
        assert (other.spec.tenant, other.result.text) == (B, "from b")
        async with rest.get(f"{mesh2.base}/v1/tasks/{name}") as response:
            assert response.status == 200 and (await response.json())["spec"]["tenant"] == B
        listed_a = {task.spec.task_id for task in (await a.list_tasks(limit=500))[0]}
        listed_b = {task.spec.task_id for task in (await b.list_tasks(limit=500))[0]}
        assert first.task_id in listed_a - listed_b and theirs["task_id"] in listed_b - listed_a

        for again_id in (name, first.task_id):
            again = await a.submit("echo", {"text": "from a"}, task_id=again_id)
            assert again.deduplicated and again.task_id == first.task_id


async def test_a_tenant_choosing_an_id_another_took_first_still_gets_it_run(mesh2: TwoTenants) -> None:
    """B takes the id first; A's later submit (over WebSocket) is a new task of A's that runs, and
    A watches it by the id it chose."""
    name = _name()
    async with mesh2.client(A) as a, mesh2.client(B) as b, mesh2.http(A) as rest:
        taken = await b.submit("echo", {"text": "from b"}, task_id=name)
        async with rest.ws_connect(f"wss://{mesh2.endpoint}/v1/ws") as ws:
            task = {"kind": "echo", "payload": {"text": "from a"}, "task_id": name}
            await ws.send_json({"op": "submit", "id": "c1", "task": task})
            submitted = json.loads((await ws.receive(timeout=10)).data)
        assert submitted["type"] == "submitted" and not submitted["deduplicated"], submitted
        assert submitted["task_id"] != taken.task_id
        async with asyncio.timeout(30):
            finals = [event async for event in a.watch_many([name])]
        assert [(e.task_id, e.state, e.output.text) for e in finals] == [
            (submitted["task_id"], task_pb2.TASK_STATE_SUCCEEDED, "from a")
        ]
        assert (await _final(b, taken.task_id)).output.text == "from b"


async def test_idempotency_keys_are_scoped_per_tenant(mesh2: TwoTenants) -> None:
    """The same idempotency key (alone, and with the same chosen task_id) used by two tenants makes
    two tasks that both run; a repeat within a tenant still finds that tenant's task."""
    key, name = f"key-{uuid.uuid4().hex[:10]}", _name()
    async with mesh2.client(A) as a, mesh2.client(B) as b:
        for task_id in ("", name):
            mine = await a.submit("echo", {"text": "same"}, idempotency_key=f"{key}{task_id}", task_id=task_id)
            theirs = await b.submit("echo", {"text": "same"}, idempotency_key=f"{key}{task_id}", task_id=task_id)
            assert not mine.deduplicated and not theirs.deduplicated and mine.task_id != theirs.task_id
            assert (await _final(a, mine.task_id)).state == task_pb2.TASK_STATE_SUCCEEDED
            assert (await _final(b, theirs.task_id)).state == task_pb2.TASK_STATE_SUCCEEDED
            again = await b.submit("echo", {"text": "same"}, idempotency_key=f"{key}{task_id}", task_id=task_id)
            assert again.deduplicated and again.task_id == theirs.task_id


async def test_cancel_by_a_chosen_id_reaches_only_the_callers_task(mesh2: TwoTenants) -> None:
    """Both tenants run a slow task under one chosen id; B cancelling that id cancels B's task only."""
    name = _name()
    async with mesh2.client(A) as a, mesh2.client(B) as b:
        mine = await a.submit("stream", SLOW, task_id=name)
        theirs = await b.submit("stream", SLOW, task_id=name)
        assert not theirs.deduplicated
        await b.cancel(name)
        assert (await _final(b, theirs.task_id)).state == task_pb2.TASK_STATE_CANCELLED
        assert (await _final(a, mine.task_id)).state == task_pb2.TASK_STATE_SUCCEEDED


async def test_another_tenants_task_is_not_found_like_a_missing_one(mesh2: TwoTenants) -> None:
    """B, which has no task of that name, probing A's task by A's id or by the name A chose gets
    the missing-task answer word for word, over gRPC and REST; A's task is untouched."""
    name = _name()
    async with mesh2.client(A) as a:
        mine = await a.submit("echo", {"text": "private"}, task_id=name)
        await _final(a, mine.task_id)
    async with mesh2.client(B) as b, mesh2.http(B) as rest:
        for probe in (mine.task_id, name, f"never-{uuid.uuid4().hex[:10]}"):
            with pytest.raises(NotFound) as got:
                await b.get(probe)
            assert got.value.message == f"task {probe!r} does not exist"
            with pytest.raises(NotFound) as got:
                await b.cancel(probe)
            assert got.value.message == f"task {probe!r} does not exist"
            for method, path in (("GET", ""), ("GET", "/events"), ("POST", "/cancel")):
                async with rest.request(method, f"{mesh2.base}/v1/tasks/{probe}{path}") as response:
                    body = await response.json()
                    assert response.status == 404 and body["message"] == f"task {probe!r} does not exist", body
    async with mesh2.client(A) as a:
        assert (await a.get(name)).state == task_pb2.TASK_STATE_SUCCEEDED


async def test_an_admin_reads_both_tenants_tasks_by_their_ids(mesh2: TwoTenants) -> None:
    """Each task keeps its own id: the admin's get and list show A's and B's task of one name apart."""
    name = _name()
    async with mesh2.client(A) as a, mesh2.client(B) as b, mesh2.client() as admin:
        mine = await a.submit("echo", {"text": "from a"}, task_id=name)
        theirs = await b.submit("echo", {"text": "from b"}, task_id=name)
        await _final(a, mine.task_id)
        await _final(b, theirs.task_id)
        for task_id, tenant, text in ((mine.task_id, A, "from a"), (theirs.task_id, B, "from b")):
            task = await admin.get(task_id)
            assert (task.spec.tenant, task.result.text) == (tenant, text)
        assert theirs.task_id in {task.spec.task_id for task in (await admin.list_tasks(tenant=B, limit=500))[0]}


async def test_the_scheduler_never_deduplicates_into_another_tenants_task(private_nats: NatsServer) -> None:
    """Behind the gateway: an id another tenant's task has is a Conflict naming spec.task_id, not
    'deduplicated', and the refused tenant's listing entry is taken back."""
    async with await private_nats.connect() as nc:
        js = nc.jetstream(timeout=5.0)
        await ensure_topology(js, Topology())
        index = TaskIndex(js)
        admitter = Admitter(
            WorkQueue(nc, js), EventLog(js, nc), await js.key_value(IDEMPOTENCY_BUCKET), Limits(), index=index
        )

        def spec(tenant: str) -> task_pb2.TaskSpec:
            payload = task_pb2.TaskPayload(echo=task_pb2.EchoInput(text=tenant))
            return task_pb2.TaskSpec(tenant=tenant, kind="echo", task_id="shared-id", payload=payload)

        assert not (await admitter.admit(spec(A))).deduplicated
        with pytest.raises(Conflict) as refused:
            await admitter.admit(spec(B))
        assert refused.value.field == "spec.task_id"
        assert (await admitter.admit(spec(A))).deduplicated
        assert (await index.page(A, 10))[0] == ["shared-id"] and (await index.page(B, 10))[0] == []
