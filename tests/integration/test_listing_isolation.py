"""A tenant's list shows only its own tasks, and resume/limit values too long to be numbers are 400s."""

from __future__ import annotations

import uuid

import aiohttp

from mesh.fabric import TASKS_STREAM
from mesh.v1 import gateway_pb2, gateway_pb2_grpc, task_pb2
from tests.integration.conftest import Mesh


async def test_a_listing_entry_naming_another_tenants_task_shows_nothing(mesh: Mesh) -> None:
    """An index entry of tenant B naming tenant A's task (a client-chosen id claimed twice, not yet taken
    back) is left out of B's list over gRPC and REST; A still sees its task."""
    task_id = f"shared-{uuid.uuid4().hex[:12]}"
    async with mesh.public_channel() as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        spec = task_pb2.TaskSpec(
            tenant="list-a", kind="echo", task_id=task_id, payload=task_pb2.TaskPayload(echo={"text": "secret"})
        )
        # The task's mesh id (a client-chosen id is scoped to its tenant), so B's entry names A's very task.
        task_id = (await stub.SubmitTask(gateway_pb2.SubmitTaskRequest(spec=spec), timeout=10)).task_id
        client = await mesh.nats()
        try:
            await client.jetstream().publish(f"tm.task.list-b.{task_id}", b"", stream=TASKS_STREAM)
        finally:
            await client.close()
        theirs = await stub.ListTasks(gateway_pb2.ListTasksRequest(tenant="list-b"), timeout=10)
        assert [task.spec.task_id for task in theirs.tasks] == []
        mine = await stub.ListTasks(gateway_pb2.ListTasksRequest(tenant="list-a"), timeout=10)
        assert task_id in [task.spec.task_id for task in mine.tasks]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{mesh.base_url}/v1/tasks?tenant=list-b") as response:
            assert response.status == 200 and (await response.json())["tasks"] == []


async def test_numbers_too_long_to_be_numbers_are_400_naming_the_field(mesh: Mesh) -> None:
    """A 5 000-digit Last-Event-ID, `after` or `limit` is a JSON 400 naming the field, not a 500."""
    digits = "9" * 5000
    base = f"{mesh.base_url}/v1/tasks"
    async with aiohttp.ClientSession() as session:
        async with session.post(base, json={"kind": "echo", "tenant": "digits", "payload": {"text": "x"}}) as response:
            task_id = (await response.json())["task_id"]
        cases = [
            (f"{base}/{task_id}/events", {"Last-Event-ID": digits}, "Last-Event-ID"),
            (f"{base}/{task_id}/events?after={digits}", {}, "after"),
            (f"{base}?tenant=digits&limit={digits}", {}, "limit"),
        ]
        for url, headers, field in cases:
            async with session.get(url, headers=headers) as response:
                assert response.status == 400, (field, await response.text())
                body = await response.json()
                assert body["field"] == field and body["error_class"] == "invalid_input", body
                assert len(body["message"]) < 200
