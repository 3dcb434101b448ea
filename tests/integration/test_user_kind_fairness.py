"""Ordering keys and tenant fair share hold for a user kind exactly as for a built-in one: the
mesh side of the worker protocol pulls through the same lanes and tenant partitions."""

from __future__ import annotations

import itertools
from types import ModuleType

import pytest

from clients.sdk import Client
from mesh.v1 import task_pb2
from tests.integration._textpipe import events_of, python_worker, running
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration


def _stamp(event: task_pb2.TaskEvent) -> float:
    return event.timestamp.ToNanoseconds() / 1e9


async def test_tasks_with_one_ordering_key_run_one_after_another_in_order(
    mesh: Mesh, textpipe: ModuleType, registered: None
) -> None:
    """Six tasks of one (tenant, ordering key) on a worker with room for four: each starts only
    after the one submitted before it ended."""
    async with running(python_worker(mesh, textpipe, "py-ordered", capacity=4)):
        async with Client(mesh.endpoint, tenant="ordered", ca=mesh.plan.ca_path) as client:
            ids = [
                (
                    await client.submit(
                        "textpipe.count", textpipe.CountRequest(text=f"t{i}\nx", line_delay_ms=30), ordering_key="k"
                    )
                ).task_id
                for i in range(6)
            ]
            histories = [await events_of(client, task_id) for task_id in ids]
    assert all(h[-1].state == task_pb2.TASK_STATE_SUCCEEDED for h in histories)
    for before, after in itertools.pairwise(histories):
        started = next(e for e in after if e.state == task_pb2.TASK_STATE_RUNNING)
        assert _stamp(started) >= _stamp(before[-1]), "a task of the key started before the previous one ended"


async def test_a_flooding_tenant_does_not_starve_another(mesh: Mesh, textpipe: ModuleType, registered: None) -> None:
    """Tenant flood queues 40 tasks before tenant calm submits 8; one worker slot serves them in
    weighted turns, so calm's last task ends long before flood's backlog is through."""
    request = textpipe.CountRequest(text="a b c", line_delay_ms=20)
    async with (
        Client(mesh.endpoint, tenant="flood", ca=mesh.plan.ca_path) as flood,
        Client(mesh.endpoint, tenant="calm", ca=mesh.plan.ca_path) as calm,
    ):
        flooded = [
            flood.spec(
                "textpipe.count", await flood.user_payload("textpipe.count", {"text": "a b c", "line_delay_ms": 20})
            )
            for _ in range(40)
        ]
        flood_ids = [r.task_id for r in await flood.submit_many(flooded)]
        calm_ids = [(await calm.submit("textpipe.count", request)).task_id for _ in range(8)]
        async with running(python_worker(mesh, textpipe, "py-fair", capacity=1)):
            finals = {}
            for client, ids in ((flood, flood_ids), (calm, calm_ids)):
                for task_id in ids:
                    finals[task_id] = (await events_of(client, task_id, timeout_s=120.0))[-1]
    assert all(final.state == task_pb2.TASK_STATE_SUCCEEDED for final in finals.values())
    order = sorted(finals, key=lambda task_id: _stamp(finals[task_id]))
    last_calm = max(order.index(task_id) for task_id in calm_ids)
    assert last_calm < 30, f"calm's last task ended at position {last_calm} of 48: it waited behind the flood"
