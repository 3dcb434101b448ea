"""Rate limiting at the gateway: a token bucket per key — per tenant, and per credential.

Each key may submit `rate` tasks per second on average with bursts of `burst`;
a submit beyond that is refused with RESOURCE_EXHAUSTED (HTTP 429) and a retry-after
equal to the time until enough tokens refill. Buckets live in each gateway replica;
with `--gateways N` and session stickiness a tenant's sessions spread over replicas,
so the effective limit is up to N times the rate — admission control in the scheduler
(depth and quotas) stays the global backstop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from mesh.errors import ResourceExhausted

# On unless turned off (rate 0): one tenant, or one leaked credential, cannot flood the mesh's
# admission. Above what one gateway admits on a small machine (~700 tasks/s end to end), so
# they cut in only for a runaway client; a credential's share is half its tenant's. A burst
# of at least 1000 lets a full SubmitTasks batch (at most 1000 specs) through.
DEFAULT_TENANT_RATE, DEFAULT_TENANT_BURST = 1000.0, 2000.0
DEFAULT_CREDENTIAL_RATE, DEFAULT_CREDENTIAL_BURST = 500.0, 1000.0


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self, rate: float, burst: float, what: str = "tenant", clock: Callable[[], float] = time.monotonic
    ) -> None:
        # Written so that NaN fails too (it compares false with everything).
        if not (math.isfinite(rate) and rate > 0 and math.isfinite(burst) and burst >= 1):
            raise ValueError(f"rate must be finite and > 0 and burst finite and ≥ 1, got {rate} / {burst}")
        self.rate = rate
        self._what = what
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, count: int = 1) -> None:
        """Spend `count` tokens of `key`'s bucket, or raise ResourceExhausted with a retry-after."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if count > self.burst:
            raise ResourceExhausted(
                f"{self._what} {key!r}: a batch of {count} exceeds the burst of {self.burst:.0f}", 1.0
            )
        if bucket.tokens < count:
            retry_after_s = (count - bucket.tokens) / self.rate
            raise ResourceExhausted(
                f"{self._what} {key!r} is over its rate of {self.rate:g} tasks/s", max(retry_after_s, 0.001)
            )
        bucket.tokens -= count
