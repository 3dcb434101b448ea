"""Dispatch order inside a worker: earliest effective deadline first.

Each priority class has a maximum queue wait (its bound). An item's dispatch
deadline is ``enqueued + bound(class) - priority_credit``; the item with the
earliest deadline runs next. Interactive items, with the tightest bound, go
ahead of fresh batch items — yet a batch item that has waited close to its own
bound overtakes a fresh interactive one. That is aging: no item can be passed
over forever, and each class's wait stays within its bound while capacity lasts.

The numeric priority (0..100) inside a class buys up to `priority_span` of that
class's bound, so it reorders within a class without breaking another's bound.

Deadline order alone is not enough under overload: when interactive work arrives
faster than it drains, interactive items are themselves past their (tight) bound,
and their deadlines stay ahead of a waiting batch item's. So a standard or batch
item becomes *due* at ``enqueued + bound * (1 - aging_margin)``, and a due item
starts before anything else: its class's bound is a guarantee, the interactive
bound a target. The margin leaves time for a slot to free up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mesh.v1 import task_pb2


@dataclass(frozen=True)
class WaitBounds:
    interactive_s: float = 0.25
    standard_s: float = 5.0
    batch_s: float = 60.0
    # Fraction of a class's bound that priority 100 can buy.
    priority_span: float = 0.5
    # A standard/batch item is due this fraction of its bound before the bound.
    aging_margin: float = 0.1

    def bound_s(self, priority_class: int) -> float:
        if priority_class == task_pb2.PRIORITY_CLASS_INTERACTIVE:
            return self.interactive_s
        if priority_class == task_pb2.PRIORITY_CLASS_BATCH:
            return self.batch_s
        return self.standard_s


def due_time(priority_class: int, enqueued_s: float, bounds: WaitBounds) -> float:
    """When a standard or batch item must start ahead of everything else; never for interactive."""
    if priority_class == task_pb2.PRIORITY_CLASS_INTERACTIVE:
        return math.inf
    return enqueued_s + bounds.bound_s(priority_class) * (1 - bounds.aging_margin)


def dispatch_deadline(priority_class: int, priority: int, enqueued_s: float, bounds: WaitBounds) -> float:
    """The time by which this item should start; smaller runs first."""
    bound = bounds.bound_s(priority_class)
    credit = bound * bounds.priority_span * min(max(priority, 0), 100) / 100
    return enqueued_s + bound - credit
