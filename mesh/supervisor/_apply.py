"""Configuration changes to a running mesh: plan, apply with a health gate, roll back.

`tidemesh up` runs a `ConfigController` beside its supervisor. It keeps the revisions in NATS
(`mesh.revisions`: the one `up` started from is the first) and answers the gateway on
``tm.config.plan`` and ``tm.config.apply`` (JSON; every answer, progress included, goes to
``tm.config.progress.<id>``, the last one with ``final``). One change at a time:

1. **plan**: the steps the change takes (`_rollout`), computed on a scratch copy of the process
   table (nothing running is touched), with the current revision and its digest;
2. **apply**: refused when the mesh moved on since that plan (another revision is current, or the
   steps would now differ); else a new revision, the steps one by one (a process that does not
   turn healthy stops the rollout), then a bake period watched by the health gate (`_gate`);
3. **roll back**, by itself, when a step fails, the gate finds the mesh degraded, or the caller
   goes away (``tm.config.abort.<id>``: Ctrl-C in `tidemesh config apply`) — every step done is
   undone in reverse, the previous revision stays current, and the revision says why.

A supervisor stopped in the middle stops the whole mesh (it owns every process); the revision is
left ``applying`` and `tidemesh up` of the same state dir starts from the manifest it is given,
so there is always a way back: `tidemesh config history` shows both, `rollback` applies either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from mesh.errors import Conflict, MeshError
from mesh.fabric import CONFIG_PREFIX, connect
from mesh.revisions import Revision, RevisionStore, digest_of
from mesh.supervisor._child import Child
from mesh.supervisor._gate import GateLimits, Sample, Scraper, judge
from mesh.supervisor._plan import Plan, ProcessSpec
from mesh.supervisor._rollout import Rollout, Step, rollout
from mesh.supervisor._supervisor import Supervisor
from mesh.telemetry import get_logger

log = get_logger(__name__)

# (manifest document, state dir, ports to keep) -> the plan; it renders the files the plan's
# processes read (Envoy's config, nats.conf) into that state dir. Raises ValueError (or a
# ManifestError, one) for a manifest it cannot plan.
Planner = Callable[[Mapping[str, Any], Path, Mapping[str, Mapping[str, int]]], Plan]
# (plan, manifest document) -> None: keep the manifest beside plan.json for `config export`.
Recorder = Callable[[Plan, Mapping[str, Any]], None]


class Degraded(Exception):
    """Why a change is being rolled back."""


class ConfigController:
    """`async with ConfigController(supervisor, document, planner, record):` while the mesh runs."""

    def __init__(
        self,
        supervisor: Supervisor,
        document: Mapping[str, Any],
        planner: Planner,
        record: Recorder,
        limits: Callable[[Mapping[str, Any]], GateLimits] = lambda _: GateLimits(),
        health_timeout_s: float = 60.0,
        sample_every_s: float = 1.0,
    ) -> None:
        self._supervisor = supervisor
        self.document = dict(document)
        self._planner = planner
        self._record = record
        self._limits = limits
        self._health_timeout_s = health_timeout_s
        self._sample_every_s = sample_every_s
        self._nc: Client | None = None
        self._store: RevisionStore | None = None
        self._busy: asyncio.Task[None] | None = None
        self._aborts: dict[str, asyncio.Event] = {}
        self.state = "new"  # new, idle, applying, rolling-back, closed
        self.outcomes: list[tuple[int, str]] = []  # (revision, how it ended), for tests and logs

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> ConfigController:
        plan = self._supervisor.plan
        if plan.security:
            self._nc = await plan.security.connect_nats(plan.nats_servers, "supervisor", "tidemesh-config")
        else:
            self._nc = await connect(plan.nats_servers, name="tidemesh-config")
        replicas = min(3, sum(p.name == "nats" or p.name.startswith("nats-") for p in plan.processes))
        self._store = await RevisionStore.open(self._nc.jetstream(), replicas=replicas)
        for left in await self._store.list(limit=20):  # an apply its supervisor did not live to finish
            if left.state == "applying":
                await self._store.finish(left, "failed", "interrupted: the supervisor stopped during the apply")
        current = await self._store.current()
        if current is None or current.digest != digest_of(self.document):
            started = await self._store.begin(
                self.document, "up", "tidemesh up", parent=current.number if current else 0, state="applied"
            )
            await self._store.make_current(started)
        await self._nc.subscribe(f"{CONFIG_PREFIX}.plan", cb=self._on_plan)
        await self._nc.subscribe(f"{CONFIG_PREFIX}.apply", cb=self._on_apply)
        await self._nc.subscribe(f"{CONFIG_PREFIX}.abort.*", cb=self._on_abort)
        self.state = "idle"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.state = "closed"
        if self._busy is not None and not self._busy.done():
            for abort in self._aborts.values():
                abort.set()  # roll back what is half-way, within a bound
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._busy), self._health_timeout_s)
        if self._nc is not None:
            await self._nc.close()

    async def wait_idle(self) -> None:
        if self._busy is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._busy)

    # --- messages -----------------------------------------------------------------------------

    async def _say(self, request_id: str, phase: str, message: str = "", final: bool = False, **more: Any) -> None:
        assert self._nc is not None
        body = {"id": request_id, "phase": phase, "message": message, "final": final, "at": time.time(), **more}
        await self._nc.publish(f"{CONFIG_PREFIX}.progress.{request_id}", json.dumps(body).encode())
        await self._nc.flush()

    @staticmethod
    def _request(msg: Msg) -> dict[str, Any] | None:
        try:
            body = json.loads(msg.data)
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"].isalnum():
            return None
        return body

    async def _on_plan(self, msg: Msg) -> None:
        request = self._request(msg)
        if request is None:
            return
        try:
            assert self._store is not None
            current = await self._store.current()
            found = self.dry_run(request.get("manifest") or {})
        except (MeshError, ValueError) as exc:
            await self._say(request["id"], "refused", str(exc), final=True)
            return
        await self._say(
            request["id"],
            "planned",
            final=True,
            revision=current.number if current else 0,
            baseDigest=current.digest if current else "",
            rollout=found.to_json(),
        )

    async def _on_abort(self, msg: Msg) -> None:
        abort = self._aborts.get(msg.subject.rsplit(".", 1)[-1])
        if abort is not None:
            abort.set()

    async def _on_apply(self, msg: Msg) -> None:
        request = self._request(msg)
        if request is None:
            return
        if self._busy is not None and not self._busy.done():
            await self._say(request["id"], "refused", "another change is being applied; try again after it", True)
            return
        self._aborts = {request["id"]: asyncio.Event()}
        self._busy = asyncio.create_task(self._apply(request))

    # --- the work -----------------------------------------------------------------------------

    def dry_run(self, document: Mapping[str, Any]) -> Rollout:
        """The steps `document` would take, from plans built on a scratch state dir."""
        ports = self._supervisor.plan.ports()
        with tempfile.TemporaryDirectory(prefix="tidemesh-plan-") as scratch:
            before = self._planner(self.document, Path(scratch), ports)
            after = self._planner(document, Path(scratch), ports)
            found = rollout(before, after)
        state_dirs = (document.get("stateDir"), self.document.get("stateDir"))
        if state_dirs[0] is not None and state_dirs[0] != state_dirs[1]:
            found = Rollout(
                found.steps, (*found.refused, f"stateDir {state_dirs[1]} → {state_dirs[0]}: a mesh keeps one")
            )
        return found

    async def _apply(self, request: dict[str, Any]) -> None:
        request_id = request["id"]
        abort = self._aborts[request_id]
        assert self._store is not None
        document = request.get("manifest") or {}
        try:
            current = await self._store.current()
            if current is None or current.digest != request.get("baseDigest"):
                running = f"revision {current.number} ({current.digest[:19]})" if current else "no revision"
                raise Conflict(f"the mesh runs {running} now, not the one this plan was made against: plan again")
            planned = self.dry_run(document)
            if planned.refused:
                raise Conflict("; ".join(planned.refused))
            if planned.digest != request.get("stepsDigest"):
                raise Conflict("applying it now would take other steps than the plan showed: plan again")
        except (MeshError, ValueError) as exc:
            await self._say(request_id, "refused", str(exc), final=True)
            return
        revision = await self._store.begin(
            dict(document), request.get("source", "apply"), str(request.get("author", "")), parent=current.number
        )
        self.state = "applying"
        await self._say(request_id, "accepted", f"revision {revision.number}", revision=revision.number)
        try:
            await self._roll_out(request_id, revision, document, float(request.get("bakeSeconds", 30.0)), abort)
        finally:
            self._aborts.pop(request_id, None)
            self.state = "idle" if self.state != "closed" else "closed"

    async def _roll_out(
        self, request_id: str, revision: Revision, document: Mapping[str, Any], bake_s: float, abort: asyncio.Event
    ) -> None:
        assert self._store is not None
        supervisor = self._supervisor
        old_plan, old_document = supervisor.plan, self.document
        state_dir = Path(old_plan.state_dir)
        limits = self._limits(document)
        done: list[Step] = []
        lines: list[str] = []
        async with Scraper(state_dir, old_plan.secure) as scraper:
            baseline = await scraper.sample(self._workers())
            new_plan = old_plan
            try:
                new_plan = self._planner(document, state_dir, old_plan.ports())
                supervisor.open_caps(new_plan)  # a change may bring CPU or GPU-memory caps
                steps = rollout(old_plan, new_plan).steps
                for step in steps:
                    self._check(abort)
                    await self._say(request_id, "step", step.line(), component=step.name, action=step.action)
                    await self._do(step, old_plan, new_plan, undo=False)
                    done.append(step)
                    lines.append(step.line())
                self._adopt(new_plan, document)
                await self._say(request_id, "bake", f"watching the mesh for {bake_s:g} s", seconds=bake_s)
                await self._bake(bake_s, baseline, scraper, limits, abort)
            except (Degraded, MeshError, ValueError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
                self.state = "rolling-back"
                await self._say(request_id, "rolling-back", reason)
                self._planner(old_document, state_dir, old_plan.ports())  # its files back
                for step in reversed(done):
                    await self._do(step, old_plan, new_plan, undo=True)
                self._adopt(old_plan, old_document)
                ended = await self._store.finish(revision, "rolled-back", reason, tuple(lines))
                self.outcomes.append((ended.number, "rolled-back"))
                log.warning("configuration change rolled back", extra={"revision": ended.number, "why": reason})
                await self._say(request_id, "rolled-back", reason, final=True, revision=ended.number)
                return
        ended = await self._store.finish(revision, "applied", "", tuple(lines))
        await self._store.make_current(ended)
        self.outcomes.append((ended.number, "applied"))
        log.info("configuration change applied", extra={"revision": ended.number, "steps": len(lines)})
        await self._say(request_id, "applied", f"revision {ended.number} is live", final=True, revision=ended.number)

    @staticmethod
    def _check(abort: asyncio.Event) -> None:
        if abort.is_set():
            raise Degraded("interrupted: the caller went away before the change was through")

    def _adopt(self, plan: Plan, document: Mapping[str, Any]) -> None:
        self._supervisor.plan = plan
        self.document = dict(document)
        (Path(plan.state_dir) / "plan.json").write_text(json.dumps(plan.to_json(), indent=2))
        self._record(plan, document)

    def _workers(self) -> dict[str, tuple[str, int | None]]:
        return {
            name: (child.spec.health.url, child.pid)
            for name, child in self._supervisor.children.items()
            if name.startswith("worker")
        }

    async def _do(self, step: Step, old: Plan, new: Plan, undo: bool) -> None:
        """One step forward (`undo` False) or back."""
        target = old if undo else new
        starts = {"start": not undo, "stop": undo, "restart": True}[step.action]
        stops = {"start": undo, "stop": not undo, "restart": True}[step.action]
        if stops and step.name in self._supervisor.children:
            await self._supervisor.remove(step.name)
        if starts:
            await self._start(target.by_name(step.name))

    async def _start(self, spec: ProcessSpec) -> Child:
        """Start `spec` and wait until healthy; a restart before that fails the step."""
        child = await self._supervisor.spawn(spec)
        waiting = asyncio.create_task(child.wait_healthy(self._health_timeout_s))
        try:
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=0.1)
                if child.restarts and not waiting.done():
                    raise Degraded(f"{spec.name} exited before it turned healthy (see its log)")
            await waiting
        except TimeoutError as exc:
            raise Degraded(f"{spec.name} did not turn healthy: {exc}") from exc
        finally:
            waiting.cancel()
        self._supervisor.watch(child)
        return child

    async def _bake(
        self, bake_s: float, baseline: Mapping[str, Sample], scraper: Scraper, limits: GateLimits, abort: asyncio.Event
    ) -> None:
        children = self._supervisor.children
        restarts = {name: child.restarts for name, child in children.items()}
        start = await scraper.sample(self._workers())
        deadline = time.monotonic() + bake_s
        while True:
            self._check(abort)
            for name, child in children.items():
                if child.restarts > restarts.get(name, 0):
                    why = "its memory cap" if child.memory_kills else "it stopped answering or exited"
                    raise Degraded(f"health: {name} restarted during the bake ({why})")
            now = await scraper.sample(self._workers())
            finding = judge(baseline, start, now, limits)
            if finding is not None:
                raise Degraded(finding)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(abort.wait(), min(self._sample_every_s, left))
