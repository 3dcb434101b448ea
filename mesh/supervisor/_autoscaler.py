"""Local autoscaling and standby: `tidemesh up` acts on the scheduler's recommendations.

The scheduler publishes a ScaleRecommendation per pool on ``tm.scale.<pool>``. For
each pool configured here, extra workers serving only that pool are started or
stopped so that the pool's replicas (the plan's all-pool workers plus these)
track the recommendation within [MIN, MAX] (`--autoscale POOL=MIN:MAX`). Every other pool
gets bounds 1:1, which makes the extras a standby: when a pool has no live worker (its
planned ones crashed or hang) a dedicated worker takes over until they are back.
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.aio.msg import Msg

from mesh.fabric import SCALE_PREFIX, connect
from mesh.supervisor._plan import pool_worker_spec
from mesh.supervisor._supervisor import Supervisor
from mesh.telemetry import get_logger
from mesh.v1 import status_pb2

log = get_logger(__name__)


def extra_wanted(target: int, planned: int, alive: int, extra: int) -> int:
    """Extra workers to run for a pool so that `target` replicas are alive.

    `planned` workers come from the plan (the supervisor restarts them); `alive` is what the
    scheduler sees heartbeating, extras included. Planned workers that are not alive — crashed,
    hung, restarting — are covered by standby extras until they are back.
    """
    planned_alive = min(planned, max(0, alive - extra))
    return max(0, target - planned_alive)


class LocalAutoscaler:
    def __init__(self, supervisor: Supervisor, bounds: dict[str, tuple[int, int]]) -> None:
        self._supervisor = supervisor
        self._bounds = bounds
        self._base = {pool: sum(pool in p.pools for p in supervisor.plan.processes) for pool in bounds}
        self._lock = asyncio.Lock()
        self._nc: Client | None = None
        self.decisions: list[tuple[str, int]] = []

    def extra_workers(self, pool: str) -> list[str]:
        prefix = f"worker-{pool}-auto-"
        return sorted(name for name in self._supervisor.children if name.startswith(prefix))

    async def __aenter__(self) -> LocalAutoscaler:
        plan = self._supervisor.plan
        if plan.security:  # as the supervisor's own NATS user
            self._nc = await plan.security.connect_nats(plan.nats_servers, "supervisor", "tidemesh-autoscaler")
        else:
            self._nc = await connect(plan.nats_servers, name="tidemesh-autoscaler")
        self._sub = await self._nc.subscribe(f"{SCALE_PREFIX}.>", cb=self._on_recommendation)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._nc is not None:
            await self._nc.close()

    async def _on_recommendation(self, msg: Msg) -> None:
        recommendation = status_pb2.ScaleRecommendation.FromString(msg.data)
        if recommendation.pool not in self._bounds or self._lock.locked():
            return  # not ours, or still acting on the previous one
        async with self._lock:
            low, high = self._bounds[recommendation.pool]
            target = min(high, max(low, recommendation.desired_replicas))
            extra = self.extra_workers(recommendation.pool)
            wanted_extra = extra_wanted(
                target, self._base[recommendation.pool], recommendation.current_replicas, len(extra)
            )
            if wanted_extra == len(extra):
                return
            self.decisions.append((recommendation.pool, target))
            log.info(
                "scaling pool", extra={"pool": recommendation.pool, "replicas": target, "reason": recommendation.reason}
            )
            if wanted_extra > len(extra):
                used = {int(name.rsplit("-", 1)[1]) for name in extra}
                free = (i for i in range(1, 1000) if i not in used)
                for index in [next(free) for _ in range(wanted_extra - len(extra))]:
                    await self._supervisor.add(pool_worker_spec(self._supervisor.plan, recommendation.pool, index))
            else:
                for name in extra[wanted_extra:]:
                    await self._supervisor.remove(name)
