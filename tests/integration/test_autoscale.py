"""Autoscaling on a real mesh: a backlog scales a pool out through `tidemesh up`'s local
autoscaler, the hook command receives the same recommendation, and an idle pool scales back in."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clients.sdk import Client
from mesh.supervisor import LocalAutoscaler, MeshSecurity, Supervisor, build_plan
from tests.conftest import eventually

pytestmark = pytest.mark.integration


async def test_backlog_scales_a_pool_out_and_idle_scales_it_in(tmp_path: Path) -> None:
    """A backlog of slow post-processing tasks makes the scheduler recommend more replicas; the local
    autoscaler starts extra workers for that pool; once drained they are stopped; the hook saw it."""
    hook_log = tmp_path / "hook.jsonl"
    plan = build_plan(
        tmp_path / "mesh",
        public_port=0,
        workers=0,
        # Plan steps (ingestion) are quick; the post-processing pool is the bottleneck to scale.
        pool_workers={"ingestion": 1, "post-processing": 1},
        pool_concurrency={"ingestion": 16, "post-processing": 2},
        scheduler_args=(
            "--scale",
            "post-processing=1:3",
            "--scale-target-drain",
            "2",
            "--scale-hook-command",
            f"cat >> {hook_log}; echo >> {hook_log}",
        ),
    )
    async with (
        Supervisor(plan) as supervisor,
        LocalAutoscaler(supervisor, {"post-processing": (1, 3)}) as autoscaler,
        Client(f"127.0.0.1:{plan.public_port}", tenant="scale") as client,
    ):
        work = {"text": "slow", "chunks": 1, "chunk_delay_ms": 600}
        results = await client.submit_many([client.spec("stream", work, priority="batch") for _ in range(100)])

        async def scaled_out() -> bool:
            return len(autoscaler.extra_workers("post-processing")) >= 1

        await eventually(scaled_out, timeout_s=30, what="an extra post-processing worker")

        async def gauge() -> float:  # what an HPA on Kubernetes targets: the scheduler's recommendation
            http = plan.by_name("scheduler").ports["http"]
            context = MeshSecurity(tmp_path / "mesh").transport("supervisor").client_ssl_context()
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"https://127.0.0.1:{http}/metrics", ssl=context) as reply,
            ):
                text = await reply.text()
            return sum(
                s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "tidemesh_scale_desired_replicas" and s.labels.get("pool") == "post-processing"
            )

        async def gauge_out() -> bool:
            return await gauge() >= 2

        await eventually(gauge_out, timeout_s=15, what="tidemesh_scale_desired_replicas{pool=post-processing} >= 2")

        async def serving() -> bool:
            status = await client.status()
            return sum("post-processing" in w.pools for w in status.workers) >= 2

        await eventually(serving, timeout_s=15, what="the extra worker registered with the scheduler")
        finals = [e async for e in client.watch_many([r.task_id for r in results])]
        assert len(finals) == 100

        async def scaled_in() -> bool:
            return not autoscaler.extra_workers("post-processing")

        await eventually(scaled_in, timeout_s=30, what="extra workers stopped once idle")

        def desired() -> list[int]:
            lines = [json.loads(line) for line in hook_log.read_text().splitlines() if line.strip()]
            return [r["desired_replicas"] for r in lines if r["pool"] == "post-processing"]

        async def hook_saw_scale_in() -> bool:  # the hook command runs after the publish: poll for it
            return desired()[-1:] == [1]

        await eventually(hook_saw_scale_in, what="the hook received the scale-in recommendation")
        assert await gauge() == 1
        assert max(desired()) >= 2, desired()
