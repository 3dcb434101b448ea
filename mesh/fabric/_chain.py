"""A writer's view of one task's event chain: the one place an event is appended to it.

`Chain` knows where the chain stands (the last event's sequence and stream sequence) and writes
the next event fenced on it (`EventStore.append`: a writer that fell behind gets ChainMoved). The
worker's runner writes a step's events through it; the scheduler's cancellation writes the
final CANCELLED through it (`Chain.after` a stored event).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.fabric._events import StoredEvent
from mesh.fabric._ports import EventStore, Publisher
from mesh.fabric._subjects import live_subject
from mesh.telemetry import METRICS
from mesh.v1 import task_pb2


@dataclass
class Chain:
    """The writer's view of one task's event chain."""

    task_id: str
    sequence: int
    stream_sequence: int
    attempt: int
    worker_id: str
    step: str
    traceparent: str
    partials: int = field(default=0)
    checkpoint: bytes | None = None  # the latest an earlier attempt of this step stored
    work_item_sequence: int = 0
    live_index: int = 0  # best-effort partials published since the last stored event
    urgent: bool = False  # an interactive task's chain: its events skip group commit

    async def emit(self, events: EventStore, state: int, **fields: object) -> None:
        event = task_pb2.TaskEvent(
            task_id=self.task_id,
            sequence=self.sequence + 1,
            state=state,  # type: ignore[arg-type]
            attempt=self.attempt,
            step=self.step,
            worker_id=self.worker_id,
            traceparent=self.traceparent,
            work_item_sequence=self.work_item_sequence,
            **fields,  # type: ignore[arg-type]
        )
        event.timestamp.GetCurrentTime()
        self.stream_sequence = await events.append(event, self.stream_sequence, urgent=self.urgent)
        self.sequence += 1
        self.live_index = 0
        METRICS.events_published.inc()

    async def emit_live(self, nc: Publisher, output: task_pb2.TaskOutput, confidence: float) -> None:
        """A best-effort partial: core NATS only, numbered after the last stored event."""
        self.live_index += 1
        event = task_pb2.TaskEvent(
            task_id=self.task_id,
            sequence=self.sequence,
            live_index=self.live_index,
            state=task_pb2.TASK_STATE_RUNNING,
            output=output,
            partial_confidence=confidence,
            attempt=self.attempt,
            step=self.step,
            worker_id=self.worker_id,
            traceparent=self.traceparent,
        )
        event.timestamp.GetCurrentTime()
        await nc.publish(live_subject(self.task_id), event.SerializeToString())
        METRICS.events_published.inc()

    @classmethod
    def after(cls, last: StoredEvent, *, worker_id: str = "", step: str = "") -> Chain:
        """A writer placed after the stored event `last`, of the attempt it belongs to."""
        event = last.event
        return cls(
            task_id=event.task_id,
            sequence=event.sequence,
            stream_sequence=last.stream_sequence,
            attempt=event.attempt,
            worker_id=worker_id,
            step=step,
            traceparent=event.traceparent,
        )
