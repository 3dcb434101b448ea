"""Queue depth and age per pool, lane and tenant, read from JetStream state.

The stream's per-subject counts say how many items each tenant partition holds
(waiting or in flight); the partition's consumer says how many of those are in
flight and where delivery has got to. A partition whose consumer does not exist
yet (no worker pulled from it) still shows its items as waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from mesh.fabric import (
    POOLS,
    WORK_PREFIX,
    WORK_STREAM,
    lane_totals,
    parse_work_subject,
    tenant_filter,
)
from mesh.priority import CLASS_BY_NAME, class_name
from mesh.telemetry import METRICS
from mesh.v1 import status_pb2, task_pb2

_CONSUMER_PAGE = 256  # the server's page size for consumer listings


@dataclass
class QueueSample:
    lanes: list[status_pb2.QueueStatus]  # one per (pool, lane)
    tenants: list[status_pb2.QueueStatus]  # one per tenant partition holding items
    # Per pool: deliveries acknowledged so far, summed over partition consumers. A consumer
    # re-created after idling starts again from 0, so this can step down.
    acked: dict[str, int] = field(default_factory=dict)


async def queue_status(js: JetStreamContext) -> QueueSample:
    """Sample every lane and tenant partition; also refreshes the queue gauges."""
    info = await js.stream_info(WORK_STREAM, subjects_filter=f"{WORK_PREFIX}.>")
    stored: dict[tuple[str, str, str], int] = {}
    for subject, count in (info.state.subjects or {}).items():
        key = parse_work_subject(subject)
        if key is not None:
            stored[key] = count
    consumers = await _partition_consumers(js)
    sample = QueueSample(lanes=[], tenants=[], acked=dict.fromkeys(POOLS, 0))
    for (pool, _, _), consumer in consumers.items():
        if pool in sample.acked and consumer.ack_floor:
            sample.acked[pool] += consumer.ack_floor.consumer_seq
    partitions = await asyncio.gather(
        *(_partition_status(js, key, stored.get(key, 0), consumers.get(key)) for key in sorted(stored | consumers))
    )
    sample.tenants = [q for q in partitions if q.pending or q.in_flight]
    sample.lanes = lane_totals(sample.tenants)
    _export(sample)
    return sample


async def _partition_consumers(js: JetStreamContext) -> dict[tuple[str, str, str], ConsumerInfo]:
    consumers: dict[tuple[str, str, str], ConsumerInfo] = {}
    offset = 0
    while True:
        page = await js.consumers_info(WORK_STREAM, offset=offset)
        for consumer in page:
            key = parse_work_subject(consumer.config.filter_subject or "")
            if key is not None:
                consumers[key] = consumer
        if len(page) < _CONSUMER_PAGE:
            return consumers
        offset += len(page)


async def _partition_status(
    js: JetStreamContext, key: tuple[str, str, str], stored: int, consumer: ConsumerInfo | None
) -> status_pb2.QueueStatus:
    pool, lane, tenant = key
    in_flight = min(stored, consumer.num_ack_pending or 0) if consumer else 0
    pending = stored - in_flight
    oldest_age_s = 0.0
    if pending:
        delivered = consumer.delivered.stream_seq if consumer and consumer.delivered else 0
        try:
            oldest = await js.get_msg(
                WORK_STREAM, seq=(delivered or 0) + 1, subject=tenant_filter(pool, lane, tenant), next=True
            )
            if oldest.time is not None:
                oldest_age_s = max(0.0, time.time() - oldest.time.timestamp())
        except nats.js.errors.NotFoundError:
            pass  # drained between the two reads: age stays 0
    return status_pb2.QueueStatus(
        pool=pool,
        priority_class=CLASS_BY_NAME.get(lane, task_pb2.PRIORITY_CLASS_UNSPECIFIED),
        tenant=tenant,
        pending=pending,
        in_flight=in_flight,
        oldest_age_s=oldest_age_s,
    )


_exported_tenants: set[tuple[str, str, str]] = set()


def _export(sample: QueueSample) -> None:
    for q in sample.lanes:
        lane = class_name(q.priority_class)
        METRICS.queue_pending.labels(q.pool, lane).set(q.pending)
        METRICS.queue_oldest_age.labels(q.pool, lane).set(q.oldest_age_s)
    # Per tenant only for the tenants the metrics name (the busiest by admissions); the rest of a
    # lane's partitions are summed as "other", with the oldest age among them.
    pending: dict[tuple[str, str, str], int] = {}
    oldest: dict[tuple[str, str, str], float] = {}
    for q in sample.tenants:
        labels = (q.pool, class_name(q.priority_class), METRICS.tenants.label(q.tenant, count=False))
        pending[labels] = pending.get(labels, 0) + q.pending
        oldest[labels] = max(oldest.get(labels, 0.0), q.oldest_age_s)
    for labels, count in pending.items():
        METRICS.tenant_queue_pending.labels(*labels).set(count)
        METRICS.tenant_queue_oldest_age.labels(*labels).set(oldest[labels])
    current = set(pending)
    for labels in _exported_tenants - current:  # an emptied partition leaves the metrics
        with contextlib.suppress(KeyError):  # or left with its tenant (`TenantLabels`)
            METRICS.tenant_queue_pending.remove(*labels)
            METRICS.tenant_queue_oldest_age.remove(*labels)
    _exported_tenants.clear()
    _exported_tenants.update(current)
