"""The cost of TLS: the secure default (TLS on every hop, mutual between components, NATS over
TLS with users) against `--insecure` (plaintext), end to end, in the same run."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench._foundation import _echo_once
from bench._scheduling import _submit_all
from clients.sdk import Client
from mesh.supervisor import NO_LIMIT, Supervisor, build_plan


async def measure(insecure: bool, batch: int, sequential: int, concurrent: int, callers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-tls-") as state:
        plan = build_plan(
            Path(state), public_port=0, workers=1, worker_concurrency=64, tenant_limit=NO_LIMIT, insecure=insecure
        )
        endpoint = f"127.0.0.1:{plan.public_port}"
        async with (
            Supervisor(plan) as _,
            Client(endpoint, tenant="bench", ca=plan.ca_path or None, insecure=insecure) as client,
        ):
            for i in range(20):
                await _echo_once(client, f"warm {i}")
            latencies = sorted([await _echo_once(client, f"seq {i}") for i in range(sequential)])
            gate = asyncio.Semaphore(callers)

            async def bounded(i: int) -> float:
                async with gate:
                    return await _echo_once(client, f"par {i}")

            started = time.perf_counter()
            await asyncio.gather(*(bounded(i) for i in range(concurrent)))
            per_call = concurrent / (time.perf_counter() - started)
            started = time.perf_counter()
            ids = await _submit_all(client, [client.spec("echo", {"text": str(i)}) for i in range(batch)])
            async for _ in client.watch_many(ids):
                pass
            batched = batch / (time.perf_counter() - started)
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
        "per_call": per_call,
        "batched": batched,
    }


async def run(
    runs: int = 3, batch: int = 2000, sequential: int = 100, concurrent: int = 1000, callers: int = 64
) -> str:
    rows: dict[str, dict[str, list[float]]] = {"tls": {}, "insecure": {}}
    for _ in range(runs):  # alternate, so drift on a noisy machine hits both alike
        for mode in ("tls", "insecure"):
            figures = await measure(mode == "insecure", batch, sequential, concurrent, callers)
            for name, value in figures.items():
                rows[mode].setdefault(name, []).append(value)

    def spread(values: list[float], fmt: str = "{:.0f}") -> str:
        return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))

    def ratio(name: str) -> float:
        return statistics.median(rows["tls"][name]) / statistics.median(rows["insecure"][name])

    measures = [
        ("p50_ms", f"idle round trip p50, ms ({sequential} sequential echo tasks)", "{:.2f}"),
        ("p99_ms", "idle round trip p99, ms", "{:.2f}"),
        ("per_call", f"tasks/s, one task per call from {callers} callers ({concurrent} tasks)", "{:.0f}"),
        ("batched", f"tasks/s, {batch} tasks submitted in batches of 500, then watched", "{:.0f}"),
    ]
    lines = [
        f"Runs: {runs}, alternating; each cell is min / median / max. Echo tasks end to end (submit → final "
        "event seen) through Envoy, one worker (concurrency 64), fsync always, no submit limit.",
        "",
        "| measure | TLS everywhere (default) | `--insecure` | ratio TLS / insecure (medians) |",
        "|---|---|---|---|",
    ]
    for name, label, fmt in measures:
        tls, plain = spread(rows["tls"][name], fmt), spread(rows["insecure"][name], fmt)
        lines.append(f"| {label} | {tls} | {plain} | {ratio(name):.2f} |")
    return "\n".join(lines)
