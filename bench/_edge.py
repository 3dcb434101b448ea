"""Edge load: ramp to N idle streams through Envoy and see what the edge holds.

A mesh as `tidemesh up` runs it (one gateway behind Envoy). One `stream` task that emits a chunk
every 10 s is watched by N clients — a third each SSE, WebSocket and gRPC WatchTask (gRPC
multiplexed over a few HTTP/2 connections) — opened in batches. Meanwhile a bystander calls
GetTask through Envoy back to back. Reported: streams held, errors (any non-200, refused
upgrade, failed call), gateway and Envoy RSS growth per stream, bystander p50/p99 while the
streams open and while they are held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc.aio

from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan
from mesh.supervisor._limits import raise_open_files_limit
from mesh.v1 import gateway_pb2, gateway_pb2_grpc

_BATCH = 250
_GRPC_STREAMS_PER_CHANNEL = 900  # under Envoy's 1000 concurrent streams per connection


def _rss_kib(pid: int | None) -> int:
    if pid is None:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class _Streams:
    """Opens idle streams and keeps them; counts what failed to open."""

    def __init__(self, endpoint: str, task_id: str) -> None:
        self.endpoint = endpoint
        self.task_id = task_id
        self.held = 0
        self.errors: dict[str, int] = {}
        self._closers: list[Callable[[], Awaitable[object]]] = []
        self._channels: list[grpc.aio.Channel] = []
        self._calls: list[grpc.aio.UnaryStreamCall] = []  # type: ignore[type-arg]
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True), timeout=aiohttp.ClientTimeout(total=None)
        )

    def _error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    async def sse(self) -> None:
        try:
            response = await self.session.get(
                f"http://{self.endpoint}/v1/tasks/{self.task_id}/events", timeout=aiohttp.ClientTimeout(sock_connect=30)
            )
            if response.status != 200:
                self._error(f"SSE HTTP {response.status}")
                response.release()
                return
            await asyncio.wait_for(response.content.readuntil(b"\n\n"), 30)
            self._closers.append(response.release)  # type: ignore[arg-type]
            self.held += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._error(f"SSE {type(exc).__name__}")

    async def websocket(self) -> None:
        try:
            ws = await self.session.ws_connect(
                f"ws://{self.endpoint}/v1/ws", timeout=aiohttp.ClientWSTimeout(ws_close=5)
            )
            await ws.send_json({"op": "subscribe", "task_id": self.task_id})
            frame = await asyncio.wait_for(ws.receive(), 30)
            if frame.type is not aiohttp.WSMsgType.TEXT or json.loads(frame.data).get("type") == "error":
                self._error("WebSocket bad first frame")
                await ws.close()
                return
            self._closers.append(ws.close)
            self.held += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._error(f"WebSocket {type(exc).__name__}")

    async def grpc_watch(self) -> None:
        if not self._channels or len(self._calls) >= len(self._channels) * _GRPC_STREAMS_PER_CHANNEL:
            self._channels.append(grpc.aio.insecure_channel(self.endpoint))
        stub = gateway_pb2_grpc.GatewayServiceStub(self._channels[-1])
        call = stub.WatchTask(gateway_pb2.WatchTaskRequest(task_id=self.task_id))
        self._calls.append(call)
        try:
            await asyncio.wait_for(call.read(), 30)
            self.held += 1
        except grpc.aio.AioRpcError as exc:
            self._error(f"gRPC {exc.code().name}")
        except TimeoutError:
            self._error("gRPC TimeoutError")

    async def close(self) -> None:
        for call in self._calls:
            call.cancel()
        for closer in self._closers:
            with contextlib.suppress(Exception):
                await closer()
        await self.session.close()
        for channel in self._channels:
            await channel.close()


async def _bystander(
    endpoint: str, task_id: str, stop: asyncio.Event, samples: list[tuple[float, float]], failures: list[str]
) -> None:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        request = gateway_pb2.GetTaskRequest(task_id=task_id)
        await stub.GetTask(request)
        while not stop.is_set():
            started = time.perf_counter()
            try:
                await stub.GetTask(request, timeout=10)
            except grpc.aio.AioRpcError as exc:
                failures.append(exc.code().name)
            samples.append((time.monotonic(), (time.perf_counter() - started) * 1000))
            await asyncio.sleep(0.01)  # ~100 calls/s: a steady client, not a flood


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(streams: int = 10_000) -> str:
    fd_limit = raise_open_files_limit()
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-edge-") as state:
        plan = build_plan(Path(state), public_port=0, workers=1)
        async with Supervisor(plan) as supervisor:
            endpoint = f"127.0.0.1:{plan.public_port}"
            async with Client(endpoint, tenant="bench") as client:
                live = await client.submit("stream", {"text": "idle", "chunks": 10_000, "chunk_delay_ms": 10_000})
                small = await client.submit("echo", {"text": "bystander"})
                [e async for e in client.watch(small.task_id)]
            gateway, envoy = supervisor.children["gateway"].pid, supervisor.children["envoy"].pid
            rss_before = (_rss_kib(gateway), _rss_kib(envoy))
            samples: list[tuple[float, float]] = []
            failures: list[str] = []
            stop = asyncio.Event()
            bystander = asyncio.create_task(_bystander(endpoint, small.task_id, stop, samples, failures))
            await asyncio.sleep(2)  # baseline samples of the bystander before any stream opens
            opener = _Streams(endpoint, live.task_id)
            kinds = (opener.sse, opener.websocket, opener.grpc_watch)
            ramp_start = time.monotonic()
            try:
                for first in range(0, streams, _BATCH):
                    batch = range(first, min(streams, first + _BATCH))
                    await asyncio.gather(*(kinds[i % 3]() for i in batch))
                ramp_end = time.monotonic()
                await asyncio.sleep(15)  # held: every stream gets at least one more chunk
                held_end = time.monotonic()
                rss_after = (_rss_kib(gateway), _rss_kib(envoy))
                held = opener.held
                stop.set()
                await bystander
            finally:
                stop.set()
                await opener.close()
    baseline = [ms for at, ms in samples if at < ramp_start]
    ramping = [ms for at, ms in samples if ramp_start <= at < ramp_end]
    holding = [ms for at, ms in samples if ramp_end <= at < held_end]
    per_stream = [(after - before) / max(1, held) for before, after in zip(rss_before, rss_after, strict=True)]
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(opener.errors.items())) or "none"
    rows = [
        f"One run: {streams} idle streams requested (a third each SSE, WebSocket, gRPC WatchTask) through Envoy, "
        f"opened {_BATCH} at a time, all watching one task that emits a chunk every 10 s; client fd limit "
        f"{fd_limit}. Bystander: sequential GetTask through Envoy, ~100/s.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| streams held | {held} of {streams} |",
        f"| errors while opening | {errors} |",
        f"| ramp time, s | {ramp_end - ramp_start:.1f} |",
        f"| bystander calls that failed | {len(failures)} {sorted(set(failures))} |",
        f"| gateway RSS, MiB before / after | {rss_before[0] / 1024:.0f} / {rss_after[0] / 1024:.0f} |",
        f"| gateway RSS per stream, KiB | {per_stream[0]:.1f} |",
        f"| Envoy RSS, MiB before / after | {rss_before[1] / 1024:.0f} / {rss_after[1] / 1024:.0f} |",
        f"| Envoy RSS per stream, KiB | {per_stream[1]:.1f} |",
    ]
    for name, values in (("before any stream", baseline), ("while opening", ramping), ("while held", holding)):
        rows.append(
            f"| bystander GetTask {name}: p50 / p99 ms ({len(values)} calls) | "
            f"{statistics.median(values) if values else float('nan'):.2f} / {_pct(values, 0.99):.2f} |"
        )
    return "\n".join(rows)
