"""The measured load on a real mesh (`GetLoad`, `Client.load()`, `tidemesh load`): a known number
of tasks of a known service time — webhooks whose endpoint answers after 200 ms, and two-step
streams whose steps arrive each in its own pool — reported as arrivals, served attempts, service
samples and waits that agree with what was submitted and with the tasks' own events (the
capacity bench's ground truth)."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from bench._serve import serving
from clients.sdk import Client
from mesh.supervisor import NO_LIMIT, Supervisor, build_plan
from mesh.v1 import status_pb2, task_pb2
from tests.conftest import eventually

pytestmark = pytest.mark.integration

TIDEMESH = str(Path(sys.executable).parent / "tidemesh")
STEP_S = 0.2
WEBHOOKS, STREAMS = 16, 6
STANDARD, BATCH = task_pb2.PRIORITY_CLASS_STANDARD, task_pb2.PRIORITY_CLASS_BATCH


def _slow_endpoint() -> web.Application:
    async def answer(_: web.Request) -> web.Response:
        await asyncio.sleep(STEP_S)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", answer)
    return app


def _row(report: status_pb2.LoadReport, pool: str, klass: int) -> status_pb2.PoolClassLoad:
    return next(r for r in report.loads if r.pool == pool and r.priority_class == klass)


def _ts(event: task_pb2.TaskEvent) -> float:
    return event.timestamp.ToNanoseconds() / 1e9


async def test_the_load_counts_what_was_submitted_and_times_it_as_the_tasks_events_do(tmp_path: Path) -> None:
    """16 webhooks at once into 4 slots (standard) and 6 streams (batch): post-processing/standard
    has 16 arrivals, 16 served, 16 service samples of ~0.2 s (each ≥ the task's RUNNING →
    SUCCEEDED), waits that queue behind the slots as the events' QUEUED → RUNNING do; each stream
    arrives once in ingestion and once in post-processing; one worker's 4 slots in each pool; nothing
    left waiting. `tidemesh load -o json` says the same."""
    async with serving(_slow_endpoint()) as base:
        plan = build_plan(tmp_path / "mesh", public_port=0, workers=1, worker_concurrency=4, tenant_limit=NO_LIMIT)
        async with Supervisor(plan), Client(f"127.0.0.1:{plan.public_port}", tenant="load") as client:
            hooks = [
                (await client.submit("webhook", {"url": f"{base}/hook", "body": f"call {i}"})).task_id
                for i in range(WEBHOOKS)
            ]
            streams = [
                (
                    await client.submit("stream", {"text": "a b", "chunks": 2, "chunk_delay_ms": 20}, priority="batch")
                ).task_id
                for _ in range(STREAMS)
            ]
            stamps: dict[str, dict[int, float]] = {task_id: {} for task_id in hooks + streams}
            async for event in client.watch_many(hooks + streams, final_only=False):
                stamps[event.task_id].setdefault(event.state, _ts(event))

            async def reported() -> status_pb2.LoadReport | None:
                report = await client.load()
                done = _row(report, "post-processing", STANDARD).served == WEBHOOKS
                return report if done and _row(report, "post-processing", BATCH).served == STREAMS else None

            report = await eventually(reported, 15.0, "every attempt reported by the worker's heartbeats")
            cli = await asyncio.create_subprocess_exec(
                TIDEMESH, "load", "-o", "json", "--endpoint", f"127.0.0.1:{plan.public_port}",
                "--state-dir", str(plan.state_dir), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(cli.communicate(), 30.0)
    assert all(s.get(task_pb2.TASK_STATE_SUCCEEDED) for s in stamps.values()), "every task succeeded"
    hook = _row(report, "post-processing", STANDARD)
    assert (hook.arrived, hook.served, hook.retried) == (WEBHOOKS, WEBHOOKS, 0)
    assert hook.arrival_per_s == pytest.approx(WEBHOOKS / report.window_s)
    assert 0 < report.window_s <= 300
    # Service: the slot's time, the endpoint's 200 ms and the step's own writes; the events'
    # RUNNING → SUCCEEDED sits inside it (the claim comes after the slot is taken).
    served = [stamps[t][task_pb2.TASK_STATE_SUCCEEDED] - stamps[t][task_pb2.TASK_STATE_RUNNING] for t in hooks]
    samples = sorted(hook.service_s_samples)
    assert len(samples) == WEBHOOKS and STEP_S <= samples[0] and samples[-1] < STEP_S + 0.5, samples
    assert hook.service_mean_s == pytest.approx(statistics.fmean(samples))
    assert statistics.fmean(served) - 0.02 <= hook.service_mean_s <= statistics.fmean(served) + 0.1
    # Waits: 16 at once into 4 slots of ~0.2 s queue in four rounds; the events' QUEUED → RUNNING
    # (a little longer: QUEUED is written before the item is stored, RUNNING after its slot is taken).
    waited = [stamps[t][task_pb2.TASK_STATE_RUNNING] - stamps[t][task_pb2.TASK_STATE_QUEUED] for t in hooks]
    assert hook.wait_p95_s >= 2 * STEP_S and hook.wait_p50_s <= hook.wait_p95_s
    assert hook.wait_p95_s == pytest.approx(float(np.percentile(waited, 95)), abs=0.15)
    assert hook.wait_p50_s == pytest.approx(float(np.percentile(waited, 50)), abs=0.15)
    # A stream's two steps: one arrival in each pool, the first stored by admission, the next by the worker.
    assert (_row(report, "ingestion", BATCH).arrived, _row(report, "post-processing", BATCH).arrived) == (
        STREAMS,
        STREAMS,
    )
    assert _row(report, "ingestion", BATCH).served == STREAMS
    for row in report.loads:  # one general worker: its 4 slots in every pool, none dedicated
        assert (row.workers, row.slots, row.dedicated_slots) == (1, 4, 0), row
        assert (row.depth, row.pending, row.running) == (0, 0, 0), row
    assert cli.returncode == 0, err.decode()
    rows = json.loads(out)["loads"]
    (as_json,) = [r for r in rows if r["pool"] == "post-processing" and r["priorityClass"] == "PRIORITY_CLASS_STANDARD"]
    assert int(as_json["arrived"]) == WEBHOOKS and len(as_json["serviceSSamples"]) == WEBHOOKS
