"""One lane of one pool as the broker holds it: a consumer per tenant partition, taken in fair turns.

Within a lane, tenants take turns by weight (`_fairshare`): each tenant partition of TM_WORK has
its own durable pull consumer, and `take` pulls from the tenant whose turn it is, so one tenant's
flood cannot starve another. The lane learns of new items from doorbells (`ring`, rung after they
are stored) and re-reads the partitions' counts from the stream every `refresh_s` (redeliveries
and retries ring no bell). A partition the broker refuses (e.g. the stream's consumer limit) is
held back, doubling, while the lane's other tenants go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Protocol

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from mesh.fabric import (
    WORK_STREAM,
    Delivery,
    Topology,
    consumer_name,
    ensure_work_consumer,
    lane_filter,
    parse_work_subject,
)
from mesh.telemetry import get_logger
from services.worker._fairshare import FairShare

log = get_logger(__name__)

FIRST_HOLD_S = 1.0  # a refused tenant partition is tried again after this, doubling...
MAX_HOLD_S = 30.0  # ...up to this
_READY_S = 0.005  # how long a pull waits for items that are not there yet
_FIRST_PULL_S = 0.05  # the same, on a partition consumer just declared


class LaneSource(Protocol):
    """Where a dispatcher's fetch loop takes one lane's items from."""

    pool: str
    name: str
    rank: int

    def ring(self, tenant: str) -> None:
        """A doorbell: an item was stored in `tenant`'s partition."""
        ...

    async def take(self, room: int) -> list[Delivery]:
        """Up to `room` items, in the tenants' fair turns; [] after waiting a while for any."""
        ...

    def wake(self) -> None:
        """End a wait in `take` now (shutdown)."""
        ...

    async def close(self) -> None: ...


@dataclass
class LanePartitions:
    """A lane's partitions on JetStream (the `LaneSource` a worker uses)."""

    js: JetStreamContext
    topology: Topology
    pool: str
    name: str
    rank: int
    share: FairShare
    refresh_s: float = 1.0
    busy_refresh_s: float = 0.05
    bell: asyncio.Event = field(default_factory=asyncio.Event)
    # tenant → (pull subscription, when its consumer was last declared)
    partitions: dict[str, tuple[JetStreamContext.PullSubscription, float]] = field(default_factory=dict)
    refreshed_at: float = float("-inf")
    pulled_at: float = float("-inf")  # when a pull last brought items
    missed_at: float = float("-inf")  # when a pull last came back empty though work was expected
    refusals: dict[str, int] = field(default_factory=dict)  # tenant → pulls the broker refused in a row

    def ring(self, tenant: str) -> None:
        self.share.mark(tenant)
        self.bell.set()

    def wake(self) -> None:
        self.bell.set()

    async def take(self, room: int) -> list[Delivery]:
        # Counts are re-read every refresh_s (redeliveries and retries ring no bell). A pull can
        # also come back empty while items remain (the server was slow to answer): a lane that was
        # busy and now sees no work re-reads them sooner.
        now = time.monotonic()
        if now - self.refreshed_at >= self.refresh_s:
            await self._refresh()
        tenant = self.share.pick(now)
        busy = now - max(self.pulled_at, self.missed_at) < self.refresh_s
        every_s = self.busy_refresh_s if busy else self.refresh_s
        if tenant is None and now - self.refreshed_at >= every_s:
            await self._refresh()
            tenant = self.share.pick(now)
        if tenant is None:
            self.bell.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.bell.wait(), every_s)
            return []
        # Ask for what is thought to be there: a pull for more than is stored lingers at the
        # server until its expiry, so one fresh item would wait out the whole window.
        asked = min(room, max(1, self.share.backlog(tenant)))
        token = self.share.begin(tenant)
        try:
            msgs = await self._pull(tenant, asked)
        except nats.js.errors.APIError as exc:
            await self._refused(tenant, exc)
            return []
        self.refusals.pop(tenant, None)
        self.share.settle(tenant, token, asked=asked, got=len(msgs))
        if not msgs:
            # Look again soon, not in a second: an empty pull zeroed this tenant's backlog, but on
            # a loaded machine a pull can miss items that are there. Until a recount restores it,
            # every turn would go to the other backlogged tenants (the share drifted to 0.5 for a
            # 3:1 weight), so recount within busy_refresh_s.
            self.missed_at = time.monotonic()
            self.refreshed_at = min(self.refreshed_at, self.missed_at - self.refresh_s + self.busy_refresh_s)
            return []
        self.pulled_at = time.monotonic()
        return list(msgs)

    async def _refused(self, tenant: str, exc: nats.js.errors.APIError) -> None:
        """The broker refused this tenant's partition: hold the tenant, backing off."""
        refusals = self.refusals[tenant] = self.refusals.get(tenant, 0) + 1
        hold_s = min(MAX_HOLD_S, FIRST_HOLD_S * 2 ** (refusals - 1))
        self.share.hold(tenant, time.monotonic() + hold_s)
        await self._unbind(tenant)
        log.warning(
            "the broker refused a tenant partition; its work waits, the others go on",
            extra={"pool": self.pool, "lane": self.name, "tenant": tenant, "error": str(exc), "retry_in_s": hold_s},
        )

    async def _refresh(self) -> None:
        """Re-read how many items each tenant partition of the lane holds."""
        info = await self.js.stream_info(WORK_STREAM, subjects_filter=lane_filter(self.pool, self.name))
        counts = {}
        for subject, count in (info.state.subjects or {}).items():
            parsed = parse_work_subject(subject)
            if parsed:
                counts[parsed[2]] = count
        self.share.observe(counts)
        self.refreshed_at = time.monotonic()

    async def _pull(self, tenant: str, room: int) -> list[Delivery]:
        """What the tenant's partition has ready now, up to `room` items."""
        partition = self.partitions.get(tenant)
        now = time.monotonic()
        # The server removes a consumer nobody used for tenant_consumer_idle_s: declare it again
        # well before that could have happened since we last did.
        wait_s = _READY_S
        if partition is None or now - partition[1] > self.topology.tenant_consumer_idle_s / 2:
            await ensure_work_consumer(self.js, self.topology, self.pool, self.name, tenant)
            sub = partition[0] if partition else None
            if sub is None:
                sub = await self.js.pull_subscribe_bind(
                    durable=consumer_name(self.pool, self.name, tenant), stream=WORK_STREAM
                )
                wait_s = _FIRST_PULL_S  # a consumer just created may take a moment to find its items
            partition = self.partitions[tenant] = (sub, now)
        try:
            return list(await partition[0].fetch(batch=room, timeout=wait_s))
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        except Exception:
            await self._unbind(tenant)  # declare and bind afresh next time
            raise

    async def _unbind(self, tenant: str) -> None:
        """Forget the tenant's partition, unsubscribed: a subscription only dropped from the map
        stays on the connection, whose drain at exit then waits on its pull (past the grace)."""
        partition = self.partitions.pop(tenant, None)
        if partition is not None:
            with contextlib.suppress(Exception):
                await partition[0].unsubscribe()

    async def close(self) -> None:
        """Unsubscribe the partitions (an outstanding pull would make the connection's drain wait)."""
        for sub, _ in self.partitions.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self.partitions.clear()
