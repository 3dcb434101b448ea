"""Per-key ordering on a real mesh: one key runs in submission order, keys run in parallel,
and a failed task holds its key."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan
from mesh.v1 import task_pb2

pytestmark = pytest.mark.integration


def _seconds(stamp) -> float:  # type: ignore[no-untyped-def]
    return stamp.ToNanoseconds() / 1e9


async def _span(client: Client, task_id: str) -> tuple[float, float, int]:
    events = [e async for e in client.watch(task_id)]
    start = next(_seconds(e.timestamp) for e in events if e.state == task_pb2.TASK_STATE_RUNNING)
    return start, _seconds(events[-1].timestamp), events[-1].state


@pytest.fixture(scope="module")
async def endpoint(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One mesh for the module: each test orders its own keys (A and B; K and other)."""
    plan = build_plan(tmp_path_factory.mktemp("ordering"), public_port=0, workers=1, worker_concurrency=8)
    async with Supervisor(plan):
        yield f"127.0.0.1:{plan.public_port}"


async def test_same_key_runs_in_order_and_keys_run_in_parallel(endpoint: str) -> None:
    """Five tasks on key A never overlap and run in submission order; key B runs alongside A."""
    async with Client(endpoint, tenant="orders") as client:
        work = {"text": "x", "chunks": 1, "chunk_delay_ms": 150}
        specs = [client.spec("stream", work, ordering_key=key) for _ in range(5) for key in ("A", "B")]
        results = await client.submit_many(specs)
        spans = await asyncio.gather(*(_span(client, r.task_id) for r in results))
    by_key = {"A": spans[0::2], "B": spans[1::2]}
    for key, key_spans in by_key.items():
        assert all(state == task_pb2.TASK_STATE_SUCCEEDED for *_, state in key_spans)
        for (_, end, _), (start, _, _) in itertools.pairwise(key_spans):
            assert start >= end, f"key {key}: a task started before its predecessor finished"
    a_start, a_end = by_key["A"][0][0], by_key["A"][-1][1]
    assert any(a_start < b_start < a_end for b_start, _, _ in by_key["B"]), "keys A and B did not overlap"


async def test_failed_task_holds_its_key(endpoint: str) -> None:
    """A task that fails (its deadline passes while it waits its turn) is dead-lettered and keeps later
    tasks of its key queued, while another key proceeds; its replay takes its place on the key."""
    async with Client(endpoint, tenant="orders") as client:
        slow = await client.submit("stream", {"text": "x", "chunks": 1, "chunk_delay_ms": 800}, ordering_key="K")
        doomed = await client.submit("echo", {"text": "late"}, ordering_key="K", deadline_s=0.3)
        held = await client.submit("echo", {"text": "after"}, ordering_key="K")
        other = await client.submit("echo", {"text": "free"}, ordering_key="other")
        assert (await _span(client, other.task_id))[2] == task_pb2.TASK_STATE_SUCCEEDED
        assert (await _span(client, slow.task_id))[2] == task_pb2.TASK_STATE_SUCCEEDED
        doomed_events = [e async for e in client.watch(doomed.task_id)]
        assert doomed_events[-1].state == task_pb2.TASK_STATE_DEAD_LETTERED
        assert doomed_events[-1].error.error_class == "timeout"

        # Nothing may release the key: the next task stays queued while we keep looking for a second.
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.0
        while loop.time() < until:
            assert (await client.get(held.task_id)).state == task_pb2.TASK_STATE_QUEUED
            await asyncio.sleep(0.1)
        # Replaying the dead-lettered task gives it a fresh deadline and its place on the key:
        # the replay runs first, then the held task.
        replay = await client.replay(doomed.task_id)
        assert replay.task_id == f"{doomed.task_id}-r"
        _, replay_end, replay_state = await _span(client, replay.task_id)
        held_start, _, held_state = await _span(client, held.task_id)
        assert (replay_state, held_state) == (task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_SUCCEEDED)
        assert held_start >= replay_end
