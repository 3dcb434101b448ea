"""Local autoscaling: `tidemesh up --autoscale POOL=MIN:MAX` acts on the scheduler's recommendations.

The scheduler publishes a ScaleRecommendation per pool on ``tm.scale.<pool>``. For
each pool configured here, extra workers serving only that pool are started or
stopped so that the pool's replicas (the plan's all-pool workers plus these)
track the recommendation within [MIN, MAX].
"""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from mesh.fabric import SCALE_PREFIX, connect
from mesh.supervisor._plan import pool_worker_spec
from mesh.supervisor._supervisor import Supervisor
from mesh.telemetry import get_logger
from mesh.v1 import status_pb2

log = get_logger(__name__)


class LocalAutoscaler:
    def __init__(self, supervisor: Supervisor, bounds: dict[str, tuple[int, int]]) -> None:
        self._supervisor = supervisor
        self._bounds = bounds
        self._base = {pool: sum(pool in p.pools for p in supervisor.plan.processes) for pool in bounds}
        self._lock = asyncio.Lock()
        self.decisions: list[tuple[str, int]] = []

    def extra_workers(self, pool: str) -> list[str]:
        prefix = f"worker-{pool}-auto-"
        return sorted(name for name in self._supervisor.children if name.startswith(prefix))

    async def __aenter__(self) -> LocalAutoscaler:
        nats_url = self._supervisor.plan.by_name("nats").address
        self._nc = await connect(nats_url, name="tidemesh-autoscaler")
        self._sub = await self._nc.subscribe(f"{SCALE_PREFIX}.>", cb=self._on_recommendation)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._nc.close()

    async def _on_recommendation(self, msg: Msg) -> None:
        recommendation = status_pb2.ScaleRecommendation.FromString(msg.data)
        if recommendation.pool not in self._bounds or self._lock.locked():
            return  # not ours, or still acting on the previous one
        async with self._lock:
            low, high = self._bounds[recommendation.pool]
            target = min(high, max(low, recommendation.desired_replicas))
            extra = self.extra_workers(recommendation.pool)
            wanted_extra = max(0, target - self._base[recommendation.pool])
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
