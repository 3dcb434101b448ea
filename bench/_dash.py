"""The dashboard's own cost: CPU used by `tidemesh dash` while it follows a busy mesh.

One mesh; a load of echo tasks submitted by several tenants at a steady rate (so queues, tenants,
the task list and the status stream all move), and `tidemesh dash` running in a real terminal
(a tmux pane, 160x48) against it: at the default redraw cap (10/s), at the maximum (60/s), and in
accessible mode. For each, the dashboard process's CPU seconds (user + system, from /proc) over a
fixed wall-clock window, as a share of one core, beside the mesh's own CPU over the same window.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan

TIDEMESH = str(Path(sys.executable).parent / "tidemesh")
TENANTS = ("acme", "globex", "initech", "umbrella")
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def _load(endpoint: str, rate: float, stop: asyncio.Event) -> int:
    """Submit echo tasks at `rate` per second, round-robin over the tenants, until `stop`."""
    clients = [Client(endpoint, tenant=tenant) for tenant in TENANTS]
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        sent, started = 0, time.perf_counter()
        while not stop.is_set():
            due = int((time.perf_counter() - started) * rate)
            await asyncio.gather(
                *(clients[i % len(clients)].submit("echo", {"text": f"load {i}"}) for i in range(sent, due))
            )
            sent = due
            await asyncio.sleep(0.02)
    return sent


@contextlib.asynccontextmanager
async def _dashboard(endpoint: str, state_dir: str, *flags: str) -> AsyncIterator[int]:
    """`tidemesh dash FLAGS` in its own tmux server; yields the dashboard's pid."""
    command = [TIDEMESH, "dash", "--endpoint", endpoint, "--state-dir", state_dir, *flags]
    async with _tmux(command) as tmux:
        yield await tmux.pane_pid()


class _Tmux:
    def __init__(self, socket: str) -> None:
        self._tmux = ["tmux", "-L", socket]

    async def __call__(self, *args: str) -> str:
        env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
        done = await asyncio.to_thread(subprocess.run, [*self._tmux, *args], capture_output=True, text=True, env=env)
        return done.stdout

    async def pane_pid(self) -> int:
        pid = int(await self("display", "-p", "#{pane_pid}"))
        deadline = time.monotonic() + 30
        while "tidemesh dash" not in await self("capture-pane", "-p"):
            if time.monotonic() > deadline:
                raise RuntimeError("the dashboard did not draw within 30 s")
            await asyncio.sleep(0.2)
        return pid


@contextlib.asynccontextmanager
async def _tmux(command: list[str]) -> AsyncIterator[_Tmux]:
    """A tmux server of its own running `command` in a 160x48 pane; killed on the way out."""
    tmux = _Tmux(f"tidemesh-bench-{os.getpid()}")
    await tmux("new-session", "-d", "-x", "160", "-y", "48", *command)
    try:
        yield tmux
    finally:
        await tmux("kill-server")


async def _measure(
    endpoint: str, state_dir: str, supervisor: Supervisor, flags: tuple[str, ...], window_s: float
) -> tuple[float, float]:
    """(dashboard CPU share of one core, mesh CPU share) over `window_s` of load."""
    async with _dashboard(endpoint, state_dir, *flags) as pid:
        await asyncio.sleep(2.0)  # past its first fetches: the steady state is what is measured
        mesh = [pid for pid in supervisor.pids().values() if pid]
        dash_before, mesh_before = _cpu_s(pid), sum(_cpu_s(p) for p in mesh)
        started = time.perf_counter()
        await asyncio.sleep(window_s)
        elapsed = time.perf_counter() - started
        return (_cpu_s(pid) - dash_before) / elapsed, (sum(_cpu_s(p) for p in mesh) - mesh_before) / elapsed


async def run(window_s: float = 15.0, rate: float = 200.0) -> str:
    if shutil.which("tmux") is None:
        return "tmux is not installed: the dashboard bench needs a terminal to draw in.\n"
    modes = {
        "default (10 redraws/s)": (),
        "--fps 60": ("--fps", "60"),
        "--accessible": ("--accessible",),
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-dash-") as tmp:
        plan = build_plan(Path(tmp), public_port=0, workers=1, tenant_limit=(0.0, 0.0))
        async with Supervisor(plan) as supervisor:
            endpoint = f"127.0.0.1:{plan.public_port}"
            stop = asyncio.Event()
            load = asyncio.create_task(_load(endpoint, rate, stop))
            try:
                for name, flags in modes.items():
                    dash, mesh = await _measure(endpoint, plan.state_dir, supervisor, flags, window_s)
                    rows.append(f"| {name} | {dash:.1%} | {mesh:.0%} |")
            finally:
                stop.set()
                sent = await load
    lines = [
        f"Load: echo tasks at {rate:.0f}/s over {len(TENANTS)} tenants ({sent} submitted in all); each mode "
        f"measured over {window_s:.0f} s after a 2 s warm-up, in a 160x48 tmux pane.",
        "",
        "| dashboard mode | dashboard CPU (share of one core) | mesh CPU (all processes, cores) |",
        "|---|---:|---:|",
        *rows,
        "",
        "The status stream sends at most one reading a second (WatchMeshStatus' default) and the task list is",
        "re-read at most every 2 s, so the redraw cap binds only in bursts: --fps 60 costs about what 10 does.",
    ]
    return "\n".join(lines)
