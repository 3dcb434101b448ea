"""Lane figures from tenant partitions — the one place that sums them (scheduler and gateway)."""

from __future__ import annotations

from collections.abc import Iterable

from mesh.fabric._subjects import POOLS
from mesh.priority import CLASS_BY_NAME, CLASS_NAMES
from mesh.v1 import status_pb2


def lane_totals(partitions: Iterable[status_pb2.QueueStatus]) -> list[status_pb2.QueueStatus]:
    """One QueueStatus per (pool, lane), pools then lanes (POOLS, CLASS_NAMES), summed over `partitions`."""
    parts = list(partitions)
    lanes = []
    for pool in POOLS:
        for lane in CLASS_NAMES:
            of_lane = [q for q in parts if q.pool == pool and q.priority_class == CLASS_BY_NAME[lane]]
            lanes.append(
                status_pb2.QueueStatus(
                    pool=pool,
                    priority_class=CLASS_BY_NAME[lane],
                    pending=sum(q.pending for q in of_lane),
                    in_flight=sum(q.in_flight for q in of_lane),
                    oldest_age_s=max((q.oldest_age_s for q in of_lane), default=0.0),
                )
            )
    return lanes
