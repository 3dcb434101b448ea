"""The policy engine against a running mesh: the watch `tidemesh up` runs, over the supervisor's own
NATS user, reads the mesh's live figures, publishes each new violation on tm.alert.policy.<rule>
and counts it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mesh.manifest import document_of, exported, merge, resolve
from mesh.policy import PolicyWatch
from mesh.policy._watch import SupervisorLink
from mesh.telemetry import Metrics
from tests.conftest import eventually
from tests.integration._metrics import scrape
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration


async def test_a_violating_running_mesh_raises_policy_alerts_and_counts_them(mesh: Mesh) -> None:
    """The shared mesh's own manifest (read back from its process table, as `tidemesh up`'s watch
    reads its recorded one) with a named tenant without a quota (tenant-quota, audit in dev) and
    two rules over live figures: one every worker breaks (its memory is over 1 MiB), one that holds
    only if the work stream's pools and the dead-letter count were read."""
    assert mesh.supervisor is not None
    rules = [
        {
            "name": "lean-workers",
            "expression": "item.rssMb < 1.0",
            "each": "live.workers.*",
            "severity": "high",
            "mode": "warn",
        },
        {"name": "figures-read", "expression": "has(live.pools.inference) && live.deadLetters >= 0"},
    ]
    document = merge(
        document_of(exported(mesh.plan).manifest),
        {"tenants": {"named": {"policy-it": {"weight": 2}}}, "policies": {"rules": rules}},
    )
    manifest = resolve(document)
    workers = sorted(name for name in mesh.supervisor.children if name.startswith("worker"))
    wanted = {("tenant-quota", "tenants.named.policy-it"), *(("lean-workers", f"live.workers.{w}") for w in workers)}
    metrics = Metrics()
    alerts: dict[tuple[str, str], dict[str, Any]] = {}
    received: list[str] = []
    arrived = asyncio.Event()
    async with await mesh.nats() as listener:

        async def on_alert(msg: Any) -> None:
            alert = json.loads(msg.data)
            assert msg.subject == f"tm.alert.policy.{alert['rule']}"
            alerts[alert["rule"], alert["path"]] = alert
            received.append(alert["rule"])
            if wanted <= set(alerts):
                arrived.set()

        await listener.subscribe("tm.alert.policy.>", cb=on_alert)
        await listener.flush()
        watch = PolicyWatch(lambda: manifest, SupervisorLink(mesh.supervisor), interval_s=0.5, metrics=metrics)
        async with watch:
            await asyncio.wait_for(arrived.wait(), 15)

            async def evaluated_again() -> bool:
                return watch.evaluations >= 3

            await eventually(evaluated_again, timeout_s=10, what="three evaluations")
            await listener.flush()
    assert set(alerts) == wanted, alerts  # nothing else: figures-read held, so the live figures were read
    quota = alerts["tenant-quota", "tenants.named.policy-it"]
    assert (quota["state"], quota["mode"], quota["environment"]) == ("violated", "audit", "dev")
    assert quota["runbook"] == "docs/runbooks/policies.md#tenant-quota" and quota["remediation"]
    lean = alerts["lean-workers", f"live.workers.{workers[0]}"]
    assert (lean["mode"], lean["severity"]) == ("warn", "high")
    assert lean["message"] == f"lean-workers does not hold for {workers[0]}"

    def counted(rule: str, severity: str, mode: str) -> float:
        labels = {"rule": rule, "severity": severity, "mode": mode}
        return metrics.registry.get_sample_value("tidemesh_policy_violations_total", labels) or 0.0

    # Three evaluations saw them; each was announced and counted once.
    assert len(received) == len(wanted), received
    assert counted("lean-workers", "high", "warn") == len(workers) and counted("tenant-quota", "medium", "audit") == 1

    # The scheduler counts the alerts into the /metrics Prometheus scrapes (`up` serves none).
    async def scheduler_counted() -> bool:
        found = await scrape(mesh, "scheduler")
        return found.total("tidemesh_policy_violations_total", rule="lean-workers", mode="warn") >= len(workers)

    await eventually(scheduler_counted, timeout_s=10, what="the scheduler's count of the alerts")
