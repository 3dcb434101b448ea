"""Admission: validate, deduplicate, record the task, enqueue its first step.

A submit is acknowledged only after both the task's QUEUED event (which carries
the spec) and its first work item are stored in JetStream. Every write is
idempotent, so a client retry after any crash finishes a half-done admission
instead of creating a second task.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter

import nats.errors
import nats.js.errors
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js.kv import KeyValue

from mesh.errors import InvalidArgument, Unavailable
from mesh.fabric import REPLAY_OF_LABEL, ChainMoved, EventLog, KeySequencer, TaskIndex, WorkQueue, work_subject
from mesh.tasks import KINDS, SCHEMA_VERSION, Limits, new_task_id, validate_spec
from mesh.telemetry import METRICS, current_traceparent, get_logger
from mesh.v1 import scheduler_pb2, task_pb2, work_pb2
from services.scheduler._flow import FlowControl, FlowLimits

log = get_logger(__name__)


class Admitter:
    def __init__(
        self,
        work: WorkQueue,
        events: EventLog,
        idempotency: KeyValue,
        limits: Limits,
        flow: FlowControl | None = None,
        sequencer: KeySequencer | None = None,
        index: TaskIndex | None = None,
    ) -> None:
        self._index = index
        self._work = work
        self._sequencer = sequencer
        self._events = events
        self._flow = flow or FlowControl(FlowLimits())
        self._idempotency = idempotency
        self._limits = limits

    async def admit(self, requested: task_pb2.TaskSpec) -> scheduler_pb2.AdmitTaskResponse:
        validate_spec(requested, self._limits)
        self._flow.admit(requested.tenant, requested.priority_class)
        try:
            return await self._admit_valid(requested)
        finally:
            self._flow.settled(requested.tenant, requested.priority_class)

    async def admit_many(self, specs: list[task_pb2.TaskSpec]) -> list[scheduler_pb2.AdmitTaskResponse]:
        """Validate all, then admit all concurrently (their JetStream writes pipeline)."""
        for index, spec in enumerate(specs):
            try:
                validate_spec(spec, self._limits)
            except InvalidArgument as exc:
                raise InvalidArgument(f"specs[{index}].{exc.field.removeprefix('spec.')}", exc.reason) from exc
        demand = Counter((spec.tenant, spec.priority_class) for spec in specs)
        counted: list[tuple[tuple[str, int], int]] = []
        try:
            for (tenant, priority_class), count in demand.items():
                self._flow.admit(tenant, priority_class, count)
                counted.append(((tenant, priority_class), count))
            return list(await asyncio.gather(*(self._admit_valid(spec) for spec in specs)))
        finally:
            for (tenant, priority_class), count in counted:
                self._flow.settled(tenant, priority_class, count)

    async def _admit_valid(self, requested: task_pb2.TaskSpec) -> scheduler_pb2.AdmitTaskResponse:
        spec = self._complete(requested)
        if spec.idempotency_key:
            original = await self._claim_idempotency_key(spec)
            if original is not None:
                spec.task_id = original
                return await self._resume(spec)
        if not await self._store(spec):
            # The task id exists: a retried submit with a client-chosen id.
            return await self._resume(spec)
        METRICS.tasks_admitted.labels(spec.kind, task_pb2.PriorityClass.Name(spec.priority_class)).inc()
        return scheduler_pb2.AdmitTaskResponse(task_id=spec.task_id, sequence=1)

    async def _store(self, spec: task_pb2.TaskSpec) -> bool:
        """Write the QUEUED event (it carries the spec), then the first work item. False if the
        task id already has a chain (nothing is written then)."""
        queued = task_pb2.TaskEvent(
            task_id=spec.task_id,
            sequence=1,
            state=task_pb2.TASK_STATE_QUEUED,
            spec=spec,
            traceparent=current_traceparent(),
        )
        queued.timestamp.GetCurrentTime()
        try:
            stream_sequence = await self._events.append(queued, after_stream_sequence=0)
        except ChainMoved:
            return False
        if self._index is not None:
            await self._index.add(spec.tenant, spec.task_id)
        await self._enqueue(queued, stream_sequence)
        return True

    def _complete(self, requested: task_pb2.TaskSpec) -> task_pb2.TaskSpec:
        spec = task_pb2.TaskSpec()
        spec.CopyFrom(requested)
        spec.task_id = spec.task_id or new_task_id()
        spec.priority_class = spec.priority_class or task_pb2.PRIORITY_CLASS_STANDARD
        spec.qos = spec.qos or task_pb2.QOS_TIER_GUARANTEED
        spec.schema_version = spec.schema_version or SCHEMA_VERSION
        if not spec.HasField("deadline"):
            spec.deadline.FromNanoseconds(int((time.time() + self._limits.default_ttl_s) * 1e9))
        return spec

    async def _claim_idempotency_key(self, spec: task_pb2.TaskSpec) -> str | None:
        """Record key → task id; return the original task id if the key was used before."""
        digest = hashlib.sha256(spec.idempotency_key.encode()).hexdigest()[:48]
        key = f"{spec.tenant}.{digest}"
        try:
            await self._idempotency.create(key, spec.task_id.encode())
            return None
        except nats.js.errors.KeyWrongLastSequenceError:
            entry = await self._idempotency.get(key)
            return (entry.value or b"").decode() or None
        except nats.errors.Error as exc:  # any broker failure: retryable for the caller
            raise Unavailable(f"idempotency store did not answer: {exc}") from exc

    async def _resume(self, spec: task_pb2.TaskSpec) -> scheduler_pb2.AdmitTaskResponse:
        """Answer a repeated submit; finish the admission if a crash cut it short."""
        METRICS.tasks_deduplicated.inc()
        last = await self._events.last(spec.task_id)
        if last is None:
            # Key recorded, task never stored: admit it now under the original id.
            await self._store(spec)
        elif last.event.sequence == 1 and last.event.state == task_pb2.TASK_STATE_QUEUED:
            # Nothing ran yet; the first work item may never have been stored. Re-publishing is
            # safe: inside the duplicate window JetStream drops it, after it the event chain
            # fences a second runner out.
            await self._enqueue(last.event, last.stream_sequence)
        return scheduler_pb2.AdmitTaskResponse(task_id=spec.task_id, deduplicated=True, sequence=1)

    async def _enqueue(self, queued: task_pb2.TaskEvent, stream_sequence: int) -> None:
        spec = queued.spec
        first_step = KINDS[spec.kind].steps[0]
        item = work_pb2.WorkItem(
            spec=spec,
            step_index=0,
            last_event_sequence=queued.sequence,
            last_event_stream_sequence=stream_sequence,
            traceparent=queued.traceparent,
            admitted=queued.timestamp,
            enqueued=_now(),
        )
        subject = work_subject(first_step.pool, spec.priority_class, spec.tenant)
        if spec.ordering_key and self._sequencer is not None:
            replay_of = spec.labels.get(REPLAY_OF_LABEL, "")
            if replay_of and await self._sequencer.take_over(replay_of, item, subject):
                return
            await self._sequencer.park(item, subject)
            return
        headers = {"Nats-Msg-Id": f"{spec.task_id}:step:0", "traceparent": queued.traceparent}
        try:
            await self._work.put(subject, item.SerializeToString(), headers=headers)
        except nats.errors.Error as exc:  # any broker failure: retryable for the caller
            raise Unavailable(f"work queue did not store the task: {exc}") from exc


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp
