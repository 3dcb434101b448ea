"""Capacity: the simulation's predicted queue wait against the wait measured on a real mesh after
the same change, under the same load (issue 18's plan preview, `mesh.capacity`).

1. Baseline: one worker with `--concurrency 4`, Poisson arrivals of `webhook` tasks (one step) whose
   endpoint answers after ~200 ms (standard class). Measured: the arrival rate, each task's service time (RUNNING →
   SUCCEEDED) and queue wait (QUEUED → RUNNING), from the tasks' own events.
2. Prediction for a change to `--concurrency 3`, from the baseline's measured arrivals and service
   times: the discrete-event simulation running the workers' own slot policy, and Erlang C (M/M/c,
   exponential service — the closed form that constant-ish steps do not follow).
3. The change applied (a mesh with `--concurrency 3`) under the same load; its waits measured.

The error is predicted - measured. The measured wait also holds the mesh's own dispatch time (a
pull, the RUNNING event's fsync), which no queueing model sees: the idle baseline's median wait,
reported beside, is that floor.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from aiohttp import web

from bench._serve import serving
from clients.sdk import Client
from mesh.capacity import ClassLoad, MMc, simulate
from mesh.supervisor import NO_LIMIT, Supervisor, build_plan
from mesh.v1 import task_pb2
from services.worker._slots import SlotLimits, simulated

STEP_MS = 200
RATE_PER_S = 12.0
REPLICATIONS = 200


def _ts(event: task_pb2.TaskEvent) -> float:
    return event.timestamp.ToNanoseconds() / 1e9


def _slow_endpoint() -> web.Application:
    """A webhook endpoint that answers after STEP_MS: the step's service time."""

    async def answer(_: web.Request) -> web.Response:
        await asyncio.sleep(STEP_MS / 1000)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", answer)
    return app


async def _measure(concurrency: int, seconds: float, rate: float, seed: int) -> dict[str, object]:
    """Poisson arrivals for `seconds` on a fresh mesh; per task its queue wait and service time."""
    async with serving(_slow_endpoint()) as base:
        return await _measure_at(f"{base}/hook", concurrency, seconds, rate, seed)


async def _measure_at(url: str, concurrency: int, seconds: float, rate: float, seed: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-capacity-") as state:
        plan = build_plan(Path(state), public_port=0, workers=1, worker_concurrency=concurrency, tenant_limit=NO_LIMIT)
        async with Supervisor(plan), Client(f"127.0.0.1:{plan.public_port}", tenant="bench") as client:
            payload = {"url": url, "body": "a step"}
            [event async for event in client.run("webhook", payload)]  # warm
            rng = np.random.default_rng(seed)
            pending: list[asyncio.Task[str]] = []

            async def submit() -> str:
                return (await client.submit("webhook", payload)).task_id

            started = time.monotonic()
            next_at = started
            while (now := time.monotonic()) - started < seconds:
                if now < next_at:
                    await asyncio.sleep(next_at - now)
                pending.append(asyncio.create_task(submit()))
                next_at += float(rng.exponential(1 / rate))
            elapsed = time.monotonic() - started
            ids = await asyncio.gather(*pending)
            stamps: dict[str, dict[int, float]] = {task_id: {} for task_id in ids}
            async for event in client.watch_many(ids, final_only=False):
                stamps[event.task_id].setdefault(event.state, _ts(event))
    waits, services = [], []
    for states in stamps.values():
        queued, running = states.get(task_pb2.TASK_STATE_QUEUED), states.get(task_pb2.TASK_STATE_RUNNING)
        done = states.get(task_pb2.TASK_STATE_SUCCEEDED)
        if queued is not None and running is not None and done is not None:
            waits.append(running - queued)
            services.append(done - running)
    return {"arrival_per_s": len(ids) / elapsed, "waits": waits, "services": services}


def _q(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q * 100))


async def run(seconds: float = 30.0) -> str:
    print(f"capacity: baseline, concurrency 4, {RATE_PER_S:g}/s for {seconds:.0f} s", flush=True)
    baseline = await _measure(4, seconds, RATE_PER_S, seed=1)
    services: list[float] = baseline["services"]  # type: ignore[assignment]
    rate: float = baseline["arrival_per_s"]  # type: ignore[assignment]
    limits = SlotLimits.of(3)
    load = [ClassLoad("interactive", 0.0, [0.0]), ClassLoad("standard", rate, services), ClassLoad("batch", 0.0, [0.0])]
    # Like the measurement: `seconds` from an empty queue, many times over (the spread of what a
    # run that short can show); and the steady state, which a short run does not reach.
    runs = [
        simulate(load, 3, seconds, policy=simulated(limits), seed=seed, warmup_s=0).by_name()["standard"]
        for seed in range(REPLICATIONS)
    ]
    p50s, p95s = [r.wait_p50_s for r in runs], [r.wait_p95_s for r in runs]
    steady = simulate(load, slots=3, horizon_s=20_000, policy=simulated(limits), seed=2).by_name()["standard"]
    closed = MMc(rate, statistics.fmean(services), 3)
    print("capacity: the change applied, concurrency 3", flush=True)
    changed = await _measure(3, seconds, RATE_PER_S, seed=1)
    measured: list[float] = changed["waits"]  # type: ignore[assignment]
    floor = statistics.median(baseline["waits"])  # type: ignore[arg-type]
    m50, m95 = _q(measured, 0.5), _q(measured, 0.95)

    def spread(values: list[float]) -> str:
        return f"{_q(values, 0.1) * 1000:.0f}-{_q(values, 0.9) * 1000:.0f}"

    rows = [
        (
            f"simulation, {seconds:.0f} s from empty (median of {REPLICATIONS} runs; 10-90 % of runs)",
            statistics.median(p50s),
            statistics.median(p95s),
            f" ({spread(p50s)})",
            f" ({spread(p95s)})",
        ),
        ("simulation, steady state", steady.wait_p50_s, steady.wait_p95_s, "", ""),
        ("Erlang C (M/M/c), steady state", closed.wait_quantile_s(0.5), closed.wait_quantile_s(0.95), "", ""),
    ]
    within = _q(p95s, 0.1) <= m95 <= _q(p95s, 0.9)
    lines = [
        f"Baseline: 1 worker, `--concurrency 4`, Poisson arrivals at {rate:.2f}/s of `webhook` tasks whose one "
        f"step waits {STEP_MS} ms for its endpoint, {len(services)} tasks; measured service time mean "
        f"{statistics.fmean(services) * 1000:.0f} ms "
        f"(p95 {_q(services, 0.95) * 1000:.0f} ms), queue wait median {floor * 1000:.1f} ms (the mesh's own "
        f"dispatch floor at utilization {rate * statistics.fmean(services) / 4:.0%}).",
        "",
        f"The change: `--concurrency 3` (utilization {closed.utilization:.0%}), predicted from the baseline's figures "
        f"with the workers' own slot policy, then applied under the same load ({changed['arrival_per_s']:.2f}/s, "
        f"{len(measured)} tasks, {seconds:.0f} s).",
        "",
        "| queue wait at concurrency 3 | p50 ms | p95 ms | error p50 | error p95 |",
        "|---|---|---|---|---|",
        f"| measured after the change | {m50 * 1000:.1f} | {m95 * 1000:.1f} | | |",
    ]
    for name, p50, p95, range50, range95 in rows:
        lines.append(
            f"| {name} | {p50 * 1000:.1f}{range50} | {p95 * 1000:.1f}{range95} | {(p50 - m50) * 1000:+.1f} ms | "
            f"{(p95 - m95) * 1000:+.1f} ms ({(p95 - m95) / m95:+.0%}) |"
        )
    lines += [
        "",
        f"The measured p95 is {'inside' if within else 'outside'} the 10-90 % range of the simulated runs of the "
        "same length. A run this short starts from an empty queue and rarely meets the long busy periods that "
        "make the steady state's tail: the steady-state figures are what the pool converges to under the load "
        "kept up.",
    ]
    return "\n".join(lines)
