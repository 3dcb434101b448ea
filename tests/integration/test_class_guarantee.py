"""The standard class's wait bound on a real mesh, under another tenant's flood of long interactive steps."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan
from mesh.v1 import task_pb2
from services.worker._slots import SlotLimits
from tests.conftest import eventually
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

CONCURRENCY = 4
LIMITS = SlotLimits.of(CONCURRENCY)  # what the worker derives from --concurrency alone
STANDARD_BOUND_S = 5.0


@pytest.fixture(scope="module")
async def small_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    """A mesh of its own, one worker with 4 slots: the flood here must not slow other tests."""
    plan = build_plan(tmp_path_factory.mktemp("guarantee"), public_port=0, workers=1, worker_concurrency=CONCURRENCY)
    async with Supervisor(plan, health_timeout_s=60) as supervisor:
        yield Mesh(plan, supervisor)


async def _worker_in_flight(session: aiohttp.ClientSession, mesh: Mesh) -> int:
    async with session.get(f"http://127.0.0.1:{mesh.port('worker-1', 'http')}/metrics") as resp:
        match = re.search(r"^tidemesh_in_flight (\S+)$", await resp.text(), re.MULTILINE)
    return int(float(match.group(1))) if match else 0


async def test_standard_echo_meets_its_bound_behind_a_flood_of_long_interactive_steps(small_mesh: Mesh) -> None:
    """Five SubmitTasks calls of interactive `stream` tasks (one chunk, 10 s delay) from tenant A fill
    every slot interactive work may take; tenant B's standard echo still starts within its 5 s bound,
    and the worker's in-flight never exceeds concurrency + reserve."""
    peak = 0
    stop_sampling = asyncio.Event()
    async with (
        aiohttp.ClientSession() as session,
        Client(small_mesh.endpoint, tenant="flood-a") as flooder,
        Client(small_mesh.endpoint, tenant="calm-b") as calm,
    ):

        async def sample() -> None:
            nonlocal peak
            while not stop_sampling.is_set():
                peak = max(peak, await _worker_in_flight(session, small_mesh))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_sampling.wait(), 0.02)

        sampler = asyncio.create_task(sample())
        flood_ids: list[str] = []
        try:
            payload = {"text": "hold", "chunks": 1, "chunk_delay_ms": 10_000}
            for _ in range(5):
                specs = [flooder.spec("stream", payload, priority="interactive") for _ in range(40)]
                flood_ids += [r.task_id for r in await flooder.submit_many(specs)]

            async def saturated() -> bool:
                return await _worker_in_flight(session, small_mesh) >= LIMITS.interactive_max

            await eventually(saturated, timeout_s=30, what="the flood to fill the interactive slots")
            submitted = await calm.submit("echo", {"text": "my turn"}, priority="standard")
            async with asyncio.timeout(STANDARD_BOUND_S + 5):
                events = [e async for e in calm.watch(submitted.task_id)]
            flood_left = await _worker_in_flight(session, small_mesh)
            status = await calm.status()
        finally:
            stop_sampling.set()
            await sampler
            await asyncio.gather(*(flooder.cancel(task_id) for task_id in flood_ids), return_exceptions=True)

            async def idle() -> bool:
                return await _worker_in_flight(session, small_mesh) == 0

            await eventually(idle, timeout_s=30, what="the cancelled flood to leave the worker")

    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    queued = events[0].timestamp.ToNanoseconds() / 1e9
    running = next(e.timestamp.ToNanoseconds() / 1e9 for e in events if e.state == task_pb2.TASK_STATE_RUNNING)
    assert running - queued < STANDARD_BOUND_S, f"the standard echo waited {running - queued:.2f}s"
    assert flood_left >= LIMITS.interactive_max - 1, "the flood had drained: the echo did not run behind it"
    assert peak <= LIMITS.total, f"in flight peaked at {peak} > {LIMITS.total}"
    workers = list(status.workers)
    assert workers and all(w.in_flight <= LIMITS.total for w in workers)
