"""A circuit breaker per backend: stop sending work to a backend that keeps failing.

closed ──(`threshold` failures in a row)──▶ open ──(`reset_s` later)──▶ half-open
half-open lets one trial through: success closes the circuit, failure opens it again.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, threshold: int = 3, reset_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._threshold = threshold
        self._reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False
        self.trips = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._reset_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def would_allow(self) -> bool:
        """Whether `allows` would say yes now, without taking the half-open trial."""
        state = self.state
        return state is BreakerState.CLOSED or (state is BreakerState.HALF_OPEN and not self._trial)

    def allows(self) -> bool:
        """Whether a request may go to the backend now (reserves the half-open trial)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def failure(self, fatal: bool = False) -> None:
        """One failure; `fatal` (backend unreachable) opens the circuit at once."""
        self._failures += 1
        self._trial = False
        if fatal or self._failures >= self._threshold or self._opened_at is not None:
            if self._opened_at is None:
                self.trips += 1
            self._opened_at = self._clock()
