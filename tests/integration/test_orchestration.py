"""Orchestration on a real mesh: fan-out/fan-in with streamed progress, inheritance, boosting, cancel."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan, pool_worker_spec
from mesh.tasks import scoped_task_id
from mesh.v1 import task_pb2
from services.inference._minilm import MiniLM
from tests.conftest import eventually
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration


async def test_fan_out_streams_children_and_joins_them(mesh: Mesh) -> None:
    """A fan_out task spawns one child per text (inheriting tenant and class), streams each result
    as a partial chunk with rising confidence, and ends with the joined result."""
    texts = ["alpha", "beta", "gamma", "delta", "epsilon"]
    async with Client(mesh.endpoint, tenant="orch") as client:
        submitted = await client.submit("fan_out", {"child_kind": "echo", "texts": texts}, priority="interactive")
        events = [e async for e in client.watch(submitted.task_id)]
        assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
        assert events[-1].output.text == "\n".join(texts)
        spawned = [e for e in events if e.child_task_ids]
        assert len(spawned) == 1 and len(spawned[0].child_task_ids) == 5
        partials = [e for e in events if e.HasField("output") and not e.final]
        assert sorted(p.output.text for p in partials) == sorted(texts)
        assert [p.partial_confidence for p in partials] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
        for child_id in spawned[0].child_task_ids:
            child = await client.get(child_id)
            assert child.spec.parent_task_id == submitted.task_id
            assert child.spec.tenant == "orch"
            assert child.spec.priority_class == task_pb2.PRIORITY_CLASS_INTERACTIVE


async def test_fan_out_embed_aggregates_the_mean_vector(mesh: Mesh) -> None:
    """Embedding children are joined into the normalised mean of their MiniLM vectors."""
    texts = ["the mesh admits work", "workers pull by priority", "events stream back"]
    async with Client(mesh.endpoint, tenant="orch") as client:
        submitted = await client.submit("fan_out", {"child_kind": "embed", "texts": texts})
        events = [e async for e in client.watch(submitted.task_id)]
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    expected = MiniLM.load().encode(texts).mean(axis=0)
    expected /= np.linalg.norm(expected)
    got = np.array(events[-1].output.embedding.values, dtype=np.float32)
    assert float(got @ expected) > 0.9999


@pytest.fixture(scope="module")
async def no_workers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Supervisor]:
    """A mesh without workers, for the tests that start each pool's worker when they choose (and
    stop it by their end, so the next starts with none again)."""
    plan = build_plan(tmp_path_factory.mktemp("no-workers"), public_port=0, workers=0)
    async with Supervisor(plan) as supervisor:
        yield supervisor


@contextlib.asynccontextmanager
async def pool_worker(supervisor: Supervisor, pool: str) -> AsyncIterator[None]:
    """One worker of `pool` for the block."""
    child = await supervisor.add(pool_worker_spec(supervisor.plan, pool, 1))
    try:
        yield
    finally:
        await supervisor.remove(child.spec.name)


async def test_cancelling_a_parent_cancels_its_children(no_workers: Supervisor) -> None:
    """With no worker for the children's pool they stay queued; cancelling the parent ends the
    parent's orchestration step and cancels every child."""
    endpoint = f"127.0.0.1:{no_workers.plan.public_port}"
    async with pool_worker(no_workers, "orchestration"), Client(endpoint, tenant="orch") as client:
        submitted = await client.submit("fan_out", {"child_kind": "echo", "texts": ["a", "b", "c"]})
        children: list[str] = []
        async for event in client.watch(submitted.task_id):
            if event.child_task_ids:
                children = list(event.child_task_ids)
                assert await client.cancel(submitted.task_id) == task_pb2.TASK_STATE_CANCELLED
        assert len(children) == 3
        for child_id in children:
            assert (await client.get(child_id)).state == task_pb2.TASK_STATE_CANCELLED


async def test_children_waited_on_by_an_interactive_parent_are_boosted(no_workers: Supervisor) -> None:
    """Children that already sit in the batch lane behind a 200-task backlog are boosted to the
    interactive parent's lane: they finish before the backlog, each running exactly once."""
    endpoint = f"127.0.0.1:{no_workers.plan.public_port}"
    async with contextlib.AsyncExitStack() as workers, Client(endpoint, tenant="orch") as client:
        parent_id = "parent-boost-1"
        parent_mesh_id = scoped_task_id("orch", parent_id)  # a chosen id is scoped; children's keys name this
        backlog = await client.submit_many(
            [client.spec("echo", {"text": str(i)}, priority="batch") for i in range(200)]
        )
        # The children exist before the parent runs: same idempotency keys the parent will use.
        early = await client.submit_many(
            [
                client.spec("echo", {"text": t}, priority="batch", idempotency_key=f"{parent_mesh_id}:child:{i}")
                for i, t in enumerate(["x", "y"])
            ]
        )
        await workers.enter_async_context(pool_worker(no_workers, "orchestration"))
        parent = await client.submit(
            "fan_out", {"child_kind": "echo", "texts": ["x", "y"]}, priority="interactive", task_id=parent_id
        )

        async def boosted_copies_queued() -> bool:
            status = await client.status()
            return any(
                q.pool == "ingestion" and q.priority_class == task_pb2.PRIORITY_CLASS_INTERACTIVE and q.pending >= 2
                for q in status.queues
            )

        await eventually(boosted_copies_queued, what="boosted child copies in the interactive lane")
        await workers.enter_async_context(pool_worker(no_workers, "ingestion"))
        parent_events = [e async for e in client.watch(parent.task_id)]
        assert parent_events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
        assert parent_events[-1].output.text == "x\ny"
        backlog_done = [e async for e in client.watch_many([r.task_id for r in backlog])]
        last_backlog_end = max(e.timestamp.ToNanoseconds() for e in backlog_done)
        for child in early:
            events = [e async for e in client.watch(child.task_id)]
            assert sum(e.state == task_pb2.TASK_STATE_RUNNING for e in events) == 1
            assert events[-1].timestamp.ToNanoseconds() < last_backlog_end
