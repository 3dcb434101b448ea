"""Admission control: throttle producers before the mesh saturates.

The scheduler samples the work stream a few times a second: how many items each
(pool, lane, tenant) holds — queued or running, since work-queue retention drops
an item when it is acked — and how fast items complete. A submit is refused with
RESOURCE_EXHAUSTED when its lane or its tenant is at its limit; the retry-after
is the time the measured drain rate needs to bring the depth back under the
limit's low-water mark, so well-behaved clients come back when there is room.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from mesh.errors import ResourceExhausted
from mesh.priority import CLASS_NAMES, class_name


@dataclass(frozen=True)
class FlowLimits:
    # Items (queued + running) a lane may hold across all pools before submits are refused.
    lane_max_depth: dict[str, int] = field(
        default_factory=lambda: {"interactive": 5_000, "standard": 50_000, "batch": 500_000}
    )
    # Items one tenant may hold across all lanes: its quota.
    tenant_max_depth: int = 100_000
    # After a refusal, admit again once depth is below this fraction of the limit.
    low_water: float = 0.8
    min_retry_after_s: float = 0.05
    max_retry_after_s: float = 60.0


@dataclass
class _Depths:
    by_lane: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASS_NAMES, 0))
    by_tenant: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class FlowControl:
    def __init__(self, limits: FlowLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._depths = _Depths()
        self._completed_total: int | None = None
        self._sampled_at = 0.0
        # Completions per second, smoothed.
        self.drain_rate = 0.0
        # Admissions so far, and their count when the sample in flight was requested: a sample
        # cannot see what was admitted after it was taken, so those are added back.
        self._admitted: _Depths = _Depths()
        self._admitted_at_request: _Depths = _Depths()
        # Admitted but not yet confirmed stored: a sample may or may not include them, so they
        # are added to it (at worst counted twice: throttling a little early, never late).
        self._inflight: _Depths = _Depths()
        self._inflight_at_request: _Depths = _Depths()

    def sample_requested(self) -> None:
        """Call right before asking JetStream for the counts that `observe` will receive."""
        self._admitted_at_request = _copy(self._admitted)
        self._inflight_at_request = _copy(self._inflight)

    def settled(self, tenant: str, priority_class: int, count: int = 1) -> None:
        """The admission of `count` items finished (stored, or failed and never stored)."""
        lane = class_name(priority_class)
        self._inflight.by_lane[lane] = self._inflight.by_lane.get(lane, 0) - count
        self._inflight.by_tenant[tenant] -= count

    def observe(self, subject_counts: dict[str, int], completed_total: int) -> None:
        """Feed one sample: item counts per work subject (tm.work.<pool>.<lane>.<tenant>) and
        the number of items ever completed."""
        now = self._clock()
        depths = _Depths()
        for subject, count in subject_counts.items():
            _, _, _pool, lane, tenant = subject.split(".", 4)
            depths.by_lane[lane] = depths.by_lane.get(lane, 0) + count
            depths.by_tenant[tenant] += count
        if self._completed_total is not None and now > self._sampled_at:
            rate = max(0, completed_total - self._completed_total) / (now - self._sampled_at)
            self.drain_rate = rate if self.drain_rate == 0 else 0.7 * self.drain_rate + 0.3 * rate
        self._completed_total = completed_total
        self._sampled_at = now
        for lane, count in self._admitted.by_lane.items():
            since = count - self._admitted_at_request.by_lane.get(lane, 0)
            depths.by_lane[lane] = depths.by_lane.get(lane, 0) + since + self._inflight_at_request.by_lane.get(lane, 0)
        for tenant, count in self._admitted.by_tenant.items():
            since = count - self._admitted_at_request.by_tenant.get(tenant, 0)
            depths.by_tenant[tenant] += since + self._inflight_at_request.by_tenant.get(tenant, 0)
        self._depths = depths

    def depth(self, lane: str | None = None, tenant: str | None = None) -> int:
        if tenant is not None:
            return self._depths.by_tenant.get(tenant, 0)
        return self._depths.by_lane.get(lane or "standard", 0)

    def admit(self, tenant: str, priority_class: int, count: int = 1) -> None:
        """Account `count` new items, or raise ResourceExhausted with a retry-after."""
        lane = class_name(priority_class)
        lane_limit = self.limits.lane_max_depth[lane]
        lane_depth = self._depths.by_lane.get(lane, 0)
        if lane_depth + count > lane_limit:
            raise ResourceExhausted(
                f"the {lane} lane holds {lane_depth} tasks (limit {lane_limit}); slow down",
                self._retry_after(lane_depth + count, lane_limit),
            )
        tenant_depth = self._depths.by_tenant.get(tenant, 0)
        if tenant_depth + count > self.limits.tenant_max_depth:
            raise ResourceExhausted(
                f"tenant {tenant!r} holds {tenant_depth} tasks (quota {self.limits.tenant_max_depth})",
                self._retry_after(tenant_depth + count, self.limits.tenant_max_depth),
            )
        # Count admissions between samples so a burst cannot overshoot the limit.
        self._depths.by_lane[lane] = lane_depth + count
        self._depths.by_tenant[tenant] = tenant_depth + count
        self._admitted.by_lane[lane] = self._admitted.by_lane.get(lane, 0) + count
        self._admitted.by_tenant[tenant] += count
        self._inflight.by_lane[lane] = self._inflight.by_lane.get(lane, 0) + count
        self._inflight.by_tenant[tenant] += count

    def _retry_after(self, depth: int, limit: int) -> float:
        excess = depth - self.limits.low_water * limit
        if self.drain_rate <= 0:
            return self.limits.max_retry_after_s / 12  # nothing is draining yet: check back in a few seconds
        seconds = excess / self.drain_rate
        return min(self.limits.max_retry_after_s, max(self.limits.min_retry_after_s, seconds))


def _copy(depths: _Depths) -> _Depths:
    return _Depths(dict(depths.by_lane), defaultdict(int, depths.by_tenant))
