"""Slot accounting and the choice of what starts next: pure, with the clock passed in.

A worker has ``concurrency`` (C) shared slots and ``reserve`` (R) slots only
interactive items may use. Of the shared slots, ``guaranteed`` (G) are kept from
interactive work altogether: interactive items may hold at most ``C - G + R``
slots, standard and batch items at most ``C``, and all together at most ``C + R``.
An interactive item counts against the reserve only once the shared slots are
full (``reserve_in_use = max(0, in_flight - C)``), so the reserve is there for an
interactive burst while standard/batch work fills the shared slots.

Choice, whenever a slot may be free (`take`):

1. the most overdue standard/batch item that is *due* (``_priority.due_time``,
   taken ``lead_s`` early: the slot it waits for is held by a step about that
   long), if a standard/batch item may start;
2. else the earliest dispatch deadline among waiting items whose class may start.

Guarantees (pinned by ``tests/unit/test_slots.py``):

- In flight never exceeds ``C + R``; interactive in flight never exceeds ``C - G + R``.
- While fewer than G standard/batch items are in flight, a waiting standard/batch
  item is never held back: interactive work, however long its steps, cannot
  occupy the last G shared slots. So a standard or batch item starts as soon as
  it arrives — within its bound — as long as standard+batch work needs at most G
  slots at once (at most G of them running or waiting at any moment). Beyond
  that load, a due item takes the next slot that frees, ahead of any interactive
  item, so its wait is bounded by its bound plus the shortest remaining step.
- An interactive item starts at once while interactive work holds fewer than
  ``C - G + R`` slots and in-flight is below ``C + R`` (so always at least R slots,
  which standard/batch work can never take).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mesh.v1 import task_pb2
from services.worker._priority import WaitBounds, dispatch_deadline, due_time

T = TypeVar("T")
# Simulated classes by index, most urgent first (as mesh.priority.CLASS_NAMES).
_CLASSES = (task_pb2.PRIORITY_CLASS_INTERACTIVE, task_pb2.PRIORITY_CLASS_STANDARD, task_pb2.PRIORITY_CLASS_BATCH)


@dataclass(frozen=True)
class SlotLimits:
    concurrency: int
    reserve: int
    guaranteed: int

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.reserve < 0 or not 0 <= self.guaranteed <= self.concurrency:
            raise ValueError(f"need concurrency ≥ 1, reserve ≥ 0, 0 ≤ guaranteed ≤ concurrency; got {self}")
        if self.interactive_max < 1:
            raise ValueError(f"interactive work would get no slot at all: {self}")

    @classmethod
    def of(cls, concurrency: int, reserve: int | None = None, guaranteed: int | None = None) -> SlotLimits:
        """The defaults: reserve ``max(2, C // 4)``, guaranteed ``max(1, C // 4)`` — less where
        interactive work would otherwise get no slot."""
        reserve = max(2, concurrency // 4) if reserve is None else reserve
        if guaranteed is None:
            guaranteed = min(max(1, concurrency // 4), concurrency + reserve - 1)
        return cls(concurrency, reserve, guaranteed)

    @property
    def total(self) -> int:
        return self.concurrency + self.reserve

    @property
    def interactive_max(self) -> int:
        return self.concurrency - self.guaranteed + self.reserve


@dataclass(order=True)
class Waiting(Generic[T]):
    """An item waiting for a slot; sorts by dispatch deadline, then arrival."""

    deadline: float
    order: int
    due: float = field(compare=False)  # when a standard/batch item goes ahead of everything; inf if interactive
    bound: float = field(compare=False)
    interactive: bool = field(compare=False)
    payload: T = field(compare=False)


class SlotPolicy(Generic[T]):
    """What waits, what runs (counted per class), and what may start next."""

    def __init__(self, limits: SlotLimits, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self._clock = clock
        self._waiting: list[Waiting[T]] = []
        self.interactive_in_flight = 0
        self.other_in_flight = 0

    @property
    def in_flight(self) -> int:
        return self.interactive_in_flight + self.other_in_flight

    @property
    def reserve_in_use(self) -> int:
        return max(0, self.in_flight - self.limits.concurrency)

    @property
    def waiting(self) -> list[Waiting[T]]:
        return list(self._waiting)

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, item: Waiting[T]) -> None:
        self._waiting.append(item)

    def clear(self) -> list[Waiting[T]]:
        """Forget every waiting item; returns them."""
        waiting, self._waiting = self._waiting, []
        return waiting

    def may_start(self, interactive: bool) -> bool:
        if self.in_flight >= self.limits.total:
            return False
        if interactive:
            return self.interactive_in_flight < self.limits.interactive_max
        return self.other_in_flight < self.limits.concurrency

    def take(self, lead_s: float = 0.0) -> Waiting[T] | None:
        """The item to start now (counted as running from here on), or None."""
        may_interactive, may_other = self.may_start(True), self.may_start(False)
        if not self._waiting or not (may_interactive or may_other):
            return None
        chosen: Waiting[T] | None = None
        if may_other:
            now = self._clock()
            due = [w for w in self._waiting if not w.interactive and w.due - min(lead_s, w.bound / 2) <= now]
            if due:
                chosen = min(due, key=lambda w: (w.due, w.order))
        if chosen is None:
            startable = [w for w in self._waiting if (may_interactive if w.interactive else may_other)]
            if not startable:
                return None
            chosen = min(startable)
        self._waiting.remove(chosen)
        if chosen.interactive:
            self.interactive_in_flight += 1
        else:
            self.other_in_flight += 1
        return chosen

    def release(self, interactive: bool) -> None:
        """A step that `take` started has finished (however it ended)."""
        if interactive:
            if self.interactive_in_flight <= 0:
                raise ValueError("no interactive step is running")
            self.interactive_in_flight -= 1
        else:
            if self.other_in_flight <= 0:
                raise ValueError("no standard/batch step is running")
            self.other_in_flight -= 1


class SimulatedSlots:
    """`SlotPolicy` as `mesh.capacity.simulate` drives it: the same choice of what starts next,
    on the simulated clock, with each class's deadline and due time as the dispatcher gives them
    (`Dispatcher._wait`) — so a plan's preview runs the workers' own policy."""

    def __init__(self, clock: Callable[[], float], limits: SlotLimits, bounds: WaitBounds, lead_s: float = 0.0) -> None:
        self._policy: SlotPolicy[tuple[int, int]] = SlotPolicy(limits, clock)
        self._bounds, self._lead_s = bounds, lead_s
        self._order = 0

    def add(self, item: int, klass: int, arrived_s: float) -> None:
        priority_class = _CLASSES[klass]
        self._order += 1
        self._policy.add(
            Waiting(
                dispatch_deadline(priority_class, 0, arrived_s, self._bounds),
                self._order,
                due_time(priority_class, arrived_s, self._bounds),
                self._bounds.bound_s(priority_class),
                klass == 0,
                (item, klass),
            )
        )

    def take(self) -> tuple[int, int] | None:
        chosen = self._policy.take(self._lead_s)
        return None if chosen is None else chosen.payload

    def release(self, klass: int) -> None:
        self._policy.release(klass == 0)


def simulated(
    limits: SlotLimits, bounds: WaitBounds | None = None, lead_s: float = 0.0
) -> Callable[[Callable[[], float], int], SimulatedSlots]:
    """A policy factory for `mesh.capacity.simulate`: classes are indexed in `CLASS_NAMES` order
    (interactive, standard, batch), and the pool's slots are `limits` (its workers' together)."""
    return lambda clock, _slots: SimulatedSlots(clock, limits, bounds or WaitBounds(), lead_s)
