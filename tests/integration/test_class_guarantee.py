"""The standard class's wait bound on a real mesh, under another tenant's flood of long interactive steps."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from clients.sdk import Client
from mesh.supervisor import NO_LIMIT, Supervisor, build_plan
from mesh.v1 import task_pb2
from services.worker._slots import SlotLimits
from tests.conftest import eventually
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

STANDARD_BOUND_S = 5.0


@dataclass(frozen=True)
class Scale:
    concurrency: int
    per_call: int  # interactive tasks in each of the five SubmitTasks calls

    @property
    def limits(self) -> SlotLimits:
        return SlotLimits.of(self.concurrency)  # what the worker derives from --concurrency alone


# A small worker, and the review's own load: 5 x 1 000 ten-second interactive steps at concurrency 32.
SCALES = [Scale(4, 40), Scale(32, 1000)]


@pytest.fixture(scope="module", params=SCALES, ids=lambda scale: f"{scale.concurrency}-slots")
async def small_mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    """A mesh of its own per scale, one worker: the flood here must not slow other tests. Submit limits
    and the lane's depth limit are raised, as 5 000 submits at once from one tenant is the point here."""
    scale: Scale = request.param
    plan = build_plan(
        tmp_path_factory.mktemp("guarantee"),
        public_port=0,
        workers=1,
        worker_concurrency=scale.concurrency,
        tenant_limit=NO_LIMIT,
        # The interactive lane's default depth limit (5 000 queued + running) would refuse the last
        # of the 5 000 before the first finish: room for the whole flood.
        scheduler_args=("--lane-max-depth", "interactive=20000"),
        worker_grace_s=2.0,
    )
    # The fixture's end stops the mesh, and with it whatever is left of the flood: a short grace (the
    # worker's own too), as draining ten-second steps proves nothing here (test_shutdown.py covers
    # graceful stops).
    async with Supervisor(plan, health_timeout_s=60, grace_s=2.0) as supervisor:
        yield Mesh(plan, supervisor)


async def _worker_in_flight(session: aiohttp.ClientSession, mesh: Mesh) -> int:
    async with session.get(mesh.ops_url("worker-1", "/metrics"), ssl=mesh.internal_ssl()) as resp:
        match = re.search(r"^tidemesh_in_flight (\S+)$", await resp.text(), re.MULTILINE)
    return int(float(match.group(1))) if match else 0


async def test_standard_echo_meets_its_bound_behind_a_flood_of_long_interactive_steps(
    small_mesh: Mesh, request: pytest.FixtureRequest
) -> None:
    """Five SubmitTasks calls of interactive `stream` tasks (one chunk, 10 s delay) from tenant A fill
    every slot interactive work may take; tenant B's standard echo still starts within its 5 s bound,
    and the worker's in-flight never exceeds concurrency + reserve."""
    scale: Scale = request.node.callspec.params["small_mesh"]
    limits = scale.limits
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
                specs = [flooder.spec("stream", payload, priority="interactive") for _ in range(scale.per_call)]
                flood_ids += [r.task_id for r in await flooder.submit_many(specs)]

            async def saturated() -> bool:
                return await _worker_in_flight(session, small_mesh) >= limits.interactive_max

            await eventually(saturated, timeout_s=30, what="the flood to fill the interactive slots")
            submitted = await calm.submit("echo", {"text": "my turn"}, priority="standard")
            async with asyncio.timeout(STANDARD_BOUND_S + 5):
                events = [e async for e in calm.watch(submitted.task_id)]
            flood_left = await _worker_in_flight(session, small_mesh)
            status = await calm.status()
        finally:
            stop_sampling.set()
            await sampler
            if len(flood_ids) <= 200:  # a larger flood ends with its own mesh
                await asyncio.gather(*(flooder.cancel(task_id) for task_id in flood_ids), return_exceptions=True)

                async def idle() -> bool:
                    return await _worker_in_flight(session, small_mesh) == 0

                await eventually(idle, timeout_s=30, what="the cancelled flood to leave the worker")

    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    queued = events[0].timestamp.ToNanoseconds() / 1e9
    running = next(e.timestamp.ToNanoseconds() / 1e9 for e in events if e.state == task_pb2.TASK_STATE_RUNNING)
    assert running - queued < STANDARD_BOUND_S, f"the standard echo waited {running - queued:.2f}s"
    assert flood_left >= limits.interactive_max - 1, "the flood had drained: the echo did not run behind it"
    assert peak <= limits.total, f"in flight peaked at {peak} > {limits.total}"
    workers = list(status.workers)
    assert workers and all(w.in_flight <= limits.total for w in workers)
