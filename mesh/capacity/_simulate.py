"""A discrete-event simulation of one pool: Poisson arrivals per priority class, service times
drawn from what the mesh measured, a slot policy deciding what starts next. Pure and seeded.

Erlang C (`MMc`) holds only for exponential service times and one class; measured steps are rarely
exponential (a model call is close to constant), and classes share slots under a policy. So the
simulation runs the policy itself: `policy` is built per run from the simulated clock — the
worker's own `SlotPolicy` (see `services.worker._slots.simulated`) or the plain `FifoSlots` here —
and asked, whenever a slot may be free, what starts. The pool's workers are pooled into one line
with all their slots: JetStream hands an item to whichever worker pulls first, so an item waits
for the first free slot anywhere (a worker's own line is short: it pulls only what it can start).

Reported per class: wait p50/p95/mean (from arrival to start), items served; for the pool:
utilization (busy slot-time over all slot-time) and, when the run starts with a backlog, the time
until nothing waits.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ClassLoad:
    """One priority class's traffic: arrivals per second, and service-time samples (seconds) to
    draw from (one value: a constant service time)."""

    name: str
    arrival_per_s: float
    service_s: Sequence[float]
    backlog: int = 0  # items already waiting when the run starts

    def __post_init__(self) -> None:
        if self.arrival_per_s < 0 or len(self.service_s) == 0 or min(self.service_s) < 0 or self.backlog < 0:
            raise ValueError(f"need λ ≥ 0, service samples ≥ 0 and a backlog ≥ 0: {self.name}")


class Policy(Protocol):
    """What a pool's slots answer: take an item in, say what starts now, hear that one ended."""

    def add(self, item: int, klass: int, arrived_s: float) -> None: ...

    def take(self) -> tuple[int, int] | None:
        """(item, class) to start now, counted as running; None if nothing may start."""

    def release(self, klass: int) -> None: ...


PolicyFactory = Callable[[Callable[[], float], int], Policy]  # (clock, slots) -> policy


class FifoSlots:
    """`slots` slots, first come first served across classes (`strict=True`: the most urgent
    class first, then arrival)."""

    def __init__(self, clock: Callable[[], float], slots: int, strict: bool = False) -> None:
        self._slots, self._strict = slots, strict
        self._running = 0
        self._waiting: list[tuple[int, float, int, int]] = []  # (class or 0, arrived, item, class)

    def add(self, item: int, klass: int, arrived_s: float) -> None:
        heapq.heappush(self._waiting, (klass if self._strict else 0, arrived_s, item, klass))

    def take(self) -> tuple[int, int] | None:
        if self._running >= self._slots or not self._waiting:
            return None
        *_, item, klass = heapq.heappop(self._waiting)
        self._running += 1
        return item, klass

    def release(self, klass: int) -> None:
        self._running -= 1


def fifo(clock: Callable[[], float], slots: int) -> Policy:
    return FifoSlots(clock, slots)


@dataclass(frozen=True)
class ClassResult:
    name: str
    served: int
    wait_p50_s: float
    wait_p95_s: float
    wait_mean_s: float


@dataclass(frozen=True)
class SimResult:
    classes: tuple[ClassResult, ...]
    utilization: float
    drained_s: float | None  # with a starting backlog: when nothing waited any more (None: never)
    horizon_s: float

    def by_name(self) -> dict[str, ClassResult]:
        return {c.name: c for c in self.classes}


@dataclass(order=True)
class _Event:
    at: float
    order: int
    arrival: bool = field(compare=False)
    klass: int = field(compare=False)


def simulate(
    loads: Sequence[ClassLoad],
    slots: int,
    horizon_s: float,
    policy: PolicyFactory = fifo,
    seed: int = 0,
    warmup_s: float | None = None,
) -> SimResult:
    """Run `horizon_s` simulated seconds; waits of items arriving in the first `warmup_s` (default
    a tenth of the horizon, none when there is a backlog to drain) are not counted."""
    if slots < 1 or horizon_s <= 0:
        raise ValueError(f"need at least one slot and a horizon > 0, got {slots} and {horizon_s}")
    rng = np.random.default_rng(seed)
    samples = [np.asarray(load.service_s, dtype=np.float64) for load in loads]
    has_backlog = any(load.backlog for load in loads)
    warmup = (0.0 if has_backlog else horizon_s / 10) if warmup_s is None else warmup_s
    now = 0.0
    pool = policy(lambda: now, slots)
    ids, order = itertools.count(), itertools.count()
    events: list[_Event] = []
    arrived: dict[int, float] = {}
    waiting = 0
    waits: list[list[float]] = [[] for _ in loads]
    busy_s = 0.0
    drained: float | None = None if has_backlog else 0.0

    def schedule_arrival(klass: int) -> None:
        rate = loads[klass].arrival_per_s
        if rate > 0:
            heapq.heappush(events, _Event(now + float(rng.exponential(1 / rate)), next(order), True, klass))

    def start_what_can() -> None:
        nonlocal waiting, busy_s
        while (started := pool.take()) is not None:
            item, klass = started
            waiting -= 1
            if arrived[item] >= warmup:
                waits[klass].append(now - arrived[item])
            del arrived[item]
            service = float(rng.choice(samples[klass]))
            busy_s += max(0.0, min(now + service, horizon_s) - now)
            heapq.heappush(events, _Event(now + service, next(order), False, klass))

    for klass, load in enumerate(loads):
        for _ in range(load.backlog):
            item = next(ids)
            arrived[item] = 0.0
            pool.add(item, klass, 0.0)
            waiting += 1
        schedule_arrival(klass)
    start_what_can()
    while events and events[0].at <= horizon_s:
        event = heapq.heappop(events)
        now = event.at
        if event.arrival:
            item = next(ids)
            arrived[item] = now
            pool.add(item, event.klass, now)
            waiting += 1
            schedule_arrival(event.klass)
        else:
            pool.release(event.klass)
        start_what_can()
        if drained is None and waiting == 0:
            drained = now
    results = []
    for load, measured in zip(loads, waits, strict=True):
        array = np.asarray(measured) if measured else np.asarray([math.nan])
        results.append(
            ClassResult(
                load.name,
                len(measured),
                float(np.percentile(array, 50)),
                float(np.percentile(array, 95)),
                float(array.mean()),
            )
        )
    return SimResult(tuple(results), busy_s / (slots * horizon_s), drained, horizon_s)
