"""What a manifest's pools do under a load: the preview `tidemesh config plan` (and `tidemesh init`)
shows before a change is applied.

Per pool and priority class, the expected queue wait (p50/p95), the pool's utilization and the
time its current backlog takes to drain, at the given arrival rates and service times (measured by
the live mesh, `Client.load()`, or expected by the person planning). The discrete-event simulation
runs the workers' own slot policy (`services.worker._slots.simulated`, pure, imported at call time),
so classes sharing slots and service times that are not exponential are modelled as they run.

Slots of a pool: its dedicated workers' and a share of the general workers'. A general worker
serves every pool and an item takes the first free slot of any worker serving its pool, so the
pools without dedicated workers form one line on the general workers' slots (their loads merged
per class; each such pool is shown with that line's waits). Where some pools also have dedicated
workers, the general slots are split between them and that shared line in proportion to the load
each offers (λ·E[S]), largest remainders first, at least one slot to anything with load. A pool
with load and no slot at all is unstable (∞).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mesh.capacity._simulate import ClassLoad, simulate

CLASSES = ("interactive", "standard", "batch")  # most urgent first, as mesh.priority.CLASS_NAMES
MAX_ARRIVALS = 40_000  # a simulation's budget: its horizon is cut to about this many arrivals


@dataclass(frozen=True)
class Load:
    """What one pool and class carry: arrivals per second, service-time samples (seconds of one
    step's run, not its wait), and items already waiting."""

    pool: str
    priority_class: str
    arrival_per_s: float
    service_s: Sequence[float]
    backlog: int = 0

    def __post_init__(self) -> None:
        if self.priority_class not in CLASSES:
            raise ValueError(f"priority_class must be one of {', '.join(CLASSES)}, got {self.priority_class!r}")
        if self.arrival_per_s < 0 or self.backlog < 0 or (self.arrival_per_s > 0 and not self.service_s):
            raise ValueError(f"need λ ≥ 0, a backlog ≥ 0 and service samples where λ > 0: {self}")

    @property
    def mean_service_s(self) -> float:
        return sum(self.service_s) / len(self.service_s) if self.service_s else 0.0

    @property
    def offered(self) -> float:
        return self.arrival_per_s * self.mean_service_s


@dataclass(frozen=True)
class ClassPreview:
    priority_class: str
    arrival_per_s: float
    wait_p50_s: float
    wait_p95_s: float
    served: int  # items the simulation served (how much the quantiles rest on)


@dataclass(frozen=True)
class PoolPreview:
    pool: str
    workers: float  # dedicated workers, plus the general ones' share (a fraction of each)
    slots: int  # shared slots (concurrency) the pool gets; interactive work also has the reserve
    utilization: float  # offered load over slots (≥ 1: the queue grows without end)
    drain_s: float | None  # until the backlog is gone (None: no backlog; inf: never)
    stable: bool
    model: str
    classes: tuple[ClassPreview, ...]

    def to_json(self) -> dict[str, object]:
        def number(value: float | None) -> float | str | None:
            return None if value is None else ("inf" if math.isinf(value) else round(value, 6))

        return {
            "pool": self.pool,
            "workers": round(self.workers, 3),
            "slots": self.slots,
            "utilization": number(self.utilization),
            "drainSeconds": number(self.drain_s),
            "stable": self.stable,
            "model": self.model,
            "classes": [
                {
                    "priorityClass": c.priority_class,
                    "arrivalPerSecond": number(c.arrival_per_s),
                    "waitP50Seconds": number(c.wait_p50_s),
                    "waitP95Seconds": number(c.wait_p95_s),
                    "served": c.served,
                }
                for c in self.classes
            ],
        }


@dataclass(frozen=True)
class _Workers:
    count: float
    concurrency: int
    reserve: int
    guaranteed: int


def _split(total: int, weights: dict[tuple[str, ...], float]) -> dict[tuple[str, ...], int]:
    """`total` slots over the pools by weight, largest remainders first, ≥ 1 to each weighted pool."""
    loaded = {pool: w for pool, w in weights.items() if w > 0}
    if not loaded or total <= 0:
        return dict.fromkeys(weights, 0)
    whole = sum(loaded.values())
    exact = {pool: total * w / whole for pool, w in loaded.items()}
    given = {pool: math.floor(share) for pool, share in exact.items()}
    for pool in sorted(loaded, key=lambda p: exact[p] - given[p], reverse=True)[: total - sum(given.values())]:
        given[pool] += 1
    for pool in loaded:  # a pool with load gets a slot, taken from the richest
        if given[pool] == 0:
            richest = max(given, key=lambda p: given[p])
            if given[richest] > 1:
                given[richest] -= 1
                given[pool] = 1
    return {pool: given.get(pool, 0) for pool in weights}


def preview(
    manifest: object, loads: Sequence[Load], *, horizon_s: float = 600.0, seed: int = 0
) -> tuple[PoolPreview, ...]:
    """Each pool that has load in `loads`, under `manifest` (a `mesh.manifest.Manifest`)."""
    from services.worker._priority import WaitBounds
    from services.worker._slots import SlotLimits, simulated

    m = manifest  # typed loosely: mesh.manifest imports nothing of this module, nor this of it
    by_pool: dict[str, dict[str, Load]] = {}
    for load in loads:
        if load.priority_class in by_pool.setdefault(load.pool, {}):
            raise ValueError(f"two loads for {load.pool}/{load.priority_class}")
        by_pool[load.pool][load.priority_class] = load
    general = m.pools.general  # type: ignore[attr-defined]
    dedicated = m.pools.by_name()  # type: ignore[attr-defined]
    unknown = sorted(set(by_pool) - set(dedicated))
    if unknown:
        raise ValueError(f"no such pool: {', '.join(unknown)} (pools: {', '.join(dedicated)})")
    slots_cfg = m.classes.slots  # type: ignore[attr-defined]
    lanes = m.classes.lanes()  # type: ignore[attr-defined]
    bounds = WaitBounds(
        interactive_s=lanes["interactive"].wait_bound_seconds,
        standard_s=lanes["standard"].wait_bound_seconds,
        batch_s=lanes["batch"].wait_bound_seconds,
    )

    def limits_of(concurrency: int) -> SlotLimits:
        return SlotLimits.of(concurrency, slots_cfg.interactive_reserve, slots_cfg.guaranteed)

    offered = {pool: sum(load.offered for load in classes.values()) for pool, classes in by_pool.items()}
    shared = tuple(pool for pool in by_pool if not dedicated[pool].workers)
    units: dict[tuple[str, ...], float] = {(pool,): offered[pool] for pool in by_pool if dedicated[pool].workers}
    if shared:
        units[shared] = sum(offered[pool] for pool in shared)
    shares = _split(general.workers * general.concurrency, units)
    results: dict[str, PoolPreview] = {}
    for unit, load_here in units.items():
        parts = []
        own = dedicated[unit[0]]
        if own.workers and unit != shared:
            d = limits_of(own.concurrency)
            parts.append(_Workers(own.workers, own.concurrency, d.reserve, d.guaranteed))
        if shares[unit]:
            g = limits_of(general.concurrency)
            parts.append(_Workers(shares[unit] / general.concurrency, general.concurrency, g.reserve, g.guaranteed))
        concurrency = sum(round(p.count * p.concurrency) for p in parts)
        reserve = sum(math.ceil(p.count) * p.reserve for p in parts)
        guaranteed = min(concurrency, sum(math.ceil(p.count) * p.guaranteed for p in parts))
        workers = sum(p.count for p in parts)
        ordered = [_merged([by_pool[pool].get(name) for pool in unit], name) for name in CLASSES]
        capacity = concurrency + (reserve if ordered[0].arrival_per_s else 0)
        utilization = load_here / concurrency if concurrency else (math.inf if load_here else 0.0)
        backlog = sum(load.backlog for load in ordered)
        if concurrency == 0 or load_here >= capacity:
            drain = math.inf if backlog or load_here else None
            model = "none: the offered load is at or past the slots, the queue grows without end"
            waits = tuple(ClassPreview(x.priority_class, x.arrival_per_s, math.inf, math.inf, 0) for x in ordered)
            for pool in unit:
                results[pool] = PoolPreview(pool, workers, concurrency, utilization, drain, False, model, waits)
            continue
        total_rate = sum(load.arrival_per_s for load in ordered)
        horizon = min(horizon_s, MAX_ARRIVALS / total_rate) if total_rate else horizon_s
        if backlog:  # long enough to drain what waits, at the spare capacity
            spare = max(capacity - load_here, 1e-9)
            mean = max(x.mean_service_s for x in ordered) or 1.0
            horizon = max(horizon, 3 * backlog * mean / spare)
        sim = simulate(
            [ClassLoad(x.priority_class, x.arrival_per_s, x.service_s or (0.0,), x.backlog) for x in ordered],
            concurrency,
            horizon,
            policy=simulated(SlotLimits(concurrency, reserve, guaranteed), bounds),
            seed=seed,
        )
        drain = None if not backlog else (math.inf if sim.drained_s is None else sim.drained_s)
        model = f"discrete-event simulation of the workers' slot policy, {horizon:.0f} s"
        if len(unit) > 1:
            model += f"; {', '.join(unit)} share one line on the general workers"
        for pool in unit:
            waits = tuple(
                ClassPreview(
                    x.priority_class,
                    mine.arrival_per_s if (mine := by_pool[pool].get(x.priority_class)) else 0.0,
                    r.wait_p50_s if r.served else 0.0,
                    r.wait_p95_s if r.served else 0.0,
                    r.served,
                )
                for x, r in zip(ordered, sim.classes, strict=True)
            )
            results[pool] = PoolPreview(pool, workers, concurrency, utilization, drain, True, model, waits)
    return tuple(results[pool] for pool in by_pool)


def _merged(loads: Sequence[Load | None], name: str, samples: int = 1000) -> Load:
    """One class's loads of several pools sharing a line: rates add, service times mix by rate."""
    present = [load for load in loads if load is not None and (load.arrival_per_s or load.backlog)]
    if not present:
        return Load("-", name, 0.0, (0.0,))
    if len(present) == 1:
        return present[0]
    rate = sum(load.arrival_per_s for load in present)
    mixed: list[float] = []
    for load in present:
        count = max(1, round(samples * load.arrival_per_s / rate)) if rate else 1
        mixed.extend(load.service_s[i % len(load.service_s)] for i in range(count))
    return Load("-", name, rate, tuple(mixed), sum(load.backlog for load in present))
