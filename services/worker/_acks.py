"""Acknowledging a work item: confirmed by the server, and kept alive while its step runs."""

from __future__ import annotations

import asyncio

import nats.errors

from mesh.errors import Unavailable
from mesh.fabric import Delivery
from mesh.telemetry import get_logger

log = get_logger(__name__)


async def ack(msg: Delivery) -> None:
    """Ack and wait for the server to confirm it (a lost ack would mean a rerun)."""
    try:
        await msg.ack_sync(timeout=5.0)
    except nats.errors.MsgAlreadyAckdError:
        pass  # acked earlier on this path (e.g. a cancelled step): nothing left to confirm
    except nats.errors.TimeoutError as exc:
        raise Unavailable("ack was not confirmed") from exc


async def keep_in_progress(msg: Delivery, every_s: float) -> None:
    """Extend the item's ack-wait while its step runs, so a slow step is not redelivered."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await msg.in_progress()
        except Exception:  # a missed extension only risks an early redelivery, which is fenced
            log.debug("in-progress ack failed", exc_info=True)


def attempt_of(msg: Delivery) -> int:
    """Which delivery of its item `msg` is (1 for the first)."""
    return msg.metadata.num_delivered if msg.metadata else 1


def stream_sequence_of(msg: Delivery) -> int:
    """The item's sequence in the work stream (0 if unknown)."""
    return msg.metadata.sequence.stream if msg.metadata and msg.metadata.sequence else 0
