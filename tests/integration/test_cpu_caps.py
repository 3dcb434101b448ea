"""A CPU cap on a real mesh: a worker capped at 0.2 cores runs a CPU-busy step (failpoint
worker-step-cpu) and is held to about a fifth of a core, in a cgroup of its own that goes when
the mesh stops. Needs a writable cgroup (root, cgroup v1 or a delegated v2); elsewhere the cap is
only approximated (pinned cores), which this test does not measure, and it says so."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan, probe_cpu_limiter
from mesh.supervisor._child import process_tree, resident_bytes
from mesh.supervisor._cpu import CgroupV1, CgroupV2
from mesh.supervisor._plan import WORKER_AT_REST_MB
from mesh.v1 import task_pb2
from services.worker._runner import STEP_CPU
from tests.conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of `pid` and the processes below it."""
    total = 0
    for current in process_tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICK


async def test_a_worker_is_held_to_its_cpu_cap_and_its_cgroup_goes_with_the_mesh(tmp_path: Path) -> None:
    kind, exact, note = probe_cpu_limiter()
    if not exact:
        pytest.skip(f"no writable cgroup on this host, CPU caps are only approximated here: {note}")
    marker = tmp_path / "spin.fired"
    plan = build_plan(
        tmp_path / "mesh",
        public_port=0,
        workers=1,
        cpu_caps={"*": 0.2},
        worker_args=("--failpoint", f"{STEP_CPU}={marker}"),
    )
    async with Supervisor(plan) as supervisor, Client(f"127.0.0.1:{plan.public_port}") as client:
        limiter = supervisor.cpu
        assert isinstance(limiter, (CgroupV1, CgroupV2)) and limiter.kind == kind
        assert supervisor.caps_notes() == [
            f"CPU caps: {kind}: each capped worker in its own group under {limiter.mesh}"
        ]
        worker = supervisor.children["worker-1"]
        assert worker.pid is not None
        group = limiter.mesh / "worker-1"
        grouped = [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
        assert worker.pid in grouped and supervisor.children["scheduler"].pid not in grouped
        assert resident_bytes(worker.pid) < WORKER_AT_REST_MB << 20  # what presets' memory caps leave it

        submitted = await client.submit("echo", {"text": "spin first"})

        async def fired() -> bool:
            return marker.exists()

        await eventually(fired, timeout_s=20, what="the worker reached its CPU-busy step")
        await asyncio.sleep(0.3)  # into the spin (a measurement window, not a wait for an effect)
        cpu_before, wall_before = _cpu_seconds(worker.pid), time.monotonic()
        await asyncio.sleep(2.0)
        share = (_cpu_seconds(worker.pid) - cpu_before) / (time.monotonic() - wall_before)
        async with asyncio.timeout(30):
            async for event in client.watch(submitted.task_id):
                if event.final:
                    assert event.state == task_pb2.TASK_STATE_SUCCEEDED, event
                    break
    assert 0.05 < share < 0.35, f"the capped worker used {share:.2f} cores (cap 0.2)"
    assert not group.exists() and not limiter.mesh.exists(), "its cgroup outlived the mesh"
