"""What a failed step does next — retry after a delay, or give up — decided without I/O.

A retryable failure is retried while the step has attempts left (its kind's `attempts`),
after an exponential backoff with full jitter on the upper half; anything else, or the
last attempt, gives up (the runner dead-letters the task). Pinned by tests/unit/test_retry.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Retry:
    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    exhausted: bool  # True: a retryable failure with no attempt left; False: not retryable at all


@dataclass(frozen=True)
class RetryPolicy:
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.base_delay_s <= self.max_delay_s:
            raise ValueError(f"need 0 < base_delay_s <= max_delay_s, got {self}")

    def ceiling_s(self, attempt: int) -> float:
        """The longest wait after failed attempt `attempt` (1-based): doubling, capped."""
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** min(max(attempt, 1) - 1, 64))

    def delay_s(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        ceiling = self.ceiling_s(attempt)
        return ceiling / 2 + rng() * ceiling / 2

    def after(
        self, *, retryable: bool, attempt: int, max_attempts: int, rng: Callable[[], float] = random.random
    ) -> Retry | GiveUp:
        """The move after attempt `attempt` of a step allowed `max_attempts` failed."""
        if not retryable:
            return GiveUp(exhausted=False)
        if attempt >= max_attempts:
            return GiveUp(exhausted=True)
        return Retry(self.delay_s(attempt, rng))
