"""WatchMeshStatus on a real mesh: the status on connect, then its changes, never faster than asked."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from clients.sdk import Client
from mesh.v1 import gateway_pb2
from services.gateway._status import interval_s, status_changes
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration


def _completed(status: gateway_pb2.GetMeshStatusResponse) -> int:
    return sum(worker.completed for worker in status.workers)


async def test_the_stream_sends_the_status_on_connect_and_then_its_changes(mesh: Mesh) -> None:
    """The first message is the status of the moment; a task that completes shows in a later one
    (its worker's count); consecutive messages are at least `min_interval_ms` apart."""
    async with Client(mesh.endpoint, tenant="status-stream") as client:
        stream = client.watch_status(min_interval_ms=200)
        try:
            first = await asyncio.wait_for(anext(stream), 10)
            assert first.workers, "the mesh's worker is in the first status"
            arrivals = [time.monotonic()]
            submitted = await client.submit("echo", {"text": "counted"})
            [event async for event in client.watch(submitted.task_id)]
            latest = first
            async with asyncio.timeout(15):
                while _completed(latest) <= _completed(first):
                    latest = await anext(stream)
                    arrivals.append(time.monotonic())
        finally:
            await stream.aclose()
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert gaps and min(gaps) >= 0.18, gaps  # 200 ms apart at least (a little slack for clocks)


async def test_an_unchanged_status_is_not_sent_again() -> None:
    """Readings equal to the last one sent are skipped; a changed one goes out; the requested
    interval is clamped to 100 ms..60 s and 0 means one second."""
    readings = iter([gateway_pb2.GetMeshStatusResponse()] * 3 + [gateway_pb2.GetMeshStatusResponse(scaling=[{}])])

    async def read() -> gateway_pb2.GetMeshStatusResponse:
        return next(readings)

    changes = status_changes(read, 0)
    sent = [await anext(changes), await anext(changes)]
    await changes.aclose()
    assert [len(s.scaling) for s in sent] == [0, 1]
    assert (interval_s(0), interval_s(1), interval_s(250), interval_s(10**9)) == (1.0, 0.1, 0.25, 60.0)
