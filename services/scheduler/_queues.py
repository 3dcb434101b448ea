"""Queue depth and age per pool and lane, read from JetStream consumer state."""

from __future__ import annotations

import time

import nats.js.errors
from nats.js import JetStreamContext

from mesh.fabric import CLASS_OF_LANE, LANE_ORDER, POOLS, WORK_STREAM, consumer_name, lane_filter
from mesh.telemetry import METRICS
from mesh.v1 import status_pb2


async def queue_status(js: JetStreamContext, acked: dict[str, int] | None = None) -> list[status_pb2.QueueStatus]:
    """One entry per (pool, lane); also refreshes the queue gauges. If `acked` is given it is
    filled with the number of deliveries each pool has had acknowledged so far."""
    result = []
    for pool in POOLS:
        for lane in LANE_ORDER:
            info = await js.consumer_info(WORK_STREAM, consumer_name(pool, lane))
            if acked is not None:
                acked[pool] = acked.get(pool, 0) + (info.ack_floor.consumer_seq if info.ack_floor else 0)
            pending = info.num_pending or 0
            oldest_age_s = 0.0
            if pending:
                next_seq = (info.delivered.stream_seq if info.delivered else 0) + 1
                try:
                    oldest = await js.get_msg(WORK_STREAM, seq=next_seq, subject=lane_filter(pool, lane), next=True)
                    if oldest.time is not None:
                        oldest_age_s = max(0.0, time.time() - oldest.time.timestamp())
                except nats.js.errors.NotFoundError:
                    pass  # drained between the two reads: age stays 0
            METRICS.queue_pending.labels(pool, lane).set(pending)
            METRICS.queue_oldest_age.labels(pool, lane).set(oldest_age_s)
            result.append(
                status_pb2.QueueStatus(
                    pool=pool,
                    priority_class=CLASS_OF_LANE[lane],
                    pending=pending,
                    in_flight=info.num_ack_pending or 0,
                    oldest_age_s=oldest_age_s,
                )
            )
    return result
