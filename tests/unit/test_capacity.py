"""Capacity models (mesh.capacity): Erlang C against known values, the simulation against the
closed forms it must agree with (M/M/c, M/D/1), and the workers' own slot policy under it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.capacity import ClassLoad, MMc, erlang_c, simulate
from services.worker._priority import WaitBounds
from services.worker._slots import SlotLimits, simulated


def test_erlang_c_matches_known_values() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # one server: the utilization
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(10, 8.0) == pytest.approx(0.4092, abs=1e-4)  # the textbook table
    assert erlang_c(4, 4.0) == 1.0  # saturated: everyone waits
    assert erlang_c(500, 450.0) < 0.2  # large pools stay finite (the recursion, not factorials)


@given(st.integers(1, 64), st.floats(0.05, 0.95), st.floats(0.01, 10.0), st.floats(0.5, 0.99))
def test_the_wait_quantile_is_where_the_tail_leaves_that_much(c: int, rho: float, service: float, q: float) -> None:
    pool = MMc(rho * c / service, service, c)
    t = pool.wait_quantile_s(q)
    tail = pool.p_wait * math.exp(-(c / service - pool.arrival_per_s) * t)
    assert (t == 0.0 and pool.p_wait <= 1 - q) or tail == pytest.approx(1 - q, rel=1e-6)


def test_an_unstable_pool_waits_forever() -> None:
    pool = MMc(arrival_per_s=5.0, service_s=1.0, servers=4)
    assert not pool.stable and pool.mean_wait_s == math.inf and pool.wait_quantile_s(0.5) == math.inf
    assert pool.drain_s(10) == math.inf and MMc(1.0, 1.0, 2).drain_s(0) == 0.0


def test_the_simulation_agrees_with_erlang_c_for_exponential_service() -> None:
    rng = np.random.default_rng(1)
    service = rng.exponential(0.5, 20_000)  # mean 0.5 s
    pool = MMc(arrival_per_s=6.4, service_s=float(service.mean()), servers=4)  # rho 0.8
    result = simulate([ClassLoad("standard", 6.4, service)], slots=4, horizon_s=4_000, seed=2)
    (standard,) = result.classes
    assert standard.wait_mean_s == pytest.approx(pool.mean_wait_s, rel=0.15)
    assert standard.wait_p95_s == pytest.approx(pool.wait_quantile_s(0.95), rel=0.15)
    assert result.utilization == pytest.approx(pool.utilization, rel=0.05)


def test_the_simulation_agrees_with_pollaczek_khinchine_for_constant_service() -> None:
    """M/D/1: mean wait rho*S / (2(1 - rho)) — half the exponential case's, which Erlang C would give."""
    rho, service = 0.7, 1.0
    result = simulate([ClassLoad("standard", rho / service, [service])], slots=1, horizon_s=20_000, seed=3)
    assert result.classes[0].wait_mean_s == pytest.approx(rho * service / (2 * (1 - rho)), rel=0.1)
    assert MMc(rho, service, 1).mean_wait_s == pytest.approx(2 * rho * service / (2 * (1 - rho)))


def test_a_backlog_drains_about_when_the_spare_capacity_says() -> None:
    pool = MMc(arrival_per_s=2.0, service_s=1.0, servers=4)  # 2 spare items/s
    result = simulate([ClassLoad("standard", 2.0, [1.0], backlog=200)], slots=4, horizon_s=400, seed=4)
    assert result.drained_s == pytest.approx(pool.drain_s(200), rel=0.15)


def test_the_workers_policy_keeps_each_class_within_its_bound_where_fifo_would_not() -> None:
    """Interactive and batch work share 8 slots at 90 % load: under the workers' own policy the
    interactive class waits far less than batch (FIFO treats them alike), and no class starves."""
    limits = SlotLimits.of(8, reserve=0, guaranteed=2)
    loads = [ClassLoad("interactive", 3.6, [1.0]), ClassLoad("standard", 0.0, [1.0]), ClassLoad("batch", 3.6, [1.0])]
    mesh = simulate(loads, slots=8, horizon_s=3_000, policy=simulated(limits, WaitBounds(batch_s=60.0)), seed=5)
    plain = simulate(loads, slots=8, horizon_s=3_000, seed=5).by_name()
    waits = mesh.by_name()
    assert waits["interactive"].wait_p95_s < plain["interactive"].wait_p95_s
    assert waits["interactive"].wait_mean_s < waits["batch"].wait_mean_s
    assert waits["batch"].served > 0.9 * 3.6 * 2_700 and waits["batch"].wait_p95_s < 60.0  # within its bound
    assert plain["interactive"].wait_mean_s == pytest.approx(plain["batch"].wait_mean_s, rel=0.2)


def test_the_simulation_is_seeded() -> None:
    loads = [ClassLoad("standard", 3.0, [0.2, 0.3, 1.5])]
    assert simulate(loads, 2, 200, seed=7) == simulate(loads, 2, 200, seed=7)
    assert simulate(loads, 2, 200, seed=7) != simulate(loads, 2, 200, seed=8)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: ClassLoad("x", -1.0, [1.0]),
        lambda: ClassLoad("x", 1.0, []),
        lambda: ClassLoad("x", 1.0, [-0.1]),
        lambda: simulate([ClassLoad("x", 1.0, [1.0])], 0, 10),
        lambda: MMc(1.0, 0.0, 1),
        lambda: erlang_c(0, 1.0),
        lambda: MMc(1.0, 1.0, 2).wait_quantile_s(1.0),
    ],
)
def test_bad_inputs_are_refused(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        bad()
