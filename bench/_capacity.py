"""Capacity: the simulation's predicted queue wait against the wait measured on a real mesh after
the same change, under the same load (issue 18's plan preview, `mesh.capacity`).

One mesh, as `tidemesh up` runs it (its configuration controller included):

1. Baseline: one worker with concurrency 4, Poisson arrivals of `webhook` tasks (one step) whose
   endpoint answers after ~200 ms (standard class). Measured: the arrival rate, each task's service
   time (RUNNING → SUCCEEDED) and queue wait (QUEUED → RUNNING), from the tasks' own events.
2. `tidemesh config plan` of concurrency 3: its simulation runs on the figures the mesh measured
   itself (`GetLoad`: arrivals, service-time samples). Beside it, from the baseline's own figures:
   the same discrete-event simulation of the workers' slot policy (runs as short as the measurement,
   and the steady state) and Erlang C (M/M/c, exponential service — the closed form that
   constant-ish steps do not follow).
3. `tidemesh config apply` of that plan (worker-1 restarts with concurrency 3, behind the health
   gate), then the same load again; its waits measured.

The error is predicted - measured. The measured wait also holds the mesh's own dispatch time (a
pull, the RUNNING event's fsync), which no queueing model sees: the baseline's median wait,
reported beside, is that floor.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from bench._serve import serving
from clients.cli._config import plan_for
from clients.cli._plan import controller_for, make_plan
from clients.sdk import Client
from clients.sdk._client import mesh_channel
from mesh.capacity import ClassLoad, MMc, simulate
from mesh.manifest import API_VERSION, KIND, Manifest, record, resolve
from mesh.supervisor import Supervisor, admin_key
from mesh.v1 import config_pb2, config_pb2_grpc, task_pb2
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


async def _load(client: Client, url: str, seconds: float, rate: float, seed: int) -> dict[str, object]:
    """Poisson arrivals of one-step webhook tasks for `seconds`; per task its queue wait and service time."""
    payload = {"url": url, "body": "a step"}
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


def _manifest(state: str, concurrency: int) -> Manifest:
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "stateDir": state,
        "endpoints": {"public": {"port": 0}},
        "pools": {"general": {"concurrency": concurrency}},
    }
    return resolve(document, "the capacity bench")


async def _before_and_after(seconds: float, rate: float, seed: int) -> dict[str, Any]:
    """One mesh (as `tidemesh up` runs it, with its configuration controller): the load at
    concurrency 4, `tidemesh config plan` of concurrency 3 (its simulation from the mesh's own
    measured figures), `config apply`, the same load again."""
    async with serving(_slow_endpoint()) as base:
        url = f"{base}/hook"
        with tempfile.TemporaryDirectory(prefix="tidemesh-bench-capacity-") as state:
            manifest = _manifest(state, 4)
            plan = plan_for(manifest)
            record(plan, manifest)
            endpoint = f"127.0.0.1:{plan.public_port}"
            credential, ca = admin_key(Path(state)), plan.ca_path
            async with (
                Supervisor(plan) as supervisor,
                controller_for(supervisor, manifest),
                Client(endpoint, tenant="bench", credential=credential, ca=ca) as client,
            ):
                [event async for event in client.run("webhook", {"url": url, "body": "warm"})]
                before = await _load(client, url, seconds, rate, seed)
                async with mesh_channel(endpoint, credential, ca, False, surface="bench") as channel:
                    stub = config_pb2_grpc.ConfigServiceStub(channel)  # type: ignore[no-untyped-call]
                    # the load just run: the last `seconds` of the mesh's measured window
                    change = await make_plan(stub, channel, _manifest(state, 3), "the capacity bench", seconds)
                    request = config_pb2.ApplyConfigRequest(
                        manifest_json=json.dumps(change["manifest"]),
                        base_digest=change["base"]["digest"],
                        steps_digest=change["stepsDigest"],
                        bake_seconds=1.0,
                    )
                    phases = [event.phase async for event in stub.ApplyConfig(request)]
                    if phases[-1] != "applied":
                        raise RuntimeError(f"the change was not applied: {phases}")
                after = await _load(client, url, seconds, rate, seed)  # the very same arrivals
    return {"before": before, "plan": change, "after": after}


def _q(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q * 100))


async def run(seconds: float = 30.0) -> str:
    print(f"capacity: concurrency 4, {RATE_PER_S:g}/s for {seconds:.0f} s; plan and apply concurrency 3", flush=True)
    measured_run = await _before_and_after(seconds, RATE_PER_S, seed=1)
    baseline, changed, change = measured_run["before"], measured_run["after"], measured_run["plan"]
    services: list[float] = baseline["services"]
    rate: float = baseline["arrival_per_s"]
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
    measured: list[float] = changed["waits"]
    floor = statistics.median(baseline["waits"])
    m50, m95 = _q(measured, 0.5), _q(measured, 0.95)
    planned = next(
        (
            c
            for row in change["simulation"]
            for c in row["after"]["classes"]
            if c["priorityClass"] == "standard" and c["arrivalPerSecond"]
        ),
        None,
    )

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
    seen = next((x for x in change["load"] if x["priorityClass"] == "standard"), None)
    if planned is not None and seen is not None:  # what `tidemesh config plan` predicted, from the mesh's figures
        rows.insert(
            0,
            (
                f"`tidemesh config plan`'s simulation, steady state (the mesh measured "
                f"{seen['arrivalPerSecond']:.2f}/s, service mean {seen['serviceMeanSeconds'] * 1000:.0f} ms)",
                float(planned["waitP50Seconds"]),
                float(planned["waitP95Seconds"]),
                "",
                "",
            ),
        )
    within = _q(p95s, 0.1) <= m95 <= _q(p95s, 0.9)
    lines = [
        f"Baseline: 1 worker, `--concurrency 4`, Poisson arrivals at {rate:.2f}/s of `webhook` tasks whose one "
        f"step waits {STEP_MS} ms for its endpoint, {len(services)} tasks; measured service time mean "
        f"{statistics.fmean(services) * 1000:.0f} ms "
        f"(p95 {_q(services, 0.95) * 1000:.0f} ms), queue wait median {floor * 1000:.1f} ms (the mesh's own "
        f"dispatch floor at utilization {rate * statistics.fmean(services) / 4:.0%}).",
        "",
        f"The change: `--concurrency 3` (utilization {closed.utilization:.0%}), predicted from the baseline's figures "
        f"with the workers' own slot policy, then applied to the same mesh by `tidemesh config apply` and the "
        f"same load run again ({changed['arrival_per_s']:.2f}/s, "
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
