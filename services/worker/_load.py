"""The slots a worker process offers each pool, for its load report (`mesh.load`): its own
dispatcher's concurrency in every pool it serves, and its worker-protocol sessions' capacity in
their kinds' pools (a session counts as one worker there)."""

from __future__ import annotations

from collections.abc import Sequence

from mesh.v1 import status_pb2
from services.worker._remote import SessionHost, SessionState


def pool_slots(
    pools: Sequence[str], concurrency: int, sessions: SessionHost | None = None
) -> list[status_pb2.PoolSlots]:
    """Per pool: workers and slots here; dedicated where the worker serves that pool alone. A
    session whose stream dropped still holds its slots (it may come back within its resume window)."""
    counts: dict[str, list[int]] = {}

    def add(pool: str, slots: int, alone: bool) -> None:
        entry = counts.setdefault(pool, [0, 0, 0, 0])
        entry[0] += 1
        entry[1] += slots
        if alone:
            entry[2] += 1
            entry[3] += slots

    for pool in pools:
        add(pool, concurrency, len(pools) == 1)
    for session in sessions.sessions.values() if sessions is not None else ():
        if session.state in (SessionState.CONNECTED, SessionState.DETACHED):
            served = session.pools
            for pool in served:
                add(pool, session.capacity, len(served) == 1)
    return [
        status_pb2.PoolSlots(pool=pool, workers=w, slots=s, dedicated_workers=dw, dedicated_slots=ds)
        for pool, (w, s, dw, ds) in sorted(counts.items())
    ]
