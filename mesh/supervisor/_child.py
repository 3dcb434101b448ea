"""One supervised child process: start, health-wait, restart with backoff, stop."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
import time
from pathlib import Path

from mesh.supervisor._binaries import guarded
from mesh.supervisor._plan import ProcessSpec
from mesh.supervisor._probe import Probe
from mesh.telemetry import get_logger

log = get_logger(__name__)


def _kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of a child's process group (its own session: pgid == its pid),
    so grandchildren it did not stop — or could not, having been killed — do not outlive it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class ChildState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPED = "stopped"


class Child:
    def __init__(self, spec: ProcessSpec, log_dir: Path) -> None:
        self.spec = spec
        self.state = ChildState.NEW
        self.restarts = 0
        self.process: asyncio.subprocess.Process | None = None
        self._log_path = log_dir / f"{spec.name}.log"
        self.killed_after_grace = False  # the last stop needed SIGKILL (graceful stop is a bug otherwise)
        self._state_dir = log_dir.parent  # <state>/logs: probes use <state>/pki and <state>/nats
        self._env = {**os.environ, **spec.env}
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None
        self._liveness: asyncio.Task[None] | None = None
        self.unresponsive_kills = 0
        self._restarted = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self) -> None:
        if self.state is not ChildState.NEW:
            raise RuntimeError(f"{self.spec.name} was already started")
        await self._spawn()
        self._watch = asyncio.create_task(self._supervise())

    async def _spawn(self) -> None:
        log_file = self._log_path.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *guarded(self.spec.command),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env=self._env,
                # Own session: a terminal's Ctrl-C reaches only the supervisor, which then
                # stops children in order (a second signal would make them exit at once).
                start_new_session=True,
            )
        finally:
            log_file.close()
        self.state = ChildState.RUNNING

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
            log.warning(
                "child exited; restarting",
                extra={"child": self.spec.name, "exit_code": code, "backoff_s": backoff_s},
            )
            self.state = ChildState.BACKOFF
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 10.0)
            if self._stopping:
                return
            await self._spawn()
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

    def watch_liveness(self, every_s: float = 1.0, failures: int = 5) -> None:
        """Auto-heal: once healthy, a child that stops answering its health check `failures`
        times in a row while its process is alive (a hung event loop, SIGSTOP, a deadlock) is
        killed, and the supervision loop restarts it."""
        self._liveness = asyncio.create_task(self._check_liveness(every_s, failures))

    async def _check_liveness(self, every_s: float, failures: int) -> None:
        missed = 0
        armed = True  # count only after a success, so a restarting child gets its start-up time
        async with Probe(self.spec.health, self._state_dir, timeout_s=every_s) as probe:
            while not self._stopping:
                await asyncio.sleep(every_s)
                healthy = await probe.check()
                if healthy:
                    missed, armed = 0, True
                    continue
                missed += 1
                process = self.process
                if armed and missed >= failures and process is not None and process.returncode is None:
                    log.warning("child unresponsive: killing it for a restart", extra={"child": self.spec.name})
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    self.unresponsive_kills += 1
                    missed, armed = 0, False

    async def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s`. Idempotent."""
        self._stopping = True
        for task in (self._watch, self._liveness):
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
