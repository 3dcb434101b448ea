"""Edge load: ramp to N idle streams through Envoy, at a paced rate, and see what the edge holds.

A mesh as `tidemesh up` runs it (one gateway behind Envoy) but with no worker, so every task
stays QUEUED: a watcher gets the task's first event and then nothing — idle means idle. Two
shapes, each on a fresh mesh: N watchers of ONE task, and N tasks with one watcher each. The
streams are a third each SSE, WebSocket and gRPC WatchTask (gRPC multiplexed over a few HTTP/2
connections), opened on a fixed schedule (`rate` streams/s in all) by `holders` worker
processes that each hold their share; a bystander in a process of its own calls GetTask through
Envoy back to back (~100/s), so neither the holders' CPU nor their event loops are in its
figures. Reported per shape: streams held, errors (any non-200, refused upgrade, failed call,
first frame not within 30 s), gateway and Envoy RSS growth per stream, CPU seconds each used,
and the bystander's p50/p99 before, while opening and while held.

`profile_dir` runs py-spy (if installed, see PYSPY) on the gateway during the ramp and the hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._trust import public_channel
from mesh.supervisor import NO_LIMIT, Supervisor, build_plan
from mesh.supervisor._limits import raise_open_files_limit

_GRPC_STREAMS_PER_CHANNEL = 900  # under Envoy's 1000 concurrent streams per connection
_FIRST_FRAME_S = 30.0
_BASELINE_S = 3.0
_HOLD_S = 15.0
_KINDS = ("sse", "websocket", "grpc")
PYSPY = os.environ.get("PYSPY", shutil.which("py-spy") or "/tmp/pyspy/bin/py-spy")


def _rss_kib(pid: int | None) -> int:
    if pid is None:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds `pid` has used."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the holders (one process each) --------------------------------------------------------------


async def _hold_async(
    endpoint: str, plan: list[tuple[float, str, str]], stop: Any, out: Any
) -> None:  # pragma: no cover - runs in a child process
    import aiohttp
    import grpc.aio

    from mesh.v1 import gateway_pb2, gateway_pb2_grpc

    held: dict[str, int] = dict.fromkeys(_KINDS, 0)
    errors: dict[str, int] = {}
    open_ms: list[float] = []
    closers: list[Any] = []
    calls: list[Any] = []
    channels: list[Any] = []
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True), timeout=aiohttp.ClientTimeout(total=None)
    )

    def error(what: str) -> None:
        errors[what] = errors.get(what, 0) + 1

    async def sse(task_id: str) -> bool:
        try:
            response = await session.get(
                f"https://{endpoint}/v1/tasks/{task_id}/events", timeout=aiohttp.ClientTimeout(sock_connect=30)
            )
            if response.status != 200:
                error(f"SSE HTTP {response.status}")
                response.release()
                return False
            await asyncio.wait_for(response.content.readuntil(b"\n\n"), _FIRST_FRAME_S)
            closers.append(response.release)
            return True
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            error(f"SSE {type(exc).__name__}")
            return False

    async def websocket(task_id: str) -> bool:
        try:
            ws = await session.ws_connect(f"wss://{endpoint}/v1/ws", timeout=aiohttp.ClientWSTimeout(ws_close=5))
            await ws.send_json({"op": "subscribe", "task_id": task_id})
            frame = await asyncio.wait_for(ws.receive(), _FIRST_FRAME_S)
            if frame.type is not aiohttp.WSMsgType.TEXT or json.loads(frame.data).get("type") == "error":
                error("WebSocket bad first frame")
                await ws.close()
                return False
            closers.append(ws.close)
            return True
        except (aiohttp.ClientError, TimeoutError) as exc:
            error(f"WebSocket {type(exc).__name__}")
            return False

    async def grpc_watch(task_id: str) -> bool:
        if not channels or len(calls) >= len(channels) * _GRPC_STREAMS_PER_CHANNEL:
            channels.append(public_channel(endpoint))
        call = gateway_pb2_grpc.GatewayServiceStub(channels[-1]).WatchTask(
            gateway_pb2.WatchTaskRequest(task_id=task_id)
        )
        calls.append(call)
        try:
            await asyncio.wait_for(call.read(), _FIRST_FRAME_S)
            return True
        except grpc.aio.AioRpcError as exc:
            error(f"gRPC {exc.code().name}")
        except TimeoutError:
            error("gRPC TimeoutError")
        return False

    openers = {"sse": sse, "websocket": websocket, "grpc": grpc_watch}

    async def open_at(at: float, kind: str, task_id: str) -> None:
        await asyncio.sleep(max(0.0, at - time.time()))
        started = time.perf_counter()
        if await openers[kind](task_id):
            held[kind] += 1
            open_ms.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(open_at(*item) for item in plan))
    out.put(("opened", os.getpid(), held, errors, open_ms))
    await asyncio.to_thread(stop.wait)
    for call in calls:
        call.cancel()
    for closer in closers:
        with contextlib.suppress(Exception):
            await closer()
    await session.close()
    for channel in channels:
        await channel.close()
    out.put(("closed", os.getpid()))


def _hold(endpoint: str, plan: list[tuple[float, str, str]], stop: Any, out: Any) -> None:  # pragma: no cover
    raise_open_files_limit()
    asyncio.run(_hold_async(endpoint, plan, stop, out))


# --- the bystander (a process of its own) ---------------------------------------------------------


async def _bystand_async(endpoint: str, task_id: str, stop: Any, out: Any) -> None:  # pragma: no cover
    import grpc.aio

    from mesh.v1 import gateway_pb2, gateway_pb2_grpc

    samples: list[tuple[float, float]] = []
    failures: list[str] = []
    async with public_channel(endpoint) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        request = gateway_pb2.GetTaskRequest(task_id=task_id)
        await stub.GetTask(request)
        out.put(("ready",))
        while not stop.is_set():
            at, started = time.time(), time.perf_counter()
            try:
                await stub.GetTask(request, timeout=10)
            except grpc.aio.AioRpcError as exc:
                failures.append(exc.code().name)
            samples.append((at, (time.perf_counter() - started) * 1000))
            await asyncio.sleep(0.01)  # ~100 calls/s: a steady client, not a flood
    out.put(("samples", samples, failures))


def _bystand(endpoint: str, task_id: str, stop: Any, out: Any) -> None:  # pragma: no cover
    asyncio.run(_bystand_async(endpoint, task_id, stop, out))


# --- one shape on a fresh mesh -----------------------------------------------------------------------


@dataclass
class Shape:
    name: str
    streams: int
    distinct_tasks: bool
    held: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    open_ms: list[float] = field(default_factory=list)
    ramp_s: float = 0.0
    rss_before: tuple[int, int] = (0, 0)
    rss_held: tuple[int, int] = (0, 0)
    cpu_ramp: tuple[float, float] = (0.0, 0.0)
    cpu_held: tuple[float, float] = (0.0, 0.0)
    phases: dict[str, list[float]] = field(default_factory=dict)
    bystander_failures: list[str] = field(default_factory=list)


async def _submit_idle(endpoint: str, count: int) -> list[str]:
    """`count` echo tasks that stay QUEUED (the mesh has no worker)."""
    from clients.sdk import Client

    ids: list[str] = []
    async with Client(endpoint, tenant="bench") as client:
        for first in range(0, count, 500):
            specs = [
                client.spec("echo", {"text": "idle"}, idempotency_key=f"idle-{i}")
                for i in range(first, min(count, first + 500))
            ]
            ids.extend(result.task_id for result in await client.submit_many(specs))
    return ids


def _profile(pid: int, seconds: float, path: Path) -> subprocess.Popen[bytes] | None:
    if not Path(PYSPY).exists():
        return None
    return subprocess.Popen(
        [
            PYSPY,
            "record",
            "-p",
            str(pid),
            "-d",
            str(int(seconds)),
            "-r",
            "100",
            "--native",
            "-f",
            "raw",
            "-o",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _run_shape(shape: Shape, rate: float, holders: int, profile_dir: Path | None) -> Shape:
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-edge-") as state:
        plan = build_plan(Path(state), public_port=0, workers=0, tenant_limit=NO_LIMIT)
        async with Supervisor(plan) as supervisor:
            endpoint = f"127.0.0.1:{plan.public_port}"
            task_ids = await _submit_idle(endpoint, shape.streams if shape.distinct_tasks else 1)
            bystanded = (await _submit_idle(endpoint, 1))[0] if shape.distinct_tasks else task_ids[0]
            gateway, envoy = supervisor.children["gateway"].pid, supervisor.children["envoy"].pid
            stop, out = ctx.Event(), ctx.Queue()
            bystander = ctx.Process(target=_bystand, args=(endpoint, bystanded, stop, out), daemon=True)
            bystander.start()
            await asyncio.to_thread(out.get, True, 60)  # ready
            # The schedule: stream i opens at ramp_start + i / rate, held by process i % holders.
            ramp_start = time.time() + _BASELINE_S + 2.0  # + the holders' start-up
            schedules: list[list[tuple[float, str, str]]] = [[] for _ in range(holders)]
            for i in range(shape.streams):
                task_id = task_ids[i % len(task_ids)]
                schedules[i % holders].append((ramp_start + i / rate, _KINDS[i % 3], task_id))
            workers = [
                ctx.Process(target=_hold, args=(endpoint, schedule, stop, out), daemon=True) for schedule in schedules
            ]
            for worker in workers:
                worker.start()
            await asyncio.sleep(max(0.0, ramp_start - time.time() - 0.5))
            shape.rss_before = (_rss_kib(gateway), _rss_kib(envoy))
            cpu0 = (_cpu_s(gateway), _cpu_s(envoy))
            spies = []
            if profile_dir is not None and gateway is not None:
                spies.append(
                    _profile(gateway, shape.streams / rate + 1, profile_dir / f"gateway-{shape.name}-ramp.txt")
                )
            opened = 0
            samples: list[tuple[float, float]] = []
            while opened < holders:
                message = await asyncio.to_thread(out.get, True, shape.streams / rate + 120)
                if message[0] == "opened":
                    opened += 1
                    for kind, count in message[2].items():
                        shape.held[kind] = shape.held.get(kind, 0) + count
                    for what, count in message[3].items():
                        shape.errors[what] = shape.errors.get(what, 0) + count
                    shape.open_ms.extend(message[4])
            ramp_end = time.time()
            shape.ramp_s = ramp_end - ramp_start
            cpu1 = (_cpu_s(gateway), _cpu_s(envoy))
            if profile_dir is not None and gateway is not None:
                spies.append(_profile(gateway, _HOLD_S - 1, profile_dir / f"gateway-{shape.name}-held.txt"))
            await asyncio.sleep(_HOLD_S)
            held_end = time.time()
            shape.rss_held = (_rss_kib(gateway), _rss_kib(envoy))
            cpu2 = (_cpu_s(gateway), _cpu_s(envoy))
            shape.cpu_ramp = (cpu1[0] - cpu0[0], cpu1[1] - cpu0[1])
            shape.cpu_held = (cpu2[0] - cpu1[0], cpu2[1] - cpu1[1])
            stop.set()
            closed = 0
            while closed < holders or not samples:
                message = await asyncio.to_thread(out.get, True, 120)
                if message[0] == "closed":
                    closed += 1
                elif message[0] == "samples":
                    samples, shape.bystander_failures = message[1], message[2]
            for process in (*workers, bystander):
                await asyncio.to_thread(process.join, 30)
            for spy in spies:
                if spy is not None:
                    spy.wait(timeout=60)
    shape.phases = {
        "before any stream": [ms for at, ms in samples if at < ramp_start],
        "while opening": [ms for at, ms in samples if ramp_start <= at < ramp_end],
        "while held": [ms for at, ms in samples if ramp_end <= at < held_end],
    }
    return shape


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _table(shapes: list[Shape], rate: float, holders: int) -> str:
    fd_limit = raise_open_files_limit()
    rows = [
        f"Each shape on a fresh mesh with no worker (tasks stay QUEUED: no event after the first). Streams a third "
        f"each SSE, WebSocket, gRPC WatchTask, through Envoy, opened on a schedule of {rate:.0f}/s by {holders} "
        f"holder processes; fd limit {fd_limit}. Bystander: its own process, sequential GetTask through Envoy, "
        f"~100/s. Held {_HOLD_S:.0f} s after the last stream opened.",
        "",
        "| measure | " + " | ".join(shape.name for shape in shapes) + " |",
        "|---|" + "---|" * len(shapes),
    ]

    def row(name: str, values: list[str]) -> None:
        rows.append(f"| {name} | " + " | ".join(values) + " |")

    row("streams held", [f"{sum(s.held.values())} of {s.streams}" for s in shapes])
    row("held SSE / WebSocket / gRPC", [" / ".join(str(s.held.get(k, 0)) for k in _KINDS) for s in shapes])
    row("errors while opening", [", ".join(f"{k}: {v}" for k, v in sorted(s.errors.items())) or "none" for s in shapes])
    row("ramp time, s (schedule)", [f"{s.ramp_s:.1f} ({s.streams / rate:.1f})" for s in shapes])
    row(
        "time to first frame p50 / p99 ms",
        [f"{statistics.median(s.open_ms):.1f} / {_pct(s.open_ms, 0.99):.1f}" if s.open_ms else "-" for s in shapes],
    )
    row(
        "bystander calls that failed",
        [f"{len(s.bystander_failures)} {sorted(set(s.bystander_failures))}" for s in shapes],
    )
    for index, who in ((0, "gateway"), (1, "Envoy")):
        row(
            f"{who} RSS MiB before / held",
            [f"{s.rss_before[index] / 1024:.0f} / {s.rss_held[index] / 1024:.0f}" for s in shapes],
        )
        row(
            f"{who} RSS per stream, KiB",
            [f"{(s.rss_held[index] - s.rss_before[index]) / max(1, sum(s.held.values())):.1f}" for s in shapes],
        )
        row(
            f"{who} CPU s while opening / while held",
            [f"{s.cpu_ramp[index]:.1f} / {s.cpu_held[index]:.1f}" for s in shapes],
        )
    for phase in ("before any stream", "while opening", "while held"):
        values = [s.phases.get(phase, []) for s in shapes]
        row(
            f"bystander GetTask {phase}: p50 / p99 ms (calls)",
            [f"{statistics.median(v) if v else float('nan'):.1f} / {_pct(v, 0.99):.1f} ({len(v)})" for v in values],
        )
    return "\n".join(rows)


async def run(
    streams: int = 10_000,
    rate: float = 500.0,
    holders: int = 4,
    profile_dir: Path | None = None,
    shapes: str = "both",
) -> str:
    """`shapes`: "one" (1 task x N watchers), "many" (N tasks x 1 watcher) or "both"."""
    raise_open_files_limit()
    done = []
    if shapes in ("one", "both"):
        done.append(await _run_shape(Shape(f"1 task x {streams}", streams, False), rate, holders, profile_dir))
    if shapes in ("many", "both"):
        done.append(await _run_shape(Shape(f"{streams} tasks x 1", streams, True), rate, holders, profile_dir))
    return _table(done, rate, holders)
