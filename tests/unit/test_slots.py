"""The slot policy on a simulated clock: caps on in-flight work, and the standard/batch guarantee."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.v1 import task_pb2
from services.worker._priority import WaitBounds, dispatch_deadline, due_time
from services.worker._slots import SlotLimits, SlotPolicy, Waiting

INTERACTIVE, STANDARD, BATCH = (
    task_pb2.PRIORITY_CLASS_INTERACTIVE,
    task_pb2.PRIORITY_CLASS_STANDARD,
    task_pb2.PRIORITY_CLASS_BATCH,
)
BOUNDS = WaitBounds()


@dataclass
class Job:
    arrival: float
    duration: float
    priority_class: int
    priority: int = 0
    started: float | None = None
    checked: bool = False  # its class's load fits the guaranteed slots: its bound must hold


@dataclass
class Run:
    limits: SlotLimits
    jobs: list[Job]
    lead_s: float = 0.0
    peak: dict[str, int] = field(default_factory=lambda: {"total": 0, "interactive": 0, "other": 0})


def simulate(run: Run) -> None:
    """Arrivals and finishes in time order; after each instant, start whatever the policy allows.

    Checks at every decision: the caps hold, no due standard/batch item that may start is passed
    over for an interactive one, and nothing that may start is left waiting."""
    now = [0.0]
    policy: SlotPolicy[Job] = SlotPolicy(run.limits, clock=lambda: now[0])
    order = itertools.count()
    timeline: list[tuple[float, int, int, Job]] = []  # (time, 0 finish / 1 arrival, tie, job)
    for job in run.jobs:
        heapq.heappush(timeline, (job.arrival, 1, next(order), job))
    while timeline:
        now[0] = timeline[0][0]
        while timeline and timeline[0][0] == now[0]:
            _, what, _, job = heapq.heappop(timeline)
            if what == 0:
                policy.release(job.priority_class == INTERACTIVE)
                continue
            interactive = job.priority_class == INTERACTIVE
            deadline = dispatch_deadline(job.priority_class, job.priority, job.arrival, BOUNDS)
            due = due_time(job.priority_class, job.arrival, BOUNDS)
            bound = BOUNDS.bound_s(job.priority_class)
            policy.add(Waiting(deadline, next(order), due, bound, interactive, job))
        while True:
            due_waiting = [
                w for w in policy.waiting if not w.interactive and w.due - min(run.lead_s, w.bound / 2) <= now[0]
            ]
            other_may_start = policy.may_start(False)
            chosen = policy.take(lead_s=run.lead_s)
            if chosen is None:
                break
            if due_waiting and other_may_start:
                assert not chosen.interactive, "an interactive item went ahead of a due standard/batch item"
            chosen.payload.started = now[0]
            heapq.heappush(timeline, (now[0] + chosen.payload.duration, 0, next(order), chosen.payload))
            limits = run.limits
            assert policy.in_flight <= limits.concurrency + limits.reserve
            assert policy.interactive_in_flight <= limits.interactive_max
            assert policy.other_in_flight <= limits.concurrency
            assert policy.reserve_in_use <= min(limits.reserve, policy.interactive_in_flight)
            run.peak["total"] = max(run.peak["total"], policy.in_flight)
        for waiting in policy.waiting:
            assert not policy.may_start(waiting.interactive), "a slot stayed free while an item it may take waited"
        if policy.other_in_flight < run.limits.guaranteed:
            assert all(w.interactive for w in policy.waiting), "standard/batch work waited with a guaranteed slot free"
    assert all(job.started is not None for job in run.jobs)


durations = st.one_of(
    st.floats(min_value=0.001, max_value=3.0),
    st.floats(min_value=100.0, max_value=100_000.0),  # steps that hold a slot far past every bound
)
lower_classes = st.sampled_from([STANDARD, BATCH])
priorities = st.integers(min_value=0, max_value=100)


@st.composite
def limits(draw: st.DrawFn) -> SlotLimits:
    concurrency = draw(st.integers(min_value=1, max_value=8))
    reserve = draw(st.integers(min_value=0, max_value=4))
    guaranteed = draw(st.integers(min_value=0, max_value=min(concurrency, concurrency + reserve - 1)))
    return SlotLimits(concurrency, reserve, guaranteed)


@st.composite
def interactive_flood(draw: st.DrawFn) -> list[Job]:
    """Interactive work of any shape: bursts at the same instant, very long steps."""
    arrivals = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=200.0))
    jobs = draw(st.lists(st.tuples(arrivals, durations, priorities), max_size=80))
    return [Job(arrival, duration, INTERACTIVE, priority) for arrival, duration, priority in jobs]


@st.composite
def fitting_lower_load(draw: st.DrawFn, guaranteed: int) -> list[Job]:
    """Standard/batch work that needs at most `guaranteed` slots at once: that many sequences,
    each item arriving once the one before it in its sequence would have finished."""
    jobs = []
    for _ in range(guaranteed):
        at = draw(st.floats(min_value=0.0, max_value=100.0))
        for _ in range(draw(st.integers(min_value=0, max_value=6))):
            duration = draw(durations)
            jobs.append(Job(at, duration, draw(lower_classes), draw(priorities), checked=True))
            at = at + duration + draw(st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=30.0)))
    return jobs


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_standard_and_batch_meet_their_bound_under_any_interactive_load(data: st.DataObject) -> None:
    """However much interactive work arrives and however long its steps hold slots, every standard or
    batch item starts within its class's bound while that work fits the guaranteed slots; in-flight
    never exceeds concurrency + reserve."""
    slot_limits = data.draw(limits())
    lower = data.draw(fitting_lower_load(slot_limits.guaranteed))
    run = Run(slot_limits, data.draw(interactive_flood()) + lower, data.draw(st.floats(0.0, 10.0)))
    simulate(run)
    for job in lower:
        assert job.started is not None
        waited = job.started - job.arrival
        assert waited <= BOUNDS.bound_s(job.priority_class), f"{job} waited {waited:.3f}s"
    assert run.peak["total"] <= slot_limits.concurrency + slot_limits.reserve


@settings(max_examples=300, deadline=None)
@given(limits(), interactive_flood(), st.lists(st.tuples(st.floats(0.0, 200.0), durations, lower_classes, priorities)))
def test_caps_and_due_order_hold_under_overload(
    slot_limits: SlotLimits, flood: list[Job], lower: list[tuple[float, float, int, int]]
) -> None:
    """Under any mix (standard/batch beyond the guaranteed slots too), in-flight stays within its caps,
    a due standard/batch item is never passed over for interactive work, and no slot idles while work
    it may take waits."""
    jobs = flood + [Job(arrival, duration, cls, priority) for arrival, duration, cls, priority in lower]
    simulate(Run(slot_limits, jobs))


def test_the_observed_starvation_cannot_recur() -> None:
    """C=32, R=8: interactive steps of 10 s arriving faster than they finish (100/s against 4/s,
    over 10 s), then one standard item amid them: it starts at once, and in-flight tops out at 40."""
    jobs = [Job(i * 0.01, 10.0, INTERACTIVE) for i in range(1000)]
    standard = Job(5.0, 0.001, STANDARD)
    run = Run(SlotLimits.of(32), [*jobs, standard], lead_s=10.0)
    simulate(run)
    assert standard.started == standard.arrival
    assert run.peak["total"] <= 40


@pytest.mark.parametrize(
    ("concurrency", "reserve", "guaranteed"),
    [(0, 2, 0), (4, -1, 1), (4, 0, 5), (1, 0, 1)],
)
def test_limits_that_leave_a_class_without_slots_are_refused(concurrency: int, reserve: int, guaranteed: int) -> None:
    """No concurrency, a negative reserve, more guaranteed slots than shared ones, or none left for
    interactive work: refused."""
    with pytest.raises(ValueError):
        SlotLimits(concurrency, reserve, guaranteed)


@given(st.integers(min_value=1, max_value=512), st.one_of(st.none(), st.integers(min_value=0, max_value=64)))
def test_defaults_always_leave_every_class_a_slot(concurrency: int, reserve: int | None) -> None:
    """The default reserve and guaranteed slots are valid for any concurrency."""
    slot_limits = SlotLimits.of(concurrency, reserve)
    assert slot_limits.interactive_max >= 1
    assert slot_limits.concurrency >= 1
    assert slot_limits.guaranteed >= (1 if concurrency + slot_limits.reserve > 1 else 0)
