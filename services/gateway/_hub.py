"""EventHub: one NATS subscription per gateway fans task events out to watchers.

A watcher first replays the task's stored events after its resume point, then
follows live events. Live delivery is core NATS: cheap, but it can lose a message
across a reconnect or lag behind a flood of other tasks' events. So any gap in
sequence numbers is filled from the JetStream store, and a quiet watcher re-reads
the store on a short timer that backs off (50 ms doubling to 2 s): the stream a
client sees has no gap and no duplicate, and a missed live message costs tens of
milliseconds, not seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mesh.errors import NotFound
from mesh.fabric import EVENTS_PREFIX, EventLog, task_id_of_event_subject
from mesh.telemetry import METRICS
from mesh.v1 import task_pb2


class EventHub:
    def __init__(self, nc: Client, events: EventLog, recheck_s: float = 2.0) -> None:
        self._nc = nc
        self._events = events
        self._recheck_s = recheck_s
        self._watchers: dict[str, set[asyncio.Queue[bytes]]] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(
            f"{EVENTS_PREFIX}.>", cb=self._on_event, pending_msgs_limit=1_000_000, pending_bytes_limit=-1
        )

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_event(self, msg: Msg) -> None:
        queues = self._watchers.get(task_id_of_event_subject(msg.subject))
        if queues:
            for queue in queues:
                queue.put_nowait(msg.data)

    def _quiet_wait(self, quiet_periods: int) -> float:
        """How long to wait for a live event before re-reading the store: short at first (live
        delivery can miss or lag an event), backing off to `recheck_s`."""
        return min(self._recheck_s, 0.05 * 2**quiet_periods)

    async def watch(self, task_id: str, after_sequence: int = 0) -> AsyncIterator[task_pb2.TaskEvent]:
        """Events of `task_id` after `after_sequence`, ending with the final one."""
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._watchers.setdefault(task_id, set()).add(queue)
        METRICS.watchers.inc()
        try:
            last = after_sequence
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
                        data = await queue.get()
                    live = task_pb2.TaskEvent.FromString(data)
                    quiet = 0
                except TimeoutError:
                    live, quiet = None, quiet + 1
                if live is not None and live.sequence <= last:
                    continue
                if live is None or live.sequence > last + 1:
                    # A gap (events missed while reconnecting) or a quiet period: read the store.
                    async for stored in self._events.read(task_id, last):
                        yield stored.event
                        last = stored.event.sequence
                        if stored.event.final:
                            return
                # The live event is next (it can arrive a moment before the store shows it).
                if live is not None and live.sequence == last + 1:
                    yield live
                    last = live.sequence
                    if live.final:
                        return
        finally:
            queues = self._watchers.get(task_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._watchers[task_id]
            METRICS.watchers.dec()

    async def watch_many(self, task_ids: list[str], final_only: bool = False) -> AsyncIterator[task_pb2.TaskEvent]:
        """Events of several tasks (interleaved, each in order) until every one has ended.

        With `final_only`, just each task's final event: the current state of all of
        them is read in one batched request, then live events fill in the rest.
        """
        ids = list(dict.fromkeys(task_ids))
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for task_id in ids:
            self._watchers.setdefault(task_id, set()).add(queue)
        METRICS.watchers.inc()
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
                        data = await queue.get()
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
            for task_id in ids:
                queues = self._watchers.get(task_id)
                if queues is not None:
                    queues.discard(queue)
                    if not queues:
                        del self._watchers[task_id]
            METRICS.watchers.dec()
