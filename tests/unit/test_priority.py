"""Dispatch order: class first for fresh work, aging bounds every class's wait."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh.v1 import task_pb2
from services.worker._priority import WaitBounds, dispatch_deadline, due_time

INTERACTIVE, STANDARD, BATCH = (
    task_pb2.PRIORITY_CLASS_INTERACTIVE,
    task_pb2.PRIORITY_CLASS_STANDARD,
    task_pb2.PRIORITY_CLASS_BATCH,
)
BOUNDS = WaitBounds()
classes = st.sampled_from([INTERACTIVE, STANDARD, BATCH])
priorities = st.integers(min_value=0, max_value=100)
times = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(priorities, priorities, times)
def test_fresh_interactive_beats_fresh_batch(p_interactive: int, p_batch: int, now: float) -> None:
    """Enqueued at the same moment, an interactive item always runs before a batch one."""
    assert dispatch_deadline(INTERACTIVE, p_interactive, now, BOUNDS) < dispatch_deadline(BATCH, p_batch, now, BOUNDS)


@given(classes, priorities, times, st.floats(min_value=0, max_value=1e4, allow_nan=False))
def test_no_item_waits_past_its_bound_behind_fresher_work(cls: int, priority: int, enqueued: float, age: float) -> None:
    """An item that has waited its full bound sorts before any item arriving now, of any class."""
    waited = max(age, BOUNDS.bound_s(cls))
    old = dispatch_deadline(cls, priority, enqueued, BOUNDS)
    for other in (INTERACTIVE, STANDARD, BATCH):
        assert old <= dispatch_deadline(other, 100, enqueued + waited, BOUNDS)


@given(classes, priorities, priorities, times)
def test_higher_priority_first_within_a_class(cls: int, low: int, high: int, now: float) -> None:
    """Inside one class, at the same enqueue time, the higher numeric priority is not later."""
    low, high = min(low, high), max(low, high)
    assert dispatch_deadline(cls, high, now, BOUNDS) <= dispatch_deadline(cls, low, now, BOUNDS)


@given(classes, priorities, times, times)
def test_earlier_enqueue_never_loses_within_class_and_priority(cls: int, priority: int, a: float, b: float) -> None:
    """Same class and priority: first in, first out."""
    first, second = min(a, b), max(a, b)
    assert dispatch_deadline(cls, priority, first, BOUNDS) <= dispatch_deadline(cls, priority, second, BOUNDS)


@given(st.sampled_from([STANDARD, BATCH]), times)
def test_lower_classes_fall_due_before_their_bound(cls: int, enqueued: float) -> None:
    """A standard or batch item is due (goes ahead of everything, even late interactive work)
    before its bound runs out, leaving the margin for a slot to free up."""
    due = due_time(cls, enqueued, BOUNDS)
    assert enqueued < due < enqueued + BOUNDS.bound_s(cls)
    assert due <= enqueued + BOUNDS.bound_s(cls) * (1 - BOUNDS.aging_margin) + 1e-6


@given(times)
def test_interactive_work_is_never_forced_ahead(enqueued: float) -> None:
    """Interactive items keep deadline order among themselves; only lower classes age into a forced start."""
    assert due_time(INTERACTIVE, enqueued, BOUNDS) == float("inf")
