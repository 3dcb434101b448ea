"""Priority lanes on a real mesh: interactive work overtakes a backlog, and aging bounds batch waits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan
from mesh.v1 import task_pb2

pytestmark = pytest.mark.integration


def _seconds(stamp) -> float:  # type: ignore[no-untyped-def]
    return stamp.ToNanoseconds() / 1e9


async def _timeline(client: Client, task_id: str) -> tuple[float, float, float]:
    """(queued, first running, final) timestamps of a task, from its events."""
    events = [e async for e in client.watch(task_id)]
    queued = _seconds(events[0].timestamp)
    running = next(_seconds(e.timestamp) for e in events if e.state == task_pb2.TASK_STATE_RUNNING)
    return queued, running, _seconds(events[-1].timestamp)


async def test_interactive_overtakes_a_batch_backlog(tmp_path: Path) -> None:
    """Interactive tasks submitted behind 300 queued batch tasks start at once and finish
    before the backlog does."""
    plan = build_plan(tmp_path / "mesh", public_port=0, workers=1, worker_concurrency=2)
    async with Supervisor(plan) as _, Client(f"127.0.0.1:{plan.public_port}", tenant="lanes") as client:
        backlog = await client.submit_many(
            [client.spec("echo", {"text": str(i)}, priority="batch") for i in range(300)]
        )
        urgent = [await client.submit("echo", {"text": f"now {i}"}, priority="interactive") for i in range(5)]
        urgent_times = [await _timeline(client, r.task_id) for r in urgent]
        batch_times = [await _timeline(client, r.task_id) for r in backlog]
    last_batch_start = max(running for _, running, _ in batch_times)
    for queued, running, final in urgent_times:
        assert running - queued < 0.5, f"interactive task waited {running - queued:.3f}s"
        assert final < last_batch_start


async def test_aging_bounds_batch_wait_under_continuous_interactive_load(tmp_path: Path) -> None:
    """While interactive work saturates every slot, batch tasks still start within their class's
    wait bound (1.5 s here) instead of waiting for the interactive load to end."""
    bound_s = 1.5
    plan = build_plan(
        tmp_path / "mesh",
        public_port=0,
        workers=1,
        worker_concurrency=4,
        worker_args=("--reserve", "0", "--wait-bounds", f"interactive=0.1,batch={bound_s}"),
    )
    async with Supervisor(plan) as _, Client(f"127.0.0.1:{plan.public_port}", tenant="aging") as client:
        load_until = time.monotonic() + 6.0

        async def interactive_load() -> None:
            while time.monotonic() < load_until:
                submitted = await client.submit(
                    "stream", {"text": "busy", "chunks": 1, "chunk_delay_ms": 300}, priority="interactive"
                )
                [e async for e in client.watch(submitted.task_id)]

        load = [asyncio.create_task(interactive_load()) for _ in range(10)]
        await asyncio.sleep(1.0)  # let the load saturate the worker first
        batch = await client.submit_many([client.spec("echo", {"text": str(i)}, priority="batch") for i in range(5)])
        batch_times = [await _timeline(client, r.task_id) for r in batch]
        load_still_running = time.monotonic() < load_until
        await asyncio.gather(*load)
    waits = [running - queued for queued, running, _ in batch_times]
    assert load_still_running, "batch tasks only ran once the interactive load stopped"
    assert max(waits) < bound_s + 1.0, f"batch waits {waits} exceed the {bound_s}s bound"
