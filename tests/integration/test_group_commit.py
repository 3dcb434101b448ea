"""Group commit on a real nats-server: concurrent writes share atomic batches, and each write
still gets exactly the answer it would get alone (its sequence, its fence, its duplicate flag)."""

from __future__ import annotations

import asyncio
import uuid

import nats.errors
import nats.js.api as api
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS

from mesh.fabric._commit import GroupCommit
from mesh.fabric._events import WRONG_LAST_SEQUENCE

pytestmark = pytest.mark.asyncio


async def _stream(nc: NATS, *, atomic: bool = True) -> tuple[str, str]:
    name = f"GC_{uuid.uuid4().hex[:10]}"
    prefix = f"gc.{name.lower()}"
    config = api.StreamConfig(
        name=name, subjects=[f"{prefix}.>"], storage=api.StorageType.FILE, allow_atomic=atomic or None
    )
    await nc.jetstream().add_stream(config)
    return name, prefix


async def _stored(nc: NATS, stream: str, seq: int) -> tuple[str, bytes]:
    raw = await nc.jetstream().get_msg(stream, seq)
    return raw.subject or "", raw.data or b""


async def test_concurrent_writes_share_batches_and_each_gets_its_own_sequence(nc: NATS) -> None:
    stream, prefix = await _stream(nc)
    commit = GroupCommit(nc.jetstream(), stream, atomic_min=4)
    acks = await asyncio.gather(*(commit.publish(f"{prefix}.t{i}", f"m{i}".encode()) for i in range(100)))
    assert commit.messages == 100
    assert commit.commits < 10, f"{commit.commits} commits for 100 concurrent writes"
    assert sorted(ack.seq for ack in acks) == list(range(1, 101))
    for i, ack in enumerate(acks):
        assert await _stored(nc, stream, ack.seq) == (f"{prefix}.t{i}", f"m{i}".encode())


async def test_a_lone_write_is_a_plain_publish(nc: NATS) -> None:
    stream, prefix = await _stream(nc)
    commit = GroupCommit(nc.jetstream(), stream, atomic_min=4)
    first = await commit.publish(f"{prefix}.a", b"1")
    second = await commit.publish(f"{prefix}.b", b"2")
    assert (first.seq, second.seq, commit.commits) == (1, 2, 2)


async def test_a_fenced_write_fails_alone_and_its_neighbours_are_stored_once(nc: NATS) -> None:
    stream, prefix = await _stream(nc)
    commit = GroupCommit(nc.jetstream(), stream, atomic_min=4)
    await commit.publish(f"{prefix}.taken", b"first")
    writes = [commit.publish(f"{prefix}.n{i}", b"x", {"Nats-Expected-Last-Subject-Sequence": "0"}) for i in range(20)]
    writes.insert(7, commit.publish(f"{prefix}.taken", b"second", {"Nats-Expected-Last-Subject-Sequence": "0"}))
    answers = await asyncio.gather(*writes, return_exceptions=True)
    refused = answers.pop(7)
    assert isinstance(refused, nats.js.errors.APIError) and refused.err_code == WRONG_LAST_SEQUENCE
    assert all(not isinstance(a, BaseException) for a in answers)
    info = await nc.jetstream().stream_info(stream)
    assert info.state.messages == 21  # the first write and the 20 neighbours, each once


async def test_a_duplicate_id_in_a_group_is_flagged_not_stored_twice(nc: NATS) -> None:
    stream, prefix = await _stream(nc)
    commit = GroupCommit(nc.jetstream(), stream, atomic_min=4)
    await commit.publish(f"{prefix}.d", b"original", {"Nats-Msg-Id": "dup-1"})
    writes = [commit.publish(f"{prefix}.n{i}", b"x", {"Nats-Msg-Id": f"new-{i}"}) for i in range(10)]
    writes.append(commit.publish(f"{prefix}.d", b"again", {"Nats-Msg-Id": "dup-1"}))
    answers = await asyncio.gather(*writes)
    assert answers[-1].duplicate and answers[-1].seq == 1
    assert not any(a.duplicate for a in answers[:-1])
    assert (await nc.jetstream().stream_info(stream)).state.messages == 11


async def test_a_stream_without_atomic_batches_is_written_one_by_one(nc: NATS) -> None:
    stream, prefix = await _stream(nc, atomic=False)
    commit = GroupCommit(nc.jetstream(), stream, atomic_min=4)
    acks = await asyncio.gather(*(commit.publish(f"{prefix}.t{i}", b"x") for i in range(30)))
    assert sorted(a.seq for a in acks) == list(range(1, 31))
    assert commit.messages == 30
    later = await asyncio.gather(*(commit.publish(f"{prefix}.u{i}", b"y") for i in range(30)))
    assert commit.commits == 60 and len({a.seq for a in later}) == 30


async def test_an_oversized_write_fails_alone(nc: NATS) -> None:
    stream, prefix = await _stream(nc)
    commit = GroupCommit(nc.jetstream(), stream, atomic_min=4)
    big = b"x" * (nc.max_payload + 1)
    writes = [commit.publish(f"{prefix}.n{i}", b"x") for i in range(10)]
    writes.insert(3, commit.publish(f"{prefix}.big", big))
    answers = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(answers.pop(3), nats.errors.MaxPayloadError)
    assert all(not isinstance(a, BaseException) for a in answers)
    assert (await nc.jetstream().stream_info(stream)).state.messages == 10


async def test_a_batch_never_committed_stores_nothing(nc: NATS, nats_server: object) -> None:
    """What a writer killed mid-batch leaves: the messages it sent without the commit are not
    stored, and a later group on the same stream commits normally."""
    stream, prefix = await _stream(nc)
    async with await nats_server.connect("dies") as doomed:  # type: ignore[attr-defined]
        for number in range(1, 6):
            headers = {"Nats-Batch-Id": "killed-midway", "Nats-Batch-Sequence": str(number)}
            await doomed.publish(f"{prefix}.lost{number}", b"never committed", headers=headers)
        await doomed.flush()
    commit = GroupCommit(nc.jetstream(), stream, atomic_min=4)
    acks = await asyncio.gather(*(commit.publish(f"{prefix}.kept{i}", b"k") for i in range(8)))
    info = await nc.jetstream().stream_info(stream, subjects_filter=f"{prefix}.>")
    assert info.state.messages == 8 and sorted(a.seq for a in acks) == list(range(1, 9))
    assert not any(subject.startswith(f"{prefix}.lost") for subject in info.state.subjects or {})


async def test_closed_commit_refuses_and_lets_handed_in_writes_finish(nc: NATS) -> None:
    stream, prefix = await _stream(nc)
    commit = GroupCommit(nc.jetstream(), stream, atomic_min=4)
    pending = [asyncio.ensure_future(commit.publish(f"{prefix}.t{i}", b"x")) for i in range(10)]
    await asyncio.sleep(0)  # handed in
    await commit.aclose()
    assert len(await asyncio.gather(*pending)) == 10
    with pytest.raises(nats.errors.ConnectionClosedError):
        await commit.publish(f"{prefix}.late", b"x")


async def test_an_urgent_write_goes_out_alone_beside_a_gathered_group(nc: NATS) -> None:
    """An interactive task's write is never gathered into the batch of the writes around it: it is
    its own plain publish, with its own sequence, while the others still share batches."""
    stream, prefix = await _stream(nc)
    commit = GroupCommit(nc.jetstream(), stream, atomic_min=4)
    writes = [commit.publish(f"{prefix}.n{i}", b"x") for i in range(40)]
    writes.insert(20, commit.publish(f"{prefix}.urgent", b"now", urgent=True))
    acks = await asyncio.gather(*writes)
    urgent = acks.pop(20)
    assert await _stored(nc, stream, urgent.seq) == (f"{prefix}.urgent", b"now")
    assert sorted([urgent.seq, *(a.seq for a in acks)]) == list(range(1, 42))
    assert commit.messages == 41 and 2 <= commit.commits < 10  # the urgent one, plus a few batches
