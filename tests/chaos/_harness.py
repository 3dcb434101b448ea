"""The chaos harness: a ledger outside the mesh, a steady load, faults, and the accounting."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from clients.sdk import Client
from mesh.errors import MeshError
from mesh.supervisor import Supervisor
from mesh.v1 import task_pb2


@dataclass
class Ledger:
    """An external system that records effects. It honours Idempotency-Key (as a payment API
    would) and counts effects per task independently, so a task that reached it under two
    different keys shows up as a duplicated effect."""

    effects_by_task: Counter[str] = field(default_factory=Counter)
    deliveries: Counter[str] = field(default_factory=Counter)
    _applied: set[str] = field(default_factory=set)
    url: str = ""
    # Seconds between applying an effect and answering: a worker lost in between has applied it
    # without acknowledging its step, so the step runs again (and must not apply it twice).
    delay_s: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        task_id = request.headers.get("Tidemesh-Task-Id", "")
        await request.read()
        self.deliveries[key] += 1
        if key not in self._applied:
            self._applied.add(key)
            self.effects_by_task[task_id] += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # the effect is applied; the answer is on its way
        return web.Response(text=f"applied {task_id}")


@contextlib.asynccontextmanager
async def running_ledger(host: str = "127.0.0.1", delay_s: float = 0.0):  # type: ignore[no-untyped-def]
    """The ledger, listening on `host` (a free port) until the block ends."""
    ledger = Ledger(delay_s=delay_s)
    app = web.Application()
    app.router.add_post("/apply", ledger.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ledger.url = f"http://{host}:{port}/apply"
    try:
        yield ledger
    finally:
        await runner.cleanup()


@dataclass
class Row:
    fault: str
    acknowledged: int
    completed: int
    lost: int
    duplicated: int
    recovery_s: float
    # Seconds from the fault until every task acknowledged before it was final (0: not measured).
    settled_s: float = 0.0


async def _steady_load(client: Client, ledger: Ledger, stop: asyncio.Event, acked: list[tuple[str, str]]) -> None:
    """Submit a webhook task (an external effect) every 20 ms, every fifth an embed task instead."""
    index = 0
    while not stop.is_set():
        index += 1
        kind, payload = (
            ("embed", {"text": f"chaos {index}"})
            if index % 5 == 0
            else ("webhook", {"url": ledger.url, "body": f"effect {index}"})
        )
        try:
            submitted = await client.submit(kind, payload, timeout_s=30)
        except MeshError:
            continue  # never acknowledged: not counted
        acked.append((submitted.task_id, kind))
        await asyncio.sleep(0.02)


async def _burst_load(
    client: Client, ledger: Ledger, stop: asyncio.Event, acked: list[tuple[str, str]], callers: int
) -> None:
    """`callers` submitters at once, each submitting webhook tasks back to back: concurrent
    admissions, so the scheduler's group commit writes them in shared batches."""
    counter = itertools.count()

    async def submitter() -> None:
        while not stop.is_set():
            index = next(counter)
            try:
                submitted = await client.submit("webhook", {"url": ledger.url, "body": f"burst {index}"}, timeout_s=30)
            except MeshError:
                continue  # never acknowledged: not counted
            acked.append((submitted.task_id, "webhook"))

    await asyncio.gather(*(submitter() for _ in range(callers)))


async def _recovered(client: Client, since: float, probe_kind: str, timeout_s: float = 60) -> float:
    """Seconds from `since` until a probe task (one that needs the faulted part) completes again."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(5):
                submitted = await client.submit(probe_kind, {"text": "probe"}, priority="interactive", timeout_s=5)
                async for event in client.watch(submitted.task_id):
                    if event.final and event.state == task_pb2.TASK_STATE_SUCCEEDED:
                        return time.monotonic() - since
        except (MeshError, TimeoutError):
            await asyncio.sleep(0.1)
    raise AssertionError(f"the mesh did not recover within {timeout_s}s")


async def _recovered_overlapping(
    client: Client, since: float, probe_kind: str, every_s: float, timeout_s: float = 60
) -> float:
    """Seconds from `since` until a probe task completes again, a probe started every `every_s`
    whether the ones before have answered or not: the figure is not rounded up to a probe's
    timeout (a probe sent to a stream whose leader is gone waits for it)."""
    done: list[float] = []
    finished = asyncio.Event()

    async def probe() -> None:
        with contextlib.suppress(MeshError, TimeoutError):
            async with asyncio.timeout(10):
                submitted = await client.submit(probe_kind, {"text": "probe"}, priority="interactive", timeout_s=10)
                async for event in client.watch(submitted.task_id):
                    if event.final and event.state == task_pb2.TASK_STATE_SUCCEEDED:
                        done.append(time.monotonic())
                        finished.set()

    probes: list[asyncio.Task[None]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not finished.is_set():
            if time.monotonic() > deadline:
                raise AssertionError(f"the mesh did not recover within {timeout_s}s")
            probes.append(asyncio.create_task(probe()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), every_s)
    finally:
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
    return min(done) - since


def kill(supervisor: Supervisor, name: str) -> Callable[[], Awaitable[None]]:
    async def fault() -> None:
        pid = supervisor.children[name].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

    return fault


def fired(marker: Path, timeout_s: float = 30.0) -> Callable[[], Awaitable[None]]:
    """The fault a failpoint injects (`mesh.failpoints`): done once its marker says it fired."""

    async def fault() -> None:
        deadline = time.monotonic() + timeout_s
        while not os.path.exists(marker):  # noqa: ASYNC240 - a stat per 50 ms poll
            if time.monotonic() > deadline:
                raise AssertionError(f"the failpoint never fired ({marker.name}): no batch was committed")
            await asyncio.sleep(0.05)  # waiting for the process under load to reach the failpoint

    return fault


def pause(supervisor: Supervisor, name: str, seconds: float) -> Callable[[], Awaitable[None]]:
    async def fault() -> None:
        pid = supervisor.children[name].pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)  # the fault itself: a worker frozen past its deadline
        finally:
            with contextlib.suppress(ProcessLookupError):  # the supervisor may have replaced it
                os.kill(pid, signal.SIGCONT)

    return fault


async def run_fault(
    name: str,
    fault: Callable[[], Awaitable[None]],
    client: Client,
    ledger: Ledger,
    load_s: float,
    probe_kind: str = "echo",
    callers: int = 0,
    more_clients: Sequence[Client] = (),
    sequential: bool = False,
    probe_every_s: float = 0.0,
    steady_s: float = 1.0,
    after_recovery_s: float = 0.0,
) -> Row:
    """Load for `load_s` seconds with the fault injected after the first second; then account.
    `callers` > 0: a burst of that many concurrent submitters instead of the steady load.
    `more_clients` (other front doors) each carry a steady load of their own beside `client`'s;
    probes and the accounting go through `client`. `sequential`: the fault is over before the
    first probe (a host lost from outside: its clients must not race the loss). `probe_every_s`
    > 0: probes overlap, one started that often (`_recovered_overlapping`). The fault comes after
    `steady_s` of load, which goes on at least `after_recovery_s` past the recovery."""
    acked: list[tuple[str, str]] = []
    stop = asyncio.Event()
    load = asyncio.gather(
        _burst_load(client, ledger, stop, acked, callers) if callers else _steady_load(client, ledger, stop, acked),
        *(_steady_load(other, ledger, stop, acked) for other in more_clients),
    )
    await asyncio.sleep(steady_s)  # steady state before the fault
    injected, injected_wall = time.monotonic(), time.time()
    before = len(acked)
    if sequential:
        await fault()
    fault_task = asyncio.ensure_future(asyncio.sleep(0) if sequential else fault())
    recovery_s = await (
        _recovered_overlapping(client, injected, probe_kind, probe_every_s)
        if probe_every_s
        else _recovered(client, injected, probe_kind)
    )
    await fault_task
    remaining = max(load_s - (time.monotonic() - injected) - steady_s, after_recovery_s)
    if remaining > 0:
        await asyncio.sleep(remaining)  # keep the load running for the planned duration
    stop.set()
    await load
    finals: dict[str, task_pb2.TaskEvent] = {}
    async with asyncio.timeout(120):
        for start in range(0, len(acked), 1000):
            async for event in client.watch_many([task_id for task_id, _ in acked[start : start + 1000]]):
                finals[event.task_id] = event
    completed = sum(1 for e in finals.values() if e.state == task_pb2.TASK_STATE_SUCCEEDED)
    webhook_ids = [task_id for task_id, kind in acked if kind == "webhook"]
    duplicated = sum(1 for task_id in webhook_ids if ledger.effects_by_task[task_id] > 1)
    missing_effects = sum(1 for task_id in webhook_ids if ledger.effects_by_task[task_id] == 0)
    lost = len(acked) - completed + missing_effects
    stamps = [finals[task_id].timestamp for task_id, _ in acked[:before] if task_id in finals]
    earlier = [stamp.seconds + stamp.nanos / 1e9 for stamp in stamps]
    settled_s = max(0.0, max(earlier, default=injected_wall) - injected_wall)
    return Row(name, len(acked), completed, lost, duplicated, recovery_s, settled_s)


def table(rows: list[Row]) -> str:
    lines = [
        "| fault | tasks acknowledged | completed | lost | duplicated effects | recovery time |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.fault} | {r.acknowledged} | {r.completed} | {r.lost} | {r.duplicated} | {r.recovery_s:.2f} s |"
        for r in rows
    ]
    return "\n".join(lines)


async def throughput(clients: Sequence[Client], seconds: float, callers: int, warmup_s: float = 1.0) -> float:
    """Echo tasks completed per second, end to end (submitted and watched to their final event in
    one call), by `callers` concurrent callers spread over `clients`, over `seconds` after a warm-up."""
    completed = 0
    counting = asyncio.Event()
    stop = asyncio.Event()

    async def caller(client: Client) -> None:
        nonlocal completed
        while not stop.is_set():
            try:
                async for event in client.run("echo", {"text": "throughput"}, timeout_s=30):
                    if event.final and event.state == task_pb2.TASK_STATE_SUCCEEDED and counting.is_set():
                        completed += 1
            except MeshError:
                continue

    tasks = [asyncio.create_task(caller(clients[index % len(clients)])) for index in range(callers)]
    try:
        await asyncio.sleep(warmup_s)  # the load itself: callers reach a steady state first
        counting.set()
        started = time.monotonic()
        await asyncio.sleep(seconds)  # the measured interval
        counted, elapsed = completed, time.monotonic() - started
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return counted / elapsed
