"""Putting work items on the fabric — the one place that does it.

An item is stored in its tenant partition of TM_WORK (``tm.work.<pool>.<class>.<tenant>``)
and, once JetStream has acknowledged it, the partition's doorbell is rung on core NATS
(``tm.bell.<pool>.<class>.<tenant>``). Workers wait on doorbells rather than holding a
pull request open per partition, and a doorbell only ever follows a stored item, so the
pull it triggers finds the item there. A stored item is an arrival of its lane's measured load
(`mesh.load.METER`; one the broker already held is not).

`WorkQueue.put_item` owns everything a publish needs: the subject (the pool of the item's
step, from its kind's declaration, for the item's schema version), the deduplication id
(``<task>:step:<index>``, so a retried admission, a re-run step or a released ordered task
stores one item however often it is sent), the trace header, and the error mapping.
"""

from __future__ import annotations

from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind

from mesh.errors import InvalidArgument, Unavailable
from mesh.fabric._commit import GroupCommit
from mesh.fabric._subjects import WORK_STREAM, bell_subject, parse_work_subject, work_subject
from mesh.load import METER
from mesh.tasks._registry import KINDS
from mesh.telemetry import current_traceparent, failed, messaging_attributes, span, task_attributes
from mesh.v1 import task_pb2, work_pb2


def work_item_id(task_id: str, step_index: int, copy: str = "") -> str:
    """The deduplication id of a task's step item; `copy` names a deliberate second copy (a boost)."""
    return f"{task_id}:step:{step_index}" + (f":{copy}" if copy else "")


def item_subject(item: work_pb2.WorkItem) -> str:
    """Where `item` goes: its step's pool, its priority class's lane, its tenant's partition."""
    spec = item.spec
    pool = KINDS[spec.kind].pool(item.step_index, spec.schema_version)
    return work_subject(pool, spec.priority_class, spec.tenant)


class WorkQueue:
    def __init__(self, nc: Client, js: JetStreamContext) -> None:
        self._nc = nc
        self._js = js
        self._commit = GroupCommit(js, WORK_STREAM)

    async def put_item(self, item: work_pb2.WorkItem, subject: str = "", copy: str = "") -> bool:
        """Store `item` (deduplicated by its step's id) and ring its doorbell; False when the
        broker already held an item with that id (nothing new was stored).

        `subject` defaults to `item_subject(item)` (a parked ordered item carries the one it was
        admitted for). A broker that refuses the item for its size is bad input (InvalidArgument);
        any other broker failure is Unavailable: the caller may retry, the id keeps it one item."""
        spec = item.spec
        subject = subject or item_subject(item)
        headers = {"Nats-Msg-Id": work_item_id(spec.task_id, item.step_index, copy)}

        # The producer side of the JetStream hop (OpenTelemetry messaging conventions): the item
        # carries this span's context, the worker's consumer span continues it.
        def attributes() -> dict[str, Any]:  # built only when the span is recorded
            return {
                **task_attributes(spec, step_index=item.step_index, pool=subject.split(".")[2]),
                **messaging_attributes("send", subject, **{"operation.name": "publish"}),
                "messaging.message.id": headers["Nats-Msg-Id"],
            }

        with span(
            f"publish {WORK_STREAM}", attributes, kind=SpanKind.PRODUCER, parent=item.traceparent or None
        ) as current:
            if current is not None:
                item.traceparent = current_traceparent()
            if item.traceparent:
                headers["traceparent"] = item.traceparent
            try:
                urgent = spec.priority_class == task_pb2.PRIORITY_CLASS_INTERACTIVE
                ack = await self._commit.publish(subject, item.SerializeToString(), headers, urgent=urgent)
                await self._nc.publish(bell_subject(subject))
            except nats.errors.MaxPayloadError as exc:
                failed(current, exc)
                raise InvalidArgument("spec", "is too large for the broker's message size limit") from exc
            except nats.errors.Error as exc:  # any other broker failure: retryable for the caller
                failed(current, exc)
                raise Unavailable(f"work queue did not store the item: {exc}") from exc
        if not ack.duplicate and (lane := parse_work_subject(subject)) is not None:
            METER.arrived(lane[0], lane[1])  # an arrival in the lane's measured load (mesh.load)
        return not ack.duplicate
