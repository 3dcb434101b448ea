"""Streaming gateway figures: events/s delivered to 100 concurrent subscribers per protocol
through Envoy, and the latency the Envoy hop adds.

- delivery: one finished `stream` task with `chunks` partial events is replayed by `subscribers`
  concurrent watchers at once (gRPC server streaming, SSE, WebSocket), all through Envoy's one
  public port; events/s = events received by all of them / wall time.
- Envoy hop: p50 of sequential GetTask calls (a finished 3-event echo task) through Envoy minus
  the same call straight to the gateway's gRPC port.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench._trust import public_channel
from clients.sdk import Client
from mesh.security import Transport
from mesh.supervisor import Supervisor, build_plan
from mesh.v1 import gateway_pb2, gateway_pb2_grpc


async def _grpc_subscriber(endpoint: str, task_id: str) -> int:
    async with Client(endpoint) as client:
        return len([e async for e in client.watch(task_id)])


async def _sse_subscriber(session: aiohttp.ClientSession, endpoint: str, task_id: str) -> int:
    async with session.get(f"https://{endpoint}/v1/tasks/{task_id}/events") as response:
        body = await response.text()
    return body.count("event: task")


async def _ws_subscriber(session: aiohttp.ClientSession, endpoint: str, task_id: str) -> int:
    count = 0
    async with session.ws_connect(f"wss://{endpoint}/v1/ws") as ws:
        await ws.send_json({"op": "subscribe", "task_id": task_id})
        async for frame in ws:
            message = json.loads(frame.data)
            if message["type"] == "event":
                count += 1
                if message["event"].get("final"):
                    break
    return count


async def _delivery(endpoint: str, task_id: str, subscribers: int) -> dict[str, float]:
    rates = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        protocols = {
            "gRPC": lambda: _grpc_subscriber(endpoint, task_id),
            "SSE": lambda: _sse_subscriber(session, endpoint, task_id),
            "WebSocket": lambda: _ws_subscriber(session, endpoint, task_id),
        }
        for name, subscribe in protocols.items():
            started = time.perf_counter()
            counts = await asyncio.gather(*(subscribe() for _ in range(subscribers)))
            elapsed = time.perf_counter() - started
            if len(set(counts)) != 1:
                raise AssertionError(f"{name}: subscribers saw different streams: {sorted(set(counts))}")
            rates[name] = sum(counts) / elapsed
    return rates


async def _get_p50_ms(endpoint: str, task_id: str, calls: int, as_envoy: Transport | None = None) -> float:
    """GetTask p50 through Envoy, or (`as_envoy`) straight to the gateway with Envoy's leaf."""
    async with as_envoy.channel(endpoint) if as_envoy else public_channel(endpoint) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        request = gateway_pb2.GetTaskRequest(task_id=task_id)
        await stub.GetTask(request)
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            await stub.GetTask(request)
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _spread(values: list[float], fmt: str = "{:.0f}") -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


async def run(runs: int = 3, subscribers: int = 100, chunks: int = 200, calls: int = 300) -> str:
    rows: dict[str, list[float]] = {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="tidemesh-bench-") as state:
            plan = build_plan(Path(state), public_port=0, workers=1)
            async with Supervisor(plan):
                endpoint = f"127.0.0.1:{plan.public_port}"
                async with Client(endpoint, tenant="bench") as client:
                    words = " ".join(f"w{i}" for i in range(chunks))
                    task = await client.submit("stream", {"text": words, "chunks": chunks, "chunk_delay_ms": 0})
                    events = len([e async for e in client.watch(task.task_id)])
                    small = await client.submit("echo", {"text": "hop"})
                    [e async for e in client.watch(small.task_id)]
                for name, rate in (await _delivery(endpoint, task.task_id, subscribers)).items():
                    rows.setdefault(name, []).append(rate)
                via_envoy = await _get_p50_ms(endpoint, small.task_id, calls)
                direct = await _get_p50_ms(
                    plan.by_name("gateway").address,
                    small.task_id,
                    calls,
                    Transport.of(plan.ca_path and Path(plan.ca_path).parent, "envoy"),
                )
                rows.setdefault("envoy", []).append(via_envoy)
                rows.setdefault("direct", []).append(direct)
    lines = [
        f"Runs: {runs}; each cell is min / median / max over runs. One finished task of {events} events, replayed "
        f"by {subscribers} concurrent subscribers per protocol through Envoy.",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    for name in ("gRPC", "SSE", "WebSocket"):
        lines.append(f"| events/s delivered to {subscribers} subscribers, {name} | {_spread(rows[name])} |")
    hop = [e - d for e, d in zip(rows["envoy"], rows["direct"], strict=True)]
    lines += [
        f"| GetTask p50 through Envoy, ms ({calls} calls, 3-event task) | {_spread(rows['envoy'], '{:.2f}')} |",
        f"| GetTask p50 straight to the gateway, ms | {_spread(rows['direct'], '{:.2f}')} |",
        f"| latency the Envoy hop adds (p50 difference), ms | {_spread(hop, '{:.2f}')} |",
    ]
    return "\n".join(lines)
