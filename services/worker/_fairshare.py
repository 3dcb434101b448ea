"""Weighted fair share between the tenants of one (pool, lane): stride scheduling.

Every tenant has a virtual clock, its *pass*. The backlogged tenant with the
smallest pass is pulled from next, and serving it `n` items advances its pass by
``n / weight``. While tenants stay backlogged, the items each receives are
proportional to its weight, and no two differ by more than one fetch's worth
(``max_batch / weight``) — so one tenant's flood of 20 000 items delays another
tenant's items by at most a few fetches, not by the flood.

A tenant that was idle re-enters at the current virtual time (the pass of the
tenant served last), so idling banks no credit for a later burst.

Backlog is an estimate fed from two places: a doorbell per newly published item
(`mark`) and a periodic authoritative count from the stream (`observe`). A fetch
that comes back empty empties the estimate — unless an item was marked while the
fetch was in flight (`begin` / `settle`), so a doorbell is never lost to a race.

A tenant whose partition the broker refuses (`hold`) sits out for a while: one tenant's broken
partition never stalls the lane for the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class _Tenant:
    weight: float
    pass_: float = 0.0
    backlog: int = 0
    marks: int = 0  # doorbells ever seen; compared across a fetch
    held_until: float = 0.0  # a partition the broker refused: not picked before this time


class FairShare:
    def __init__(self, weights: Mapping[str, float] | None = None, default_weight: float = 1.0) -> None:
        for tenant, weight in (weights or {}).items():
            if weight <= 0:
                raise ValueError(f"tenant {tenant!r}: weight must be positive, got {weight}")
        self._weights = dict(weights or {})
        self._default = default_weight
        self._tenants: dict[str, _Tenant] = {}
        self._vtime = 0.0

    def _get(self, tenant: str) -> _Tenant:
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _Tenant(self._weights.get(tenant, self._default), pass_=self._vtime)
        return state

    def _wake(self, state: _Tenant) -> None:
        if state.backlog == 0:
            state.pass_ = max(state.pass_, self._vtime)

    def mark(self, tenant: str, count: int = 1) -> None:
        """`count` new items were published for `tenant`."""
        state = self._get(tenant)
        self._wake(state)
        state.backlog += count
        state.marks += count

    def observe(self, counts: Mapping[str, int]) -> None:
        """Authoritative queued counts per tenant (tenants absent from `counts` have none)."""
        for tenant, state in self._tenants.items():
            if tenant not in counts:
                state.backlog = 0
        for tenant, count in counts.items():
            state = self._get(tenant)
            if count > 0:
                self._wake(state)
            state.backlog = count

    @property
    def backlogged(self) -> bool:
        return any(state.backlog > 0 for state in self._tenants.values())

    def pick(self, now: float = 0.0) -> str | None:
        """The tenant to pull from next: the backlogged one with the smallest pass, of those
        not held at `now` (see `hold`)."""
        best: tuple[float, str] | None = None
        for tenant, state in self._tenants.items():
            if state.held_until > now:
                continue
            if state.backlog > 0 and (best is None or (state.pass_, tenant) < best):
                best = (state.pass_, tenant)
        if best is None:
            return None
        self._vtime = max(self._vtime, best[0])
        return best[1]

    def hold(self, tenant: str, until: float) -> None:
        """Skip `tenant` until `until` (its partition could not be pulled from: the others go on,
        and it keeps its backlog and its place for when it is picked again)."""
        self._get(tenant).held_until = until

    def backlog(self, tenant: str) -> int:
        """How many items `tenant` is thought to have waiting."""
        state = self._tenants.get(tenant)
        return state.backlog if state else 0

    def begin(self, tenant: str) -> int:
        """Call before fetching for `tenant`; hand the result to `settle`."""
        return self._get(tenant).marks

    def settle(self, tenant: str, token: int, asked: int, got: int) -> None:
        """A fetch of up to `asked` items for `tenant` returned `got`."""
        state = self._get(tenant)
        state.pass_ += got / state.weight
        marked_meanwhile = state.marks != token
        if got == 0 and not marked_meanwhile:
            state.backlog = 0  # the partition is empty (or all of it is in flight)
        else:
            # More may be there — a pull can come back short while items remain — so keep
            # at least one: the tenant is asked again until a pull finds nothing.
            state.backlog = max(state.backlog - got, 1)


def parse_per_tenant(text: str, cast: Callable[[str], float], label: str) -> dict[str, Any]:
    """``acme=3,globex=0.5`` → {"acme": cast("3"), "globex": cast("0.5")}; each value positive."""
    values: dict[str, Any] = {}
    for entry in filter(None, text.split(",")):
        tenant, _, raw = entry.partition("=")
        try:
            value = cast(raw)
        except ValueError:
            value = 0
        if not tenant or value <= 0:
            raise ValueError(f"expected TENANT={label} with a positive {label.lower()}, got {entry!r}")
        values[tenant] = value
    return values


def parse_weights(text: str) -> dict[str, float]:
    """Fair-share weights: ``acme=3,globex=0.5``."""
    return parse_per_tenant(text, float, "WEIGHT")
