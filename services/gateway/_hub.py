"""EventHub: one NATS subscription per gateway fans task events out to watchers.

A watcher first replays the task's stored events after its resume point, then
follows live events. Live delivery is core NATS: cheap, but it can lose a message
across a reconnect or lag behind a flood of other tasks' events. So any gap in
sequence numbers is filled from the JetStream store, and a quiet watcher re-reads
the store on a short timer that backs off (50 ms doubling to 2 s): the stream a
client sees has no gap and no duplicate, and a missed live message costs tens of
milliseconds, not seconds.

Quality of service. GUARANTEED events are all stored: a slow watcher's backlog of live
notices is bounded (`STORED_BUFFER`); past it the notices are dropped and the watcher
resumes from the store, so it still misses nothing. The partial events of a BEST_EFFORT
task are live only (``tm.live.<task>``): a watcher buffers at most `LIVE_BUFFER` of them,
drops the rest, and the next event it sends carries `dropped` — how many it lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mesh.errors import NotFound
from mesh.fabric import EVENTS_PREFIX, LIVE_PREFIX, EventLog, task_id_of_event_subject
from mesh.telemetry import METRICS
from mesh.v1 import task_pb2

STORED_BUFFER = 4096
LIVE_BUFFER = 256


class _Inbox:
    """One watcher's incoming notices: stored events (bounded, recoverable from the store) and
    best-effort partials (bounded, lost past the bound and counted)."""

    def __init__(self, live_limit: int = LIVE_BUFFER, stored_limit: int = STORED_BUFFER) -> None:
        self._queue: asyncio.Queue[tuple[bool, bytes]] = asyncio.Queue()
        self._live_limit = live_limit
        self._stored_limit = stored_limit
        self._live = 0
        self.dropped = 0

    def stored(self, data: bytes) -> None:
        if self._queue.qsize() - self._live < self._stored_limit:
            self._queue.put_nowait((False, data))
        # else: the watcher is far behind; it finds the gap and reads the store instead

    def live(self, data: bytes) -> None:
        if self._live >= self._live_limit:
            self.dropped += 1
            return
        self._live += 1
        self._queue.put_nowait((True, data))

    async def get(self) -> tuple[bool, bytes]:
        is_live, data = await self._queue.get()
        if is_live:
            self._live -= 1
        return is_live, data

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped


class EventHub:
    def __init__(
        self,
        nc: Client,
        events: EventLog,
        recheck_s: float = 2.0,
        live_buffer: int = LIVE_BUFFER,
        stored_buffer: int = STORED_BUFFER,
    ) -> None:
        self._nc = nc
        self._events = events
        self._recheck_s = recheck_s
        self._live_buffer = live_buffer
        self._stored_buffer = stored_buffer
        self._watchers: dict[str, set[_Inbox]] = {}
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        for prefix, callback in ((EVENTS_PREFIX, self._on_event), (LIVE_PREFIX, self._on_live)):
            self._subs.append(
                await self._nc.subscribe(
                    f"{prefix}.>", cb=callback, pending_msgs_limit=1_000_000, pending_bytes_limit=-1
                )
            )

    async def close(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs = []

    async def _on_event(self, msg: Msg) -> None:
        for inbox in self._watchers.get(task_id_of_event_subject(msg.subject), ()):
            inbox.stored(msg.data)

    async def _on_live(self, msg: Msg) -> None:
        for inbox in self._watchers.get(msg.subject[len(LIVE_PREFIX) + 1 :], ()):
            inbox.live(msg.data)

    def _join(self, task_ids: list[str], inbox: _Inbox) -> None:
        for task_id in task_ids:
            self._watchers.setdefault(task_id, set()).add(inbox)
        METRICS.watchers.inc()

    def _leave(self, task_ids: list[str], inbox: _Inbox) -> None:
        for task_id in task_ids:
            inboxes = self._watchers.get(task_id)
            if inboxes is not None:
                inboxes.discard(inbox)
                if not inboxes:
                    del self._watchers[task_id]
        METRICS.watchers.dec()

    def _quiet_wait(self, quiet_periods: int) -> float:
        """How long to wait for a live event before re-reading the store: short at first (live
        delivery can miss or lag an event), backing off to `recheck_s`."""
        return min(self._recheck_s, 0.05 * 2**quiet_periods)

    async def watch(self, task_id: str, after_sequence: int = 0) -> AsyncIterator[task_pb2.TaskEvent]:
        """Events of `task_id` after `after_sequence`, ending with the final one."""
        inbox = _Inbox(self._live_buffer, self._stored_buffer)
        self._join([task_id], inbox)
        try:
            last = after_sequence
            last_live = 0
            seen_any = False
            async for stored in self._events.read(task_id, after_sequence):
                seen_any = True
                yield stored.event
                last = stored.event.sequence
                if stored.event.final:
                    return
            if not seen_any and await self._events.last(task_id) is None:
                raise NotFound(f"task {task_id!r} does not exist")
            quiet = 0
            while True:
                try:
                    async with asyncio.timeout(self._quiet_wait(quiet)):
                        is_live, data = await inbox.get()
                    live = task_pb2.TaskEvent.FromString(data)
                    quiet = 0
                except TimeoutError:
                    is_live, live, quiet = False, None, quiet + 1
                if is_live and live is not None:
                    # A best-effort partial: send it if it follows what was sent; never fill it in.
                    if live.sequence == last and live.live_index > last_live:
                        last_live = live.live_index
                        live.dropped = inbox.take_dropped()
                        yield live
                    continue
                if live is not None and live.sequence <= last:
                    continue
                if live is None or live.sequence > last + 1:
                    # A gap (events missed while reconnecting) or a quiet period: read the store.
                    async for stored in self._events.read(task_id, last):
                        stored.event.dropped = inbox.take_dropped()
                        yield stored.event
                        last, last_live = stored.event.sequence, 0
                        if stored.event.final:
                            return
                # The live event is next (it can arrive a moment before the store shows it).
                if live is not None and live.sequence == last + 1:
                    live.dropped = inbox.take_dropped()
                    yield live
                    last, last_live = live.sequence, 0
                    if live.final:
                        return
        finally:
            self._leave([task_id], inbox)

    async def watch_many(self, task_ids: list[str], final_only: bool = False) -> AsyncIterator[task_pb2.TaskEvent]:
        """Events of several tasks (interleaved, each in order) until every one has ended.

        With `final_only`, just each task's final event: the current state of all of
        them is read in one batched request, then live events fill in the rest.
        """
        ids = list(dict.fromkeys(task_ids))
        # Best-effort partials are for single-task watches; this stream carries stored events.
        inbox = _Inbox(live_limit=0, stored_limit=self._stored_buffer)
        self._join(ids, inbox)
        last = dict.fromkeys(ids, 0)
        remaining = set(ids)
        try:
            current = await self._events.last_many(ids)
            missing = [task_id for task_id in ids if task_id not in current]
            if missing:
                raise NotFound(f"tasks do not exist: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
            for task_id in ids:
                if final_only:
                    if current[task_id].event.final:
                        remaining.discard(task_id)
                        yield current[task_id].event
                    continue
                async for stored in self._events.read(task_id):
                    last[task_id] = stored.event.sequence
                    if stored.event.final:
                        remaining.discard(task_id)
                    yield stored.event
            quiet = 0
            while remaining:
                try:
                    async with asyncio.timeout(self._quiet_wait(quiet)):
                        _, data = await inbox.get()
                    live: task_pb2.TaskEvent | None = task_pb2.TaskEvent.FromString(data)
                    quiet = 0
                except TimeoutError:
                    live, quiet = None, quiet + 1
                if live is not None and live.task_id not in remaining:
                    continue
                if final_only:
                    if live is None:  # quiet period: make sure no final event was missed
                        for stored in (await self._events.last_many(remaining)).values():
                            if stored.event.final:
                                remaining.discard(stored.event.task_id)
                                yield stored.event
                    elif live.final:
                        remaining.discard(live.task_id)
                        yield live
                    continue
                if live is not None and live.sequence <= last[live.task_id]:
                    continue
                if live is None or live.sequence > last[live.task_id] + 1:
                    # A gap or a quiet period: read the store.
                    for task_id in [live.task_id] if live is not None else list(remaining):
                        async for stored in self._events.read(task_id, last[task_id]):
                            last[task_id] = stored.event.sequence
                            if stored.event.final:
                                remaining.discard(task_id)
                            yield stored.event
                if live is not None and live.sequence == last[live.task_id] + 1:
                    last[live.task_id] = live.sequence
                    if live.final:
                        remaining.discard(live.task_id)
                    yield live
        finally:
            self._leave(ids, inbox)
