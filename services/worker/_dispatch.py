"""Pulling work by priority lane and running it with bounded concurrency.

One long-poll fetch loop per (pool, lane) feeds a local queue ordered by
dispatch deadline (see `_priority`): fresh interactive work runs first, and
work that has aged to its class's wait bound overtakes anything fresher.

Capacity: `concurrency` slots are shared by all lanes, plus `reserve` slots only
interactive work may take, so an interactive item is pulled and started at once
even while a batch flood fills the shared slots. Every lane may always hold at
least one item, so a saturating interactive load cannot starve the others.
Prefetch never exceeds free capacity, so work does not sit here while another
worker is idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from mesh.fabric import LANE_ORDER, TERMINAL_STATES, WORK_STREAM, EventLog, consumer_name
from mesh.telemetry import METRICS, get_logger
from mesh.v1 import work_pb2
from services.worker._priority import WaitBounds, dispatch_deadline
from services.worker._runner import Runner

log = get_logger(__name__)


@dataclass
class _Running:
    task_id: str
    msg: Msg
    job: asyncio.Task[None]
    cancelled_by_request: bool = False


class Dispatcher:
    def __init__(
        self,
        js: JetStreamContext,
        events: EventLog,
        runner: Runner,
        pools: list[str],
        concurrency: int,
        reserve: int | None = None,
        bounds: WaitBounds | None = None,
        fetch_expiry_s: float = 2.0,
    ) -> None:
        self._fetch_expiry_s = fetch_expiry_s
        self._js = js
        self._runner = runner
        self._events = events
        self._pools = pools
        self._concurrency = concurrency
        self._reserve = max(2, concurrency // 4) if reserve is None else reserve
        self._bounds = bounds or WaitBounds()
        # Items of each lane buffered here or running.
        self._lane_load = [0] * len(LANE_ORDER)
        self._queue: asyncio.PriorityQueue[tuple[float, int, int, str, Msg]] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._running: dict[str, _Running] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._fetchers: list[asyncio.Task[None]] = []
        self._subscriptions: list[JetStreamContext.PullSubscription] = []
        self._slot_tasks: list[asyncio.Task[None]] = []
        self.completed = 0
        self._stopping = False

    @property
    def running_task_ids(self) -> list[str]:
        return list(self._running)

    @property
    def in_flight_ack_subjects(self) -> list[str]:
        subjects = [r.msg.reply for r in self._running.values()]
        subjects += [m.reply for *_, m in list(self._queue._queue)]  # type: ignore[attr-defined]
        return [s for s in subjects if s]

    async def start(self) -> None:
        for lane_rank, lane in enumerate(LANE_ORDER):
            for pool in self._pools:
                sub = await self._js.pull_subscribe_bind(durable=consumer_name(pool, lane), stream=WORK_STREAM)
                self._subscriptions.append(sub)
                self._fetchers.append(asyncio.create_task(self._fetch_loop(sub, lane_rank)))
        self._slot_tasks = [
            asyncio.create_task(self._slot_loop()) for _ in range(self._concurrency + self._reserve)
        ]

    def _room(self, lane_rank: int) -> int:
        """How many items the lane may pull now."""
        used = sum(self._lane_load)
        capacity = self._concurrency + (self._reserve if lane_rank == 0 else 0)
        return max(capacity - used, 1 - self._lane_load[lane_rank])

    async def _fetch_loop(self, sub: JetStreamContext.PullSubscription, lane_rank: int) -> None:
        while not self._stopping:
            room = self._room(lane_rank)
            if room <= 0:
                await asyncio.sleep(0.002)
                continue
            try:
                msgs = await sub.fetch(batch=room, timeout=self._fetch_expiry_s)
            except (nats.errors.TimeoutError, TimeoutError):
                continue  # an idle lane: long-poll again
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                return
            except Exception as exc:  # reconnecting, server restart: back off and keep pulling
                log.warning("fetch failed: %r", exc)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                self._lane_load[lane_rank] += 1
                item = work_pb2.WorkItem.FromString(msg.data)
                enqueued_s = item.enqueued.ToNanoseconds() / 1e9 if item.HasField("enqueued") else time.time()
                deadline = dispatch_deadline(item.spec.priority_class, item.spec.priority, enqueued_s, self._bounds)
                self._queue.put_nowait((deadline, next(self._order), lane_rank, item.spec.task_id, msg))

    async def _slot_loop(self) -> None:
        while True:
            _, _, lane_rank, task_id, msg = await self._queue.get()
            job = asyncio.create_task(self._runner.run(msg))
            running = _Running(task_id, msg, job)
            self._running[task_id] = running
            METRICS.in_flight.inc()
            try:
                await asyncio.shield(job)
                self.completed += 1
            except asyncio.CancelledError:
                if running.cancelled_by_request:
                    await self._settle_cancelled(msg, task_id)
                elif job.done():
                    pass
                else:
                    raise
            except Exception:
                log.exception("work item failed; it will be redelivered")
            finally:
                # The next step of the same task may already run in another slot: remove only ours.
                if self._running.get(task_id) is running:
                    del self._running[task_id]
                self._lane_load[lane_rank] -= 1
                METRICS.in_flight.dec()

    def cancel(self, task_id: str) -> bool:
        """Interrupt the running step of `task_id` (after the scheduler wrote CANCELLED)."""
        running = self._running.get(task_id)
        if running is None:
            return False
        running.cancelled_by_request = True
        running.job.cancel()
        return True

    async def _settle_cancelled(self, msg: Msg, task_id: str) -> None:
        last = await self._events.last(task_id)
        if last is not None and last.event.state in TERMINAL_STATES:
            with contextlib.suppress(Exception):
                await msg.ack_sync(timeout=5.0)

    async def shutdown(self, grace_s: float) -> None:
        """Stop pulling, let running steps finish within `grace_s`, hand the rest back."""
        # The flag, not only cancel(): a fetch may swallow the cancellation and return.
        self._stopping = True
        for fetcher in self._fetchers:
            fetcher.cancel()
        await asyncio.gather(*self._fetchers, return_exceptions=True)
        # An outstanding pull request would make the connection's drain wait out its timeout.
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        while not self._queue.empty():
            *_, msg = self._queue.get_nowait()
            with contextlib.suppress(Exception):
                await msg.nak()
        jobs = [r.job for r in self._running.values()]
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=grace_s)
            for running in list(self._running.values()):
                if running.job in pending:
                    running.job.cancel()
                    with contextlib.suppress(Exception):
                        await running.msg.nak()
        for slot in self._slot_tasks:
            slot.cancel()
        await asyncio.gather(*self._slot_tasks, return_exceptions=True)
