"""Scale recommendations per worker pool, and the hooks that deliver them.

desired = the replicas needed to drain the pool's backlog within `target_drain_s`
at the measured per-replica rate, at least one more while the oldest item waits
longer than `max_wait_s`, clamped to [min, max]; an idle pool goes to `min`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from google.protobuf.json_format import MessageToDict

from mesh.telemetry import get_logger
from mesh.v1 import status_pb2

log = get_logger(__name__)


@dataclass(frozen=True)
class ScalePolicy:
    target_drain_s: float = 10.0
    max_wait_s: float = 5.0
    min_replicas: int = 1
    max_replicas: int = 8


def recommend(
    pool: str, depth: int, oldest_age_s: float, drain_per_s: float, current: int, policy: ScalePolicy
) -> status_pb2.ScaleRecommendation:
    if depth == 0:
        desired, reason = policy.min_replicas, "idle"
    elif current == 0 or drain_per_s <= 0:
        desired, reason = max(current + 1, policy.min_replicas), "backlog with no measured drain"
    else:
        per_replica = drain_per_s / current
        desired = math.ceil(depth / (per_replica * policy.target_drain_s))
        reason = f"{depth} items at {per_replica:.1f}/s per replica drain in {policy.target_drain_s:.0f}s"
    if depth and oldest_age_s > policy.max_wait_s and desired <= current:
        desired, reason = current + 1, f"oldest item waited {oldest_age_s:.1f}s (> {policy.max_wait_s:.0f}s)"
    desired = min(policy.max_replicas, max(policy.min_replicas, desired))
    return status_pb2.ScaleRecommendation(
        pool=pool,
        current_replicas=current,
        desired_replicas=desired,
        depth=depth,
        oldest_age_s=oldest_age_s,
        drain_per_s=drain_per_s,
        reason=reason,
    )


class Scaler:
    """Turns successive queue samples into recommendations (per-pool drain from ack counts)."""

    def __init__(self, policies: dict[str, ScalePolicy], clock: Callable[[], float] = time.monotonic) -> None:
        self._policies = policies
        self._clock = clock
        self._last: tuple[float, dict[str, int]] | None = None
        self._drain: dict[str, float] = {}
        self.latest: list[status_pb2.ScaleRecommendation] = []

    def update(
        self,
        queues: list[status_pb2.QueueStatus],
        acked: dict[str, int],
        workers: list[status_pb2.WorkerStatus],
    ) -> list[status_pb2.ScaleRecommendation]:
        now = self._clock()
        if self._last is not None and now > self._last[0]:
            elapsed = now - self._last[0]
            for pool, count in acked.items():
                rate = max(0, count - self._last[1].get(pool, count)) / elapsed
                previous = self._drain.get(pool)
                self._drain[pool] = rate if previous is None else 0.5 * previous + 0.5 * rate
        self._last = (now, dict(acked))
        alive = [w for w in workers if w.health == status_pb2.WORKER_HEALTH_ALIVE]
        recommendations = []
        for pool, policy in self._policies.items():
            lanes = [q for q in queues if q.pool == pool]
            recommendations.append(
                recommend(
                    pool,
                    depth=sum(q.pending + q.in_flight for q in lanes),
                    oldest_age_s=max((q.oldest_age_s for q in lanes), default=0.0),
                    drain_per_s=self._drain.get(pool, 0.0),
                    current=sum(pool in w.pools for w in alive),
                    policy=policy,
                )
            )
        self.latest = recommendations
        return recommendations


class ScaleHooks:
    """Deliver a pool's recommendation when its desired replica count changes."""

    def __init__(self, command: str = "", webhook: str = "") -> None:
        self._command = command
        self._webhook = webhook
        self._last: dict[str, int] = {}

    async def deliver(self, recommendation: status_pb2.ScaleRecommendation) -> None:
        if self._last.get(recommendation.pool) == recommendation.desired_replicas:
            return
        self._last[recommendation.pool] = recommendation.desired_replicas
        body = json.dumps(MessageToDict(recommendation, preserving_proto_field_name=True)).encode()
        if self._command:
            await self._run_command(body)
        if self._webhook:
            await self._post(body)

    async def _run_command(self, body: bytes) -> None:
        """Run the hook command with the recommendation as JSON on stdin."""
        process = await asyncio.create_subprocess_shell(
            self._command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(process.communicate(body), 10.0)
        except TimeoutError:
            process.kill()
            await process.wait()
            log.warning("scale hook command timed out")
            return
        if process.returncode:
            log.warning("scale hook command failed", extra={"code": process.returncode, "stderr": err[-500:]})

    async def _post(self, body: bytes) -> None:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                async with session.post(
                    self._webhook, data=body, headers={"content-type": "application/json"}
                ) as response:
                    if response.status >= 300:
                        log.warning("scale webhook answered %s", response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("scale webhook failed: %s", exc)
