"""What one process measures of the mesh's load, per (pool, priority class), until it reports.

Every process that stores work items counts them as arrivals (`mesh.fabric.WorkQueue`); every
dispatcher counts the attempts it starts and ends, times how long each held its slot and how long
a first attempt waited, and keeps gauges of what it holds. `take` hands over what was counted
since the last `take` (a worker sends it with its heartbeat; the scheduler takes its own) and
starts the next tally; `put_back` returns a report that never reached the scheduler. One meter
per process: `METER`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from mesh.load._sample import Reservoir
from mesh.priority import CLASS_BY_NAME, CLASS_NAMES, class_name
from mesh.v1 import status_pb2

SAMPLES_PER_REPORT = 64  # of each measure, per (pool, class) and report

Key = tuple[str, str]  # (pool, class name)


def key_of(pool: str, priority_class: int | str) -> Key:
    """The meter's key for a pool and a class (an enum value or a name; unknown: standard)."""
    if isinstance(priority_class, str):
        return pool, priority_class if priority_class in CLASS_BY_NAME else "standard"
    return pool, class_name(priority_class)


@dataclass
class _Tally:
    service: Reservoir
    waits: Reservoir
    arrived: int = 0
    started: int = 0
    first_started: int = 0
    ended: int = 0
    service_s_total: float = 0.0
    # Gauges: kept across takes.
    buffered: int = 0
    running: int = 0

    @property
    def counted(self) -> bool:
        return bool(self.arrived or self.started or self.ended)


class LoadMeter:
    def __init__(self, samples: int = SAMPLES_PER_REPORT, rng: random.Random | None = None) -> None:
        self._samples = samples
        self._rng = rng or random.Random()
        self._tallies: dict[Key, _Tally] = {}

    def _tally(self, key: Key) -> _Tally:
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = self._fresh()
        return tally

    def _fresh(self) -> _Tally:
        return _Tally(Reservoir(self._samples, self._rng), Reservoir(self._samples, self._rng))

    def arrived(self, pool: str, priority_class: int | str, count: int = 1) -> None:
        """`count` work items stored in the lane (not one the broker already held)."""
        self._tally(key_of(pool, priority_class)).arrived += count

    def buffered(self, pool: str, priority_class: int | str, change: int) -> None:
        """Items held waiting for a slot went up (or down) by `change`."""
        tally = self._tally(key_of(pool, priority_class))
        tally.buffered = max(0, tally.buffered + change)

    def started(self, pool: str, priority_class: int | str, wait_s: float | None) -> None:
        """An attempt took a slot; `wait_s` is a first attempt's queue wait (None for a retry)."""
        tally = self._tally(key_of(pool, priority_class))
        tally.started += 1
        tally.running += 1
        if wait_s is not None:
            tally.first_started += 1
            tally.waits.offer(max(0.0, wait_s))

    def ended(self, pool: str, priority_class: int | str, held_s: float) -> None:
        """An attempt gave its slot back after `held_s` seconds (however it ended)."""
        tally = self._tally(key_of(pool, priority_class))
        tally.running = max(0, tally.running - 1)
        tally.ended += 1
        held_s = max(0.0, held_s)
        tally.service_s_total += held_s
        tally.service.offer(held_s)

    def take(self) -> list[status_pb2.LoadSlice]:
        """What was counted since the last take, with the gauges as they are now; the counts
        start again from zero."""
        slices = []
        for (pool, name), tally in list(self._tallies.items()):
            if not (tally.counted or tally.buffered or tally.running):
                del self._tallies[(pool, name)]  # nothing to say, nothing held
                continue
            slices.append(
                status_pb2.LoadSlice(
                    pool=pool,
                    priority_class=CLASS_BY_NAME[name],
                    arrived=tally.arrived,
                    started=tally.started,
                    first_started=tally.first_started,
                    ended=tally.ended,
                    service_s_total=tally.service_s_total,
                    service_s=tally.service.values,
                    wait_s=tally.waits.values,
                    buffered=tally.buffered,
                    running=tally.running,
                )
            )
            fresh = self._fresh()
            fresh.buffered, fresh.running = tally.buffered, tally.running
            self._tallies[(pool, name)] = fresh
        return sorted(slices, key=lambda s: (s.pool, CLASS_NAMES.index(class_name(s.priority_class))))

    def put_back(self, slices: Iterable[status_pb2.LoadSlice]) -> None:
        """Count again what a report that never arrived held (its gauges are stale: not kept)."""
        for piece in slices:
            tally = self._tally(key_of(piece.pool, piece.priority_class))
            tally.arrived += piece.arrived
            tally.started += piece.started
            tally.first_started += piece.first_started
            tally.ended += piece.ended
            tally.service_s_total += piece.service_s_total
            for value in piece.service_s:
                if math.isfinite(value):
                    tally.service.offer(value)
            for value in piece.wait_s:
                if math.isfinite(value):
                    tally.waits.offer(value)


METER = LoadMeter()
