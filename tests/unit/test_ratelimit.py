"""Per-tenant token buckets: bursts, refill, isolation, and honest retry-after values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import ResourceExhausted
from services.gateway._ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refusal_then_refill() -> None:
    """A burst is admitted at once; the next submit waits exactly until one token has refilled."""
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=5, clock=clock)
    for _ in range(5):
        limiter.take("acme")
    with pytest.raises(ResourceExhausted) as caught:
        limiter.take("acme")
    assert caught.value.retry_after_s == pytest.approx(0.1)
    limiter.take("other")  # tenants are independent
    clock.now = 0.1
    limiter.take("acme")


@given(
    st.floats(min_value=0.5, max_value=1000),
    st.integers(min_value=1, max_value=100),
    st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=60),
)
def test_never_more_than_burst_plus_rate_times_elapsed(rate: float, burst: int, gaps: list[float]) -> None:
    """Over any run of submits, admissions never exceed burst + rate * elapsed time."""
    clock = Clock()
    limiter = RateLimiter(rate=rate, burst=burst, clock=clock)
    admitted = 0
    for gap in gaps:
        clock.now += gap
        try:
            limiter.take("t")
            admitted += 1
        except ResourceExhausted as exc:
            assert exc.retry_after_s > 0
    assert admitted <= burst + rate * clock.now + 1e-6


@pytest.mark.parametrize("rate, burst", [(float("nan"), 10.0), (5.0, float("nan")), (float("inf"), 10.0), (0.0, 10.0)])
def test_a_limit_that_could_not_limit_is_refused(rate: float, burst: float) -> None:
    """NaN, infinite or zero rates and bursts are refused at construction, never a silent no-limit."""
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)
