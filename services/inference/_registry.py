"""Registration: this service's backends (models held, health, load) in the `tm_inference`
KV bucket, re-written every few seconds; the bucket's TTL drops a replica that stops."""

from __future__ import annotations

import asyncio
import re

from nats.js.kv import KeyValue

from mesh.telemetry import get_logger
from services.inference._devices import Devices
from services.inference._router import Router

log = get_logger(__name__)


def _key_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


async def publish_backends(
    kv: KeyValue, router: Router, instance: str, endpoint: str, devices: Devices | None = None, every_s: float = 1.0
) -> None:
    """Write one entry per backend, `<instance>.<backend>`, with the service's `endpoint` and its
    host's devices, until cancelled (every second: workers place calls by these figures)."""
    while True:
        readings = [r.to_proto() for r in devices.read()] if devices else []
        for entry in router.snapshot(instance, endpoint):
            entry.devices.extend(readings)
            entry.devices_note = devices.note if devices else ""
            try:
                await kv.put(f"{_key_part(instance)}.{_key_part(entry.backend)}", entry.SerializeToString())
            except Exception as exc:  # the broker is away: the next round tries again
                log.warning("could not register inference backend", extra={"error": repr(exc)})
        await asyncio.sleep(every_s)
