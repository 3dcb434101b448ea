"""Dispatch order inside a worker: earliest effective deadline first.

Each priority class has a maximum queue wait (its bound). An item's dispatch
deadline is ``enqueued + bound(class) - priority_credit``; the item with the
earliest deadline runs next. Interactive items, with the tightest bound, go
ahead of fresh batch items — yet a batch item that has waited close to its own
bound overtakes a fresh interactive one. That is aging: no item can be passed
over forever, and each class's wait stays within its bound while capacity lasts.

The numeric priority (0..100) inside a class buys up to `priority_span` of that
class's bound, so it reorders within a class without breaking another's bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.v1 import task_pb2


@dataclass(frozen=True)
class WaitBounds:
    interactive_s: float = 0.25
    standard_s: float = 5.0
    batch_s: float = 60.0
    # Fraction of a class's bound that priority 100 can buy.
    priority_span: float = 0.5

    def bound_s(self, priority_class: int) -> float:
        if priority_class == task_pb2.PRIORITY_CLASS_INTERACTIVE:
            return self.interactive_s
        if priority_class == task_pb2.PRIORITY_CLASS_BATCH:
            return self.batch_s
        return self.standard_s


def dispatch_deadline(priority_class: int, priority: int, enqueued_s: float, bounds: WaitBounds) -> float:
    """The time by which this item should start; smaller runs first."""
    bound = bounds.bound_s(priority_class)
    credit = bound * bounds.priority_span * min(max(priority, 0), 100) / 100
    return enqueued_s + bound - credit
