"""Running a worker's lanes with bounded concurrency: fetch loops fill per-lane buffers, one
dispatch loop starts what the slot policy picks.

Each (pool, lane) is a `LaneSource` (`_partitions`: tenant partitions in fair turns) with one
fetch loop that keeps a small per-lane buffer of waiting items filled; doorbells on core NATS
tell the lane which tenant got new work.

A single dispatch loop starts what the slot policy (`_slots`) picks whenever a slot may be
free: fresh interactive work goes first by deadline (see `_priority`), work that has aged to
its class's wait bound overtakes anything fresher, and some shared slots are kept from
interactive work altogether — so neither a saturating interactive load nor long interactive
steps holding every slot can starve standard or batch work. Buffers are bounded per lane, so
items do not pile up here while another worker is idle; buffered items keep their ack-wait
extended.

A message that is not a valid work item (undecodable, unknown kind, invalid spec, step out of
range) is quarantined (`mesh.fabric.Quarantine`) and terminated, so it is never redelivered and
the lane goes on; if it is a real task's own item, the task is dead-lettered as a schema
mismatch (`Runner.end_unrunnable`).

A dispatcher is a `mesh.lifecycle.Lifecycle`: started once, and `shutdown(grace_s)` (or leaving
its context, with the grace it was made with) drains it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import nats.errors

from mesh.fabric import (
    TERMINAL_STATES,
    Delivery,
    EventStore,
    Quarantine,
    QuarantineSink,
    Topology,
    bell_filter,
    parse_work_subject,
)
from mesh.lifecycle import Lifecycle, State
from mesh.load import METER, LoadMeter
from mesh.priority import CLASS_NAMES
from mesh.telemetry import METRICS, get_logger
from mesh.v1 import work_pb2
from services.worker._acks import attempt_of
from services.worker._fairshare import FairShare
from services.worker._items import PoisonMessage, check_work_item
from services.worker._partitions import LanePartitions, LaneSource
from services.worker._priority import WaitBounds, dispatch_deadline, due_time
from services.worker._runner import Runner
from services.worker._slots import SlotLimits, SlotPolicy, Waiting

log = get_logger(__name__)

INTERACTIVE = CLASS_NAMES.index("interactive")  # its lane's rank: urgency(PRIORITY_CLASS_INTERACTIVE)

# Opens the source of one (pool, lane name, rank).
OpenLane = Callable[[str, str, int], LaneSource]


class Subscriber(Protocol):
    """Core NATS as the dispatcher uses it: the doorbells."""

    async def subscribe(
        self, subject: str, queue: str = "", cb: Callable[[Any], Awaitable[None]] | None = None
    ) -> Any: ...


@dataclass(frozen=True)
class _Fetched:
    lane: int
    item: work_pb2.WorkItem
    msg: Delivery
    pool: str  # from its subject: where the meter counts it ("" if the subject says none)


@dataclass
class _Running:
    task_id: str
    msg: Delivery
    lane: int
    job: asyncio.Task[None]
    interactive: bool
    pool: str
    cancelled_by_request: bool = False
    started: float = field(default_factory=time.monotonic)


class Dispatcher(Lifecycle):
    noun = "the dispatcher"

    def __init__(
        self,
        nc: Subscriber,
        js: Any,
        events: EventStore,
        runner: Runner,
        pools: list[str],
        concurrency: int,
        reserve: int | None = None,
        guaranteed: int | None = None,
        bounds: WaitBounds | None = None,
        topology: Topology | None = None,
        tenant_weights: Mapping[str, float] | None = None,
        refresh_s: float = 1.0,
        busy_refresh_s: float = 0.05,
        *,
        grace_s: float = 5.0,
        open_lane: OpenLane | None = None,
        quarantine: QuarantineSink | None = None,
        meter: LoadMeter = METER,
    ) -> None:
        """`js` is the JetStream context the default lanes (`LanePartitions`) and quarantine use;
        `open_lane` and `quarantine` replace them (unit tests run on an in-memory fabric). `meter`
        counts what starts and ends, and times it (`mesh.load`: the mesh's measured load)."""
        self._meter = meter
        self._nc = nc
        self._events = events
        self._runner = runner
        self._pools = pools
        self._slots: SlotPolicy[_Fetched] = SlotPolicy(SlotLimits.of(concurrency, reserve, guaranteed))
        self._bounds = bounds or WaitBounds()
        self._grace_s = grace_s
        self._hurry = asyncio.Event()  # the running steps cannot finish: the grace is not waited out
        topology = topology or Topology()
        self._ack_wait_s = topology.ack_wait_s
        weights = dict(tenant_weights or {})
        self._open_lane: OpenLane = open_lane or (
            lambda pool, name, rank: LanePartitions(
                js, topology, pool, name, rank, FairShare(weights), refresh_s, busy_refresh_s
            )
        )
        self._quarantine: QuarantineSink = quarantine or Quarantine(js, nc)  # type: ignore[arg-type]
        self._buffer_per_lane = max(1, concurrency)
        self._waiting_per_lane = [0] * len(CLASS_NAMES)
        self._order = itertools.count()
        # Keyed by task id for cancels; a stale copy of a running item may run beside it
        # under the same id, so slots are counted by the policy, not by this dict.
        self._running: dict[str, _Running] = {}
        self._changed = asyncio.Event()
        self._room = [asyncio.Event() for _ in CLASS_NAMES]
        self._lanes: dict[tuple[str, str], LaneSource] = {}
        self._bells: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._fetchers: list[asyncio.Task[None]] = []
        self.completed = 0
        self._step_s = 0.0  # moving average of how long a step holds a slot
        self._pulling = asyncio.Event()  # cleared while paused: fetch loops take nothing new
        self._pulling.set()

    @property
    def running_task_ids(self) -> list[str]:
        return list(self._running)

    @property
    def in_flight(self) -> int:
        """Steps running now (never more than concurrency + reserve)."""
        return self._slots.in_flight

    @property
    def slot_limits(self) -> SlotLimits:
        return self._slots.limits

    @property
    def in_flight_ack_subjects(self) -> list[str]:
        subjects = [r.msg.reply for r in self._running.values()] + [w.payload.msg.reply for w in self._slots.waiting]
        return [s for s in subjects if s]

    @property
    def _stopping(self) -> bool:
        return self.state is not State.RUNNING

    async def _start(self) -> None:
        for pool in self._pools:
            for rank, name in enumerate(CLASS_NAMES):
                self._lanes[(pool, name)] = self._open_lane(pool, name, rank)
            self._bells.append(await self._nc.subscribe(bell_filter(pool), cb=self._on_bell))
        self._fetchers = [asyncio.create_task(self._fetch_loop(lane)) for lane in self._lanes.values()]
        self._tasks = [asyncio.create_task(self._dispatch_loop()), asyncio.create_task(self._keep_buffer_alive())]

    async def _on_bell(self, msg: Any) -> None:
        parsed = parse_work_subject(msg.subject)
        lane = self._lanes.get(parsed[:2]) if parsed else None
        if parsed and lane:
            lane.ring(parsed[2])

    def pause(self) -> None:
        """Take no new work until `resume` (what is buffered or running stays)."""
        self._pulling.clear()

    def resume(self) -> None:
        self._pulling.set()

    async def _fetch_loop(self, lane: LaneSource) -> None:
        while not self._stopping:
            if not self._pulling.is_set():
                await self._pulling.wait()
                continue
            room = self._buffer_per_lane - self._waiting_per_lane[lane.rank]
            if room <= 0:
                self._room[lane.rank].clear()
                await self._room[lane.rank].wait()
                continue
            try:
                msgs = await lane.take(room)
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                return
            except Exception as exc:  # reconnecting, server restart: back off and keep pulling
                log.warning("fetch failed: %r", exc)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                try:
                    item = check_work_item(msg.data)
                except PoisonMessage as poison:
                    await self._set_aside(msg, poison)
                    continue
                self._wait(lane.rank, item, msg)
            if msgs:
                self._changed.set()

    def _wait(self, rank: int, item: work_pb2.WorkItem, msg: Delivery) -> None:
        """Buffer a fetched item for the slot policy, with its class's deadline and due time."""
        enqueued_s = item.enqueued.ToNanoseconds() / 1e9 if item.HasField("enqueued") else time.time()
        spec = item.spec
        deadline = dispatch_deadline(spec.priority_class, spec.priority, enqueued_s, self._bounds)
        due = due_time(spec.priority_class, enqueued_s, self._bounds)
        bound = self._bounds.bound_s(spec.priority_class)
        parsed = parse_work_subject(msg.subject)
        fetched = _Fetched(rank, item, msg, parsed[0] if parsed else "")
        self._slots.add(Waiting(deadline, next(self._order), due, bound, rank == INTERACTIVE, fetched))
        self._waiting_per_lane[rank] += 1
        if fetched.pool:
            self._meter.buffered(fetched.pool, CLASS_NAMES[rank], +1)

    async def _set_aside(self, msg: Delivery, poison: PoisonMessage) -> None:
        """Quarantine a message that is no work item, then terminate it so it is never redelivered.

        If the record cannot be stored the message is left un-acked: it comes back after the
        ack-wait and is tried again, and the lane goes on meanwhile."""
        metadata = msg.metadata if msg.reply else None
        sequence = metadata.sequence.stream if metadata and metadata.sequence else 0

        async def end_and_terminate() -> None:
            # A real task whose item cannot run would otherwise stay QUEUED forever.
            await self._runner.end_unrunnable(msg, poison)
            await msg.term()

        try:
            await self._quarantine.set_aside(
                "work",
                msg.subject,
                sequence,
                msg.data,
                poison.classification,
                poison.error,
                poison.task_id,
                end_and_terminate,
            )
        except Exception as exc:  # a bug here must not end the lane's fetch loop
            log.warning("could not set aside a bad work item; it will be redelivered: %r", exc)

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            # Due items are taken one typical step early: the slot they would otherwise wait
            # for is held by a step of about that length.
            waiting = self._slots.take(lead_s=self._step_s)
            if waiting is None:
                self._changed.clear()
                await self._changed.wait()
                continue
            fetched = waiting.payload
            self._waiting_per_lane[fetched.lane] -= 1
            self._room[fetched.lane].set()
            self._measure_start(fetched)
            job = asyncio.create_task(self._runner.run(fetched.msg, fetched.item))
            running = _Running(
                fetched.item.spec.task_id, fetched.msg, fetched.lane, job, waiting.interactive, fetched.pool
            )
            self._running[running.task_id] = running
            METRICS.in_flight.inc()
            job.add_done_callback(functools.partial(self._on_done, running))

    def _measure_start(self, fetched: _Fetched) -> None:
        """Count an attempt taking its slot, with its queue wait (stored to now) if it is the
        item's first (a retry's wait holds its backoff: not a queue's)."""
        if not fetched.pool:
            return
        name = CLASS_NAMES[fetched.lane]
        self._meter.buffered(fetched.pool, name, -1)
        item = fetched.item
        first = attempt_of(fetched.msg) == 1 and item.HasField("enqueued")
        wait_s = time.time() - item.enqueued.ToNanoseconds() / 1e9 if first else None
        self._meter.started(fetched.pool, name, wait_s)

    def _on_done(self, running: _Running, _: asyncio.Task[None]) -> None:
        # The next step of the same task may already run under the same id: remove only ours.
        if self._running.get(running.task_id) is running:
            del self._running[running.task_id]
        self._slots.release(running.interactive)
        METRICS.in_flight.dec()
        held_s = time.monotonic() - running.started
        self._step_s = 0.8 * self._step_s + 0.2 * held_s
        if running.pool:  # service time: how long the attempt held its slot, its wait not included
            self._meter.ended(running.pool, CLASS_NAMES[running.lane], held_s)
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
            for waiting in self._slots.waiting:
                with contextlib.suppress(Exception):
                    await waiting.payload.msg.in_progress()

    def cancel(self, task_id: str) -> bool:
        """Interrupt the running step of `task_id` (after the scheduler wrote CANCELLED)."""
        running = self._running.get(task_id)
        if running is None:
            return False
        running.cancelled_by_request = True
        running.job.cancel()
        return True

    async def _settle_cancelled(self, msg: Delivery, task_id: str) -> None:
        last = await self._events.last(task_id)
        if last is not None and last.event.state in TERMINAL_STATES:
            with contextlib.suppress(Exception):
                await msg.ack_sync(timeout=5.0)

    def hurry(self) -> None:
        """The running steps can no longer finish (the remote worker running them is gone): a
        shutdown hands them back now rather than at the end of its grace."""
        self._hurry.set()

    async def shutdown(self, grace_s: float) -> None:
        """Stop pulling, let running steps finish within `grace_s`, hand the rest back (idempotent:
        a second call waits for the first, with the first's grace)."""
        if self.state is State.RUNNING:
            self._grace_s = grace_s
        await self.close()

    async def _hurried(self) -> None:
        await self._hurry.wait()

    async def _wait_out_grace(self, jobs: list[asyncio.Task[None]]) -> set[asyncio.Task[None]]:
        """The jobs still running once all are done, the grace is over, or `hurry` was called."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._grace_s
        hurried = asyncio.create_task(self._hurried())
        pending = set(jobs)
        try:
            while pending and not hurried.done() and (left := deadline - loop.time()) > 0:
                _, pending = await asyncio.wait({*pending, hurried}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(hurried)
        finally:
            hurried.cancel()
        return {job for job in jobs if not job.done()}

    async def _stop(self) -> None:
        # The state (STOPPING), not only cancel(): a fetch may swallow the cancellation and return.
        for event in (*self._room, self._changed, self._pulling):
            event.set()
        for lane in self._lanes.values():
            lane.wake()
        for fetcher in self._fetchers:
            fetcher.cancel()
        await asyncio.gather(*self._fetchers, return_exceptions=True)
        for lane in self._lanes.values():
            await lane.close()
        for bell in self._bells:
            with contextlib.suppress(Exception):
                await bell.unsubscribe()
        for waiting in self._slots.clear():
            if waiting.payload.pool:
                self._meter.buffered(waiting.payload.pool, CLASS_NAMES[waiting.payload.lane], -1)
            with contextlib.suppress(Exception):
                await waiting.payload.msg.nak()
        jobs = [r.job for r in self._running.values()]
        if jobs:
            pending = await self._wait_out_grace(jobs)
            for running in list(self._running.values()):
                if running.job in pending:
                    running.job.cancel()
                    with contextlib.suppress(Exception):
                        await running.msg.nak()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
