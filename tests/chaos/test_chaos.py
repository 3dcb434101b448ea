"""Chaos suite: under a steady load of tasks with external effects, kill -9 each component in turn
(and pause a worker past its deadline); every acknowledged task completes and every effect is
applied exactly once. Each fault gets TIDEMESH_SOAK_S seconds of load (default 2.5: one second of
steady state, the fault, and the load kept up at least 1.5 s past it, or until the faulted part has
recovered if that takes longer); `make soak` runs it longer."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from pathlib import Path

import pytest

from clients.sdk import Client
from mesh.fabric import RESTART_ALERT_SUBJECT, connect
from mesh.fabric._commit import MID_BATCH
from mesh.supervisor import NO_LIMIT, MeshSecurity, Supervisor, build_plan
from services.worker._runner import STEP_MEMORY
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


async def test_a_worker_over_its_memory_cap_is_restarted_and_its_tasks_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Workers capped at 512 MiB; one grows by 512 MiB in the middle of a step (failpoint). The
    supervisor kills it (SIGKILL) and restarts it, the restarted worker raises an alert saying
    why, and every acknowledged task completes exactly once — the lost worker's items retried."""
    marker = tmp_path / "memory.fired"
    plan = build_plan(
        tmp_path / "mesh",
        public_port=0,
        workers=2,
        ack_wait_s=5.0,
        memory_caps_mb={"*": 512},
        scheduler_args=("--heartbeat-interval", "0.5"),
        worker_args=("--failpoint", f"{STEP_MEMORY}={marker}"),
    )
    alerts: list[dict[str, object]] = []
    alerted = asyncio.Event()
    user_file = MeshSecurity(Path(plan.state_dir)).nats_user("cli")
    async with (
        running_ledger() as ledger,
        Supervisor(plan) as supervisor,
        await connect(plan.nats_servers, "chaos-alerts", tls=ssl.create_default_context(), user_file=user_file) as nc,
        Client(f"127.0.0.1:{plan.public_port}", tenant="chaos") as client,
    ):

        async def on_alert(msg) -> None:  # type: ignore[no-untyped-def]
            alerts.append(json.loads(msg.data))
            alerted.set()

        await nc.subscribe(RESTART_ALERT_SUBJECT, cb=on_alert)
        workers = [supervisor.children[name] for name in ("worker-1", "worker-2")]
        row = await run_fault("worker over its 512 MiB memory cap", fired(marker), client, ledger, LOAD_S)
        async with asyncio.timeout(20):
            await alerted.wait()  # the restarted worker announces itself once connected
    assert _killed_at_stop(supervisor) == [], "every child stops within its grace once the faults are over"
    with capsys.disabled():
        print("\n" + table([row]))
    assert sum(w.memory_kills for w in workers) == 1, [w.memory_kills for w in workers]
    killed = next(w for w in workers if w.memory_kills)
    assert killed.restarts == 1 and killed.peak_rss_bytes > 512 << 20
    (alert,) = alerts
    assert alert["component"] == "worker" and alert["reason"] == "memory_cap" and alert["cap_mb"] == 512
    assert float(alert["rss_mb"]) > 512 and alert["runbook"] == "docs/runbooks/restarts.md"  # type: ignore[arg-type]
    assert row.acknowledged > 0, row
    assert (row.lost, row.duplicated) == (0, 0), row
