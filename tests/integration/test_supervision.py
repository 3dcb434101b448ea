"""Supervision: a child whose resident memory (its own and its children's) passes its cap is killed
and restarted, and its successor learns why (`TIDEMESH_RESTART_REASON`); a worker draining a long
step at shutdown is given its own grace, not killed at the supervisor's."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan
from mesh.supervisor._child import Child, resident_bytes
from mesh.supervisor._plan import (
    STOP_MARGIN_S,
    Health,
    ProcessSpec,
    check_memory_caps,
    memory_cap_for,
    pool_worker_spec,
)
from mesh.v1 import task_pb2

pytestmark = pytest.mark.timeout(90)

# Writes what it was told at start, then (first life only) grows to ~300 MiB in a grandchild.
_CHILD = """
import json, os, pathlib, subprocess, sys, time
out = pathlib.Path(sys.argv[1])
lives = sorted(out.glob("life-*"))
(out / f"life-{len(lives)}").write_text(os.environ.get("TIDEMESH_RESTART_REASON", ""))
if not lives:
    subprocess.Popen([sys.executable, "-c", "b = b'x' * (300 << 20); import time; time.sleep(60)"])
time.sleep(60)
"""
_NO_HEALTH = Health(url="http://127.0.0.1:9/", host="127.0.0.1", port=9, path="/")


async def _until(condition, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_child_over_its_cap_is_killed_restarted_and_told_why(tmp_path: Path) -> None:
    spec = ProcessSpec(
        name="hog",
        command=[sys.executable, "-c", _CHILD, str(tmp_path)],
        ports={},
        health=_NO_HEALTH,
        memory_cap_mb=200,
    )
    (tmp_path / "logs").mkdir()
    child = Child(spec, tmp_path / "logs")
    await child.start()
    first = child.pid
    child.watch(memory_every_s=0.1)
    try:
        await _until(lambda: (tmp_path / "life-1").exists())
        assert child.pid != first and child.memory_kills == 1
        assert child.peak_rss_bytes > 200 << 20  # the grandchild's memory counted against the child
        reason = json.loads((tmp_path / "life-1").read_text())
        assert reason["reason"] == "memory_cap" and reason["cap_mb"] == 200 and reason["rss_mb"] > 200
        assert reason["exit_code"] == -9  # SIGKILL: no grace to grow in
        assert (tmp_path / "life-0").read_text() == ""  # a first start has no reason
        await asyncio.sleep(0.5)  # the restarted one, under its cap, is left alone
        assert child.memory_kills == 1 and not (tmp_path / "life-2").exists()
        assert resident_bytes(child.pid or 0) < 200 << 20
    finally:
        await child.stop(grace_s=2)


def test_a_worker_gets_the_smallest_cap_of_its_pools() -> None:
    caps = check_memory_caps({"*": 4096, "inference": 2048, "ingestion": 1024})
    assert memory_cap_for(["ingestion", "inference", "orchestration"], caps) == 1024
    assert memory_cap_for(["orchestration"], caps) == 4096
    assert memory_cap_for(["orchestration"], {"inference": 2048}) == 0


@pytest.mark.parametrize(
    ("caps", "message"),
    [({"gpu": 512}, "memory cap for 'gpu': expected one of"), ({"*": 10}, "at least 64"), ({"*": 1.5}, "whole")],
)
def test_bad_caps_are_refused_naming_them(caps: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_memory_caps(caps)


async def test_a_worker_draining_a_long_step_gets_its_own_grace(tmp_path: Path) -> None:
    """Workers drain for 2 s, the supervisor's grace is 2 s too: before, the supervisor killed the
    worker while it was handing its step back; now it waits the worker's grace and the margin."""
    plan = build_plan(tmp_path / "mesh", public_port=0, workers=1, worker_grace_s=2.0)
    worker = next(spec for spec in plan.processes if spec.name == "worker-1")
    assert worker.command[worker.command.index("--grace") + 1] == "2"
    assert worker.stop_grace_s == 2.0 + STOP_MARGIN_S
    assert pool_worker_spec(plan, "inference", 1).stop_grace_s == 2.0 + STOP_MARGIN_S  # scaled-out ones too
    async with Supervisor(plan, grace_s=2.0) as supervisor, Client(f"127.0.0.1:{plan.public_port}") as client:
        submitted = await client.submit("stream", {"text": "a long step here", "chunks": 3, "chunk_delay_ms": 5_000})
        async for event in client.watch(submitted.task_id):
            if event.state == task_pb2.TASK_STATE_RUNNING:
                break  # the step is in flight: the stop below drains it
    child = supervisor.children["worker-1"]
    assert not child.killed_after_grace, "the worker was SIGKILLed while draining"
