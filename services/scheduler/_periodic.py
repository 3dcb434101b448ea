"""The scheduler's periodic roles, run beside its gRPC service: queue sampling and scale
recommendations, admission control's flow samples, handing back the work of dead workers, and
the reconciler. `PeriodicRoles` is an async context manager: entered, every role runs; left,
every role is cancelled and awaited."""

from __future__ import annotations

import asyncio
import enum
from types import TracebackType
from typing import Self

from nats.aio.client import Client
from nats.js import JetStreamContext

from mesh.fabric import SCALE_PREFIX, WORK_PREFIX, WORK_STREAM
from mesh.telemetry import METRICS, get_logger
from services.scheduler._autoscale import ScaleHooks, Scaler
from services.scheduler._flow import FlowControl
from services.scheduler._queues import queue_status
from services.scheduler._reconcile import Reconciler
from services.scheduler._registry import WorkerRegistry

log = get_logger("services.scheduler")


class RolesState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class PeriodicRoles:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        registry: WorkerRegistry,
        scaler: Scaler,
        hooks: ScaleHooks,
        flow: FlowControl,
        reconciler: Reconciler,
        reap_every_s: float,
        fetch_expiry_s: float,
    ) -> None:
        self._nc = nc
        self._js = js
        self._registry = registry
        self._scaler = scaler
        self._hooks = hooks
        self._flow = flow
        self._reconciler = reconciler
        self._reap_every_s = reap_every_s
        self._fetch_expiry_s = fetch_expiry_s
        self._tasks: list[asyncio.Task[None]] = []
        self.state = RolesState.NEW

    async def __aenter__(self) -> Self:
        if self.state is not RolesState.NEW:
            raise RuntimeError(f"periodic roles are {self.state.value}: they start once")
        self._tasks = [
            asyncio.create_task(self._sample_queues(), name="sample-queues"),
            asyncio.create_task(self._sample_flow(), name="sample-flow"),
            asyncio.create_task(self._reap_dead_workers(), name="reap-dead-workers"),
            asyncio.create_task(self._reconciler.run(), name="reconcile"),
        ]
        self.state = RolesState.RUNNING
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.state = RolesState.STOPPED

    async def _sample_queues(self) -> None:
        """Keep the queue gauges fresh, and publish scale recommendations (tm.scale.<pool>)."""
        while True:
            try:
                sample = await queue_status(self._js)
                self._registry.forget_dead()
                for recommendation in self._scaler.update(sample.lanes, sample.acked, self._registry.snapshot()):
                    METRICS.scale_desired_replicas.labels(recommendation.pool).set(recommendation.desired_replicas)
                    await self._nc.publish(f"{SCALE_PREFIX}.{recommendation.pool}", recommendation.SerializeToString())
                    await self._hooks.deliver(recommendation)
            except Exception as exc:  # a sampling miss must not take the scheduler down
                log.warning("queue sampling failed: %s", exc)
            await asyncio.sleep(2.0)

    async def _sample_flow(self, every_s: float = 0.25) -> None:
        """Feed admission control: items per work subject, and how many ever completed."""
        while True:
            try:
                self._flow.sample_requested()
                info = await self._js.stream_info(WORK_STREAM, subjects_filter=f"{WORK_PREFIX}.>")
                self._flow.observe(info.state.subjects or {}, info.state.last_seq - info.state.messages)
            except Exception as exc:  # keep the last sample; admission stays on it
                log.warning("flow sampling failed: %s", exc)
            await asyncio.sleep(every_s)

    async def _reap_dead_workers(self) -> None:
        """Nak the items of workers that stopped heartbeating, so JetStream redelivers them soon.

        The nak is delayed past the pull-request expiry: a paused worker's open pull requests
        would otherwise receive the redelivery and sit on it until the ack-wait lapses.
        """
        nak = b'-NAK {"delay": %d}' % int((self._fetch_expiry_s + 0.5) * 1e9)
        # Ack subjects of work items only: a heartbeat naming anything else (a task's event subject,
        # say) must not make the scheduler publish there with its own, wider permissions.
        work_acks = f"$JS.ACK.{WORK_STREAM}."
        while True:
            reaped = self._registry.reap()
            subjects = [subject for subject in reaped if subject.startswith(work_acks)]
            if len(subjects) < len(reaped):
                log.warning(
                    "dead worker reported subjects that are not work acks: ignored",
                    extra={"ignored": len(reaped) - len(subjects)},
                )
            for subject in subjects:
                await self._nc.publish(subject, nak)
            if subjects:
                log.warning("dead worker: handed back its in-flight work", extra={"items": len(subjects)})
            await asyncio.sleep(self._reap_every_s)
