"""The mesh's load over a sliding window: the scheduler adds up what every process reports
(`LoadSlice`s) and answers `LoadReport`s. Pure, with the clock passed in.

Counts go into time buckets of `bucket_s` (by when the scheduler heard them) kept for `window_s`;
per bucket and (pool, class), the attempts' service times and the first attempts' waits are kept
as a priority sample of at most `samples` values each, weighted by how many attempts each reported
value stands for (a report of 64 values for 640 attempts: 10 each). So memory is bounded by
buckets, keys and samples however many workers report, and a window's quantiles and service
samples weigh every worker by what it ran. While fewer attempts than `samples` end per bucket
every value is kept: the figures are exact.

A report covers whole buckets: the window asked for, rounded out to the bucket grid, and never
more than the time since the window began measuring. Rates are the window's counts over the
seconds it covers. Gauges (items buffered at workers, steps running, slots) are each reporting
process's latest, counted only for processes the caller says are alive.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from mesh.errors import InvalidArgument
from mesh.load._meter import SAMPLES_PER_REPORT, Key, key_of
from mesh.load._sample import PrioritySample, even_draw, weighted_quantile
from mesh.priority import CLASS_BY_NAME, CLASS_NAMES
from mesh.v1 import status_pb2

DEFAULT_WINDOW_S = 300.0
BUCKET_S = 5.0
MAX_SERVICE_SAMPLES = 256


@dataclass
class _Bucket:
    start: float
    service: PrioritySample
    waits: PrioritySample
    arrived: int = 0
    started: int = 0
    first_started: int = 0
    ended: int = 0
    service_s_total: float = 0.0


@dataclass
class _Source:
    """One reporting process's gauges, as of its latest report."""

    seen: float
    gauges: dict[Key, tuple[int, int]] = field(default_factory=dict)  # (buffered, running)
    slots: list[status_pb2.PoolSlots] = field(default_factory=list)


def _values(values: Iterable[float], limit: int) -> list[float]:
    """A report's timed values that can be seconds: finite, ≥ 0, at most `limit`."""
    return [v for v in values if math.isfinite(v) and v >= 0][:limit]


class LoadWindow:
    def __init__(
        self,
        window_s: float = DEFAULT_WINDOW_S,
        *,
        pools: Sequence[str] = (),
        bucket_s: float = BUCKET_S,
        samples: int = SAMPLES_PER_REPORT,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        """`pools`: listed in every report, each with all its classes, load or not (the built-in
        pools); any other pool is listed while it has load."""
        if not (math.isfinite(window_s) and window_s > 0 and math.isfinite(bucket_s) and 0 < bucket_s <= window_s):
            raise ValueError(f"need 0 < bucket_s ≤ window_s, got {bucket_s} and {window_s}")
        self.window_s = window_s
        self._pools = tuple(pools)
        self._bucket_s = bucket_s
        self._samples = samples
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._since = clock()
        self._buckets: dict[Key, deque[_Bucket]] = {}
        self._sources: dict[str, _Source] = {}

    def _floor(self, moment: float) -> float:
        return math.floor(moment / self._bucket_s) * self._bucket_s

    def _bucket(self, key: Key, now: float) -> _Bucket:
        buckets = self._buckets.setdefault(key, deque())
        start = self._floor(now)
        if not buckets or buckets[-1].start < start:
            rng = self._rng
            buckets.append(_Bucket(start, PrioritySample(self._samples, rng), PrioritySample(self._samples, rng)))
        return buckets[-1]

    def _prune(self, now: float) -> None:
        oldest = self._floor(now - self.window_s)
        for key in list(self._buckets):
            buckets = self._buckets[key]
            while buckets and buckets[0].start < oldest:
                buckets.popleft()
            if not buckets:
                del self._buckets[key]
        for source in [s for s, held in self._sources.items() if held.seen < now - self.window_s]:
            del self._sources[source]

    def record(
        self,
        slices: Iterable[status_pb2.LoadSlice],
        source: str = "",
        slots: Iterable[status_pb2.PoolSlots] = (),
    ) -> None:
        """Add a process's report. `source` names it (a worker id) so its gauges and slots replace
        its last ones; "" is a process whose gauges are not kept (the scheduler's own meter)."""
        now = self._clock()
        self._prune(now)
        gauges: dict[Key, tuple[int, int]] = {}
        for piece in slices:
            key = key_of(piece.pool, piece.priority_class)
            if not piece.pool:
                continue
            gauges[key] = (piece.buffered, piece.running)
            if not (piece.arrived or piece.started or piece.ended):
                continue
            bucket = self._bucket(key, now)
            bucket.arrived += piece.arrived
            bucket.started += piece.started
            bucket.first_started += min(piece.first_started, piece.started)
            bucket.ended += piece.ended
            if math.isfinite(piece.service_s_total) and piece.service_s_total >= 0:
                bucket.service_s_total += piece.service_s_total
            service = _values(piece.service_s, self._samples)
            for value in service:  # each value stands for its share of the attempts it was drawn from
                bucket.service.offer(value, max(1.0, piece.ended / len(service)))
            waits = _values(piece.wait_s, self._samples)
            for value in waits:
                bucket.waits.offer(value, max(1.0, piece.first_started / len(waits)))
        if source:
            self._sources[source] = _Source(now, gauges, list(slots))

    def check(self, window_s: float) -> None:
        """InvalidArgument naming `window_s` unless it is 0 (the whole window) or a span within it."""
        if not math.isfinite(window_s) or window_s < 0:
            raise InvalidArgument("window_s", f"must be a number of seconds ≥ 0, got {window_s}")
        if window_s > self.window_s:
            raise InvalidArgument("window_s", f"must be at most {self.window_s:g} (the scheduler's --load-window)")

    def report(
        self,
        window_s: float = 0.0,
        *,
        alive: Collection[str] | None = None,
        queues: Iterable[status_pb2.QueueStatus] = (),
        max_samples: int = MAX_SERVICE_SAMPLES,
    ) -> status_pb2.LoadReport:
        """The load over the last `window_s` seconds (0: the whole window). `alive`: the sources
        whose gauges and slots count (None: every one heard within the window); `queues`: JetStream's
        depths (one QueueStatus per lane or per tenant partition: they are summed per pool and class).

        InvalidArgument naming `window_s` unless 0 ≤ window_s ≤ the window (`check`)."""
        self.check(window_s)
        now = self._clock()
        self._prune(now)
        first = self._floor(now - (window_s or self.window_s))
        covered = max(now - max(first, self._since), 1e-9)
        sources = [s for name, s in self._sources.items() if alive is None or name in alive]
        depths: dict[Key, tuple[int, int]] = {}
        for q in queues:
            key = key_of(q.pool, q.priority_class)
            pending, in_flight = depths.get(key, (0, 0))
            depths[key] = (pending + q.pending, in_flight + q.in_flight)
        gauges: dict[Key, tuple[int, int]] = {}
        for held in sources:
            for key, (buffered, running) in held.gauges.items():
                b, r = gauges.get(key, (0, 0))
                gauges[key] = (b + buffered, r + running)
        slots: dict[str, list[int]] = {}
        for held in sources:
            for entry in held.slots:
                counts = slots.setdefault(entry.pool, [0, 0, 0, 0])
                for i, value in enumerate((entry.workers, entry.slots, entry.dedicated_workers, entry.dedicated_slots)):
                    counts[i] += value
        keys = [(pool, name) for pool in self._pools for name in CLASS_NAMES]
        busy = {key for key, buckets in self._buckets.items() if any(b.start >= first for b in buckets)}
        active = {key for key, (p, f) in depths.items() if p or f} | {k for k, g in gauges.items() if any(g)}
        keys += sorted((busy | active) - set(keys), key=lambda k: (k[0], CLASS_NAMES.index(k[1])))
        loads = []
        for key in keys:
            buckets = [b for b in self._buckets.get(key, ()) if b.start >= first]
            ended = sum(b.ended for b in buckets)
            started = sum(b.started for b in buckets)
            service = [pair for b in buckets for pair in b.service.weighted()]
            waits = [pair for b in buckets for pair in b.waits.weighted()]
            pending, in_flight = depths.get(key, (0, 0))
            buffered, running = gauges.get(key, (0, 0))
            workers, pool_slots, dedicated_workers, dedicated_slots = slots.get(key[0], (0, 0, 0, 0))
            loads.append(
                status_pb2.PoolClassLoad(
                    pool=key[0],
                    priority_class=CLASS_BY_NAME[key[1]],
                    arrival_per_s=sum(b.arrived for b in buckets) / covered,
                    served_per_s=ended / covered,
                    service_s_samples=even_draw(service, max_samples, self._rng),
                    service_mean_s=sum(b.service_s_total for b in buckets) / ended if ended else 0.0,
                    wait_p50_s=weighted_quantile(waits, 0.5),
                    wait_p95_s=weighted_quantile(waits, 0.95),
                    depth=pending + buffered,
                    pending=pending,
                    in_flight=in_flight,
                    running=running,
                    workers=workers,
                    slots=pool_slots,
                    dedicated_workers=dedicated_workers,
                    dedicated_slots=dedicated_slots,
                    arrived=sum(b.arrived for b in buckets),
                    served=ended,
                    retried=started - sum(b.first_started for b in buckets),
                )
            )
        report = status_pb2.LoadReport(window_s=covered, loads=loads)
        report.measured_at.FromNanoseconds(int(self._wall_clock() * 1e9))
        return report
