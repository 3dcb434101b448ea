"""The clients of the multi-host test, run inside a namespace of their own (`tests.chaos._netns`):
``ip netns exec NS python -m tests.chaos._hostclient --listen ADDRESS --ca CA --credential-file KEY``.

It holds the ledger (the idempotent endpoint the webhook tasks call, listening on ADDRESS) and
the load, and answers the test over stdin/stdout, one JSON object a line. Each request is
``{"do": …}``; each answer ``{"ok": …}`` or ``{"error": …}``; while losing a host it asks the test
to do it (``{"event": "lose"}``) and goes on once told it is done (``{"do": "lost"}``).

- ``{"do": "throughput", "targets": [HOST:PORT, …], "seconds": S, "callers": N}`` → echo tasks/s;
- ``{"do": "spread", "nats": URL, "nats_user": FILE}`` → every stream's and bucket's nodes;
- ``{"do": "lose", "targets": […], "load_s": S}`` → a chaos row (steady webhook load through each
  target, the host lost after 3 s, the probe's recovery, the accounting: lost, duplicated) and how
  many effects reached the ledger twice;
- ``{"do": "rejoined", "target": HOST:PORT, "node": NAME, "nats": URL, "nats_user": FILE}`` →
  seconds until the node is current in every stream and bucket and a task through the target
  succeeds;
- ``{"do": "quit"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from clients.sdk import Client
from mesh.fabric import connect
from mesh.fabric._topology import TOPOLOGY_BUCKETS, TOPOLOGY_STREAMS
from mesh.telemetry import quiet_ssl_eof_noise
from mesh.v1 import task_pb2
from tests.chaos._harness import run_fault, running_ledger, throughput

STREAMS = (*TOPOLOGY_STREAMS, *(f"KV_{bucket}" for bucket in TOPOLOGY_BUCKETS))


def say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


class Clients:
    def __init__(self, ca: str, credential: str) -> None:
        self._ca, self._credential = ca, credential
        self._open: dict[str, Client] = {}
        self._stack = contextlib.AsyncExitStack()

    async def of(self, target: str) -> Client:
        if target not in self._open:
            client = Client(target, tenant="chaos", credential=self._credential, ca=self._ca)
            self._open[target] = await self._stack.enter_async_context(client)
        return self._open[target]

    async def close(self) -> None:
        await self._stack.aclose()


async def _nodes(request: dict[str, Any], ca: str) -> Any:
    return await connect(
        request["nats"],
        "tidemesh-hostclient",
        tls=ssl.create_default_context(cafile=ca),
        user_file=request["nats_user"],
    )


async def spread(request: dict[str, Any], ca: str) -> dict[str, list[str]]:
    """Each stream's (and bucket's) nodes: its leader first, then the replicas that are current."""
    nc = await _nodes(request, ca)
    try:
        js = nc.jetstream(timeout=5.0)
        found = {}
        for stream in STREAMS:
            cluster = (await js.stream_info(stream)).cluster
            assert cluster is not None, stream
            current = [peer.name for peer in cluster.replicas or [] if peer.current and not peer.offline]
            found[stream] = [cluster.leader or "", *current]
        return found
    finally:
        await nc.close()


async def rejoined(request: dict[str, Any], ca: str, clients: Clients, timeout_s: float = 60.0) -> float:
    """Seconds until `node` leads or is a current replica of every stream and bucket, and an echo
    task through `target` (the host's own front door) succeeds."""
    started = time.monotonic()
    deadline = started + timeout_s
    node = request["node"]
    lagging: list[str] = list(STREAMS)
    while lagging:
        with contextlib.suppress(Exception):  # the cluster may still be settling
            nodes = await spread(request, ca)
            lagging = [stream for stream, held in nodes.items() if node not in held]
        if not lagging:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{node} is not current in {lagging} after {timeout_s}s")
        await asyncio.sleep(0.2)  # polling the cluster's view of the node
    client = await clients.of(request["target"])
    while True:
        try:
            async with asyncio.timeout(10):
                async for event in client.run("echo", {"text": "rejoined"}, priority="interactive", timeout_s=10):
                    if event.final:
                        assert event.state == task_pb2.TASK_STATE_SUCCEEDED, event
                        return time.monotonic() - started
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)  # the host's front door is still connecting


async def main(args: argparse.Namespace, credential: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def request() -> dict[str, Any]:
        line = await reader.readline()
        if not line:
            return {"do": "quit"}
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    clients = Clients(args.ca, credential)
    # Effects answered 0.3 s after they are applied: some are in flight on the host when it is lost.
    async with running_ledger(args.listen, delay_s=0.3) as ledger:
        say({"ok": {"ledger": ledger.url}})
        try:
            while (command := await request())["do"] != "quit":
                try:
                    answer: Any
                    if command["do"] == "throughput":
                        targets = [await clients.of(target) for target in command["targets"]]
                        answer = await throughput(targets, command["seconds"], command["callers"])
                    elif command["do"] == "spread":
                        answer = await spread(command, args.ca)
                    elif command["do"] == "lose":

                        async def fault() -> None:
                            say({"event": "lose"})
                            told = await request()
                            assert told["do"] == "lost", told

                        first, *more = [await clients.of(target) for target in command["targets"]]
                        for client in (first, *more):  # the probe's lane is warm: recovery is the host's
                            async for _ in client.run("echo", {"text": "warm"}, priority="interactive"):
                                pass
                        row = await run_fault(
                            "lose a host",
                            fault,
                            first,
                            ledger,
                            command["load_s"],
                            more_clients=more,
                            sequential=True,
                            probe_every_s=0.25,
                            steady_s=3.0,
                            after_recovery_s=3.0,
                        )
                        # effects that reached the ledger twice: a step run again after its host was lost
                        twice = sum(1 for count in ledger.deliveries.values() if count > 1)
                        answer = {"row": dataclasses.asdict(row), "delivered_twice": twice}
                    elif command["do"] == "rejoined":
                        answer = await rejoined(command, args.ca, clients)
                    else:
                        raise ValueError(f"unknown request {command['do']!r}")
                    say({"ok": answer})
                except Exception as exc:  # the test shows it and fails
                    say({"error": f"{type(exc).__name__}: {exc}"})
        finally:
            await clients.close()


if __name__ == "__main__":
    quiet_ssl_eof_noise()
    logging.getLogger("mesh").setLevel(logging.ERROR)  # reconnects are expected: the test loses a host
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True, help="the ledger's address (this namespace's)")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--credential-file", required=True)
    parsed = parser.parse_args()
    asyncio.run(main(parsed, Path(parsed.credential_file).read_text().strip()))
