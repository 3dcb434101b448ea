"""An in-memory fabric behind `mesh.fabric`'s ports, for unit tests of the runner, the dispatcher
and the event hub without NATS. It keeps the rules the code relies on: one stream sequence for
everything stored, appends fenced on the chain's last stream sequence and deduplicated by
``<task>:<sequence>`` (ChainMoved either way, as `EventLog.append`), work items deduplicated by
their step's id, a stored event also seen by core subscribers, a delivery settled once.
The same code runs on real NATS in tests/integration.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import nats.errors

from mesh.fabric import ChainMoved, StoredEvent, event_subject, item_subject, work_item_id
from mesh.v1 import deadletter_pb2, task_pb2, work_pb2

Callback = Callable[[Any], Awaitable[None]]


@dataclass
class MemoryBus:
    """Core NATS: subscriptions on ``<prefix>.>`` or exact subjects; publish calls them in order."""

    callbacks: dict[str, Callback] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=lambda: {"reconnects": 0})
    published: list[tuple[str, bytes]] = field(default_factory=list)

    async def subscribe(self, subject: str, queue: str = "", cb: Callback | None = None, **_: Any) -> SimpleNamespace:
        assert cb is not None, "the fake delivers to callbacks only"
        self.callbacks[subject] = cb

        async def unsubscribe() -> None:
            self.callbacks.pop(subject, None)

        return SimpleNamespace(unsubscribe=unsubscribe)

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        self.published.append((subject, payload))
        for pattern, callback in list(self.callbacks.items()):
            if _matches(pattern, subject):
                await callback(SimpleNamespace(subject=subject, data=payload))


def _matches(pattern: str, subject: str) -> bool:
    if pattern.endswith(".>"):
        return subject.startswith(pattern[:-1])
    return pattern == subject


@dataclass
class MemoryFabric:
    """The streams: every task's events, the work items, the dead letters — and a log of writes in order."""

    bus: MemoryBus = field(default_factory=MemoryBus)
    sequence: int = 0  # the last stream sequence handed out (one counter for all, as a store-wide clock)
    chains: dict[str, list[StoredEvent]] = field(default_factory=dict)
    items: dict[str, tuple[int, work_pb2.WorkItem]] = field(default_factory=dict)  # by dedupe id
    letters: dict[int, deadletter_pb2.DeadLetter] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    log: list[tuple[str, ...]] = field(default_factory=list)
    refuse_items: BaseException | None = None  # raised by put_item while set
    reads: int = 0
    lasts: int = 0
    last_many_calls: list[int] = field(default_factory=list)
    _event_ids: set[str] = field(default_factory=set)

    # --- EventStore ---------------------------------------------------------------------

    async def append(self, event: task_pb2.TaskEvent, after_stream_sequence: int, *, urgent: bool = False) -> int:
        chain = self.chains.get(event.task_id, [])
        last = chain[-1].stream_sequence if chain else 0
        msg_id = f"{event.task_id}:{event.sequence}"
        if after_stream_sequence != last or msg_id in self._event_ids:
            raise ChainMoved(event.task_id)
        return await self.put_event(event)

    async def put_event(self, event: task_pb2.TaskEvent, publish: bool = True) -> int:
        """Store `event` at the end of its chain, unfenced (a test setting the scene); `publish=False`:
        its live notice is lost, as across a reconnect."""
        chain = self.chains.get(event.task_id, [])
        assert event.sequence == len(chain) + 1, f"event {event.sequence} after {len(chain)} events"
        self.sequence += 1
        copy = task_pb2.TaskEvent()
        copy.CopyFrom(event)
        self.chains.setdefault(event.task_id, []).append(StoredEvent(copy, self.sequence))
        self._event_ids.add(f"{event.task_id}:{event.sequence}")
        self.log.append(("event", event.task_id, task_pb2.TaskState.Name(event.state)))
        if publish:
            await self.bus.publish(event_subject(event.task_id), event.SerializeToString())
        return self.sequence

    async def last(self, task_id: str) -> StoredEvent | None:
        self.lasts += 1
        chain = self.chains.get(task_id)
        return _copy(chain[-1]) if chain else None

    async def first(self, task_id: str) -> StoredEvent | None:
        chain = self.chains.get(task_id)
        return _copy(chain[0]) if chain else None

    async def read(self, task_id: str, after_sequence: int = 0) -> AsyncIterator[StoredEvent]:
        self.reads += 1
        for stored in list(self.chains.get(task_id, ())):
            if stored.event.sequence > after_sequence:
                yield _copy(stored)

    async def last_many(self, task_ids: Iterable[str]) -> dict[str, StoredEvent]:
        ids = list(dict.fromkeys(task_ids))
        for start in range(0, len(ids), 256):
            self.last_many_calls.append(len(ids[start : start + 256]))
        return {task_id: _copy(self.chains[task_id][-1]) for task_id in ids if self.chains.get(task_id)}

    def states(self, task_id: str) -> list[str]:
        return [task_pb2.TaskState.Name(s.event.state) for s in self.chains.get(task_id, ())]

    # --- WorkSink -----------------------------------------------------------------------

    async def put_item(self, item: work_pb2.WorkItem, subject: str = "", copy: str = "") -> bool:
        if self.refuse_items is not None:
            raise self.refuse_items
        item_id = work_item_id(item.spec.task_id, item.step_index, copy)
        if item_id in self.items:
            return False
        self.sequence += 1
        stored = work_pb2.WorkItem()
        stored.CopyFrom(item)
        self.items[item_id] = (self.sequence, stored)
        self.log.append(("item", item.spec.task_id, str(item.step_index)))
        return True

    def delivery(self, task_id: str, step_index: int = 0, attempt: int = 1, copy: str = "") -> MemoryDelivery:
        """The stored item of `task_id`'s step as its consumer would deliver it (`attempt`-th time)."""
        sequence, item = self.items[work_item_id(task_id, step_index, copy)]
        return MemoryDelivery(self, item_subject(item), item.SerializeToString(), sequence, attempt)

    # --- DeadLetterSink -----------------------------------------------------------------

    async def record(self, letter: deadletter_pb2.DeadLetter, alert: bool = True, fence: int = 0) -> int:
        self.sequence += 1
        self.letters[self.sequence] = letter
        self.log.append(("letter", letter.task_id))
        if alert:
            self.alerts.append(letter.task_id)
        return self.sequence

    async def withdraw(self, task_id: str, sequence: int) -> None:
        self.letters.pop(sequence, None)  # a letter already gone is no error, as in DeadLetterStore
        self.log.append(("withdrawn", task_id))

    async def alert(self, letter: deadletter_pb2.DeadLetter) -> None:
        self.alerts.append(letter.task_id)

    # --- scenes -------------------------------------------------------------------------

    async def admit(self, spec: task_pb2.TaskSpec) -> MemoryDelivery:
        """What admission stores: QUEUED (with the spec), then the first work item fenced on it."""
        queued = task_pb2.TaskEvent(task_id=spec.task_id, sequence=1, state=task_pb2.TASK_STATE_QUEUED, spec=spec)
        stream_sequence = await self.append(queued, 0)
        item = work_pb2.WorkItem(spec=spec, step_index=0, last_event_sequence=1)
        item.last_event_stream_sequence = stream_sequence
        item.enqueued.GetCurrentTime()
        await self.put_item(item)
        return self.delivery(spec.task_id)


class MemoryDelivery:
    """A delivered work item: settled once (ack, nak or term), as a JetStream message is."""

    def __init__(self, fabric: MemoryFabric, subject: str, data: bytes, sequence: int, attempt: int) -> None:
        self._fabric = fabric
        self.subject = subject
        self.data = data
        self.reply = f"$JS.ACK.fake.{sequence}.{attempt}"
        self.metadata = SimpleNamespace(num_delivered=attempt, sequence=SimpleNamespace(stream=sequence))
        self.settled: str | None = None
        self.nak_delay: float | None = None
        self.extended = 0
        try:
            self.task_id = work_pb2.WorkItem.FromString(data).spec.task_id
        except Exception:  # a message that is no work item at all
            self.task_id = ""

    def _settle(self, how: str) -> None:
        if self.settled is not None:
            raise nats.errors.MsgAlreadyAckdError(self)
        self.settled = how
        self._fabric.log.append((how, self.task_id))

    async def ack_sync(self, timeout: float = 1.0) -> MemoryDelivery:  # noqa: ASYNC109
        self._settle("ack")
        return self

    async def nak(self, delay: int | float | None = None) -> None:
        self._settle("nak")
        self.nak_delay = delay

    async def in_progress(self) -> None:
        self.extended += 1

    async def term(self) -> None:
        self._settle("term")


def _copy(stored: StoredEvent) -> StoredEvent:
    event = task_pb2.TaskEvent()
    event.CopyFrom(stored.event)
    return StoredEvent(event, stored.stream_sequence)


class MemoryLane:
    """One lane of one pool, fed by the test (`offer`): a dispatcher's `LaneSource` without NATS."""

    def __init__(self, pool: str, name: str, rank: int) -> None:
        self.pool, self.name, self.rank = pool, name, rank
        self.queue: list[Any] = []
        self.rung: list[str] = []
        self.closed = False
        self._bell = asyncio.Event()

    def offer(self, *deliveries: Any) -> None:
        self.queue.extend(deliveries)
        self._bell.set()

    def ring(self, tenant: str) -> None:
        self.rung.append(tenant)
        self._bell.set()

    def wake(self) -> None:
        self._bell.set()

    async def take(self, room: int) -> list[Any]:
        if not self.queue:
            self._bell.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._bell.wait(), 0.05)
            return []
        taken, self.queue = self.queue[:room], self.queue[room:]
        return taken

    async def close(self) -> None:
        self.closed = True


@dataclass
class MemoryQuarantine:
    """Records what a dispatcher sets aside, then runs its `remove` (terminate), as Quarantine does."""

    records: list[tuple[str, str]] = field(default_factory=list)

    async def set_aside(
        self,
        source: str,
        subject: str,
        stream_sequence: int,
        data: bytes | None,
        classification: str,
        error: str,
        task_id: str = "",
        remove: Callable[[], Awaitable[object]] | None = None,
    ) -> bool:
        self.records.append((classification, error))
        if remove is not None:
            await remove()
        return True
