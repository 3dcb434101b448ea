"""Bounded tenant labels: the top N tenants by recent traffic keep their own name, every other
tenant is counted as ``other``, so a mesh with a million tenants still exports at most N + 1
values of a ``tenant`` label per metric.

Traffic is what `label` is asked about (an admission, a finished task). Counts decay by half
every `half_life_s`, so the top N follows who is busy now (kept as growing weights: a call
`half_life_s` later adds twice as much, and the counts are scaled back down now and then). Membership is revised every
`revise_every` calls, not on each one (the hot path is a dict increment and a set lookup):
a free place goes at once to the next new tenant, and a tenant outside the top N takes the
place of the weakest member only when its count is more than `hysteresis` times the member's,
so two tenants of equal traffic do not trade places at every revision. A tenant that leaves
takes its series with it (removed from every metric that carried it); its later traffic
counts under ``other``. The counts themselves are bounded too: past `tracked` tenants, the
least busy half is forgotten.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Protocol

OTHER = "other"
TOP_TENANTS_ENV = "TIDEMESH_METRICS_TOP_TENANTS"
DEFAULT_TOP_TENANTS = 20


class _Labelled(Protocol):
    def labels(self, *labelvalues: str) -> Any: ...
    def remove(self, *labelvalues: str) -> None: ...


def top_tenants_from_env(environ: dict[str, str] | None = None) -> int:
    """N from ``TIDEMESH_METRICS_TOP_TENANTS`` (default 20); a bad value is refused naming the variable."""
    text = (os.environ if environ is None else environ).get(TOP_TENANTS_ENV, "")
    if not text.strip():
        return DEFAULT_TOP_TENANTS
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{TOP_TENANTS_ENV}: expected a whole number of tenants, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{TOP_TENANTS_ENV}: must be 0 or more (0: every tenant is {OTHER!r}), got {value}")
    return value


class TenantLabels:
    """Which tenant names a process's metrics may carry (see the module)."""

    def __init__(
        self,
        top: int = DEFAULT_TOP_TENANTS,
        *,
        half_life_s: float = 600.0,
        revise_every: int = 256,
        hysteresis: float = 1.5,
        tracked: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if top < 0:
            raise ValueError(f"top: must be 0 or more, got {top}")
        self.top = top
        self._half_life_s = half_life_s
        self._revise_every = max(1, revise_every)
        self._hysteresis = hysteresis
        self._tracked = max(tracked if tracked is not None else 8 * top, top + 1, 16)
        self._clock = clock
        self._epoch = clock()
        self._counts: dict[str, float] = {}
        self._members: set[str] = set()
        self._calls = 0
        # The label tuples each member's series were made with, per metric: what leaving removes.
        self._series: dict[str, set[tuple[_Labelled, tuple[str, ...]]]] = {}

    @property
    def members(self) -> frozenset[str]:
        return frozenset(self._members)

    def label(self, tenant: str, count: bool = True) -> str:
        """The label value for `tenant`: its name while it is a member, else ``other``. With
        `count`, this call is traffic of the tenant's."""
        if count:
            weight = 1.0
            if self._half_life_s > 0:
                weight = 2.0 ** ((self._clock() - self._epoch) / self._half_life_s)
            self._counts[tenant] = self._counts.get(tenant, 0.0) + weight
            self._calls += 1
            if self._calls >= self._revise_every:
                self.revise()
        if tenant in self._members:
            return tenant
        if count and len(self._members) < self.top and tenant != OTHER:
            self._members.add(tenant)
            return tenant
        return OTHER

    def labels(self, metric: _Labelled, *labelvalues: str, tenant_at: int = -1) -> Any:
        """`metric.labels(...)` with the tenant among `labelvalues` (at `tenant_at`) bounded and
        counted as traffic; the series is remembered, so it leaves with its tenant."""
        values = list(labelvalues)
        values[tenant_at] = bounded = self.label(values[tenant_at])
        key = tuple(values)
        if bounded != OTHER:
            self._series.setdefault(bounded, set()).add((metric, key))
        return metric.labels(*key)

    def revise(self) -> None:
        """Decay the counts, forget the least busy past `tracked`, and let a busier tenant take
        the place of the weakest member (see the module)."""
        self._calls = 0
        now = self._clock()
        if self._half_life_s > 0 and now - self._epoch >= 32 * self._half_life_s:  # before the weights overflow
            factor = 2.0 ** (-(now - self._epoch) / self._half_life_s)
            self._counts = {t: c * factor for t, c in self._counts.items()}
            self._epoch = now
        if len(self._counts) > self._tracked:
            keep = sorted(self._counts, key=self._counts.__getitem__, reverse=True)[: self._tracked // 2]
            self._counts = {t: self._counts[t] for t in set(keep) | self._members}
        challengers = sorted(
            (t for t in self._counts if t not in self._members and t != OTHER),
            key=self._counts.__getitem__,
            reverse=True,
        )
        for challenger in challengers[: self.top]:
            if len(self._members) < self.top:
                self._members.add(challenger)
                continue
            weakest = min(self._members, key=lambda t: self._counts.get(t, 0.0))
            if self._counts[challenger] <= self._hysteresis * self._counts.get(weakest, 0.0):
                break  # the challengers are in falling order: none after this one passes either
            self._leave(weakest)
            self._members.add(challenger)

    def _leave(self, tenant: str) -> None:
        self._members.discard(tenant)
        for metric, key in self._series.pop(tenant, ()):
            try:
                metric.remove(*key)
            except KeyError:
                pass  # already gone (a gauge its owner removed)
