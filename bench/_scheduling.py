"""Scheduling bench: tidemesh side by side with Celery + Redis and bare nats-py, in one run.

- throughput: end-to-end no-op tasks/s, submit → final event seen by the client;
- interactive latency: p50/p99 of probes submitted while a batch flood is queued;
- starvation: the longest queue wait of batch tasks under continuous interactive load, against
  the batch class's configured wait bound.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench import _celery, _nats_bare
from clients.sdk import Client
from mesh.supervisor import NO_LIMIT, Supervisor, build_plan
from mesh.v1 import task_pb2


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _submit_all(client: Client, specs: list[task_pb2.TaskSpec], chunk: int = 500) -> list[str]:
    gate = asyncio.Semaphore(4)

    async def one(part: list[task_pb2.TaskSpec]) -> list[str]:
        async with gate:
            return [r.task_id for r in await client.submit_many(part)]

    parts = await asyncio.gather(*(one(specs[i : i + chunk]) for i in range(0, len(specs), chunk)))
    return [task_id for part in parts for task_id in part]


async def tidemesh_throughput(n: int, workers: int = 1, concurrency: int = 64, fsync: str = "always") -> float:
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-") as state:
        # Capacity, not a client's allowance: thousands are submitted at once, so no submit limit.
        plan = build_plan(
            Path(state),
            public_port=0,
            workers=workers,
            worker_concurrency=concurrency,
            fsync=fsync,
            tenant_limit=NO_LIMIT,
        )
        async with Supervisor(plan) as _, Client(f"127.0.0.1:{plan.public_port}", tenant="bench") as client:
            warm = await _submit_all(client, [client.spec("echo", {"text": "w"}) for _ in range(200)])
            [e async for e in client.watch_many(warm)]
            specs = [client.spec("echo", {"text": str(i)}) for i in range(n)]
            started = time.perf_counter()
            ids = await _submit_all(client, specs)
            finals = 0
            for start in range(0, len(ids), 5000):
                async for _ in client.watch_many(ids[start : start + 5000], final_only=True):
                    finals += 1
            elapsed = time.perf_counter() - started
            assert finals == n, f"saw {finals} of {n} final events"
            return n / elapsed


async def tidemesh_interactive_latency(flood: int, probes: int) -> tuple[float, float, int, int]:
    """(p50 ms, p99 ms, backlog at the first probe, backlog after the last)."""
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-") as state:
        plan = build_plan(Path(state), public_port=0, workers=1, worker_concurrency=32, tenant_limit=NO_LIMIT)
        async with Supervisor(plan) as _, Client(f"127.0.0.1:{plan.public_port}", tenant="bench") as client:
            await _submit_all(client, [client.spec("echo", {"text": str(i)}, priority="batch") for i in range(flood)])
            backlog_start = await _backlog(client)
            latencies = []
            for i in range(probes):
                started = time.perf_counter()
                submitted = await client.submit("echo", {"text": f"probe {i}"}, priority="interactive")
                async for event in client.watch(submitted.task_id):
                    if event.final:
                        break
                latencies.append((time.perf_counter() - started) * 1000)
            backlog_end = await _backlog(client)
            return statistics.median(latencies), _p(latencies, 0.99), backlog_start, backlog_end


async def _backlog(client: Client) -> int:
    status = await client.status()
    return sum(q.pending + q.in_flight for q in status.queues if q.priority_class == task_pb2.PRIORITY_CLASS_BATCH)


async def tidemesh_starvation(bound_s: float = 2.0, duration_s: float = 8.0) -> tuple[float, float]:
    """(longest batch wait s, its bound s) while interactive work keeps every slot busy."""
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-") as state:
        plan = build_plan(
            Path(state),
            public_port=0,
            workers=1,
            worker_concurrency=4,
            worker_args=("--reserve", "0", "--wait-bounds", f"interactive=0.1,batch={bound_s}"),
        )
        async with Supervisor(plan) as _, Client(f"127.0.0.1:{plan.public_port}", tenant="bench") as client:
            until = time.monotonic() + duration_s

            async def interactive_load() -> None:
                while time.monotonic() < until:
                    submitted = await client.submit(
                        "stream", {"text": "busy", "chunks": 1, "chunk_delay_ms": 200}, priority="interactive"
                    )
                    [e async for e in client.watch(submitted.task_id)]

            load = [asyncio.create_task(interactive_load()) for _ in range(12)]
            await asyncio.sleep(1.0)
            waits: list[float] = []
            while time.monotonic() < until - bound_s - 1:
                results = await client.submit_many([client.spec("echo", {"text": "b"}, priority="batch")] * 1)
                events = [e async for e in client.watch(results[0].task_id)]
                queued = events[0].timestamp.ToNanoseconds() / 1e9
                running = next(
                    e.timestamp.ToNanoseconds() / 1e9 for e in events if e.state == task_pb2.TASK_STATE_RUNNING
                )
                waits.append(running - queued)
            await asyncio.gather(*load)
            return max(waits), bound_s


def _spread(values: list[float], fmt: str = "{:.0f}") -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


async def run(runs: int = 3, n: int = 5000, flood: int = 20000, probes: int = 200) -> str:
    rows: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    for _ in range(runs):
        add("tm_tps", await tidemesh_throughput(n))
        add("tm_tps_lazy", await tidemesh_throughput(n, fsync="interval"))
        with _celery.RedisServer() as redis, _celery.CeleryWorkers(redis.url):
            add("celery_tps", await asyncio.to_thread(_celery.celery_throughput, min(n, 2000), url=redis.url))
            latency = await asyncio.to_thread(_celery.celery_interactive_latency, flood, probes, url=redis.url)
            add("celery_p50", latency[0])
            add("celery_p99", latency[1])
        async with _nats_bare.NatsServer() as server:
            add("nats_tps", await _nats_bare.nats_bare_throughput(server.url, n * 4))
        p50, p99, backlog_start, backlog_end = await tidemesh_interactive_latency(flood, probes)
        add("tm_p50", p50)
        add("tm_p99", p99)
        add("tm_backlog_start", backlog_start)
        add("tm_backlog_end", backlog_end)
        longest, bound = await tidemesh_starvation()
        add("tm_batch_wait", longest)
        add("tm_batch_bound", bound)
    ratio = [t / c for t, c in zip(rows["tm_tps"], rows["celery_tps"], strict=True)]
    ratio_lazy = [t / c for t, c in zip(rows["tm_tps_lazy"], rows["celery_tps"], strict=True)]
    of_bare = [t / b for t, b in zip(rows["tm_tps_lazy"], rows["nats_tps"], strict=True)]
    return "\n".join(
        [
            f"Runs: {runs}; each cell is min / median / max over runs.",
            "",
            "| measure | tidemesh | Celery 5.7 + Redis | bare nats-py | ratio |",
            "|---|---|---|---|---|",
            f"| end-to-end no-op tasks/s, tidemesh with fsync always (default) | {_spread(rows['tm_tps'])} "
            f"| {_spread(rows['celery_tps'])} | {_spread(rows['nats_tps'])} "
            f"| tidemesh/Celery {_spread(ratio, '{:.2f}')}x |",
            f"| same, tidemesh with the server's lazy fsync (`--fsync interval`) | {_spread(rows['tm_tps_lazy'])} "
            f"| (Redis without persistence) | (lazy fsync) "
            f"| tidemesh/Celery {_spread(ratio_lazy, '{:.2f}')}x; tidemesh/bare {_spread(of_bare, '{:.2f}')} |",
            f"| interactive p50 under a {flood}-task batch flood, ms | {_spread(rows['tm_p50'], '{:.1f}')} "
            f"| {_spread(rows['celery_p50'], '{:.1f}')} | — | |",
            f"| interactive p99 under the flood, ms ({probes} probes) | {_spread(rows['tm_p99'], '{:.1f}')} "
            f"| {_spread(rows['celery_p99'], '{:.1f}')} | — | |",
            f"| batch backlog at first / after last probe (tidemesh) | {_spread(rows['tm_backlog_start'])} → "
            f"{_spread(rows['tm_backlog_end'])} | | | |",
            f"| longest batch wait under saturating interactive load, s | {_spread(rows['tm_batch_wait'], '{:.2f}')} "
            f"(bound {rows['tm_batch_bound'][0]:.1f}) | no bound | — | |",
        ]
    )
