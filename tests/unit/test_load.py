"""The measured load (`mesh.load`): the samples that stay small, a process's meter, and the
scheduler's sliding window over many processes' reports — pure, on a fake clock."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import InvalidArgument
from mesh.load import LoadMeter, LoadWindow, PrioritySample, Reservoir, even_draw, weighted_quantile
from mesh.priority import CLASS_BY_NAME, class_name
from mesh.v1 import status_pb2, task_pb2

STANDARD = task_pb2.PRIORITY_CLASS_STANDARD
BATCH = task_pb2.PRIORITY_CLASS_BATCH


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _slice(pool: str = "inference", klass: int = STANDARD, **fields: object) -> status_pb2.LoadSlice:
    return status_pb2.LoadSlice(pool=pool, priority_class=klass, **fields)  # type: ignore[arg-type]


def _row(report: status_pb2.LoadReport, pool: str, klass: int = STANDARD) -> status_pb2.PoolClassLoad:
    return next(r for r in report.loads if r.pool == pool and r.priority_class == klass)


# --- samples -------------------------------------------------------------------------------


def test_a_reservoir_keeps_every_value_until_full_then_a_uniform_share_of_all() -> None:
    """Under `size` offers it holds them all; over many runs each of 100 offers is kept about
    size/100 of the time, the first as often as the last."""
    few = Reservoir(8, random.Random(1))
    for value in range(5):
        few.offer(float(value))
    assert few.values == [0.0, 1.0, 2.0, 3.0, 4.0] and few.seen == 5
    kept = [0] * 100
    rng = random.Random(2)
    for _ in range(2000):
        reservoir = Reservoir(10, rng)
        for value in range(100):
            reservoir.offer(float(value))
        for value in reservoir.values:
            kept[int(value)] += 1
    assert min(kept) > 120 and max(kept) < 290  # expected 200 each


def test_a_priority_sample_is_exact_while_small_and_estimates_sums_when_full() -> None:
    small = PrioritySample(16, random.Random(3))
    for value in range(10):
        small.offer(float(value), 2.0)
    assert small.weighted() == [(float(v), 2.0) for v in range(10)]
    estimates = []
    rng = random.Random(4)
    for _ in range(300):
        sample = PrioritySample(32, rng)
        for value in range(1000):
            sample.offer(float(value), 1.0 + value % 7)
        assert len(sample) == 32
        estimates.append(sum(w for _, w in sample.weighted()))
    truth = sum(1.0 + v % 7 for v in range(1000))
    assert statistics.fmean(estimates) == pytest.approx(truth, rel=0.03)


def test_weighted_quantiles_and_even_draws() -> None:
    pairs = [(float(v), 1.0) for v in range(1, 101)]
    assert weighted_quantile(pairs, 0.5) == 50.0 and weighted_quantile(pairs, 0.95) == 95.0
    assert weighted_quantile([], 0.5) == 0.0
    assert weighted_quantile([(1.0, 9.0), (10.0, 1.0)], 0.9) == 1.0  # nine tenths of the weight at 1
    assert weighted_quantile([(1.0, 9.0), (10.0, 1.0)], 0.95) == 10.0
    rng = random.Random(5)
    assert even_draw(pairs[:10], 256, rng) == [p[0] for p in pairs[:10]]  # few of equal weight: all
    drawn = even_draw([(1.0, 3.0), (2.0, 1.0)], 100, rng)
    assert len(drawn) == 100 and drawn.count(1.0) == 75  # shares of the draw are shares of the weight
    spread = even_draw(pairs, 10, rng)  # ten from 1..100, one from each tenth
    assert [int((v - 1) // 10) for v in spread] == list(range(10))
    with pytest.raises(ValueError, match="q must be"):
        weighted_quantile(pairs, 1.5)


@given(st.lists(st.floats(0, 1e3), min_size=1, max_size=300), st.integers(1, 256))
def test_an_even_draw_is_never_longer_than_asked_and_only_holds_given_values(values: list[float], count: int) -> None:
    drawn = even_draw([(v, 1.0 + i % 3) for i, v in enumerate(values)], count, random.Random(7))
    assert 1 <= len(drawn) <= count and set(drawn) <= set(values)


# --- a process's meter ---------------------------------------------------------------------


def test_a_meter_hands_over_what_it_counted_once_and_keeps_its_gauges() -> None:
    meter = LoadMeter(samples=4, rng=random.Random(8))
    meter.arrived("inference", STANDARD, 3)
    meter.buffered("inference", "standard", +2)
    meter.buffered("inference", "standard", -1)
    meter.started("inference", "standard", 0.25)
    meter.started("inference", "standard", None)  # a retry: no wait
    meter.ended("inference", "standard", 0.5)
    meter.arrived("ingestion", task_pb2.PRIORITY_CLASS_UNSPECIFIED)  # unspecified is standard
    first = meter.take()
    assert [(s.pool, class_name(s.priority_class)) for s in first] == [
        ("inference", "standard"),
        ("ingestion", "standard"),
    ]
    inference = first[0]
    assert (inference.arrived, inference.started, inference.first_started, inference.ended) == (3, 2, 1, 1)
    assert list(inference.service_s) == [0.5] and list(inference.wait_s) == [0.25]
    assert (inference.buffered, inference.running) == (1, 1)
    second = meter.take()  # counts start again; the gauges (one buffered, one running) stay
    assert [(s.pool, s.arrived, s.ended, s.buffered, s.running) for s in second] == [("inference", 0, 0, 1, 1)]
    meter.ended("inference", "standard", 1.0)
    meter.buffered("inference", "standard", -1)
    assert [s.ended for s in meter.take()] == [1]
    assert meter.take() == []  # nothing counted, nothing held: nothing said


def test_a_report_that_never_arrived_is_counted_again() -> None:
    meter = LoadMeter(samples=8)
    meter.arrived("inference", STANDARD, 2)
    meter.started("inference", STANDARD, 0.1)
    meter.ended("inference", STANDARD, 0.3)
    lost = meter.take()
    meter.arrived("inference", STANDARD)
    meter.put_back(lost)
    (again,) = meter.take()
    assert (again.arrived, again.started, again.first_started, again.ended) == (3, 1, 1, 1)
    assert list(again.service_s) == [0.3] and list(again.wait_s) == [0.1]
    assert again.service_s_total == pytest.approx(0.3)


def test_a_meters_samples_stay_bounded_and_its_sums_exact() -> None:
    meter = LoadMeter(samples=64, rng=random.Random(9))
    for i in range(1000):
        meter.started("inference", BATCH, i / 1000)
        meter.ended("inference", BATCH, 0.2)
    (piece,) = meter.take()
    assert len(piece.service_s) == 64 and len(piece.wait_s) == 64
    assert piece.ended == 1000 and piece.service_s_total == pytest.approx(200.0)


# --- the scheduler's window ----------------------------------------------------------------


def _window(clock: Clock, **options: object) -> LoadWindow:
    return LoadWindow(60.0, pools=("ingestion", "inference"), clock=clock, rng=random.Random(10), **options)  # type: ignore[arg-type]


def test_rates_are_the_windows_counts_over_the_seconds_it_covers() -> None:
    """Every built-in pool and class is listed; 30 arrivals and 20 ends heard over 30 s of a
    window that began measuring 30 s ago are 1/s and 0.67/s, with every service value kept."""
    clock = Clock(1000.0)
    window = _window(clock)
    for step in range(10):
        clock.now = 1000.0 + 3 * step + 3
        window.record(
            [
                _slice(
                    arrived=3,
                    started=2,
                    first_started=2,
                    ended=2,
                    service_s_total=0.4,
                    service_s=[0.2, 0.2],
                    wait_s=[0.01, 0.03],
                )
            ],
            "w1",
        )
    report = window.report()
    assert [(r.pool, class_name(r.priority_class)) for r in report.loads] == [
        (pool, name) for pool in ("ingestion", "inference") for name in ("interactive", "standard", "batch")
    ]
    assert report.window_s == pytest.approx(30.0)  # since the window began measuring
    row = _row(report, "inference")
    assert row.arrived == 30 and row.arrival_per_s == pytest.approx(1.0)
    assert row.served == 20 and row.served_per_s == pytest.approx(20 / 30)
    assert row.retried == 0 and row.service_mean_s == pytest.approx(0.2)
    assert list(row.service_s_samples) == [0.2] * 20
    assert row.wait_p50_s == pytest.approx(0.01) and row.wait_p95_s == pytest.approx(0.03)
    assert report.measured_at.seconds > 0


def test_the_window_slides_in_whole_buckets_and_forgets_what_is_older() -> None:
    clock = Clock(1000.0)
    window = _window(clock)
    clock.now = 1002.0
    window.record([_slice(arrived=100)], "w1")
    clock.now = 1100.0
    window.record([_slice(arrived=6)], "w1")
    whole = window.report()
    assert _row(whole, "inference").arrived == 6  # the first report is past the 60 s window
    assert 60.0 <= whole.window_s < 65.0  # rounded out to the 5 s buckets
    recent = window.report(10.0)
    assert _row(recent, "inference").arrived == 6 and 10.0 <= recent.window_s < 15.0
    clock.now = 1200.0
    assert _row(window.report(), "inference").arrived == 0


def test_samples_of_many_workers_are_weighed_by_what_each_ran() -> None:
    """A worker that ran 640 attempts reports 64 values; one that ran 64 reports 64 too: the
    window's samples and quantiles give the first ten times the weight."""
    clock = Clock(1000.0)
    window = _window(clock, samples=256)  # a bucket keeps both reports' values: exact weights
    clock.now = 1001.0
    window.record(
        [
            _slice(
                started=640,
                first_started=640,
                ended=640,
                service_s_total=640.0,
                service_s=[1.0] * 64,
                wait_s=[1.0] * 64,
            )
        ],
        "busy",
    )
    window.record(
        [_slice(started=64, first_started=64, ended=64, service_s_total=6.4, service_s=[0.1] * 64, wait_s=[0.1] * 64)],
        "idle",
    )
    row = _row(window.report(), "inference")
    assert len(row.service_s_samples) == 256
    share = list(row.service_s_samples).count(1.0) / 256
    assert share == pytest.approx(640 / 704, abs=1 / 256)
    assert row.service_mean_s == pytest.approx(646.4 / 704)
    assert row.wait_p50_s == 1.0 and row.served == 704


def test_gauges_and_slots_count_for_alive_processes_and_depths_add_up() -> None:
    clock = Clock(1000.0)
    window = _window(clock)
    general = [status_pb2.PoolSlots(pool=pool, workers=1, slots=8) for pool in ("ingestion", "inference")]
    dedicated = [status_pb2.PoolSlots(pool="inference", workers=1, slots=4, dedicated_workers=1, dedicated_slots=4)]
    window.record([_slice(buffered=3, running=2)], "general-1", general)
    window.record([_slice(buffered=1, running=4)], "inference-1", dedicated)
    window.record([_slice(buffered=50, running=50)], "gone", dedicated)
    queues = [
        status_pb2.QueueStatus(pool="inference", priority_class=STANDARD, tenant="a", pending=5, in_flight=6),
        status_pb2.QueueStatus(pool="inference", priority_class=STANDARD, tenant="b", pending=2, in_flight=0),
        status_pb2.QueueStatus(pool="u-textpipe.count-count-v1", priority_class=BATCH, tenant="a", pending=9),
    ]
    report = window.report(alive={"general-1", "inference-1"}, queues=queues)
    row = _row(report, "inference")
    assert (row.pending, row.in_flight, row.depth, row.running) == (7, 6, 7 + 4, 6)
    assert (row.workers, row.slots, row.dedicated_workers, row.dedicated_slots) == (2, 12, 1, 4)
    ingestion = _row(report, "ingestion")
    assert (ingestion.workers, ingestion.slots, ingestion.dedicated_slots) == (1, 8, 0)
    user = _row(report, "u-textpipe.count-count-v1", BATCH)  # another pool: listed while it has load
    assert user.depth == 9 and report.loads[-1] is not None and report.loads[-1].pool == user.pool
    window.record([_slice()], "general-1", general)  # a report without the lane: nothing held there
    assert _row(window.report(alive={"general-1"}), "inference").running == 0


def test_a_report_with_junk_values_adds_only_what_can_be_seconds() -> None:
    clock = Clock(1000.0)
    window = _window(clock)
    window.record(
        [
            _slice(
                started=3,
                first_started=9,
                ended=3,
                service_s_total=math.nan,
                service_s=[math.inf, -1.0, 0.5],
                wait_s=[math.nan],
            )
        ]
    )
    row = _row(window.report(), "inference")
    assert list(row.service_s_samples) == [0.5] and row.service_mean_s == 0.0 and row.retried == 0
    assert row.wait_p50_s == 0.0


@pytest.mark.parametrize("window_s", [-1.0, math.nan, math.inf, 61.0])
def test_a_window_outside_the_kept_one_is_refused_naming_the_field(window_s: float) -> None:
    window = _window(Clock())
    with pytest.raises(InvalidArgument) as refused:
        window.report(window_s)
    assert refused.value.field == "window_s"


def test_classes_are_keyed_by_name_whatever_the_enum_said() -> None:
    clock = Clock()
    window = _window(clock)
    window.record([_slice(klass=task_pb2.PRIORITY_CLASS_UNSPECIFIED, arrived=2)])
    assert _row(window.report(), "inference", CLASS_BY_NAME["standard"]).arrived == 2
