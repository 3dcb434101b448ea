"""A task's event stream on JetStream: append with fencing, read back for replay.

Each task's events live on their own subject. Writers are fenced with
``Nats-Expected-Last-Subject-Sequence``: an append names the stream sequence of
the event it follows, so a stale writer (a worker that was paused or presumed
dead, a duplicate work item) cannot interleave events — it gets `ChainMoved`
and must re-read the chain. ``Nats-Msg-Id`` = ``<task>:<seq>`` additionally makes
a retried append idempotent inside the duplicate window.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from mesh.errors import Unavailable
from mesh.fabric import _subjects as s
from mesh.v1 import task_pb2

WRONG_LAST_SEQUENCE = 10071

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


class EventLog:
    """Append to and read from the TM_EVENTS stream."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def append(self, event: task_pb2.TaskEvent, after_stream_sequence: int) -> int:
        """Store `event` if the chain's last event is at `after_stream_sequence` (0: chain empty).

        Returns the new event's stream sequence. Raises ChainMoved if the chain moved on.
        """
        headers = {
            "Nats-Msg-Id": f"{event.task_id}:{event.sequence}",
            "Nats-Expected-Last-Subject-Sequence": str(after_stream_sequence),
        }
        if event.traceparent:
            headers["traceparent"] = event.traceparent
        try:
            ack = await self._js.publish(
                s.event_subject(event.task_id), event.SerializeToString(), headers=headers
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise ChainMoved(event.task_id) from exc
            raise Unavailable(f"event store refused an append: {exc}") from exc
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            raise Unavailable(f"event store did not answer: {exc}") from exc
        if ack.duplicate:
            # Our own retry inside the dedup window, or another writer got this sequence first.
            raise ChainMoved(event.task_id)
        return ack.seq

    async def last(self, task_id: str) -> StoredEvent | None:
        try:
            raw = await self._js.get_last_msg(s.EVENTS_STREAM, s.event_subject(task_id), direct=True)
        except nats.js.errors.NotFoundError:
            return None
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            raise Unavailable(f"event store did not answer: {exc}") from exc
        return _decode(raw.data, raw.seq)

    async def first(self, task_id: str) -> StoredEvent | None:
        async for stored in self.read(task_id, after_sequence=0):
            return stored
        return None

    async def read(self, task_id: str, after_sequence: int = 0) -> AsyncIterator[StoredEvent]:
        """Stored events of `task_id` with a sequence above `after_sequence`, in order."""
        subject = s.event_subject(task_id)
        next_stream_seq = 1
        while True:
            try:
                raw = await self._js.get_msg(
                    s.EVENTS_STREAM, seq=next_stream_seq, subject=subject, next=True, direct=True
                )
            except nats.js.errors.NotFoundError:
                return
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                raise Unavailable(f"event store did not answer: {exc}") from exc
            stored = _decode(raw.data, raw.seq)
            next_stream_seq = raw.seq + 1
            if stored.event.sequence > after_sequence:
                yield stored


def _decode(data: bytes | None, stream_sequence: int | None) -> StoredEvent:
    event = task_pb2.TaskEvent()
    event.ParseFromString(data or b"")
    return StoredEvent(event=event, stream_sequence=stream_sequence or 0)


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
