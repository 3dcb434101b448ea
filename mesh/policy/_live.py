"""The live figures a rule may read (``live``), as cheaply as they can be read: two stream infos
over JetStream and, where the reader runs beside the workers (`tidemesh up`), /proc.

    live.pools.<pool>.depth          items stored in TM_WORK for the pool: queued and in flight, every
                                     lane and tenant (every built-in pool is there, 0 when empty; a
                                     kind of your own's pools appear while they hold items)
    live.tenants.<tenant>.depth      the same per tenant, across pools (tenants holding items only)
    live.deadLetters                 dead-letter records held (one per dead-lettered task)
    live.workers.<process>.rssMb     a worker process's resident memory with its children's, MiB
    live.workers.<process>.pools     the pools it serves, as its plan says
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nats.js import JetStreamContext

from mesh.fabric import POOLS, WORK_PREFIX, WORK_STREAM, parse_work_subject
from mesh.fabric._deadletters import DLQ_PREFIX, DLQ_STREAM

MIB = 1 << 20

# A worker process as the reader sees it: (pid, or None while it is down; the pools it serves).
Workers = Callable[[], Mapping[str, tuple[int | None, tuple[str, ...]]]]


class LiveFigures:
    """Reads ``live`` (the module's doc) over `js`; `workers` lists the worker processes whose memory
    is read from /proc (None: no ``workers`` entry, e.g. a reader on another host)."""

    def __init__(self, js: JetStreamContext, workers: Workers | None = None) -> None:
        self._js = js
        self._workers = workers

    async def read(self) -> dict[str, Any]:
        """The figures now (raises what nats raises when JetStream cannot answer)."""
        work = await self._js.stream_info(WORK_STREAM, subjects_filter=f"{WORK_PREFIX}.>")
        pools: dict[str, dict[str, int]] = {pool: {"depth": 0} for pool in POOLS}
        tenants: dict[str, dict[str, int]] = {}
        for subject, count in (work.state.subjects or {}).items():
            key = parse_work_subject(subject)
            if key is None:
                continue
            pool, _, tenant = key
            pools.setdefault(pool, {"depth": 0})["depth"] += count
            tenants.setdefault(tenant, {"depth": 0})["depth"] += count
        dead = await self._js.stream_info(DLQ_STREAM, subjects_filter=f"{DLQ_PREFIX}.>")
        figures: dict[str, Any] = {
            "pools": pools,
            "tenants": tenants,
            "deadLetters": len(dead.state.subjects or {}),
        }
        if self._workers is not None:
            figures["workers"] = worker_memory(self._workers())
        return figures


def worker_memory(workers: Mapping[str, tuple[int | None, tuple[str, ...]]]) -> dict[str, dict[str, Any]]:
    """``live.workers``: each running worker's resident memory (its process tree's) and pools."""
    from mesh.supervisor._child import resident_bytes

    out: dict[str, dict[str, Any]] = {}
    for name, (pid, pools) in sorted(workers.items()):
        if pid is None:
            continue
        rss = resident_bytes(pid)
        if rss:
            out[name] = {"rssMb": round(rss / MIB, 1), "pools": list(pools)}
    return out


def supervised_workers(supervisor: Any) -> Workers:
    """`Workers` of a `mesh.supervisor.Supervisor`: its children that are workers (scaled-out ones too)."""

    def workers() -> dict[str, tuple[int | None, tuple[str, ...]]]:
        return {
            name: (child.pid, tuple(child.spec.pools))
            for name, child in list(supervisor.children.items())
            if name.startswith("worker")
        }

    return workers
