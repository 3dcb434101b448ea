"""Foundation figures: boot time, mesh RSS, end-to-end echo latency and throughput through Envoy."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan


def _descendants(pids: list[int | None]) -> list[int]:
    """`pids` and every process below them (a service's own children: the inference service's
    model process, a resource tracker), from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid for pid in pids if pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _rss_mb(pids: list[int | None]) -> float:
    """Resident memory of the processes `pids` and all their descendants, in MB."""
    total_kb = 0
    for pid in _descendants(pids):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, TypeError):
            continue
    return total_kb / 1024


async def _echo_once(client: Client, text: str) -> float:
    started = time.perf_counter()
    submitted = await client.submit("echo", {"text": text}, priority="interactive")
    async for event in client.watch(submitted.task_id):
        if event.final:
            break
    return time.perf_counter() - started


async def run(sequential: int = 100, concurrent: int = 2000, concurrency: int = 64) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-") as state:
        plan = build_plan(Path(state), public_port=0)
        async with Supervisor(plan) as supervisor:
            figures: dict[str, float] = {"boot_s": supervisor.boot_seconds}
            figures["rss_mb"] = _rss_mb(list(supervisor.pids().values()))
            async with Client(f"127.0.0.1:{plan.public_port}", tenant="bench") as client:
                for i in range(10):  # warm-up: connections, JIT-free but caches and pools
                    await _echo_once(client, f"warm {i}")
                latencies = [await _echo_once(client, f"seq {i}") for i in range(sequential)]
                figures["echo_p50_ms"] = statistics.median(latencies) * 1000
                figures["echo_p99_ms"] = sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000
                gate = asyncio.Semaphore(concurrency)

                async def bounded(i: int) -> float:
                    async with gate:
                        return await _echo_once(client, f"par {i}")

                started = time.perf_counter()
                await asyncio.gather(*(bounded(i) for i in range(concurrent)))
                figures["echo_tasks_per_s"] = concurrent / (time.perf_counter() - started)
            figures["rss_after_mb"] = _rss_mb(list(supervisor.pids().values()))
    return figures


def table(figures: dict[str, float], sequential: int, concurrent: int, concurrency: int) -> str:
    return "\n".join(
        [
            "| figure | value |",
            "|---|---|",
            f"| `tidemesh up` → all healthy | {figures['boot_s']:.2f} s |",
            f"| RSS of the whole mesh (6 processes and their children), idle | {figures['rss_mb']:.0f} MB |",
            f"| RSS after the load | {figures['rss_after_mb']:.0f} MB |",
            f"| echo end to end via Envoy, {sequential} sequential tasks: p50 | {figures['echo_p50_ms']:.2f} ms |",
            f"| same, p99 | {figures['echo_p99_ms']:.2f} ms |",
            f"| echo tasks/s, {concurrent} tasks, {concurrency} in flight (submit → final event seen) "
            f"| {figures['echo_tasks_per_s']:.0f} |",
        ]
    )
