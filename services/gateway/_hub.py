"""EventHub: one NATS subscription per gateway fans task events out to watchers.

A watcher first replays the task's stored events after its resume point, then
follows live events. Live delivery is core NATS: cheap, but it can lose a message
across a reconnect or lag behind a flood of other tasks' events. So any gap in
sequence numbers is filled from the JetStream store, and the hub reconciles every
watched task with the store: ONE loop asks for the last stored event of all due
tasks in batched requests (`EventLog.last_many`, 256 tasks a request) and wakes
only the watchers that are behind. A task is due 50 ms after a live event of it,
backing off (doubling) to `recheck_s` (10 s) while it stays quiet: a lagging live message
costs tens of milliseconds, and an idle watcher costs no request of its own — 10 000
idle watchers of distinct tasks cost about 40 small requests every `recheck_s`. Live
messages are lost for certain only while the connection is down: when the connection's
reconnect count changes, every watched task is compared with the store at once.

A stream resumed at the final event of a finished task ends at once having sent
nothing (the client has the final event already); a resume position past the task's
last event is `OutOfRange` naming the resume field. A watcher whose client went away
ends: gRPC and WebSocket cancel it; for SSE the caller passes `client_gone`, which
the same loop checks every `reap_s` for all watchers.

Quality of service. GUARANTEED events are all stored: a slow watcher's backlog of live
notices is bounded (`STORED_BUFFER`); past it the notices are dropped and the watcher
resumes from the store, so it still misses nothing. The partial events of a BEST_EFFORT
task are live only (``tm.live.<task>``): a watcher buffers at most `LIVE_BUFFER` of them,
drops the rest, and the next event it sends carries `dropped` — how many it lost.

A live message that does not parse, or names another task than its subject, is skipped
and counted (``tidemesh_watch_malformed_total``); no watcher sees it.

Core NATS hands a published event to subscribers as it is published, while JetStream stores
it (fsync'd) alongside: a notice can arrive before the store shows the event. So a watcher
that joins between the two — a client that submits, then watches a task that finishes at
once — would see the event in neither. The hub therefore keeps the last few notices of the
tasks it saw most recently (`RECENT_TASKS`, raw bytes) and hands a joining watcher those of
its task; without them, that watcher waited for the first reconciliation (~0.8 s; measured as
the p99 of interactive probes under a batch flood).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from enum import Enum

from google.protobuf.message import DecodeError
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mesh.errors import MeshError, NotFound, OutOfRange
from mesh.fabric import EVENTS_PREFIX, LIVE_PREFIX, EventStore, StoredEvent, task_id_of_event_subject
from mesh.lifecycle import Lifecycle
from mesh.telemetry import METRICS, get_logger
from mesh.v1 import task_pb2

STORED_BUFFER = 4096
LIVE_BUFFER = 256
FIRST_RECHECK_S = 0.05
TICK_S = 0.05  # the shortest time between two reconciliation passes
# A new watcher read the store after it joined the live subscription, and got the notices of its
# task that arrived just before (`_recall`), so nothing slips between the two: its task is first
# compared with the store after about a second (0.05 s x 2^4), not 50 ms.
NEW_WATCHER_QUIET = 4
RECENT_TASKS = 16_384  # tasks whose last notices the hub keeps for watchers that join late
RECENT_PER_TASK = 4
# How often the loop looks at the connection's reconnect count while it has nothing due sooner.
RECONNECT_POLL_S = 1.0
log = get_logger(__name__)


class _Kind(Enum):
    STORED = "stored"  # a live notice of a stored event
    LIVE = "live"  # a best-effort partial, never stored
    BEHIND = "behind"  # the store holds more than this watcher has sent or has queued: read it
    GONE = "gone"  # the client went away


Notice = tuple[_Kind, str, task_pb2.TaskEvent | None]


class PendingWatch:
    """`EventHub.watch_new`'s watch: already joined; iterate it once, and `aclose()` it whether
    or not it was iterated (closing is idempotent)."""

    def __init__(self, hub: EventHub, task_id: str, inbox: _Inbox) -> None:
        self.task_id = task_id
        self._hub = hub
        self._inbox = inbox
        self._iteration: AsyncGenerator[task_pb2.TaskEvent, None] | None = None
        self._left = False

    def __aiter__(self) -> AsyncIterator[task_pb2.TaskEvent]:
        if self._iteration is not None or self._left:
            raise RuntimeError("a pending watch is iterated once, before it is closed")
        self._iteration = self._events()
        return self._iteration

    async def _events(self) -> AsyncGenerator[task_pb2.TaskEvent, None]:
        try:
            async for event in self._hub._follow(self.task_id, self._inbox, 0):
                yield event
        finally:
            self._leave()

    def _leave(self) -> None:
        if not self._left:
            self._left = True
            self._hub._leave([self.task_id], self._inbox)

    async def aclose(self) -> None:
        """Leave the hub (an iteration that never started leaves too)."""
        if self._iteration is not None:
            await self._iteration.aclose()
        self._leave()


class _Inbox:
    """One watcher's incoming notices: stored events (bounded, recoverable from the store),
    best-effort partials (bounded, lost past the bound and counted), and the hub's wake-ups
    (at most one per task, outside the bounds: they carry no data)."""

    def __init__(
        self,
        live_limit: int = LIVE_BUFFER,
        stored_limit: int = STORED_BUFFER,
        client_gone: Callable[[], bool] | None = None,
        protocol: str = "grpc",
    ) -> None:
        self.protocol = protocol  # how the client reached the gateway, for the stream metrics
        self._queue: asyncio.Queue[Notice] = asyncio.Queue()
        self._ready = asyncio.Event()
        self._live_limit = live_limit
        self._stored_limit = stored_limit
        self._live = 0
        self.dropped = 0
        self.client_gone = client_gone
        self._gone = False
        # Until its first read of the store is done, a watcher is reading everything stored anyway:
        # the hub neither wakes it nor counts it as behind (in a ramp of thousands of new watchers
        # of one task, that kept the task due every 50 ms, each pass visiting every watcher, and
        # sent each new watcher to read the store a second time).
        self.replaying = True
        # Per task: the sequence sent so far, the highest stored notice queued, a wake-up pending.
        self.sent: dict[str, int] = {}
        self.noticed: dict[str, int] = {}
        self._woken: dict[str, task_pb2.TaskEvent | None] = {}

    def stored(self, task_id: str, event: task_pb2.TaskEvent) -> None:
        if self._queue.qsize() - self._live < self._stored_limit:
            self.noticed[task_id] = max(self.noticed.get(task_id, 0), event.sequence)
            self._put((_Kind.STORED, task_id, event))
        # else: the watcher is far behind; the gap or the hub's reconciliation sends it to the store

    def live(self, task_id: str, event: task_pb2.TaskEvent) -> None:
        if self._live >= self._live_limit:
            self.dropped += 1
            return
        self._live += 1
        self._put((_Kind.LIVE, task_id, event))

    def _put(self, notice: Notice) -> None:
        self._queue.put_nowait(notice)
        self._ready.set()

    def behind(self, task_id: str, last: task_pb2.TaskEvent | None) -> bool:
        """Wake the watcher if the store's last event of `task_id` is past what it will send."""
        if self.replaying:
            return False
        if task_id in self._woken:
            return True
        if last is not None and last.sequence <= max(self.sent.get(task_id, 0), self.noticed.get(task_id, 0)):
            return False
        self._woken[task_id] = last
        self._ready.set()
        return True

    def gone(self) -> None:
        self.client_gone = None
        self._gone = True
        self._ready.set()

    async def get(self) -> Notice:
        while True:
            if self._gone:
                return (_Kind.GONE, "", None)
            if not self._queue.empty():
                notice = self._queue.get_nowait()
                if notice[0] is _Kind.LIVE:
                    self._live -= 1
                return notice
            self.noticed.clear()  # nothing is queued: only what was sent counts now
            if self._woken:
                task_id, last = self._woken.popitem()
                return (_Kind.BEHIND, task_id, last)
            self._ready.clear()
            await self._ready.wait()

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped


@dataclass
class _Check:
    """When the hub next compares a watched task with the store."""

    due: float
    quiet: int = 0


class EventHub(Lifecycle):
    noun = "the event hub"

    def __init__(
        self,
        nc: Client,
        events: EventStore,
        recheck_s: float = 10.0,
        live_buffer: int = LIVE_BUFFER,
        stored_buffer: int = STORED_BUFFER,
        reap_s: float = 1.0,
    ) -> None:
        self._nc = nc
        self._events = events
        self._recheck_s = recheck_s
        self._reap_s = reap_s
        self._live_buffer = live_buffer
        self._stored_buffer = stored_buffer
        self._watchers: dict[str, set[_Inbox]] = {}
        self._checks: dict[str, _Check] = {}
        self._due: list[tuple[float, str]] = []  # a heap; entries whose time is not the check's are stale
        self._reaped: set[_Inbox] = set()  # watchers with a client_gone probe
        self._wake = asyncio.Event()
        self._sleep_until = 0.0
        self._subs: list[Subscription] = []
        self._reconciler: asyncio.Task[None] | None = None
        self._reconnects_seen = 0
        self._recent: OrderedDict[str, list[bytes]] = OrderedDict()  # task → its last notices (raw)

    async def _start(self) -> None:
        for prefix, callback in ((EVENTS_PREFIX, self._on_event), (LIVE_PREFIX, self._on_live)):
            self._subs.append(
                await self._nc.subscribe(
                    f"{prefix}.>", cb=callback, pending_msgs_limit=1_000_000, pending_bytes_limit=-1
                )
            )
        # Read now, not when the loop first runs: a reconnect in between must still count.
        self._reconnects_seen = self._reconnects()
        self._reconciler = asyncio.create_task(self._reconcile_forever(), name="event-hub-reconcile")

    async def _stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs = []
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
            self._reconciler = None

    @property
    def watched_tasks(self) -> int:
        """How many distinct tasks have a watcher on this hub."""
        return len(self._watchers)

    # --- live delivery -------------------------------------------------------------------

    async def _on_event(self, msg: Msg) -> None:
        task_id = task_id_of_event_subject(msg.subject)
        self._remember(task_id, msg.data)
        inboxes = self._watchers.get(task_id)
        if not inboxes:
            return
        event = _parse(msg.data, task_id, EVENTS_PREFIX)
        if event is None:
            return
        self._hurry(task_id)
        for inbox in inboxes:
            inbox.stored(task_id, event)

    async def _on_live(self, msg: Msg) -> None:
        task_id = msg.subject[len(LIVE_PREFIX) + 1 :]
        inboxes = self._watchers.get(task_id)
        if not inboxes:
            return
        event = _parse(msg.data, task_id, LIVE_PREFIX)
        if event is None:
            return
        for inbox in inboxes:
            inbox.live(task_id, event)

    def _remember(self, task_id: str, data: bytes) -> None:
        notices = self._recent.get(task_id)
        if notices is None:
            notices = self._recent[task_id] = []
            if len(self._recent) > RECENT_TASKS:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(task_id)
        notices.append(data)
        if len(notices) > RECENT_PER_TASK:
            del notices[0]

    def _recall(self, task_id: str, inbox: _Inbox) -> None:
        """Queue for a joining watcher the notices of `task_id` that arrived before it joined: one
        may not be in the store yet (its replay read would miss it). Older ones are skipped as
        already sent."""
        for data in self._recent.get(task_id, ()):
            event = _parse(data, task_id, EVENTS_PREFIX, count=False)  # counted when it arrived
            if event is not None:
                inbox.stored(task_id, event)

    # --- membership ------------------------------------------------------------------------

    def _join(self, task_ids: list[str], inbox: _Inbox, resumed: bool = False) -> None:
        self.check_running()  # a watch on a hub that is not delivering would never end
        for task_id in task_ids:
            self._watchers.setdefault(task_id, set()).add(inbox)
            self._recall(task_id, inbox)
            if task_id not in self._checks:
                self._checks[task_id] = check = _Check(due=0.0, quiet=NEW_WATCHER_QUIET)
                self._schedule(task_id, check, self._quiet_wait(NEW_WATCHER_QUIET))
        if inbox.client_gone is not None:
            self._reaped.add(inbox)
            self._wake.set()
        METRICS.watchers.inc()
        METRICS.stream_opened(inbox.protocol, resumed)

    def _part(self, task_id: str, inbox: _Inbox) -> None:
        """`inbox` no longer follows `task_id`."""
        inboxes = self._watchers.get(task_id)
        if inboxes is not None:
            inboxes.discard(inbox)
            if not inboxes:
                del self._watchers[task_id]
                self._checks.pop(task_id, None)

    def _leave(self, task_ids: list[str], inbox: _Inbox) -> None:
        for task_id in task_ids:
            self._part(task_id, inbox)
        self._reaped.discard(inbox)
        METRICS.watchers.dec()
        METRICS.stream_closed(inbox.protocol)

    # --- reconciliation with the store ----------------------------------------------------------

    def _schedule(self, task_id: str, check: _Check, after_s: float) -> None:
        check.due = asyncio.get_running_loop().time() + after_s
        heapq.heappush(self._due, (check.due, task_id))
        if check.due < self._sleep_until - TICK_S / 2:
            self._sleep_until = check.due
            self._wake.set()

    def _hurry(self, task_id: str) -> None:
        """A live event of `task_id` arrived: more may follow, and one of them may be missed."""
        check = self._checks.get(task_id)
        if check is None:
            return
        check.quiet = 0
        if check.due > asyncio.get_running_loop().time() + FIRST_RECHECK_S:
            self._schedule(task_id, check, FIRST_RECHECK_S)

    def _reconnects(self) -> int:
        stats = getattr(self._nc, "stats", None) or {}
        return int(stats.get("reconnects", 0))

    def _quiet_wait(self, quiet_periods: int) -> float:
        """How long until a task is compared with the store again: short at first (live
        delivery can miss or lag an event), backing off to `recheck_s`."""
        return min(self._recheck_s, FIRST_RECHECK_S * 2**quiet_periods)

    async def _reconcile_forever(self) -> None:
        """Every pass takes all the tasks that are due and compares them with the store in
        batches; passes are at least `TICK_S` apart, so tasks that fall due close together share
        one request however their times are spread."""
        loop = asyncio.get_running_loop()
        next_reap = loop.time() + self._reap_s
        while True:
            started = loop.time()
            if (reconnects := self._reconnects()) != self._reconnects_seen:
                # Live messages published while the connection was down are lost: compare every
                # watched task with the store now rather than at its (long) quiet recheck.
                self._reconnects_seen = reconnects
                for task_id, watched in self._checks.items():
                    watched.quiet = 0
                    self._schedule(task_id, watched, 0.0)
            due: dict[str, None] = {}
            while self._due and self._due[0][0] <= started:
                at, task_id = heapq.heappop(self._due)
                check = self._checks.get(task_id)
                if check is not None and check.due == at:
                    due[task_id] = None
            if due:
                try:
                    await self._reconcile(list(due))
                except Exception:  # a bug here must not end every watcher's safety net
                    log.exception("reconciliation pass failed; the next one retries")
                    for task_id in due:
                        if (check := self._checks.get(task_id)) is not None:
                            self._schedule(task_id, check, self._recheck_s)
            if self._reaped and loop.time() >= next_reap:
                self._reap()
                next_reap = loop.time() + self._reap_s
            wake_at = [self._due[0][0]] if self._due else []
            if self._reaped:
                wake_at.append(next_reap)
            if self._checks:
                wake_at.append(loop.time() + RECONNECT_POLL_S)
            self._sleep_until = max(min(wake_at), started + TICK_S) if wake_at else float("inf")
            self._wake.clear()
            timeout = None if not wake_at else max(0.0, self._sleep_until - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _reconcile(self, task_ids: list[str]) -> None:
        """Compare `task_ids` with the store in batched reads; wake the watchers that are behind."""
        try:
            last = await self._events.last_many(task_ids)
        except MeshError:
            log.warning("could not reconcile watched tasks with the store", exc_info=True)
            for task_id in task_ids:
                if (check := self._checks.get(task_id)) is not None:
                    self._schedule(task_id, check, self._recheck_s)
            return
        except Exception:  # an event in the store that does not parse: find the tasks that do
            log.warning("a watched task's last stored event does not parse", exc_info=True)
            last = await self._last_each(task_ids)
        for task_id in task_ids:
            check = self._checks.get(task_id)
            if check is None:
                continue  # every watcher left meanwhile
            stored: StoredEvent | None = last.get(task_id)
            behind = False
            if stored is not None:
                for inbox in self._watchers.get(task_id, ()):
                    behind = inbox.behind(task_id, stored.event) or behind
            # A watcher that was behind means a live event went missing: look again soon.
            if behind:
                METRICS.watch_recovered.inc()
                log.info(
                    "live delivery missed a stored event; the watcher reads the store",
                    extra={"task_id": task_id, "sequence": stored.event.sequence if stored else 0},
                )
            check.quiet = 0 if behind else check.quiet + 1
            self._schedule(task_id, check, self._quiet_wait(check.quiet))

    async def _last_each(self, task_ids: list[str]) -> dict[str, StoredEvent]:
        found: dict[str, StoredEvent] = {}
        for task_id in task_ids:
            try:
                stored = await self._events.last(task_id)
            except Exception:  # unreadable or unreachable: this task waits for the next pass
                continue
            if stored is not None:
                found[task_id] = stored
        return found

    def _reap(self) -> None:
        for inbox in list(self._reaped):
            probe = inbox.client_gone
            if probe is not None and probe():
                self._reaped.discard(inbox)
                inbox.gone()

    # --- watchers -------------------------------------------------------------------------------

    async def watch(
        self,
        task_id: str,
        after_sequence: int = 0,
        resume_field: str = "after_sequence",
        client_gone: Callable[[], bool] | None = None,
        protocol: str = "grpc",
    ) -> AsyncIterator[task_pb2.TaskEvent]:
        """Events of `task_id` after `after_sequence`, ending with the final one.

        Resumed at the final event, it ends at once having sent nothing; resumed past the
        task's last event, it raises OutOfRange naming `resume_field`. With `client_gone`,
        it ends (having sent nothing more) once that says the client went away. `protocol`
        (grpc, grpc-web, sse, websocket) labels the stream in the metrics.
        """
        inbox = _Inbox(self._live_buffer, self._stored_buffer, client_gone, protocol)
        inbox.sent[task_id] = after_sequence
        self._join([task_id], inbox, resumed=after_sequence > 0)
        try:
            last = after_sequence
            async for stored in self._events.read(task_id, after_sequence):
                last = inbox.sent[task_id] = stored.event.sequence
                yield stored.event
                if stored.event.final:
                    return
            inbox.replaying = False
            if last == after_sequence:
                current = await self._events.last(task_id)
                if current is None:
                    raise NotFound(f"task {task_id!r} does not exist")
                if after_sequence > current.event.sequence:
                    raise OutOfRange(
                        resume_field,
                        f"{after_sequence} is past the task's last event ({current.event.sequence})",
                    )
                if current.event.sequence > last:
                    inbox.behind(task_id, current.event)  # it moved while we looked
                elif current.event.final:
                    return  # resumed at the final event: nothing follows
            async for event in self._follow(task_id, inbox, last):
                yield event
        finally:
            self._leave([task_id], inbox)

    def watch_new(self, task_id: str, protocol: str = "grpc") -> PendingWatch:
        """A watch of a task about to be admitted under `task_id` (RunTask assigns the id before
        admitting): joined now, before the task has any event, so its events arrive live from
        the first and the store is read only to fill a gap (a notice missed across a
        reconnect). `aclose()` it if it is never iterated."""
        inbox = _Inbox(self._live_buffer, self._stored_buffer, protocol=protocol)
        inbox.sent[task_id] = 0
        inbox.replaying = False
        self._join([task_id], inbox)
        return PendingWatch(self, task_id, inbox)

    async def _follow(self, task_id: str, inbox: _Inbox, last: int) -> AsyncIterator[task_pb2.TaskEvent]:
        """A joined watcher's events after `last`, from its inbox, to the final one."""
        last_live = 0
        while True:
            kind, _, event = await inbox.get()
            if kind is _Kind.GONE:
                return
            if kind is _Kind.LIVE:
                # A best-effort partial: send it if it follows what was sent; never fill it in.
                assert event is not None
                if event.sequence == last and event.live_index > last_live:
                    last_live = event.live_index
                    yield _with_dropped(event, inbox.take_dropped())
                continue
            if kind is _Kind.STORED and event is not None and event.sequence <= last:
                continue
            if kind is _Kind.BEHIND or (event is not None and event.sequence > last + 1):
                # A gap (events missed while reconnecting, or dropped past the buffer): read the store.
                async for stored in self._events.read(task_id, last):
                    last, last_live = stored.event.sequence, 0
                    inbox.sent[task_id] = last
                    yield _with_dropped(stored.event, inbox.take_dropped())
                    if stored.event.final:
                        return
            # The live event is next (it can arrive a moment before the store shows it).
            if kind is _Kind.STORED and event is not None and event.sequence == last + 1:
                last, last_live = event.sequence, 0
                inbox.sent[task_id] = last
                yield _with_dropped(event, inbox.take_dropped())
                if event.final:
                    return

    async def watch_many(
        self, task_ids: list[str], final_only: bool = False, protocol: str = "grpc"
    ) -> AsyncIterator[task_pb2.TaskEvent]:
        """Events of several tasks (interleaved, each in order) until every one has ended.

        With `final_only`, just each task's final event: the current state of all of
        them is read in one batched request, then live events fill in the rest.
        """
        ids = list(dict.fromkeys(task_ids))
        # Best-effort partials are for single-task watches; this stream carries stored events.
        inbox = _Inbox(live_limit=0, stored_limit=self._stored_buffer, protocol=protocol)
        self._join(ids, inbox)
        last = inbox.sent
        last.update(dict.fromkeys(ids, 0))
        remaining = set(ids)

        def ended(task_id: str) -> None:
            remaining.discard(task_id)
            self._part(task_id, inbox)

        try:
            current = await self._events.last_many(ids)
            missing = [task_id for task_id in ids if task_id not in current]
            if missing:
                raise NotFound(f"tasks do not exist: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
            for task_id in ids:
                if final_only:
                    last[task_id] = current[task_id].event.sequence
                    if current[task_id].event.final:
                        ended(task_id)
                        yield current[task_id].event
                    continue
                async for stored in self._events.read(task_id):
                    last[task_id] = stored.event.sequence
                    if stored.event.final:
                        ended(task_id)
                    yield stored.event
            inbox.replaying = False
            while remaining:
                kind, task_id, event = await inbox.get()
                if task_id not in remaining:
                    continue
                if final_only:
                    if event is not None and event.sequence > last[task_id]:
                        last[task_id] = event.sequence
                        if event.final:
                            ended(task_id)
                            yield event
                    continue
                if event is not None and kind is _Kind.STORED and event.sequence <= last[task_id]:
                    continue
                if kind is _Kind.BEHIND or (event is not None and event.sequence > last[task_id] + 1):
                    # A gap or a task that moved without a live notice: read the store.
                    async for stored in self._events.read(task_id, last[task_id]):
                        last[task_id] = stored.event.sequence
                        if stored.event.final:
                            ended(task_id)
                        yield stored.event
                if kind is _Kind.STORED and event is not None and event.sequence == last[task_id] + 1:
                    last[task_id] = event.sequence
                    if event.final:
                        ended(task_id)
                    yield event
        finally:
            self._leave(ids, inbox)


def _parse(data: bytes, task_id: str, prefix: str, count: bool = True) -> task_pb2.TaskEvent | None:
    """A live message as a TaskEvent of `task_id`; None (counted, unless `count` is off) for anything else."""
    try:
        event = task_pb2.TaskEvent.FromString(data)
    except DecodeError:
        event = None
    if event is None or event.task_id != task_id or event.sequence < 1:
        if not count:
            return None
        METRICS.watch_malformed.labels(prefix=prefix).inc()
        log.warning("skipped a malformed live event message", extra={"subject_prefix": prefix, "task_id": task_id})
        return None
    return event


def _with_dropped(event: task_pb2.TaskEvent, dropped: int) -> task_pb2.TaskEvent:
    """`event` telling how many partials were dropped before it; live events are shared by every
    watcher of the task, so a changed one is a copy."""
    if event.dropped == dropped:
        return event
    copy = task_pb2.TaskEvent()
    copy.CopyFrom(event)
    copy.dropped = dropped
    return copy
