"""Pulling work by priority lane and tenant, and running it with bounded concurrency.

Each (pool, lane) has one fetch loop that keeps a small per-lane buffer of waiting
items filled. Within a lane, tenants take turns by weight (`_fairshare`): each
tenant partition has its own consumer, and the loop pulls from the tenant whose
turn it is, so one tenant's flood cannot starve another. The loop learns of new
items from doorbells rung after they are stored, and re-reads the partitions'
counts from the stream every `refresh_s` (for redeliveries and retries, which ring
no bell).

A single dispatch loop starts what the slot policy (`_slots`) picks whenever a
slot may be free: fresh interactive work goes first by deadline (see `_priority`),
work that has aged to its class's wait bound overtakes anything fresher, and some
shared slots are kept from interactive work altogether — so neither a saturating
interactive load nor long interactive steps holding every slot can starve
standard or batch work. Buffers are bounded per lane, so items do not pile up
here while another worker is idle; buffered items keep their ack-wait extended.

A message that is not a valid work item (undecodable, unknown kind, invalid spec,
step out of range) is quarantined (`mesh.fabric.Quarantine`) and terminated, so
it is never redelivered and the lane goes on; if it is a real task's own item, the
task is dead-lettered as a schema mismatch (`Runner.end_unrunnable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from mesh.fabric import (
    TERMINAL_STATES,
    WORK_STREAM,
    EventLog,
    Quarantine,
    Topology,
    bell_filter,
    consumer_name,
    ensure_work_consumer,
    lane_filter,
    parse_work_subject,
)
from mesh.priority import CLASS_NAMES
from mesh.telemetry import METRICS, get_logger
from mesh.v1 import work_pb2
from services.worker._fairshare import FairShare
from services.worker._priority import WaitBounds, dispatch_deadline, due_time
from services.worker._runner import PoisonMessage, Runner, check_work_item
from services.worker._slots import SlotLimits, SlotPolicy, Waiting

log = get_logger(__name__)

_FIRST_HOLD_S = 1.0  # a refused tenant partition is tried again after this, doubling...
_MAX_HOLD_S = 30.0  # ...up to this
INTERACTIVE = CLASS_NAMES.index("interactive")  # its lane's rank: urgency(PRIORITY_CLASS_INTERACTIVE)
_READY_S = 0.005  # how long a pull waits for items that are not there yet
_FIRST_PULL_S = 0.05  # the same, on a partition consumer just declared


@dataclass(frozen=True)
class _Fetched:
    lane: int
    item: work_pb2.WorkItem
    msg: Msg


@dataclass
class _Running:
    task_id: str
    msg: Msg
    lane: int
    job: asyncio.Task[None]
    interactive: bool
    cancelled_by_request: bool = False
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Lane:
    """One lane of one pool: its tenants' turns, its doorbell, its partition subscriptions."""

    pool: str
    name: str
    rank: int
    share: FairShare
    bell: asyncio.Event = field(default_factory=asyncio.Event)
    # tenant → (pull subscription, when its consumer was last declared)
    partitions: dict[str, tuple[JetStreamContext.PullSubscription, float]] = field(default_factory=dict)
    refreshed_at: float = float("-inf")
    pulled_at: float = float("-inf")  # when a pull last brought items
    missed_at: float = float("-inf")  # when a pull last came back empty though work was expected
    refusals: dict[str, int] = field(default_factory=dict)  # tenant → pulls the broker refused in a row


class Dispatcher:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        events: EventLog,
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
    ) -> None:
        self._nc = nc
        self._js = js
        self._events = events
        self._runner = runner
        self._pools = pools
        self._slots: SlotPolicy[_Fetched] = SlotPolicy(SlotLimits.of(concurrency, reserve, guaranteed))
        self._quarantine = Quarantine(js, nc)
        self._bounds = bounds or WaitBounds()
        self._topology = topology or Topology()
        self._weights = dict(tenant_weights or {})
        self._refresh_s = refresh_s
        self._busy_refresh_s = busy_refresh_s
        self._buffer_per_lane = max(1, concurrency)
        self._waiting_per_lane = [0] * len(CLASS_NAMES)
        self._order = itertools.count()
        # Keyed by task id for cancels; a stale copy of a running item may run beside it
        # under the same id, so slots are counted by the policy, not by this dict.
        self._running: dict[str, _Running] = {}
        self._changed = asyncio.Event()
        self._room = [asyncio.Event() for _ in CLASS_NAMES]
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._bells: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._fetchers: list[asyncio.Task[None]] = []
        self.completed = 0
        self._step_s = 0.0  # moving average of how long a step holds a slot
        self._stopping = False
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

    async def start(self) -> None:
        for pool in self._pools:
            for rank, name in enumerate(CLASS_NAMES):
                self._lanes[(pool, name)] = _Lane(pool, name, rank, FairShare(self._weights))
            self._bells.append(await self._nc.subscribe(bell_filter(pool), cb=self._on_bell))
        self._fetchers = [asyncio.create_task(self._fetch_loop(lane)) for lane in self._lanes.values()]
        self._tasks = [asyncio.create_task(self._dispatch_loop()), asyncio.create_task(self._keep_buffer_alive())]

    async def _on_bell(self, msg: Msg) -> None:
        parsed = parse_work_subject(msg.subject)
        lane = self._lanes.get(parsed[:2]) if parsed else None
        if parsed and lane:
            lane.share.mark(parsed[2])
            lane.bell.set()

    def pause(self) -> None:
        """Take no new work until `resume` (what is buffered or running stays)."""
        self._pulling.clear()

    def resume(self) -> None:
        self._pulling.set()

    async def _fetch_loop(self, lane: _Lane) -> None:
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
                # Counts are re-read every refresh_s (redeliveries and retries ring no bell).
                # A pull can also come back empty while items remain (the server was slow to
                # answer): a lane that was busy and now sees no work re-reads them sooner.
                now = time.monotonic()
                if now - lane.refreshed_at >= self._refresh_s:
                    await self._refresh(lane)
                tenant = lane.share.pick(now)
                busy = now - max(lane.pulled_at, lane.missed_at) < self._refresh_s
                every_s = self._busy_refresh_s if busy else self._refresh_s
                if tenant is None and now - lane.refreshed_at >= every_s:
                    await self._refresh(lane)
                    tenant = lane.share.pick(now)
                if tenant is None:
                    lane.bell.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lane.bell.wait(), every_s)
                    continue
                # Ask for what is thought to be there: a pull for more than is stored lingers at
                # the server until its expiry, so one fresh item would wait out the whole window.
                asked = min(room, max(1, lane.share.backlog(tenant)))
                token = lane.share.begin(tenant)
                try:
                    msgs = await self._pull(lane, tenant, asked)
                except nats.js.errors.APIError as exc:
                    self._refused(lane, tenant, exc)
                    continue
                lane.refusals.pop(tenant, None)
                lane.share.settle(tenant, token, asked=asked, got=len(msgs))
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                return
            except Exception as exc:  # reconnecting, server restart: back off and keep pulling
                log.warning("fetch failed: %r", exc)
                await asyncio.sleep(0.5)
                continue
            if not msgs:
                # Look again soon, not in a second: an empty pull zeroed this tenant's backlog,
                # but on a loaded machine a pull can miss items that are there. Until a recount
                # restores it, every turn would go to the other backlogged tenants (the share
                # drifted to 0.5 for a 3:1 weight), so recount within busy_refresh_s.
                lane.missed_at = time.monotonic()
                lane.refreshed_at = min(lane.refreshed_at, lane.missed_at - self._refresh_s + self._busy_refresh_s)
                continue
            lane.pulled_at = time.monotonic()
            for msg in msgs:
                try:
                    item = check_work_item(msg.data)
                except PoisonMessage as poison:
                    await self._set_aside(msg, poison)
                    continue
                enqueued_s = item.enqueued.ToNanoseconds() / 1e9 if item.HasField("enqueued") else time.time()
                spec = item.spec
                deadline = dispatch_deadline(spec.priority_class, spec.priority, enqueued_s, self._bounds)
                due = due_time(spec.priority_class, enqueued_s, self._bounds)
                bound = self._bounds.bound_s(spec.priority_class)
                interactive = lane.rank == INTERACTIVE
                fetched = _Fetched(lane.rank, item, msg)
                self._slots.add(Waiting(deadline, next(self._order), due, bound, interactive, fetched))
                self._waiting_per_lane[lane.rank] += 1
            self._changed.set()

    def _refused(self, lane: _Lane, tenant: str, exc: nats.js.errors.APIError) -> None:
        """The broker refused this tenant's partition (its consumer, e.g. the stream's consumer
        limit reached): hold the tenant, backing off, and go on with the lane's other tenants."""
        refusals = lane.refusals[tenant] = lane.refusals.get(tenant, 0) + 1
        hold_s = min(_MAX_HOLD_S, _FIRST_HOLD_S * 2 ** (refusals - 1))
        lane.share.hold(tenant, time.monotonic() + hold_s)
        lane.partitions.pop(tenant, None)
        log.warning(
            "the broker refused a tenant partition; its work waits, the others go on",
            extra={"pool": lane.pool, "lane": lane.name, "tenant": tenant, "error": str(exc), "retry_in_s": hold_s},
        )

    async def _set_aside(self, msg: Msg, poison: PoisonMessage) -> None:
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

    async def _refresh(self, lane: _Lane) -> None:
        """Re-read how many items each tenant partition of the lane holds."""
        info = await self._js.stream_info(WORK_STREAM, subjects_filter=lane_filter(lane.pool, lane.name))
        counts = {}
        for subject, count in (info.state.subjects or {}).items():
            parsed = parse_work_subject(subject)
            if parsed:
                counts[parsed[2]] = count
        lane.share.observe(counts)
        lane.refreshed_at = time.monotonic()

    async def _pull(self, lane: _Lane, tenant: str, room: int) -> list[Msg]:
        """What the tenant's partition has ready now, up to `room` items."""
        partition = lane.partitions.get(tenant)
        now = time.monotonic()
        # The server removes a consumer nobody used for tenant_consumer_idle_s: declare it
        # again well before that could have happened since we last did.
        wait_s = _READY_S
        if partition is None or now - partition[1] > self._topology.tenant_consumer_idle_s / 2:
            await ensure_work_consumer(self._js, self._topology, lane.pool, lane.name, tenant)
            sub = partition[0] if partition else None
            if sub is None:
                sub = await self._js.pull_subscribe_bind(
                    durable=consumer_name(lane.pool, lane.name, tenant), stream=WORK_STREAM
                )
                wait_s = _FIRST_PULL_S  # a consumer just created may take a moment to find its items
            partition = lane.partitions[tenant] = (sub, now)
        try:
            return await partition[0].fetch(batch=room, timeout=wait_s)
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        except Exception:
            lane.partitions.pop(tenant, None)  # declare and bind afresh next time
            raise

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
            job = asyncio.create_task(self._runner.run(fetched.msg, fetched.item))
            running = _Running(fetched.item.spec.task_id, fetched.msg, fetched.lane, job, waiting.interactive)
            self._running[running.task_id] = running
            METRICS.in_flight.inc()
            job.add_done_callback(functools.partial(self._on_done, running))

    def _on_done(self, running: _Running, _: asyncio.Task[None]) -> None:
        self._finished(running)

    def _finished(self, running: _Running) -> None:
        # The next step of the same task may already run under the same id: remove only ours.
        if self._running.get(running.task_id) is running:
            del self._running[running.task_id]
        self._slots.release(running.interactive)
        METRICS.in_flight.dec()
        self._step_s = 0.8 * self._step_s + 0.2 * (time.monotonic() - running.started)
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
            await asyncio.sleep(self._topology.ack_wait_s / 3)
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

    async def _settle_cancelled(self, msg: Msg, task_id: str) -> None:
        last = await self._events.last(task_id)
        if last is not None and last.event.state in TERMINAL_STATES:
            with contextlib.suppress(Exception):
                await msg.ack_sync(timeout=5.0)

    async def shutdown(self, grace_s: float) -> None:
        """Stop pulling, let running steps finish within `grace_s`, hand the rest back."""
        # The flag, not only cancel(): a fetch may swallow the cancellation and return.
        self._stopping = True
        for event in (*self._room, self._changed, self._pulling, *(lane.bell for lane in self._lanes.values())):
            event.set()
        for fetcher in self._fetchers:
            fetcher.cancel()
        await asyncio.gather(*self._fetchers, return_exceptions=True)
        # An outstanding pull request would make the connection's drain wait out its timeout.
        subscriptions = [p[0] for lane in self._lanes.values() for p in lane.partitions.values()]
        unsubscribing: list[Subscription | JetStreamContext.PullSubscription] = [*subscriptions, *self._bells]
        for sub in unsubscribing:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for waiting in self._slots.clear():
            with contextlib.suppress(Exception):
                await waiting.payload.msg.nak()
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
