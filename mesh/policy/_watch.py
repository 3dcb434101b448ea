"""Continuous evaluation: `PolicyWatch` evaluates the running mesh's manifest and live figures every
``policies.watchSeconds`` and says what changed.

Each *new* violation — a (rule, path) the previous evaluation did not have — is published as an
alert on ``tm.alert.policy.<rule>`` (JSON, like the mesh's other alerts: core NATS, for whoever
listens), counted in ``tidemesh_policy_violations_total{rule,severity,mode}`` and logged once (a
warning for warn and enforce, info for audit); a violation that is gone is published again with
``state: cleared`` and logged once. A violation stays until it clears, however many evaluations see
it: nothing repeats. An alert that could not
be published is tried again at the next evaluation (and only then counted). Where the live figures
cannot be read, the rules that read them are skipped and their violations kept as they were.

The alert::

    {"rule", "state": "violated" | "cleared", "path", "severity", "mode", "message", "remediation",
     "runbook", "environment", "mesh", "at"}

`tidemesh up` runs one over its supervisor (`PolicyWatch.of`): as the supervisor's own NATS user
(allowed to publish ``tm.alert.policy.>`` and to read the work and dead-letter streams' state).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from mesh.fabric._subjects import POLICY_ALERT_PREFIX
from mesh.manifest import Manifest
from mesh.policy._evaluate import Verdicts, Violation, evaluate
from mesh.policy._live import LiveFigures, supervised_workers
from mesh.telemetry import METRICS, Metrics, get_logger

if TYPE_CHECKING:
    from nats.aio.client import Client

    from mesh.supervisor import Supervisor

log = get_logger(__name__)

ALERT_PREFIX = POLICY_ALERT_PREFIX


def alert_subject(rule: str) -> str:
    """``tm.alert.policy.<rule>`` (a rule's name is one subject token: the manifest holds it to one)."""
    return f"{ALERT_PREFIX}.{rule}"


class Link(Protocol):
    """Where a watch publishes and what it reads live (NATS and /proc: `SupervisorLink`)."""

    async def open(self) -> None: ...

    async def publish(self, subject: str, data: bytes) -> None: ...

    async def live(self) -> Mapping[str, Any] | None:
        """The live figures (None: this link reads none; raises when they cannot be read now)."""
        ...

    async def close(self) -> None: ...


class WatchState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class PolicyWatch:
    """``async with PolicyWatch(manifest, link):`` — evaluates in the background while open.

    `manifest` gives the mesh's manifest as it is now (read at every evaluation, so an applied
    change is followed); `interval_s` overrides its ``policies.watchSeconds``."""

    def __init__(
        self,
        manifest: Callable[[], Manifest],
        link: Link,
        *,
        interval_s: float | None = None,
        metrics: Metrics = METRICS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._manifest = manifest
        self._link = link
        self._interval_s = interval_s
        self._metrics = metrics
        self._clock = clock
        self._active: dict[tuple[str, str], Violation] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = ""  # what failed last (logged once until it works again)
        self.state = WatchState.NEW
        self.evaluations = 0
        self.last: Verdicts | None = None

    @classmethod
    def of(cls, supervisor: Supervisor, *, interval_s: float | None = None) -> PolicyWatch:
        """The watch `tidemesh up` runs: the manifest recorded beside its plan (`mesh.manifest.exported`),
        live figures over the supervisor's NATS user and its workers' memory."""
        from mesh.manifest import exported

        return cls(lambda: exported(supervisor.plan).manifest, SupervisorLink(supervisor), interval_s=interval_s)

    @property
    def active(self) -> tuple[Violation, ...]:
        """The violations announced and not cleared."""
        return tuple(self._active.values())

    async def __aenter__(self) -> PolicyWatch:
        if self.state is not WatchState.NEW:
            raise RuntimeError(f"PolicyWatch is {self.state.value}; it cannot be opened again")
        await self._link.open()
        self.state = WatchState.RUNNING
        self._task = asyncio.create_task(self._run(), name="policy-watch")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop evaluating and close the link (idempotent; a watch never opened closes nothing)."""
        if self.state is not WatchState.RUNNING:
            self.state = WatchState.CLOSED
            return
        self.state = WatchState.CLOSED
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._link.close()

    async def _run(self) -> None:
        while True:
            interval = self._interval_s
            try:
                await self.evaluate_once()
            except Exception as exc:  # a bad record, a broken link: said once, tried again next time
                self._failed(f"policy evaluation failed: {exc}")
            if interval is None:
                try:
                    interval = self._manifest().policies.watch_seconds
                except Exception:
                    interval = 30.0
            await asyncio.sleep(interval)  # the period between evaluations, not a wait for a condition

    def _failed(self, what: str) -> None:
        if what != self._failing:
            log.warning(what)
            self._failing = what

    async def evaluate_once(self) -> Verdicts:
        """One evaluation: publish, count and log what changed since the last (see the module's doc)."""
        manifest = self._manifest()
        try:
            live = await self._link.live()
        except Exception as exc:
            self._failed(f"live figures cannot be read now ({exc}); the rules that read them are skipped")
            live = None
        else:
            if self._failing.startswith("live figures"):
                log.info("live figures can be read again")
                self._failing = ""
        verdicts = evaluate(manifest, live=live)
        self.evaluations += 1
        self.last = verdicts
        current = {v.key: v for v in verdicts.violations}
        skipped = set(verdicts.skipped)
        context = {"environment": verdicts.environment, "mesh": manifest.metadata.name}
        for key, violation in current.items():
            if key not in self._active and await self._announce(violation, "violated", context):
                self._active[key] = violation
                self._metrics.policy_violations.labels(violation.rule, violation.severity, violation.mode).inc()
                # audit is recorded (the alert, the metric, an info line); warn and enforce are said
                level = logging.INFO if violation.mode == "audit" else logging.WARNING
                log.log(level, "policy violated", extra=_fields(violation))
        for key, violation in list(self._active.items()):
            if key not in current and key[0] not in skipped and await self._announce(violation, "cleared", context):
                del self._active[key]
                log.info("policy violation cleared", extra=_fields(violation))
        return verdicts

    async def _announce(self, violation: Violation, state: str, context: Mapping[str, str]) -> bool:
        alert = {"rule": violation.rule, "state": state, **violation.to_json(), **context, "at": self._clock()}
        try:
            await self._link.publish(alert_subject(violation.rule), json.dumps(alert).encode())
        except Exception as exc:
            self._failed(f"a policy alert could not be published ({exc}); it is tried again next time")
            return False
        return True


def _fields(violation: Violation) -> dict[str, str]:
    # `message` is a LogRecord attribute of its own: the violation's goes as `violation`
    return {
        "rule": violation.rule,
        "path": violation.path,
        "severity": violation.severity,
        "mode": violation.mode,
        "violation": violation.message,
        "runbook": violation.runbook,
    }


class SupervisorLink:
    """NATS as the supervisor's own user (the plan's servers, over TLS unless the mesh is insecure)
    and its workers' memory from /proc."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self._nc: Client | None = None
        self._figures: LiveFigures | None = None

    async def open(self) -> None:
        from mesh.fabric import connect

        plan = self._supervisor.plan
        if plan.security:
            self._nc = await plan.security.connect_nats(plan.nats_servers, "supervisor", "tidemesh-policy")
        else:
            self._nc = await connect(plan.nats_servers, name="tidemesh-policy")
        self._figures = LiveFigures(self._nc.jetstream(), supervised_workers(self._supervisor))

    async def publish(self, subject: str, data: bytes) -> None:
        assert self._nc is not None, "the link is not open"
        await self._nc.publish(subject, data)

    async def live(self) -> Mapping[str, Any] | None:
        assert self._figures is not None, "the link is not open"
        return await self._figures.read()

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = None


class AlertCounter:
    """Counts the policy alerts the watch publishes into this process's metrics — the scheduler runs
    one, so ``tidemesh_policy_violations_total`` reaches Prometheus (`tidemesh up`, where the watch
    runs, serves no metrics). Cleared ones are not counted; junk is ignored."""

    def __init__(self, nc: Client, metrics: Metrics = METRICS) -> None:
        self._nc = nc
        self._metrics = metrics
        self._sub: Any = None
        self.counted = 0

    async def __aenter__(self) -> AlertCounter:
        self._sub = await self._nc.subscribe(f"{POLICY_ALERT_PREFIX}.>", cb=self._on_alert)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_alert(self, msg: Any) -> None:
        try:
            alert = json.loads(msg.data)
            if alert.get("state") != "violated":
                return
            labels = (str(alert["rule"]), str(alert["severity"]), str(alert["mode"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        self._metrics.policy_violations.labels(*labels).inc()
        self.counted += 1
