"""M/M/c (Erlang C): the closed-form queue a pool of `c` slots is when arrivals are Poisson and
service times exponential. Pure; the fallback and the check for `simulate`.

With arrival rate λ, service rate μ per slot and offered load a = λ/μ, utilization is rho = a/c
(stable only below 1); the chance an arrival waits is Erlang's C(c, a); the wait W of an arrival
is 0 with probability 1 - C and otherwise exponential with rate cμ - λ, so
P(W > t) = C·e^{-(cμ-λ)t} and its mean is C / (cμ - λ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def erlang_c(c: int, offered: float) -> float:
    """Probability that an arrival waits, for `c` servers at offered load `offered` (= λ/μ < c).
    Computed through the Erlang B recursion, stable for any c."""
    if c < 1:
        raise ValueError(f"need at least one server, got {c}")
    if offered < 0:
        raise ValueError(f"offered load must be ≥ 0, got {offered}")
    if offered >= c:
        return 1.0
    b = 1.0
    for k in range(1, c + 1):
        b = offered * b / (k + offered * b)
    rho = offered / c
    return b / (1 - rho + rho * b)


@dataclass(frozen=True)
class MMc:
    """One pool: `arrival_per_s` (λ), `service_s` (mean service time, 1/μ), `servers` (c)."""

    arrival_per_s: float
    service_s: float
    servers: int

    def __post_init__(self) -> None:
        if self.arrival_per_s < 0 or self.service_s <= 0 or self.servers < 1:
            raise ValueError(f"need λ ≥ 0, a service time > 0 and at least one server: {self}")

    @property
    def offered(self) -> float:
        return self.arrival_per_s * self.service_s

    @property
    def utilization(self) -> float:
        return self.offered / self.servers

    @property
    def stable(self) -> bool:
        return self.utilization < 1

    @property
    def p_wait(self) -> float:
        return erlang_c(self.servers, self.offered)

    @property
    def _escape_rate(self) -> float:  # cμ - λ
        return self.servers / self.service_s - self.arrival_per_s

    @property
    def mean_wait_s(self) -> float:
        return self.p_wait / self._escape_rate if self.stable else math.inf

    def wait_quantile_s(self, q: float) -> float:
        """The q-quantile of the wait (0 when at least a fraction q of arrivals never wait)."""
        if not 0 < q < 1:
            raise ValueError(f"q must be in (0, 1), got {q}")
        if not self.stable:
            return math.inf
        tail = 1 - q
        return 0.0 if self.p_wait <= tail else math.log(self.p_wait / tail) / self._escape_rate

    def drain_s(self, backlog: int) -> float:
        """How long `backlog` waiting items take to clear while arrivals go on (∞ if they never do)."""
        spare = self._escape_rate
        return backlog / spare if spare > 0 else (0.0 if backlog == 0 else math.inf)
