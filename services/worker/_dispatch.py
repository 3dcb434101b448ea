"""Pulling work by priority lane and running it with bounded concurrency.

One long-poll fetch loop per (pool, lane) keeps a small per-lane buffer of
waiting items. A single dispatch loop starts the waiting item with the earliest
dispatch deadline (see `_priority`) whenever a slot is free: fresh interactive
work goes first, and work that has aged to its class's wait bound overtakes
anything fresher — so a saturating interactive load cannot starve batch work.

Slots: `concurrency` shared by every lane, plus `reserve` that only interactive
items may take, so an interactive item starts at once even while batch work
fills the shared slots. Buffers are bounded per lane, so items do not pile up
here while another worker is idle; buffered items keep their ack-wait extended.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from dataclasses import dataclass, field

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from mesh.fabric import LANE_ORDER, TERMINAL_STATES, WORK_STREAM, EventLog, consumer_name
from mesh.telemetry import METRICS, get_logger
from mesh.v1 import work_pb2
from services.worker._priority import WaitBounds, dispatch_deadline
from services.worker._runner import Runner

log = get_logger(__name__)

INTERACTIVE = 0  # rank of the interactive lane in LANE_ORDER
_READY_S = 0.005  # how long a batch pull waits for items that are not there yet


@dataclass(order=True)
class _Waiting:
    deadline: float
    order: int
    lane: int = field(compare=False)
    item: work_pb2.WorkItem = field(compare=False)
    msg: Msg = field(compare=False)


@dataclass
class _Running:
    task_id: str
    msg: Msg
    lane: int
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
        ack_wait_s: float = 30.0,
    ) -> None:
        self._js = js
        self._events = events
        self._runner = runner
        self._pools = pools
        self._concurrency = concurrency
        self._reserve = max(2, concurrency // 4) if reserve is None else reserve
        self._bounds = bounds or WaitBounds()
        self._fetch_expiry_s = fetch_expiry_s
        self._ack_wait_s = ack_wait_s
        self._buffer_per_lane = max(1, concurrency)
        self._waiting: list[_Waiting] = []
        self._waiting_per_lane = [0] * len(LANE_ORDER)
        self._order = itertools.count()
        self._running: dict[str, _Running] = {}
        self._changed = asyncio.Event()
        self._room = [asyncio.Event() for _ in LANE_ORDER]
        self._tasks: list[asyncio.Task[None]] = []
        self._fetchers: list[asyncio.Task[None]] = []
        self._subscriptions: list[JetStreamContext.PullSubscription] = []
        self.completed = 0
        self._stopping = False

    @property
    def running_task_ids(self) -> list[str]:
        return list(self._running)

    @property
    def in_flight_ack_subjects(self) -> list[str]:
        subjects = [r.msg.reply for r in self._running.values()] + [w.msg.reply for w in self._waiting]
        return [s for s in subjects if s]

    async def start(self) -> None:
        for lane_rank, lane in enumerate(LANE_ORDER):
            for pool in self._pools:
                sub = await self._js.pull_subscribe_bind(durable=consumer_name(pool, lane), stream=WORK_STREAM)
                self._subscriptions.append(sub)
                self._fetchers.append(asyncio.create_task(self._fetch_loop(sub, lane_rank)))
        self._tasks = [asyncio.create_task(self._dispatch_loop()), asyncio.create_task(self._keep_buffer_alive())]

    async def _fetch_loop(self, sub: JetStreamContext.PullSubscription, lane_rank: int) -> None:
        idle = True
        while not self._stopping:
            room = self._buffer_per_lane - self._waiting_per_lane[lane_rank]
            if room <= 0:
                self._room[lane_rank].clear()
                await self._room[lane_rank].wait()
                continue
            try:
                msgs = await self._pull(sub, room, idle)
            except (nats.errors.TimeoutError, TimeoutError):
                idle = True  # nothing there: long-poll for the next arrival
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                return
            except Exception as exc:  # reconnecting, server restart: back off and keep pulling
                log.warning("fetch failed: %r", exc)
                await asyncio.sleep(0.5)
                continue
            idle = False
            for msg in msgs:
                item = work_pb2.WorkItem.FromString(msg.data)
                enqueued_s = item.enqueued.ToNanoseconds() / 1e9 if item.HasField("enqueued") else time.time()
                deadline = dispatch_deadline(item.spec.priority_class, item.spec.priority, enqueued_s, self._bounds)
                heapq.heappush(self._waiting, _Waiting(deadline, next(self._order), lane_rank, item, msg))
                self._waiting_per_lane[lane_rank] += 1
            self._changed.set()

    async def _pull(self, sub: JetStreamContext.PullSubscription, room: int, idle: bool) -> list[Msg]:
        """Up to `room` items: on a busy lane what is ready now; on an idle lane the first to arrive.

        A multi-message pull that has to wait returns only when it is full or expires, so a
        lone item arriving on an idle lane would wait out the expiry. Hence an idle lane
        long-polls for a single item, and a busy one takes what is ready with a short pull.
        """
        if idle:
            return await sub.fetch(batch=1, timeout=self._fetch_expiry_s)
        return await sub.fetch(batch=room, timeout=_READY_S)

    def _next_startable(self) -> _Waiting | None:
        """The earliest-deadline item that a free slot may take, removed from the heap."""
        if not self._waiting:
            return None
        running = len(self._running)
        if running < self._concurrency:
            return heapq.heappop(self._waiting)
        if running < self._concurrency + self._reserve:
            # Only reserve slots are free: the earliest interactive item may take one.
            candidates = [w for w in self._waiting if w.lane == INTERACTIVE]
            if candidates:
                chosen = min(candidates)
                self._waiting.remove(chosen)
                heapq.heapify(self._waiting)
                return chosen
        return None

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            waiting = self._next_startable()
            if waiting is None:
                self._changed.clear()
                await self._changed.wait()
                continue
            self._waiting_per_lane[waiting.lane] -= 1
            self._room[waiting.lane].set()
            job = asyncio.create_task(self._runner.run(waiting.msg, waiting.item))
            running = _Running(waiting.item.spec.task_id, waiting.msg, waiting.lane, job)
            self._running[running.task_id] = running
            METRICS.in_flight.inc()
            job.add_done_callback(lambda _, r=running: self._finished(r))

    def _finished(self, running: _Running) -> None:
        # The next step of the same task may already run under the same id: remove only ours.
        if self._running.get(running.task_id) is running:
            del self._running[running.task_id]
        METRICS.in_flight.dec()
        self._changed.set()
        job = running.job
        if job.cancelled():
            if running.cancelled_by_request:
                self._tasks.append(asyncio.create_task(self._settle_cancelled(running.msg, running.task_id)))
            return
        if job.exception() is not None:
            log.error("work item failed; it will be redelivered", exc_info=job.exception())
            return
        self.completed += 1

    async def _keep_buffer_alive(self) -> None:
        """Extend the ack-wait of buffered items so a long wait here is not taken for a dead worker."""
        while True:
            await asyncio.sleep(self._ack_wait_s / 3)
            for waiting in list(self._waiting):
                with contextlib.suppress(Exception):
                    await waiting.msg.in_progress()

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
        for event in (*self._room, self._changed):
            event.set()
        for fetcher in self._fetchers:
            fetcher.cancel()
        await asyncio.gather(*self._fetchers, return_exceptions=True)
        # An outstanding pull request would make the connection's drain wait out its timeout.
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for waiting in self._waiting:
            with contextlib.suppress(Exception):
                await waiting.msg.nak()
        self._waiting.clear()
        jobs = [r.job for r in self._running.values()]
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=grace_s)
            for running in list(self._running.values()):
                if running.job in pending:
                    running.job.cancel()
                    with contextlib.suppress(Exception):
                        await running.msg.nak()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
