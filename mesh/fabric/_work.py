"""Putting work items on the fabric — the one place that does it.

An item is stored in its tenant partition of TM_WORK (``tm.work.<pool>.<class>.<tenant>``)
and, once JetStream has acknowledged it, the partition's doorbell is rung on core NATS
(``tm.bell.<pool>.<class>.<tenant>``). Workers wait on doorbells rather than holding a
pull request open per partition, and a doorbell only ever follows a stored item, so the
pull it triggers finds the item there.
"""

from __future__ import annotations

from nats.aio.client import Client
from nats.js import JetStreamContext

from mesh.fabric._subjects import bell_subject


class WorkQueue:
    def __init__(self, nc: Client, js: JetStreamContext) -> None:
        self._nc = nc
        self._js = js

    async def put(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """Store one item (deduplicated by its Nats-Msg-Id header) and ring its doorbell.

        Raises nats errors as they come; callers translate them at their boundary."""
        await self._js.publish(subject, data, headers=headers)
        await self._nc.publish(bell_subject(subject))
