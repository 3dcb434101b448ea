"""The mesh status as a stream: what GetMeshStatus answers, sent again only when it changes and
never more often than the caller asked (WatchMeshStatus)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from mesh.v1 import gateway_pb2

DEFAULT_INTERVAL_MS = 1000
# Below 100 ms a stream would poll the scheduler faster than its figures move; above a minute a
# dashboard would look dead.
MIN_INTERVAL_MS, MAX_INTERVAL_MS = 100, 60_000


def interval_s(min_interval_ms: int) -> float:
    """The time between two reads of the status for a request's `min_interval_ms` (0: the default)."""
    wanted = min_interval_ms or DEFAULT_INTERVAL_MS
    return min(max(wanted, MIN_INTERVAL_MS), MAX_INTERVAL_MS) / 1000


async def status_changes(
    read: Callable[[], Awaitable[gateway_pb2.GetMeshStatusResponse]], every_s: float
) -> AsyncIterator[gateway_pb2.GetMeshStatusResponse]:
    """The status `read` gives now, then each reading that differs from the last one sent, one
    reading per `every_s`. A failed read ends the stream with its error."""
    last: bytes | None = None  # an empty status encodes to b"": still sent first
    while True:
        status = await read()
        encoded = status.SerializeToString(deterministic=True)
        if encoded != last:
            last = encoded
            yield status
        await asyncio.sleep(every_s)
