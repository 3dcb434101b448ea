"""Durability trade-off: end-to-end throughput with JetStream `sync_interval: always` vs the default."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench._scheduling import _submit_all
from clients.sdk import Client
from mesh.supervisor import NO_LIMIT, Supervisor, build_plan


async def throughput(fsync: str, n: int = 3000) -> float:
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-") as state:
        # Capacity, not a client's allowance: thousands are submitted at once, so no submit limit.
        plan = build_plan(
            Path(state), public_port=0, workers=1, worker_concurrency=64, fsync=fsync, tenant_limit=NO_LIMIT
        )
        async with Supervisor(plan) as _, Client(f"127.0.0.1:{plan.public_port}", tenant="bench") as client:
            warm = await _submit_all(client, [client.spec("echo", {"text": "w"}) for _ in range(200)])
            [e async for e in client.watch_many(warm)]
            started = time.perf_counter()
            ids = await _submit_all(client, [client.spec("echo", {"text": str(i)}) for i in range(n)])
            async for _ in client.watch_many(ids):
                pass
            return n / (time.perf_counter() - started)


async def run(runs: int = 3) -> str:
    import statistics

    always, interval = [], []
    for _ in range(runs):
        always.append(await throughput("always"))
        interval.append(await throughput("interval"))

    def spread(values: list[float]) -> str:
        return f"{min(values):.0f} / {statistics.median(values):.0f} / {max(values):.0f}"

    ratio = statistics.median(always) / statistics.median(interval)
    return "\n".join(
        [
            f"Runs: {runs}; min / median / max. Echo tasks end to end (submit → final event seen).",
            "",
            "| JetStream fsync | tasks/s |",
            "|---|---|",
            f"| `sync_interval: always` (default; no acknowledged write lost on power loss) | {spread(always)} |",
            f"| server default (flush every 2 min; `--fsync interval`) | {spread(interval)} |",
            f"| ratio always / interval (medians) | {ratio:.2f} |",
        ]
    )
