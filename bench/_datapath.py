"""The core data path (issue 14) beside its anchors, in one run: tidemesh (TLS on, fsync always, its
defaults) against Celery 5.7 + Redis with and without AOF ``appendfsync always``, and the broker's
own durable-publish ceilings from Python on the same machine.

Figures:
- one task per call: `callers` concurrent callers, each submitting a no-op and watching it to its
  final event before the next (how a service uses a task queue); tasks/s;
- idle sequential round trip, p50 / p99;
- batched submit + watch (SubmitTasks / WatchTasks), tasks/s;
- the same per-call load spread over 10 000 tenants, as a fraction of one tenant's;
- durable broker writes per task, from JetStream's own counters (every stream's last sequence,
  KV buckets included), and the fsync'd commits they took (a group-committed batch is one);
- mesh RSS idle and after the load; CPU per task of each process;
- a py-spy profile of every Python process during the per-call load (`profile-datapath.md`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import nats
from nats.aio.client import Client as NATS

from bench import _celery, _nats_bare, _scheduling
from bench._foundation import _rss_mb
from clients.sdk import Client
from mesh.supervisor import NO_LIMIT, Supervisor, build_plan
from mesh.supervisor._plan import Plan

RESULTS = Path(__file__).parent / "results"
_PYTHON_PROCESSES = ("gateway", "scheduler", "worker-1", "inference")


def _cpu_s(pid: int | None) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _one(client: Client, priority: str = "interactive", tenant: str = "", *, run: bool = True) -> float:
    """One task, submit to final event: RunTask (one call), or SubmitTask then WatchTask."""
    started = time.perf_counter()
    if run and not tenant:
        async for event in client.run("echo", {"text": "x"}, priority=priority):
            if event.final:
                break
        return time.perf_counter() - started
    spec = client.spec("echo", {"text": "x"}, priority=priority)
    spec.tenant = tenant or spec.tenant
    submitted = (await client.submit_many([spec]))[0]
    async for event in client.watch(submitted.task_id):
        if event.final:
            break
    return time.perf_counter() - started


async def _per_call(
    client: Client, n: int, callers: int, tenants: int = 0, *, run: bool = True, within_s: float = 0.0
) -> float:
    """Tasks/s of `callers` callers doing `n` tasks one per call (or as many as fit in `within_s`
    seconds, when given: a phase that may be slow is bounded, and its rate still measured)."""
    left = n
    done = 0
    stop_at = time.perf_counter() + within_s if within_s else float("inf")

    async def caller(index: int) -> None:
        nonlocal left, done
        count = 0
        while left > 0 and time.perf_counter() < stop_at:
            left -= 1
            count += 1
            await _one(client, "standard", f"tenant-{(index * 7919 + count) % tenants}" if tenants else "", run=run)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    return done / (time.perf_counter() - started)


async def _stored_messages(nc: NATS) -> int:
    """Every message JetStream has stored so far, over every stream (last sequence: a work item
    acked away still counts)."""
    return sum(info.state.last_seq for info in await nc.jetstream().streams_info())


async def _commits(plan: Plan) -> tuple[float, float]:
    """(commits, messages) the mesh's group commit made, summed over its processes' /metrics."""
    assert plan.security is not None
    ssl = plan.security.transport("cli").client_ssl_context()
    assert ssl is not None
    commits = messages = 0.0
    async with aiohttp.ClientSession() as session:
        for name in _PYTHON_PROCESSES:
            with contextlib.suppress(KeyError, aiohttp.ClientError):
                port = plan.by_name(name).ports["http"]
                async with session.get(f"https://127.0.0.1:{port}/metrics", ssl=ssl) as response:
                    text = await response.text()
                for line in text.splitlines():
                    if line.startswith("tidemesh_broker_commits_total{"):
                        commits += float(line.rsplit(" ", 1)[1])
                    elif line.startswith("tidemesh_broker_messages_total{"):
                        messages += float(line.rsplit(" ", 1)[1])
    return commits, messages


def _profile(pids: dict[str, int | None], seconds: int, into: Path) -> list[subprocess.Popen[bytes]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return []
    into.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "-r",
                "100",
                "-f",
                "raw",
                "-d",
                str(seconds),
                "-p",
                str(pid),
                "-o",
                str(into / f"{name}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
        if name in _PYTHON_PROCESSES and pid
    ]


def _profile_table(folder: Path, top: int = 15) -> str:
    """Self time and inclusive time of tidemesh's own frames, per process."""
    parts = []
    for path in sorted(folder.glob("*.txt")):
        self_time: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [re.sub(r" \(/.*?/(site-packages|main|c)/", " (", f) for f in stack.split(";")]
            total += int(count)
            self_time[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)
        if not total:
            continue
        ours = [(f, c) for f, c in inclusive.most_common() if re.search(r"\((mesh|services|clients)/", f)]
        parts += [f"### {path.stem} ({total} samples)", "", "| self % | frame |", "|---|---|"]
        parts += [f"| {100 * c / total:.1f} | `{f}` |" for f, c in self_time.most_common(top)]
        parts += ["", "| inclusive % (tidemesh frames) | frame |", "|---|---|"]
        parts += [f"| {100 * c / total:.1f} | `{f}` |" for f, c in ours[:top]]
        parts.append("")
    return "\n".join(parts)


async def tidemesh(n: int, callers: int, sequential: int, tenants: int, profile: bool) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-") as state:
        plan = build_plan(Path(state), public_port=0, tenant_limit=NO_LIMIT)
        assert plan.security is not None
        async with Supervisor(plan) as supervisor, Client(f"127.0.0.1:{plan.public_port}", tenant="bench") as client:
            pids = supervisor.pids()
            figures["rss_idle_mb"] = _rss_mb(list(pids.values()))
            for _ in range(20):
                await _one(client)
            latencies = sorted([await _one(client) * 1000 for _ in range(sequential)])
            figures["seq_p50_ms"] = statistics.median(latencies)
            figures["seq_p99_ms"] = latencies[max(0, int(len(latencies) * 0.99) - 1)]
            nc = await plan.security.connect_nats(plan.nats_servers, "cli", "bench-counters")
            try:
                await _per_call(client, 200, callers)  # warm at load
                stored_before = await _stored_messages(nc)
                commits_before, grouped_before = await _commits(plan)
                cpu_before = {name: _cpu_s(pid) for name, pid in pids.items()}
                spies = _profile(pids, 8, RESULTS / "profile-datapath") if profile else []
                figures["per_call_tps"] = await _per_call(client, n, callers)
                cpu_after = {name: _cpu_s(pid) for name, pid in pids.items()}
                stored = await _stored_messages(nc) - stored_before
                commits_after, grouped_after = await _commits(plan)
                for spy in spies:
                    spy.wait(timeout=60)
            finally:
                await nc.close()
            figures["rss_load_mb"] = _rss_mb(list(pids.values()))
            figures["messages_per_task"] = stored / n
            grouped = grouped_after - grouped_before
            figures["commits_per_task"] = (stored - grouped + (commits_after - commits_before)) / n
            for name in pids:
                figures[f"cpu_ms_{name}"] = (cpu_after[name] - cpu_before[name]) * 1000 / n
            figures["submit_watch_tps"] = await _per_call(client, n, callers, run=False)
            if tenants:
                figures["tenants_tps"] = await _per_call(client, n, callers, tenants, run=False, within_s=60)
                figures["tenants_base_tps"] = figures["submit_watch_tps"]
    return figures


async def broker_ceilings(n: int = 4000) -> dict[str, float]:
    """Durable (sync always) publishes/s from Python: one by one, four streams at once, atomic batches of 200."""
    figures: dict[str, float] = {}
    async with _nats_bare.NatsServer(sync_always=True) as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        try:
            for index in range(4):
                config = {
                    "name": f"CEIL{index}",
                    "subjects": [f"ceil{index}.>"],
                    "storage": "file",
                    "allow_atomic": True,
                }
                await nc.request(f"$JS.API.STREAM.CREATE.CEIL{index}", json.dumps(config).encode())
            started = time.perf_counter()
            for _ in range(n // 4):
                await js.publish("ceil0.one", b"x" * 200)
            figures["one_by_one"] = (n // 4) / (time.perf_counter() - started)

            async def stream(index: int) -> None:
                for _ in range(n // 4):
                    await js.publish(f"ceil{index}.multi", b"x" * 200)

            started = time.perf_counter()
            await asyncio.gather(*(stream(i) for i in range(4)))
            figures["four_streams"] = n / (time.perf_counter() - started)
            started = time.perf_counter()
            for _ in range(n // 200 * 2):
                batch_id = uuid.uuid4().hex[:16]
                for i in range(1, 200):
                    headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i)}
                    await nc.publish("ceil1.atomic", b"x" * 200, headers=headers)
                commit = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": "200", "Nats-Batch-Commit": "1"}
                await nc.request("ceil1.atomic", b"x" * 200, headers=commit, timeout=10)
            figures["atomic_200"] = (n // 200 * 2 * 200) / (time.perf_counter() - started)
        finally:
            await nc.close()
    return figures


def celery(n: int, callers: int, sequential: int, durable: bool) -> dict[str, float]:
    with _celery.RedisServer(durable=durable) as redis, _celery.CeleryWorkers(redis.url):
        per_call = _celery.celery_per_call(n, callers=callers, url=redis.url)
        p50, p99 = _celery.celery_sequential(sequential, url=redis.url)
        batched = _celery.celery_throughput(min(n, 2000), url=redis.url)
    return {"per_call_tps": per_call, "seq_p50_ms": p50, "seq_p99_ms": p99, "batched_tps": batched}


async def run(n: int = 3000, callers: int = 64, sequential: int = 200, tenants: int = 10_000) -> str:
    mesh = await tidemesh(n, callers, sequential, tenants, profile=True)
    mesh["batched_tps"] = await _scheduling.tidemesh_throughput(5000)
    aof = await asyncio.to_thread(celery, n, callers, sequential, True)
    plain = await asyncio.to_thread(celery, n, callers, sequential, False)
    ceilings = await broker_ceilings()
    folder = RESULTS / "profile-datapath"
    if folder.exists():
        (RESULTS / "profile-datapath.md").write_text(
            "# Per-process CPU profile of the per-call load (py-spy, 100 Hz, 8 s)\n\n" + _profile_table(folder)
        )
        shutil.rmtree(folder)
    cpu = ", ".join(f"{k.removeprefix('cpu_ms_')} {v:.2f}" for k, v in mesh.items() if k.startswith("cpu_ms_"))
    rows = [
        "TLS on and fsync always (the defaults) for tidemesh; Celery + Redis with AOF `appendfsync always` and "
        "without persistence; one run, so compare within it.",
        "",
        "| figure | tidemesh | Celery + Redis AOF always | Celery + Redis, no persistence "
        "| tidemesh / Celery (AOF, none) | target |",
        "|---|---|---|---|---|---|",
        f"| one task per call (RunTask), {callers} callers, tasks/s | {mesh['per_call_tps']:.0f} "
        f"| {aof['per_call_tps']:.0f} | {plain['per_call_tps']:.0f} "
        f"| {mesh['per_call_tps'] / aof['per_call_tps']:.2f}x, {mesh['per_call_tps'] / plain['per_call_tps']:.2f}x "
        "| ≥ 3x, ≥ 2.5x |",
        f"| same, SubmitTask then WatchTask (two calls) | {mesh['submit_watch_tps']:.0f} | | | "
        f"{mesh['submit_watch_tps'] / aof['per_call_tps']:.2f}x, "
        f"{mesh['submit_watch_tps'] / plain['per_call_tps']:.2f}x | |",
        f"| batched submit + watch, tasks/s | {mesh['batched_tps']:.0f} | {aof['batched_tps']:.0f} "
        f"| {plain['batched_tps']:.0f} | {mesh['batched_tps'] / aof['batched_tps']:.2f}x, "
        f"{mesh['batched_tps'] / plain['batched_tps']:.2f}x | ≥ 10x |",
        f"| idle sequential round trip p50 / p99, ms | {mesh['seq_p50_ms']:.1f} / {mesh['seq_p99_ms']:.1f} "
        f"| {aof['seq_p50_ms']:.1f} / {aof['seq_p99_ms']:.1f} | {plain['seq_p50_ms']:.1f} / {plain['seq_p99_ms']:.1f} "
        f"| | ≤ Celery's |",
        f"| durable broker messages per task (JetStream's counters) | {mesh['messages_per_task']:.2f} | | | | |",
        f"| fsync'd commits per task (a group-committed batch is one) | {mesh['commits_per_task']:.2f} | | | | ≤ 2 |",
        f"| submit + watch tasks/s over {tenants} tenants vs 1 tenant | {mesh.get('tenants_tps', 0):.0f} "
        f"({mesh.get('tenants_tps', 0) / mesh['submit_watch_tps']:.0%}) | | | | ≥ 80 % |",
        f"| mesh RSS idle / after the load, MB | {mesh['rss_idle_mb']:.0f} / {mesh['rss_load_mb']:.0f} "
        "| | | | ≤ 400 / stated |",
        f"| CPU ms per task, per process (per-call load) | {cpu} | | | | |",
        "",
        "The broker's own ceilings on this machine (nats-py, `sync_interval: always`, 200-byte messages):",
        "",
        "| durable publish | msgs/s |",
        "|---|---|",
        f"| one by one, one stream | {ceilings['one_by_one']:.0f} |",
        f"| four streams at once | {ceilings['four_streams']:.0f} |",
        f"| atomic batches of 200 | {ceilings['atomic_200']:.0f} |",
        "",
        "Where the time goes: `profile-datapath.md`.",
    ]
    return "\n".join(rows)
