"""Chaos suite: under a steady load of tasks with external effects, kill -9 each component in turn
(and pause a worker past its deadline); every acknowledged task completes and every effect is
applied exactly once. Each fault gets TIDEMESH_SOAK_S seconds of load (default 2.5: one second of
steady state, the fault, and the load kept up at least 1.5 s past it, or until the faulted part has
recovered if that takes longer); `make soak` runs it longer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clients.sdk import Client
from mesh.fabric._commit import MID_BATCH
from mesh.supervisor import NO_LIMIT, Supervisor, build_plan
from tests.chaos._harness import Row, fired, kill, pause, run_fault, running_ledger, table

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

LOAD_S = float(os.environ.get("TIDEMESH_SOAK_S", "2.5"))


def _killed_at_stop(supervisor: Supervisor) -> list[str]:
    """Children the mesh's stop had to SIGKILL after their grace (e.g. a worker whose NATS drain
    hung on a pull subscription it had leaked when the broker refused a partition)."""
    return [name for name, child in supervisor.children.items() if child.killed_after_grace]


async def test_single_node_mesh_survives_every_fault(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Worker, scheduler, gateway, inference, nats-server (kill -9) and a paused worker: 0 lost, 0 duplicated."""
    plan = build_plan(
        tmp_path / "mesh", public_port=0, workers=2, ack_wait_s=5.0, scheduler_args=("--heartbeat-interval", "0.5")
    )
    rows: list[Row] = []
    async with (
        running_ledger() as ledger,
        Supervisor(plan) as supervisor,
        Client(f"127.0.0.1:{plan.public_port}", tenant="chaos") as client,
    ):
        faults = [
            ("kill -9 worker", kill(supervisor, "worker-1")),
            ("kill -9 scheduler", kill(supervisor, "scheduler")),
            ("kill -9 gateway", kill(supervisor, "gateway")),
            ("kill -9 inference", kill(supervisor, "inference")),
            ("kill -9 nats-server", kill(supervisor, "nats")),
            ("SIGSTOP worker 8 s", pause(supervisor, "worker-2", 8.0)),
        ]
        for name, fault in faults:
            probe = "embed" if "inference" in name else "echo"  # recovery = the faulted part works again
            rows.append(await run_fault(name, fault, client, ledger, LOAD_S, probe))
    assert _killed_at_stop(supervisor) == [], "every child stops within its grace once the faults are over"
    with capsys.disabled():
        print("\n" + table(rows))
    for row in rows:
        assert row.acknowledged > 0, row
        assert (row.lost, row.duplicated) == (0, 0), row


async def test_scheduler_killed_in_the_middle_of_a_group_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """48 concurrent submitters, so admissions share atomic batches; the scheduler is killed -9
    with half of a batch on the broker and its commit unsent (failpoint). The supervisor restarts
    it; every acknowledged task completes and every effect is applied exactly once."""
    marker = tmp_path / "mid-batch.fired"
    plan = build_plan(
        tmp_path / "mesh",
        public_port=0,
        workers=2,
        ack_wait_s=5.0,
        tenant_limit=NO_LIMIT,
        scheduler_args=("--heartbeat-interval", "0.5", "--failpoint", f"{MID_BATCH}={marker}"),
    )
    async with (
        running_ledger() as ledger,
        Supervisor(plan) as supervisor,
        Client(f"127.0.0.1:{plan.public_port}", tenant="chaos") as client,
    ):
        scheduler_pid = supervisor.children["scheduler"].pid
        row = await run_fault("kill -9 scheduler mid group commit", fired(marker), client, ledger, LOAD_S, callers=48)
        assert supervisor.children["scheduler"].pid != scheduler_pid, "the scheduler was never killed"
    assert _killed_at_stop(supervisor) == [], "every child stops within its grace once the faults are over"
    with capsys.disabled():
        print("\n" + table([row]))
    assert marker.exists() and row.acknowledged > 0, row
    assert (row.lost, row.duplicated) == (0, 0), row


async def test_cluster_survives_losing_a_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 3-node JetStream cluster (R3 streams): kill -9 one node under load — 0 lost, 0 duplicated."""
    plan = build_plan(tmp_path / "mesh", public_port=0, workers=2, ack_wait_s=5.0, cluster=3)
    async with (
        running_ledger() as ledger,
        Supervisor(plan) as supervisor,
        Client(f"127.0.0.1:{plan.public_port}", tenant="chaos") as client,
    ):
        row = await run_fault("kill -9 one of 3 nats nodes", kill(supervisor, "nats-2"), client, ledger, LOAD_S)
    assert _killed_at_stop(supervisor) == [], "every child stops within its grace once the faults are over"
    with capsys.disabled():
        print("\n" + table([row]))
    assert row.acknowledged > 0
    assert (row.lost, row.duplicated) == (0, 0), row
