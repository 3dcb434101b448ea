"""A task's event stream on JetStream: append with fencing, read back for replay.

Each task's events live on their own subject. Writers are fenced with
``Nats-Expected-Last-Subject-Sequence``: an append names the stream sequence of
the event it follows, so a stale writer (a worker that was paused or presumed
dead, a duplicate work item) cannot interleave events — it gets `ChainMoved`
and must re-read the chain. ``Nats-Msg-Id`` = ``<task>:<seq>`` additionally makes
a retried append idempotent inside the duplicate window.

Reads never fail on one bad event: a stored message that is not a TaskEvent of
its subject's task is quarantined (`_quarantine`), removed from the chain (so
writers fenced on the chain are not blocked by it) and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import google.protobuf.message
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from mesh.errors import Unavailable
from mesh.fabric import _subjects as s
from mesh.fabric._commit import GroupCommit
from mesh.fabric._quarantine import Quarantine
from mesh.lifecycle import Lifecycle
from mesh.telemetry import get_logger
from mesh.v1 import task_pb2

WRONG_LAST_SEQUENCE = 10071
log = get_logger(__name__)

TERMINAL_STATES = frozenset(
    {
        task_pb2.TASK_STATE_SUCCEEDED,
        task_pb2.TASK_STATE_FAILED,
        task_pb2.TASK_STATE_CANCELLED,
        task_pb2.TASK_STATE_DEAD_LETTERED,
    }
)


class ChainMoved(Exception):
    """Someone else appended to the task's chain since the writer last looked."""


@dataclass(frozen=True)
class StoredEvent:
    event: task_pb2.TaskEvent
    stream_sequence: int


@dataclass
class _Batch:
    messages: list[Msg] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    pending: int = 0


class EventLog(Lifecycle):
    """Append to and read from the TM_EVENTS stream.

    Reads use JetStream's batched direct get: one request returns every event of
    a task (``next_by_subj`` + ``batch``) or the last event of many tasks
    (``multi_last``), instead of one round trip per message.

    Open from construction; `close` waits for the writes handed in and drops the reply inbox.
    """

    noun = "the event log"

    BATCH = 1024
    TIMEOUT_S = 1.0
    ATTEMPTS = 4

    def __init__(self, js: JetStreamContext, nc: Client) -> None:
        self._js = js
        self._nc = nc
        self._inbox_prefix = ""
        self._inbox: Subscription | None = None
        self._tokens = itertools.count()
        self._batches: dict[str, _Batch] = {}
        self._quarantine = Quarantine(js, nc)
        self._commit = GroupCommit(js, s.EVENTS_STREAM)
        self._open_now()

    async def _stop(self) -> None:
        await self._commit.aclose()
        if self._inbox is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._inbox.unsubscribe()
            self._inbox = None

    @property
    def nc(self) -> Client:
        """The NATS connection this log reads and writes through."""
        return self._nc

    async def _direct_batch(self, request: dict[str, object]) -> _Batch:
        """Send one batched direct get and collect its messages up to the EOB marker."""
        self.check_running()
        if self._inbox is None:
            self._inbox_prefix = self._nc.new_inbox()
            self._inbox = await self._nc.subscribe(f"{self._inbox_prefix}.*", cb=self._on_batch_message)
        payload = json.dumps(request).encode()
        for attempt in range(1, self.ATTEMPTS + 1):
            token = str(next(self._tokens))
            batch = self._batches[token] = _Batch()
            try:
                await self._nc.publish(
                    f"$JS.API.DIRECT.GET.{s.EVENTS_STREAM}", payload, reply=f"{self._inbox_prefix}.{token}"
                )
                await asyncio.wait_for(batch.done.wait(), self.TIMEOUT_S)
                return batch
            except TimeoutError as exc:
                # Reads are idempotent: a request the server dropped under load is simply asked again.
                if attempt == self.ATTEMPTS:
                    raise Unavailable(f"event store did not answer a batch read {attempt} times") from exc
                log.warning("batch read timed out; asking again", extra={"attempt": attempt})
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as exc:
                raise Unavailable(f"event store unreachable: {exc!r}") from exc
            finally:
                del self._batches[token]
        raise AssertionError("unreachable")

    async def _on_batch_message(self, msg: Msg) -> None:
        batch = self._batches.get(msg.subject.rpartition(".")[2])
        if batch is None:
            return  # a late answer to a read that timed out
        status = (msg.headers or {}).get("Status")
        if status is None:
            batch.messages.append(msg)
            return
        # 204 EOB ends a batch; 404 means nothing matched. Either way the read is complete.
        batch.pending = int((msg.headers or {}).get("Nats-Num-Pending", "0") or 0)
        batch.done.set()

    async def last_many(self, task_ids: Iterable[str]) -> dict[str, StoredEvent]:
        """The last stored event of each task that has any, in one round trip per 256 tasks."""
        ids = list(dict.fromkeys(task_ids))
        found: dict[str, StoredEvent] = {}
        for start in range(0, len(ids), 256):
            chunk = [s.event_subject(task_id) for task_id in ids[start : start + 256]]
            batch = await self._direct_batch({"multi_last": chunk, "batch": len(chunk)})
            for msg in batch.messages:
                headers = msg.headers or {}
                stored = await self._decode(headers.get("Nats-Subject", ""), msg.data, headers.get("Nats-Sequence"))
                if stored is None:
                    # The last event was set aside: the one before it is now the last.
                    task_id = s.task_id_of_event_subject(headers.get("Nats-Subject", ""))
                    stored = await self.last(task_id) if task_id else None
                if stored is not None:
                    found[stored.event.task_id] = stored
        return found

    async def append(self, event: task_pb2.TaskEvent, after_stream_sequence: int, *, urgent: bool = False) -> int:
        """Store `event` if the chain's last event is at `after_stream_sequence` (0: chain empty);
        `urgent`: an interactive task's event, never held for a group commit.

        Returns the new event's stream sequence. Raises ChainMoved if the chain moved on.
        """
        self.check_running()
        headers = {
            "Nats-Msg-Id": f"{event.task_id}:{event.sequence}",
            "Nats-Expected-Last-Subject-Sequence": str(after_stream_sequence),
        }
        if event.traceparent:
            headers["traceparent"] = event.traceparent
        try:
            ack = await self._commit.publish(
                s.event_subject(event.task_id), event.SerializeToString(), headers, urgent=urgent
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise ChainMoved(event.task_id) from exc
            raise Unavailable(f"event store refused an append: {exc}") from exc
        except nats.errors.Error as exc:  # any broker failure: retryable for the caller
            raise Unavailable(f"event store did not answer: {exc}") from exc
        if ack.duplicate:
            # Our own retry inside the dedup window, or another writer got this sequence first.
            raise ChainMoved(event.task_id)
        return ack.seq

    async def last(self, task_id: str) -> StoredEvent | None:
        subject = s.event_subject(task_id)
        try:
            raw = await self._js.get_last_msg(s.EVENTS_STREAM, subject, direct=True)
        except nats.js.errors.NotFoundError:
            return None
        except nats.errors.Error as exc:  # any broker failure: retryable for the caller
            raise Unavailable(f"event store did not answer: {exc}") from exc
        stored = await self._decode(subject, raw.data, raw.seq)
        if stored is not None:
            return stored
        # The last message was set aside: the last good event is the last one `read` yields.
        last: StoredEvent | None = None
        async for stored in self.read(task_id):
            last = stored
        return last

    async def first(self, task_id: str) -> StoredEvent | None:
        async for stored in self.read(task_id, after_sequence=0):
            return stored
        return None

    async def read(self, task_id: str, after_sequence: int = 0) -> AsyncIterator[StoredEvent]:
        """Stored events of `task_id` with a sequence above `after_sequence`, in order."""
        subject = s.event_subject(task_id)
        next_stream_seq = 1
        while True:
            batch = await self._direct_batch({"seq": next_stream_seq, "next_by_subj": subject, "batch": self.BATCH})
            for msg in batch.messages:
                sequence = (msg.headers or {}).get("Nats-Sequence")
                stored = await self._decode(subject, msg.data, sequence)
                next_stream_seq = int(sequence or 0) + 1 if stored is None else stored.stream_sequence + 1
                if stored is not None and stored.event.sequence > after_sequence:
                    yield stored
            if not batch.pending or not batch.messages:
                return

    async def _decode(self, subject: str, data: bytes | None, stream_sequence: int | str | None) -> StoredEvent | None:
        """The stored event, or None if the message is no event of `subject`'s task (then set aside)."""
        sequence = int(stream_sequence or 0)
        try:
            event = task_pb2.TaskEvent.FromString(data or b"")
        except google.protobuf.message.DecodeError as exc:
            await self._set_aside(subject, sequence, data, "poison_input", f"not a TaskEvent: {exc}")
            return None
        task_id = s.task_id_of_event_subject(subject)
        if subject and event.task_id != task_id:
            error = f"task_id: {event.task_id!r} is not the task of its subject"
            await self._set_aside(subject, sequence, data, "schema_mismatch", error)
            return None
        return StoredEvent(event=event, stream_sequence=sequence)

    async def _set_aside(
        self, subject: str, sequence: int, data: bytes | None, classification: str, error: str
    ) -> None:
        """Quarantine a bad stored event, then delete it so the chain's fencing sees the last good one."""
        task_id = s.task_id_of_event_subject(subject)

        async def delete() -> None:
            if sequence:
                await self._js.delete_msg(s.EVENTS_STREAM, sequence)

        await self._quarantine.set_aside("events", subject, sequence, data, classification, error, task_id, delete)


def fold(events: list[task_pb2.TaskEvent]) -> task_pb2.TaskInfo:
    """A task's current state from its events (first carries the spec)."""
    info = task_pb2.TaskInfo()
    for event in events:
        if event.HasField("spec"):
            info.spec.CopyFrom(event.spec)
            info.created.CopyFrom(event.timestamp)
        info.state = event.state
        info.updated.CopyFrom(event.timestamp)
        info.last_sequence = event.sequence
        info.attempt = max(info.attempt, event.attempt)
        if event.final and event.HasField("output"):
            info.result.CopyFrom(event.output)
        if event.HasField("error"):
            info.error.CopyFrom(event.error)
    return info
