"""A graceful stop is graceful: every component exits on SIGTERM by itself, well inside its grace."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan
from mesh.v1 import task_pb2

pytestmark = pytest.mark.integration


async def test_every_component_stops_on_sigterm_without_being_killed(tmp_path: Path) -> None:
    """After real work (a task through every hop), shutdown stops each child without SIGKILL:
    the scheduler once held its NATS drain until the grace ran out, on every stop."""
    plan = build_plan(tmp_path / "mesh", public_port=0, workers=1, auth=False)
    supervisor = Supervisor(plan, health_timeout_s=60, grace_s=8.0)
    async with supervisor, Client(f"127.0.0.1:{plan.public_port}", tenant="t") as client:
        submitted = await client.submit("embed", {"text": "work before the stop"})
        events = [event async for event in client.watch(submitted.task_id)]
        assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    killed = [name for name, child in supervisor.children.items() if child.killed_after_grace]
    assert killed == []
