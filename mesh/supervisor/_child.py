"""One supervised child process: start, health-wait, restart with backoff, stop.

Once healthy, a child is watched (`Child.watch`): one that stops answering its health check is
killed for a restart, and so is one whose resident memory passes its cap (`ProcessSpec.memory_cap_mb`:
the process and every process it started, read from /proc) or whose GPU memory passes its GPU cap
(`ProcessSpec.gpu_memory_cap_mb`, the same tree, from NVML: `_gpu`) — SIGKILL at once, as the
kernel's OOM killer would, since a grace period would let it grow on. The restarted process learns
why from ``TIDEMESH_RESTART_REASON`` (JSON: ``reason`` — ``exited``, ``unresponsive``,
``memory_cap`` or ``gpu_memory_cap`` — and the figures), so it can announce it (workers raise an
alert, see `services.worker`). A CPU cap (`ProcessSpec.cpus`) throttles rather than kills: the child
is put in its own cgroup right after each spawn (`_cpu`), and the group goes when the child stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mesh.runtime import RESTART_REASON_ENV
from mesh.supervisor._binaries import guarded
from mesh.supervisor._cpu import CpuLimiter
from mesh.supervisor._gpu import GpuMemory, framework_env
from mesh.supervisor._plan import ProcessSpec
from mesh.supervisor._probe import Probe
from mesh.telemetry import get_logger

log = get_logger(__name__)


def _kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of a child's process group (its own session: pgid == its pid),
    so grandchildren it did not stop — or could not, having been killed — do not outlive it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


_PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1 << 20


def process_tree(pid: int, proc: Path = Path("/proc")) -> set[int]:
    """`pid` and every process below it that is alive (empty for one that is gone)."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        try:
            children = [
                int(c)
                for task in (proc / str(current) / "task").iterdir()
                for c in (task / "children").read_text().split()
            ]
        except (OSError, ValueError):
            continue  # exited while being read
        found.add(current)
        pending.extend(children)
    return found


def resident_bytes(pid: int, proc: Path = Path("/proc")) -> int:
    """Resident memory of `pid` and of every process below it (0 for one that is gone)."""
    return _resident(process_tree(pid, proc), proc)


def _resident(pids: set[int], proc: Path = Path("/proc")) -> int:
    total = 0
    for current in pids:
        try:
            total += int((proc / str(current) / "statm").read_text().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue  # exited while being read
    return total


class ChildState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPED = "stopped"


class Child:
    def __init__(
        self,
        spec: ProcessSpec,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cpu: CpuLimiter | None = None,
        gpu: GpuMemory | None = None,
    ) -> None:
        """`env`: what the whole mesh's processes start with, under the process's own `spec.env`;
        `cpu` enforces `spec.cpus` and `gpu` reads what `spec.gpu_memory_cap_mb` caps (the
        supervisor's, opened once for the mesh, or given later with `bind`; a cap without one is
        refused at `start`)."""
        self.spec = spec
        self.state = ChildState.NEW
        self.restarts = 0
        self.process: asyncio.subprocess.Process | None = None
        self._log_path = log_dir / f"{spec.name}.log"
        self.killed_after_grace = False  # the last stop needed SIGKILL (graceful stop is a bug otherwise)
        self._state_dir = log_dir.parent  # <state>/logs: probes use <state>/pki and <state>/nats
        self._env = {**os.environ, **(env or {}), **spec.env}
        self._cpu = cpu
        self._gpu = gpu
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None
        self._liveness: asyncio.Task[None] | None = None
        self.unresponsive_kills = 0
        self.memory_kills = 0
        self.gpu_memory_kills = 0
        self.peak_rss_bytes = 0  # the largest resident size seen by the memory watch
        self.peak_gpu_bytes = 0  # the largest GPU memory seen by the GPU-memory watch
        self._memory: asyncio.Task[None] | None = None
        self._restart_reason: dict[str, Any] = {}  # why the process was last killed, for its successor
        self._restarted = asyncio.Event()

    def bind(self, cpu: CpuLimiter | None = None, gpu: GpuMemory | None = None) -> None:
        """Give the child the mesh's CPU limiter and GPU reader (before `start`)."""
        self._cpu = cpu or self._cpu
        self._gpu = gpu or self._gpu

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self) -> None:
        if self.state is not ChildState.NEW:
            raise RuntimeError(f"{self.spec.name} was already started")
        if self.spec.cpus and self._cpu is None:
            raise ValueError(f"{self.spec.name}: a CPU cap needs a CpuLimiter (the Supervisor opens one)")
        if self.spec.gpu_memory_cap_mb and self._gpu is None:
            raise ValueError(f"{self.spec.name}: a GPU-memory cap needs a GpuMemory reader (the Supervisor opens one)")
        await self._spawn()
        self._watch = asyncio.create_task(self._supervise())

    async def _spawn(self, reason: dict[str, Any] | None = None) -> None:
        log_file = self._log_path.open("ab")
        env = {**self._env, RESTART_REASON_ENV: json.dumps(reason)} if reason else dict(self._env)
        if self.spec.gpu_memory_cap_mb and self._gpu is not None:  # the frameworks that take a limit
            env |= framework_env(self.spec.gpu_memory_cap_mb, self._gpu.smallest_device_bytes(), env)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *guarded(self.spec.command),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                # Own session: a terminal's Ctrl-C reaches only the supervisor, which then
                # stops children in order (a second signal would make them exit at once).
                start_new_session=True,
            )
        finally:
            log_file.close()
        self.state = ChildState.RUNNING
        if self.spec.cpus and self._cpu is not None:
            self._limit_cpu(self.process.pid, first=reason is None)

    def _limit_cpu(self, pid: int, first: bool) -> None:
        """Into its CPU group at once (it is still starting; what it spawns later is born inside).
        A first start that cannot be capped fails; a restart runs on, and says so."""
        assert self._cpu is not None
        try:
            self._cpu.limit(self.spec.name, pid, self.spec.cpus)
        except OSError as exc:
            if first:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                raise RuntimeError(f"{self.spec.name}: its CPU cap ({self._cpu.kind}) could not be set: {exc}") from exc
            log.error(
                "CPU cap not set on a restarted child: it runs uncapped",
                extra={"child": self.spec.name, "limiter": self._cpu.kind, "error": str(exc)},
            )

    async def _supervise(self) -> None:
        """Restart on unexpected exit: backoff 0.25 s doubling to 10 s, reset after 30 s of uptime."""
        backoff_s = 0.25
        while True:
            assert self.process is not None
            started = time.monotonic()
            code = await self.process.wait()
            _kill_group(self.process.pid)  # what it started (e.g. Triton's backend stubs) goes with it
            if self._stopping:
                return
            if time.monotonic() - started > 30:
                backoff_s = 0.25
            reason = {"reason": "exited", **self._restart_reason, "exit_code": code, "at": time.time()}
            self._restart_reason = {}
            log.warning(
                "child exited; restarting",
                extra={"child": self.spec.name, "exit_code": code, "backoff_s": backoff_s, "why": reason["reason"]},
            )
            self.state = ChildState.BACKOFF
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 10.0)
            if self._stopping:
                return
            await self._spawn(reason)
            self.restarts += 1
            self._restarted.set()

    async def wait_healthy(self, timeout_s: float = 60.0) -> float:
        """Poll the health probe until it passes; returns seconds waited."""
        started = time.monotonic()
        delay = 0.02
        async with Probe(self.spec.health, self._state_dir, timeout_s=2.0) as probe:
            while True:
                if await probe.check():
                    return time.monotonic() - started
                if time.monotonic() - started > timeout_s:
                    raise TimeoutError(
                        f"{self.spec.name} not healthy after {timeout_s:.0f}s "
                        f"({self.spec.health.url}); see {self._log_path}"
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.25)

    def watch(self, every_s: float = 1.0, failures: int = 5, memory_every_s: float = 0.25) -> None:
        """Auto-heal, once healthy: a child that stops answering its health check `failures`
        times in a row while its process is alive (a hung event loop, SIGSTOP, a deadlock) is
        killed, and the supervision loop restarts it; with a memory or GPU-memory cap, so is one whose
        resident memory or GPU memory passes it (read every `memory_every_s`)."""
        self._liveness = asyncio.create_task(self._check_liveness(every_s, failures))
        gpu_watched = self.spec.gpu_memory_cap_mb and self._gpu is not None and self._gpu.available
        if self.spec.memory_cap_mb or gpu_watched:
            self._memory = asyncio.create_task(self._check_memory(memory_every_s))

    def _kill_for_restart(self, reason: dict[str, Any]) -> bool:
        process = self.process
        if process is None or process.returncode is not None:
            return False
        self._restart_reason = reason
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        return True

    async def _check_memory(self, every_s: float) -> None:
        cap = self.spec.memory_cap_mb * MIB
        gpu_cap = self.spec.gpu_memory_cap_mb * MIB
        gpu = self._gpu if gpu_cap and self._gpu is not None and self._gpu.available else None
        while not self._stopping:
            await asyncio.sleep(every_s)
            process = self.process
            if process is None or process.returncode is not None:
                continue
            tree = process_tree(process.pid)
            if cap:
                rss = _resident(tree)
                self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
                if rss > cap:
                    figures = {"rss_mb": round(rss / MIB, 1), "cap_mb": self.spec.memory_cap_mb}
                    log.warning(
                        "child over its memory cap: killing it for a restart",
                        extra={"child": self.spec.name, **figures},
                    )
                    if self._kill_for_restart({"reason": "memory_cap", **figures}):
                        self.memory_kills += 1
                    continue
            if gpu is not None:
                used = await asyncio.to_thread(gpu.used_bytes, tree)  # a driver call: off the loop
                self.peak_gpu_bytes = max(self.peak_gpu_bytes, used)
                if used > gpu_cap:
                    figures = {"gpu_mb": round(used / MIB, 1), "cap_mb": self.spec.gpu_memory_cap_mb}
                    log.warning(
                        "child over its GPU-memory cap: killing it for a restart",
                        extra={"child": self.spec.name, **figures},
                    )
                    if self._kill_for_restart({"reason": "gpu_memory_cap", **figures}):
                        self.gpu_memory_kills += 1

    async def _check_liveness(self, every_s: float, failures: int) -> None:
        missed = 0
        # Misses count only against a life that has answered: a restarted one (after it exited, was
        # killed or was found unresponsive) gets its start-up time, however long its model takes.
        answered = self.pid  # watched once healthy
        async with Probe(self.spec.health, self._state_dir, timeout_s=every_s) as probe:
            while not self._stopping:
                await asyncio.sleep(every_s)
                pid = self.pid
                healthy = await probe.check()
                if healthy:
                    missed = 0
                    if self.pid == pid:
                        answered = pid
                    continue
                process = self.process
                if process is None or process.pid != answered:
                    missed = 0
                    continue
                missed += 1
                if missed >= failures and process.returncode is None:
                    log.warning("child unresponsive: killing it for a restart", extra={"child": self.spec.name})
                    if self._kill_for_restart({"reason": "unresponsive", "missed_checks": missed}):
                        self.unresponsive_kills += 1
                    missed = 0

    async def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s` (or the process's own `stop_grace_s`, when
        longer). Idempotent."""
        self._stopping = True
        grace_s = max(grace_s, self.spec.stop_grace_s)
        for task in (self._watch, self._liveness, self._memory):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except TimeoutError:
                log.warning("child did not stop within its grace: killing it", extra={"child": self.spec.name})
                self.killed_after_grace = True
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process is not None:
            _kill_group(process.pid)
        if self.spec.cpus and self._cpu is not None:
            # What escaped its process group is killed with it; the kernel may take a moment to let go.
            await asyncio.to_thread(self._cpu.release, self.spec.name)
        self.state = ChildState.STOPPED

    def signal(self, signum: int) -> None:
        """Send `signum` to the running process (nothing if it is not running)."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    def kill_now(self) -> None:
        """Second-signal path: no grace."""
        self._stopping = True
        if self.process is not None:
            if self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
            _kill_group(self.process.pid)
