"""What a failed step does next (`services.worker._retry`), for any attempt, limit and jitter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.worker._retry import GiveUp, Retry, RetryPolicy

policies = st.builds(
    lambda base, factor: RetryPolicy(base_delay_s=base, max_delay_s=base * factor),
    st.floats(0.001, 10.0),
    st.floats(1.0, 1000.0),
)
attempts = st.integers(1, 10_000)
jitter = st.floats(0.0, 1.0, exclude_max=True)


@given(policies, attempts, st.integers(1, 100), st.booleans(), jitter)
def test_a_step_is_retried_exactly_while_it_is_retryable_and_has_attempts_left(
    policy: RetryPolicy, attempt: int, max_attempts: int, retryable: bool, r: float
) -> None:
    move = policy.after(retryable=retryable, attempt=attempt, max_attempts=max_attempts, rng=lambda: r)
    if retryable and attempt < max_attempts:
        assert move == Retry(policy.delay_s(attempt, rng=lambda: r))
    else:
        assert move == GiveUp(exhausted=retryable)


@given(policies, attempts, jitter)
def test_the_delay_lies_in_the_upper_half_of_a_capped_doubling_ceiling(
    policy: RetryPolicy, attempt: int, r: float
) -> None:
    ceiling = policy.ceiling_s(attempt)
    assert policy.base_delay_s <= ceiling <= policy.max_delay_s
    assert ceiling / 2 <= policy.delay_s(attempt, rng=lambda: r) <= ceiling
    assert policy.ceiling_s(attempt + 1) >= ceiling  # never shorter for a later attempt
    if ceiling < policy.max_delay_s:
        assert policy.ceiling_s(attempt + 1) == pytest.approx(min(2 * ceiling, policy.max_delay_s))


def test_the_first_retry_waits_about_the_base_delay_and_a_late_one_the_cap() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=30.0)
    assert policy.ceiling_s(1) == 0.5 and policy.ceiling_s(100) == 30.0


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_a_policy_that_could_not_back_off_is_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="base_delay_s"):
        RetryPolicy(base_delay_s=base, max_delay_s=cap)
