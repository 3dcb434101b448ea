"""Supervisor: boots a Plan in dependency order, keeps it running, tears it down."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

from mesh.edge import write_sds
from mesh.supervisor._child import Child
from mesh.supervisor._cpu import CpuLimiter, open_cpu_limiter
from mesh.supervisor._gpu import GpuMemory
from mesh.supervisor._limits import raise_open_files_limit
from mesh.supervisor._plan import Plan, ProcessSpec
from mesh.supervisor._security import LeafRenewer, MeshSecurity
from mesh.telemetry import get_logger

log = get_logger(__name__)


class Supervisor:
    """`async with Supervisor(plan) as sup:` — everything is up and healthy inside the block."""

    def __init__(
        self,
        plan: Plan,
        health_timeout_s: float = 90.0,
        grace_s: float = 10.0,
        on_healthy: Callable[[str, float], None] | None = None,
        liveness: tuple[float, int] = (1.0, 5),
    ) -> None:
        """`on_healthy(name, seconds)` hears of each process as it turns healthy during boot;
        `liveness` is (seconds between health checks, failures in a row) before a child that is
        alive but unresponsive is killed for a restart (see `Child.watch`)."""
        self.plan = plan
        self.on_healthy = on_healthy
        self.children = {spec.name: Child(spec, Path(plan.state_dir) / "logs", plan.env) for spec in plan.processes}
        self._health_timeout_s = health_timeout_s
        self._grace_s = grace_s
        self._liveness = liveness
        self.boot_seconds = 0.0
        self._closed = False
        # Opened at entry when some worker has a CPU or GPU-memory cap (scaled-out ones included).
        self.cpu: CpuLimiter | None = None
        self.gpu: GpuMemory | None = None
        # Leaves are renewed while the mesh runs (Envoy's SDS files swapped after its own).
        self.renewer = (
            LeafRenewer(MeshSecurity(Path(plan.state_dir)), after_renewal=self._after_renewal) if plan.secure else None
        )

    def _after_renewal(self, component: str) -> None:
        """Hand a renewed leaf to the processes that do not watch their files themselves."""
        if component == "envoy":  # Envoy follows its SDS files: swap them in
            security = MeshSecurity(Path(self.plan.state_dir))
            write_sds(security.pki_dir / "envoy-sds", security.leaf("envoy"))
        elif component == "nats":  # nats-server reloads its config (and TLS files) on SIGHUP
            for child in self.children.values():
                if child.spec.name == "nats" or child.spec.name.startswith("nats-"):
                    child.signal(signal.SIGHUP)
        elif component == "triton" and "triton" in self.children:
            # Triton reads its pair only at start: a graceful restart (in-flight requests get
            # --exit-timeout-secs); meanwhile the inference service falls back to its CPU model.
            self.children["triton"].signal(signal.SIGTERM)

    async def __aenter__(self) -> Supervisor:
        state = Path(self.plan.state_dir)
        (state / "logs").mkdir(parents=True, exist_ok=True)
        (state / "plan.json").write_text(json.dumps(self.plan.to_json(), indent=2))
        raise_open_files_limit()  # before any child starts: they inherit it
        started = time.monotonic()
        try:
            self._open_caps()
            await self._boot()
        except BaseException:
            await self.shutdown()
            raise
        self.boot_seconds = time.monotonic() - started
        if self.renewer is not None:
            self.renewer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    def _open_caps(self) -> None:
        """The CPU limiter (its cgroups made, stale ones swept) and the GPU reader the caps need."""
        self.open_caps(self.plan)
        for child in self.children.values():
            child.bind(self.cpu, self.gpu)

    def open_caps(self, plan: Plan) -> None:
        """Open what `plan`'s caps need and is not open yet (a change applied may bring caps)."""
        specs = plan.processes
        if self.cpu is None and (plan.cpu_caps or any(spec.cpus for spec in specs)):
            self.cpu = open_cpu_limiter()
        if self.gpu is None and (plan.gpu_memory_caps_mb or any(spec.gpu_memory_cap_mb for spec in specs)):
            self.gpu = GpuMemory()
            if not self.gpu.available:
                log.warning("GPU-memory caps are not read here", extra={"note": self.gpu.note})

    def caps_notes(self) -> list[str]:
        """How the caps act on this host, one line each (what `tidemesh up` prints)."""
        notes = []
        if self.cpu is not None:
            notes.append(f"CPU caps: {self.cpu.note}")
        if self.gpu is not None:
            notes.append(f"GPU-memory caps: {self.gpu.note}")
        return notes

    async def _boot(self) -> None:
        """Start each process once its dependencies are healthy; independent ones in parallel."""
        healthy: dict[str, asyncio.Task[float]] = {}

        async def bring_up(child: Child) -> float:
            for dependency in child.spec.depends_on:
                await healthy[dependency]
            await child.start()
            waited = await child.wait_healthy(self._health_timeout_s)
            self.watch(child)
            if self.on_healthy is not None:
                self.on_healthy(child.spec.name, waited)
            return waited

        for child in self.children.values():
            healthy[child.spec.name] = asyncio.create_task(bring_up(child))
        try:
            await asyncio.gather(*healthy.values())
        except BaseException:
            for task in healthy.values():
                task.cancel()
            await asyncio.gather(*healthy.values(), return_exceptions=True)
            raise

    async def shutdown(self) -> None:
        """Stop in reverse dependency order: the front door first, the broker last."""
        if self._closed:
            return
        self._closed = True
        if self.renewer is not None:
            await self.renewer.stop()
        order = list(self.children.values())[::-1]
        front = [c for c in order if c.spec.name == "envoy" or c.spec.name.startswith("gateway")]
        broker = [c for c in order if c.spec.name == "nats" or c.spec.name.startswith("nats-")]
        middle = [c for c in order if c not in front and c not in broker]
        for group in (front, middle, broker):
            await asyncio.gather(*(child.stop(self._grace_s) for child in group))
        if self.cpu is not None:
            self.cpu.close()  # the mesh's cgroup goes with its last child
        if self.gpu is not None:
            self.gpu.close()

    async def add(self, spec: ProcessSpec) -> Child:
        """Start one more supervised child (e.g. a worker when scaling out) and wait until healthy."""
        if spec.name in self.children:
            raise ValueError(f"a child named {spec.name!r} exists")
        child = await self.spawn(spec)
        await child.wait_healthy(self._health_timeout_s)
        self.watch(child)
        return child

    async def spawn(self, spec: ProcessSpec) -> Child:
        """Start one more child with the mesh's environment and caps (not yet waited for or watched)."""
        child = Child(spec, Path(self.plan.state_dir) / "logs", self.plan.env, self.cpu, self.gpu)
        self.children[spec.name] = child
        await child.start()
        return child

    def watch(self, child: Child) -> None:
        """Auto-heal `child` from now on, with the mesh's liveness settings (`Child.watch`)."""
        child.watch(*self._liveness)

    async def remove(self, name: str) -> None:
        """Stop a child gracefully (its in-flight work finishes or is handed back) and forget it."""
        child = self.children.pop(name)
        await child.stop(self._grace_s)

    def kill_all(self) -> None:
        for child in self.children.values():
            child.kill_now()

    def pids(self) -> dict[str, int | None]:
        return {name: child.pid for name, child in self.children.items()}
