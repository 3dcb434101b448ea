"""The cost of full tracing: the same mesh and load with spans off (the default: only the trace
context travels) and with every process exporting its spans over OTLP (`tidemesh up --otlp`) to a
receiver in this process, in one run.

Load: `echo` tasks — the data path with the least work of its own, so the spans' share is the
largest it gets — submitted in batches (throughput) and one at a time (latency, RunTask). Figures:
tasks/s, CPU per task of the mesh's Python processes (gateway, scheduler, worker, inference, from
/proc), sequential p50/p99, and the spans the receiver got per task.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench._datapath import _PYTHON_PROCESSES, _cpu_s
from bench._otlp import receiving
from bench._scheduling import _p, _submit_all
from clients.sdk import Client
from mesh.supervisor import NO_LIMIT, Supervisor, build_plan


async def _measure(otlp: str, tasks: int, sequential: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-tracing-") as state:
        plan = build_plan(
            Path(state), public_port=0, workers=1, worker_concurrency=64, tenant_limit=NO_LIMIT, otlp_endpoint=otlp
        )
        async with Supervisor(plan) as supervisor, Client(f"127.0.0.1:{plan.public_port}", tenant="bench") as client:
            warm = await _submit_all(client, [client.spec("echo", {"text": "w"}) for _ in range(200)])
            [e async for e in client.watch_many(warm)]
            pids = {name: supervisor.children[name].pid for name in _PYTHON_PROCESSES}
            cpu_before = sum(_cpu_s(pid) for pid in pids.values())
            started = time.perf_counter()
            ids = await _submit_all(client, [client.spec("echo", {"text": str(i)}) for i in range(tasks)])
            [e async for e in client.watch_many(ids)]
            elapsed = time.perf_counter() - started
            cpu = sum(_cpu_s(pid) for pid in pids.values()) - cpu_before
            latencies = []
            for _ in range(sequential):
                one = time.perf_counter()
                [e async for e in client.run("echo", {"text": "x"}, priority="interactive")]
                latencies.append((time.perf_counter() - one) * 1000)
    return {
        "tasks_per_s": tasks / elapsed,
        "cpu_ms_per_task": cpu / tasks * 1000,
        "p50_ms": statistics.median(latencies),
        "p99_ms": _p(latencies, 0.99),
    }


async def run(runs: int, tasks: int = 2000, sequential: int = 100) -> str:
    rows: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    spans_per_task: list[float] = []
    for index in range(runs):
        for mode in ("off", "on") if index % 2 == 0 else ("on", "off"):
            print(f"tracing: run {index + 1}/{runs}, spans {mode}", flush=True)
            if mode == "off":
                rows[mode].append(await _measure("", tasks, sequential))
                continue
            async with receiving(keep=False) as (sink, endpoint):
                rows[mode].append(await _measure(endpoint, tasks, sequential))
                await asyncio.sleep(1.5)  # the last batch of spans (exported every 5 s at most, flushed at stop)
                spans_per_task.append(sink.count / (tasks + sequential + 200))

    def spread(mode: str, key: str, digits: int = 1) -> str:
        values = sorted(row[key] for row in rows[mode])
        return " / ".join(f"{v:.{digits}f}" for v in (values[0], statistics.median(values), values[-1]))

    def ratio(key: str) -> str:
        on, off = statistics.median(r[key] for r in rows["on"]), statistics.median(r[key] for r in rows["off"])
        return f"{on / off:.2f}x"

    lines = [
        f"{runs} runs of each, alternating; {tasks} `echo` tasks submitted in batches of 500 (throughput), then "
        f"{sequential} one at a time (RunTask). Cells: min / median / max. With spans on every process exports to an "
        "OTLP/gRPC receiver in the bench process (its CPU is not counted); Envoy traces too.",
        "",
        "| spans | tasks/s | CPU ms per task (mesh) | sequential p50 ms | p99 ms |",
        "|---|---|---|---|---|",
        *(
            f"| {mode} | {spread(mode, 'tasks_per_s', 0)} | {spread(mode, 'cpu_ms_per_task', 2)} | "
            f"{spread(mode, 'p50_ms')} | {spread(mode, 'p99_ms')} |"
            for mode in ("off", "on")
        ),
        "",
        f"Full tracing costs: throughput {ratio('tasks_per_s')}, CPU per task {ratio('cpu_ms_per_task')}, "
        f"sequential p50 {ratio('p50_ms')} of the default's; "
        f"{statistics.median(spans_per_task):.1f} spans reached the receiver per task.",
    ]
    return "\n".join(lines)
