"""The plan's preview (mesh.capacity.preview): a manifest's pools under a load — slots from the
pools' workers, the general workers shared, the closed form where it must agree, and bad loads."""

from __future__ import annotations

import math
from typing import Any

import pytest

from mesh.capacity import Load, MMc, preview
from mesh.manifest import API_VERSION, KIND, resolve


def manifest(**pools: Any) -> Any:
    return resolve({"apiVersion": API_VERSION, "kind": KIND, "pools": pools}, "test")


def exponential(mean: float, n: int = 4000) -> list[float]:
    return [-mean * math.log(1 - (i + 0.5) / n) for i in range(n)]  # its quantiles: exact, no noise


def test_one_class_on_dedicated_workers_agrees_with_erlang_c() -> None:
    m = manifest(general={"workers": 0}, ingestion={"workers": 2, "concurrency": 4})
    (pool,) = preview(m, [Load("ingestion", "batch", 30.0, exponential(0.2))], horizon_s=3000)
    closed = MMc(30.0, 0.2, 8)
    assert (pool.pool, pool.workers, pool.slots, pool.stable) == ("ingestion", 2, 8, True)
    assert pool.utilization == pytest.approx(closed.utilization, rel=0.02)
    batch = pool.classes[2]
    assert batch.priority_class == "batch" and batch.served > 10_000
    assert batch.wait_p95_s == pytest.approx(closed.wait_quantile_s(0.95), rel=0.15)


def test_fewer_slots_wait_longer_and_past_capacity_is_unstable() -> None:
    load = [Load("ingestion", "standard", 12.0, [0.2])]
    four = preview(manifest(general={"workers": 1, "concurrency": 4}), load)[0]
    three = preview(manifest(general={"workers": 1, "concurrency": 3}), load)[0]
    two = preview(manifest(general={"workers": 1, "concurrency": 2}), load)[0]
    assert four.classes[1].wait_p95_s < three.classes[1].wait_p95_s
    assert not two.stable and two.utilization == pytest.approx(1.2) and math.isinf(two.classes[1].wait_p95_s)


def test_pools_without_dedicated_workers_share_the_general_slots_as_one_line() -> None:
    m = manifest(general={"workers": 1, "concurrency": 3})
    loads = [Load("ingestion", "standard", 12.0, [0.2]), Load("inference", "interactive", 5.0, [0.05])]
    ingestion, inference = preview(m, loads)
    # Alone, either pool is stable on 3 slots; together they offer 2.65 of 3 — still one stable line.
    assert ingestion.stable and inference.stable and ingestion.slots == inference.slots == 3
    assert ingestion.utilization == pytest.approx(2.65 / 3)
    assert [c.arrival_per_s for c in ingestion.classes] == [0.0, 12.0, 0.0]  # each pool's own rates
    assert [c.arrival_per_s for c in inference.classes] == [5.0, 0.0, 0.0]
    assert ingestion.classes[1].wait_p95_s == inference.classes[1].wait_p95_s  # the line's waits


def test_general_slots_split_by_offered_load_where_pools_have_their_own() -> None:
    m = manifest(general={"workers": 1, "concurrency": 4}, inference={"workers": 1, "concurrency": 2})
    loads = [Load("ingestion", "standard", 10.0, [0.1]), Load("inference", "standard", 10.0, [0.3])]
    ingestion, inference = preview(m, loads)
    # Offered 1.0 and 3.0: the general worker's 4 slots go 1 and 3; inference adds its own 2.
    assert (ingestion.slots, inference.slots) == (1, 5)
    assert inference.workers == pytest.approx(1.75)


def test_a_pool_with_load_and_no_worker_never_drains() -> None:
    m = manifest(general={"workers": 0}, ingestion={"workers": 1})
    (pool,) = preview(m, [Load("inference", "standard", 1.0, [0.1], backlog=5)])
    assert pool.slots == 0 and not pool.stable and pool.drain_s == math.inf


def test_a_backlog_drains_in_about_what_the_spare_capacity_allows() -> None:
    m = manifest(general={"workers": 1, "concurrency": 4})
    (pool,) = preview(m, [Load("ingestion", "batch", 10.0, [0.2], backlog=400)])
    assert pool.drain_s is not None and 400 * 0.2 / 2 * 0.8 < pool.drain_s < 400 * 0.2 / 2 * 1.3
    assert pool.to_json()["drainSeconds"] == pytest.approx(pool.drain_s, abs=1e-5)


@pytest.mark.parametrize(
    ("load", "message"),
    [
        (lambda: Load("ingestion", "urgent", 1.0, [0.1]), "priority_class"),
        (lambda: Load("ingestion", "batch", -1.0, [0.1]), "λ ≥ 0"),
        (lambda: Load("ingestion", "batch", 1.0, []), "service samples"),
    ],
)
def test_bad_loads_are_refused(load: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load()


def test_unknown_pools_and_doubled_loads_are_refused() -> None:
    m = manifest()
    with pytest.raises(ValueError, match="no such pool: gpu"):
        preview(m, [Load("gpu", "batch", 1.0, [0.1])])
    with pytest.raises(ValueError, match="two loads for ingestion/batch"):
        preview(m, [Load("ingestion", "batch", 1.0, [0.1]), Load("ingestion", "batch", 2.0, [0.1])])
