"""Admission control: limits per lane and tenant, retry-after from the drain rate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import ResourceExhausted
from mesh.v1 import task_pb2
from services.scheduler._flow import FlowControl, FlowLimits

BATCH = task_pb2.PRIORITY_CLASS_BATCH
INTERACTIVE = task_pb2.PRIORITY_CLASS_INTERACTIVE


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _flow(lane_batch: int = 100, tenant: int = 1_000) -> tuple[FlowControl, Clock]:
    clock = Clock()
    limits = FlowLimits(
        lane_max_depth={"interactive": 10, "standard": 100, "batch": lane_batch}, tenant_max_depth=tenant
    )
    return FlowControl(limits, clock), clock


def test_admits_up_to_the_lane_limit_then_refuses() -> None:
    """Admissions count against the lane between samples; the one past the limit is refused."""
    flow, _ = _flow(lane_batch=5)
    for _ in range(5):
        flow.admit("acme", BATCH)
    with pytest.raises(ResourceExhausted) as caught:
        flow.admit("acme", BATCH)
    assert "batch lane" in caught.value.message
    flow.admit("acme", INTERACTIVE)  # other lanes are unaffected


def test_retry_after_follows_the_measured_drain_rate() -> None:
    """With 100 items over a limit of 100 and a drain of 50/s, retry after ~ (101-80)/50 s."""
    flow, clock = _flow(lane_batch=100)
    flow.observe({"tm.work.ingestion.batch.acme": 100}, completed_total=0)
    clock.now = 1.0
    flow.observe({"tm.work.ingestion.batch.acme": 100}, completed_total=50)
    assert flow.drain_rate == pytest.approx(50)
    with pytest.raises(ResourceExhausted) as caught:
        flow.admit("acme", BATCH)
    assert caught.value.retry_after_s == pytest.approx((101 - 80) / 50)


def test_tenant_quota_isolates_tenants() -> None:
    """One tenant at its quota is refused while another tenant is admitted."""
    flow, _ = _flow(lane_batch=10_000, tenant=3)
    flow.observe({"tm.work.ingestion.batch.flood": 3}, completed_total=0)
    with pytest.raises(ResourceExhausted, match="flood"):
        flow.admit("flood", BATCH)
    flow.admit("quiet", BATCH)


@given(
    st.integers(min_value=1, max_value=10_000),
    st.floats(min_value=0, max_value=1e5, allow_nan=False),
    st.integers(min_value=1, max_value=10_000),
)
def test_retry_after_is_always_bounded(limit: int, rate: float, depth: int) -> None:
    """Whatever the depth and drain rate, the retry-after lies within [min, max]."""
    flow, clock = _flow(lane_batch=limit)
    flow.observe({"tm.work.ingestion.batch.t": depth}, completed_total=0)
    clock.now = 1.0
    flow.observe({"tm.work.ingestion.batch.t": depth}, completed_total=int(rate))
    try:
        flow.admit("t", BATCH)
    except ResourceExhausted as exc:
        assert flow.limits.min_retry_after_s <= exc.retry_after_s <= flow.limits.max_retry_after_s
    else:
        assert depth + 1 <= limit


def test_registry_reaps_a_silent_worker_once() -> None:
    """A worker past its heartbeat deadline is DEAD and its ack subjects are returned exactly once."""
    from mesh.v1 import status_pb2
    from services.scheduler._registry import WorkerRegistry

    registry = WorkerRegistry(heartbeat_interval_s=1, dead_after_s=3)
    worker = status_pb2.WorkerStatus(worker_id="w1")
    registry.heartbeat(worker, ["t1"], now=100.0, ack_subjects=["$JS.ACK.a", "$JS.ACK.b"])
    registry.heartbeat(status_pb2.WorkerStatus(worker_id="w2"), [], now=102.5)
    assert registry.reap(now=102.0) == []
    assert registry.reap(now=104.0) == ["$JS.ACK.a", "$JS.ACK.b"]
    assert registry.reap(now=105.0) == []
    health = {w.worker_id: w.health for w in registry.snapshot(now=104.0)}
    assert health == {"w1": status_pb2.WORKER_HEALTH_DEAD, "w2": status_pb2.WORKER_HEALTH_ALIVE}


def test_a_stale_sample_does_not_forget_later_admissions() -> None:
    """Admissions made after a sample was requested still count when that sample lands."""
    flow, _ = _flow(lane_batch=3)
    flow.sample_requested()
    flow.admit("acme", BATCH)
    flow.admit("acme", BATCH)
    flow.observe({}, completed_total=0)  # taken before either admission was stored
    flow.admit("acme", BATCH)
    with pytest.raises(ResourceExhausted):
        flow.admit("acme", BATCH)


def test_scale_recommendation() -> None:
    """Backlog sizes replicas by measured drain; slow queues add one; idle pools shrink to min."""
    from services.scheduler._autoscale import ScalePolicy, recommend

    policy = ScalePolicy(target_drain_s=10, max_wait_s=5, min_replicas=1, max_replicas=4)
    assert recommend("p", 0, 0, 0, 3, policy).desired_replicas == 1
    assert recommend("p", 100, 1, 5, 1, policy).desired_replicas == 2  # 100 / (5/s * 10 s)
    assert recommend("p", 10_000, 1, 5, 1, policy).desired_replicas == 4  # clamped to max
    assert recommend("p", 10, 9, 100, 2, policy).desired_replicas == 3  # old item: one more
    assert recommend("p", 10, 0, 0, 0, policy).desired_replicas == 1  # nothing measured yet


def test_standby_covers_a_pool_with_no_live_worker() -> None:
    """Extras make up for planned workers that are not alive, and go away when they are back."""
    from mesh.supervisor._autoscaler import extra_wanted

    assert extra_wanted(target=1, planned=1, alive=1, extra=0) == 0  # healthy: nothing extra
    assert extra_wanted(target=1, planned=1, alive=0, extra=0) == 1  # planned worker down: standby
    assert extra_wanted(target=1, planned=1, alive=1, extra=1) == 1  # standby carries the pool
    assert extra_wanted(target=1, planned=1, alive=2, extra=1) == 0  # planned one back: drop standby
    assert extra_wanted(target=3, planned=1, alive=1, extra=0) == 2  # scale-out on top of the plan
