"""Samples that stay small however much is measured: a uniform reservoir (what a process reports
each heartbeat), a weighted priority sample (what the scheduler keeps per time bucket), weighted
quantiles, and an even draw from weighted values. Pure; randomness from the `random.Random`
the caller passes."""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
from collections.abc import Sequence


class Reservoir:
    """A uniform sample of at most `size` of the values offered (Vitter's algorithm R): after n
    offers each of them is among `values` with probability size/n."""

    def __init__(self, size: int, rng: random.Random) -> None:
        if size < 1:
            raise ValueError(f"a reservoir holds at least one value, got {size}")
        self.size = size
        self._rng = rng
        self.seen = 0
        self.values: list[float] = []

    def offer(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.size:
            self.values[slot] = value


class PrioritySample:
    """At most `size` weighted values, kept so that sums of weights over them estimate sums over
    everything offered (priority sampling: Duffield, Lund and Thorup, 2007). A value of weight w
    gets the priority w/u, u uniform in (0, 1]; the `size` highest stay, and each stands for
    max(w, τ), τ the highest priority let go. Until more than `size` were offered, every value
    stays with its own weight: the sample is exact."""

    def __init__(self, size: int, rng: random.Random) -> None:
        if size < 1:
            raise ValueError(f"a sample holds at least one value, got {size}")
        self.size = size
        self._rng = rng
        self._order = itertools.count()  # ties of priority never compare the values
        self._heap: list[tuple[float, int, float, float]] = []  # (priority, order, value, weight)
        self._threshold = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def offer(self, value: float, weight: float) -> None:
        if weight <= 0:
            return
        u = 1.0 - self._rng.random()  # (0, 1]: never a division by zero
        heapq.heappush(self._heap, (weight / u, next(self._order), value, weight))
        if len(self._heap) > self.size:
            dropped, *_ = heapq.heappop(self._heap)
            self._threshold = max(self._threshold, dropped)

    def weighted(self) -> list[tuple[float, float]]:
        """(value, the weight it stands for), in the order they were offered."""
        kept = sorted(self._heap, key=lambda entry: entry[1])
        return [(value, max(weight, self._threshold)) for _, _, value, weight in kept]


def weighted_quantile(pairs: Sequence[tuple[float, float]], q: float) -> float:
    """The smallest value with at least a fraction `q` of the weight at or below it (0.0 for no
    values). With equal weights this is the lower empirical quantile."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    ordered = sorted((value, weight) for value, weight in pairs if weight > 0)
    if not ordered:
        return 0.0
    cumulative = list(itertools.accumulate(weight for _, weight in ordered))
    wanted = q * cumulative[-1]
    index = bisect.bisect_left(cumulative, wanted - 1e-12 * cumulative[-1])
    return ordered[min(index, len(ordered) - 1)][0]


def even_draw(pairs: Sequence[tuple[float, float]], count: int, rng: random.Random) -> list[float]:
    """At most `count` values standing for `pairs` as a whole: every value when there are no more
    than `count` of equal weight; otherwise `count` drawn evenly along their cumulative weight
    (systematic sampling from one random start), so a value's share of the draw is its share of
    the weight (a heavy one may come more than once)."""
    kept = [(value, weight) for value, weight in pairs if weight > 0]
    if not kept or count < 1:
        return []
    weights = {weight for _, weight in kept}
    if len(kept) <= count and max(weights) - min(weights) <= 1e-9 * max(weights):
        return [value for value, _ in kept]
    cumulative = list(itertools.accumulate(weight for _, weight in kept))
    step = cumulative[-1] / count
    start = rng.random() * step
    drawn = []
    for i in range(count):
        index = bisect.bisect_right(cumulative, start + i * step)
        drawn.append(kept[min(index, len(kept) - 1)][0])
    return drawn
