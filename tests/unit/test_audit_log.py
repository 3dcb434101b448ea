"""`AuditLog` over the in-memory store (JetStream's rules: expected last sequence, dedup by id):
writers that race never fork the chain, checkpoints come every N records and every T seconds,
and an append that cannot be stored fails closed."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh.audit import ALLOWED, STARTED, Actor, AuditLog, Entry, MemoryAuditStore, Signer, verify
from mesh.errors import Unavailable
from tests.conftest import eventually

SIGNER = Signer(Ed25519PrivateKey.generate())


def _entry(text: str) -> Entry:
    return Entry(Actor("k1", "*", ("admin",)), "task.cancel", f"task:{text}", ALLOWED, STARTED, detail=text)


async def _verdict(log: AuditLog):  # type: ignore[no-untyped-def]
    return verify([entry async for entry in log.entries()], SIGNER.public_key)


async def test_two_writers_appending_at_once_never_fork_the_chain() -> None:
    """Two logs (two gateways) on one store append 40 records each at once: 80 records numbered
    1..80, each on the one before it — the losers of each race re-sealed on the new head."""
    store = MemoryAuditStore()
    first, second = AuditLog(store, SIGNER, checkpoint_every=7), AuditLog(store, SIGNER, checkpoint_every=9)
    records = await asyncio.gather(
        *(log.append(_entry(f"{name}{n}")) for n in range(40) for name, log in (("a", first), ("b", second)))
    )
    assert sorted(record.seq for record in records) == list(range(1, 81))
    verdict = await _verdict(first)
    assert verdict.ok, verdict.problems
    assert verdict.records == 80 and verdict.checkpoints >= 1


async def test_a_checkpoint_signs_every_n_records_and_at_close() -> None:
    """checkpoint_every=3: checkpoints after records 3 and 6; closing signs the tail (record 7)."""
    store = MemoryAuditStore()
    log = AuditLog(store, SIGNER, checkpoint_every=3)
    async with log:
        for n in range(7):
            await log.append(_entry(str(n)))
        subjects = [message[0] for message in store.messages if message]
        assert [s for s in subjects if "checkpoint" in s] == ["tm.audit.checkpoint.3", "tm.audit.checkpoint.6"]
    assert store.messages[-1] is not None and store.messages[-1][0] == "tm.audit.checkpoint.7"
    assert (await _verdict(log)).signed_seq == 7


async def test_an_unsigned_head_is_signed_after_the_interval() -> None:
    """One record and no more: within checkpoint_interval_s a checkpoint covers it (and none
    follows while nothing new is written)."""
    store = MemoryAuditStore()
    async with AuditLog(store, SIGNER, checkpoint_every=1000, checkpoint_interval_s=0.05) as log:
        await log.append(_entry("x"))

        async def signed() -> bool:
            return any(message and message[0] == "tm.audit.checkpoint.1" for message in store.messages)

        await eventually(signed, 5.0, "a timed checkpoint of record 1")
        assert (await _verdict(log)).signed_seq == 1
        assert await log.checkpoint() is None  # the head is signed already


async def test_an_append_the_store_cannot_take_fails_closed_with_a_retry_after() -> None:
    """With the store down, append raises Unavailable (retry-after set); once it is back the
    chain goes on from where it was, with no gap."""
    store = MemoryAuditStore()
    log = AuditLog(store, SIGNER)
    await log.append(_entry("before"))
    store.down = True
    with pytest.raises(Unavailable, match="nothing was done") as refused:
        await log.append(_entry("lost"))
    assert refused.value.retry_after_s > 0
    store.down = False
    assert (await log.append(_entry("after"))).seq == 2
    assert (await _verdict(log)).ok


async def test_junk_after_the_head_is_skipped_when_the_chain_goes_on() -> None:
    """A message that is no entry at the end of the stream: the next record chains to the last
    real one, and verification names the junk where it sits."""
    store = MemoryAuditStore()
    log = AuditLog(store, SIGNER)
    await log.append(_entry("one"))
    store.messages.append(("tm.audit.record.2", b"junk"))
    fresh = AuditLog(store, SIGNER)  # another process: reads the head from the stream
    assert (await fresh.append(_entry("two"))).seq == 2
    verdict = await _verdict(fresh)
    assert [(p.seq, p.kind, p.stream_sequence) for p in verdict.problems] == [(2, "unreadable", 2)]


async def test_recent_pages_newest_first_and_filters() -> None:
    """recent: newest first, a page at a time (the `before` to go on with), filtered by `keep`."""
    log = AuditLog(MemoryAuditStore(), SIGNER, checkpoint_every=4)
    for n in range(1, 11):
        await log.append(_entry(f"t{n}"))
    page, more = await log.recent(0, 3, lambda record: True)
    assert [r.seq for r in page] == [10, 9, 8] and more == 8
    page, more = await log.recent(more, 100, lambda record: True)
    assert [r.seq for r in page] == list(range(7, 0, -1)) and more == 0
    odd, _ = await log.recent(0, 100, lambda record: record.seq % 2 == 1)
    assert [r.seq for r in odd] == [9, 7, 5, 3, 1]
    shown = await log.record(4)
    assert shown is not None and shown.record is not None and shown.record.entry.detail == "t4"
    assert await log.record(11) is None
