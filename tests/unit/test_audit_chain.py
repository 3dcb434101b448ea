"""The audit's chain and its verification (mesh.audit), without NATS: records written by the real
`AuditLog` into the in-memory store, then tampered with the way someone with the disk or the
broker's admin user could — and `verify` must name the first bad record and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.audit import (
    ALLOWED,
    GENESIS,
    STARTED,
    Actor,
    AuditLog,
    AuditRecord,
    Checkpoint,
    Entry,
    Export,
    MemoryAuditStore,
    Signer,
    SigningKeyError,
    Stored,
    anchors_of,
    canonical,
    decode,
    ensure_signing_key,
    read_export,
    seal,
    verify,
    write_export,
)

SIGNER = Signer(Ed25519PrivateKey.generate())


def _entry(number: int) -> Entry:
    return Entry(
        Actor(f"key{number}", "acme", ("admin",)),
        "dlq.purge",
        f"dlq:tenant=t{number}",
        ALLOWED,
        STARTED,
        surface="cli",
        detail=f"action {number}",
        trace_id=f"{number:032x}",
    )


async def _written(count: int, every: int = 1000) -> tuple[MemoryAuditStore, AuditLog]:
    """`count` records appended through an AuditLog (a checkpoint every `every` records)."""
    store = MemoryAuditStore()
    log = AuditLog(store, SIGNER, checkpoint_every=every)
    for number in range(1, count + 1):
        await log.append(_entry(number))
    return store, log


async def _stored(log: AuditLog) -> list[Stored]:
    return [entry async for entry in log.entries()]


def _doc(store: MemoryAuditStore, index: int) -> dict[str, object]:
    message = store.messages[index]
    assert message is not None
    return json.loads(message[1])  # type: ignore[no-any-return]


def _put(store: MemoryAuditStore, index: int, doc: dict[str, object]) -> None:
    message = store.messages[index]
    assert message is not None
    store.messages[index] = (message[0], canonical(doc))


def _index_of(store: MemoryAuditStore, seq: int) -> int:
    """The position of record `seq` in the store."""
    for index, message in enumerate(store.messages):
        if message is not None and message[0] == f"tm.audit.record.{seq}":
            return index
    raise AssertionError(f"no record {seq}")


def test_the_canonical_encoding_is_sorted_compact_utf8_and_refuses_floats() -> None:
    """Keys sorted, no whitespace, text as UTF-8 (not escaped); a float is refused, not rounded."""
    assert canonical({"b": [1, True, None], "a": "é"}) == '{"a":"é","b":[1,true,null]}'.encode()
    with pytest.raises(TypeError, match="float"):
        canonical({"time": 1.5})


def test_a_record_hashes_its_content_and_its_parent() -> None:
    """The hash changes with any field and with the previous hash; the first record's parent is zeros."""
    first = seal(1, GENESIS, _entry(1), "2026-12-01T00:00:00.000000Z")
    assert first.computed_hash() == first.hash and len(first.hash) == 64
    assert seal(1, "f" * 64, _entry(1), first.time).hash != first.hash
    assert seal(1, GENESIS, _entry(2), first.time).hash != first.hash
    assert AuditRecord.from_dict(json.loads(first.encode())) == first


async def test_an_untouched_audit_verifies() -> None:
    """Records and checkpoints as written: no problem, every record counted, the head signed."""
    _, log = await _written(12, every=5)
    verdict = verify(await _stored(log), SIGNER.public_key)
    assert verdict.ok, verdict.problems
    assert (verdict.records, verdict.checkpoints, verdict.head_seq, verdict.signed_seq) == (12, 2, 12, 10)
    assert verdict.unsigned == 2


async def test_a_changed_record_is_named() -> None:
    """Record 4's detail edited in place: its content no longer matches its hash."""
    store, log = await _written(6)
    index = _index_of(store, 4)
    doc = _doc(store, index)
    _put(store, index, {**doc, "detail": "nothing happened here"})
    verdict = verify(await _stored(log), SIGNER.public_key)
    assert verdict.first is not None
    assert (verdict.first.seq, verdict.first.kind) == (4, "changed")
    assert "does not match its hash" in verdict.first.reason
    assert verdict.first.stream_sequence == index + 1


async def test_a_changed_and_rehashed_record_breaks_the_link_and_its_checkpoint() -> None:
    """Record 3 edited and re-hashed: it is self-consistent, but record 4 no longer chains to it,
    and the checkpoint that signed record 3 names it."""
    store, log = await _written(6, every=3)
    index = _index_of(store, 3)
    doc = _doc(store, index)
    record = AuditRecord.from_dict({**doc, "outcome": "failed"})
    _put(store, index, seal(record.seq, record.prev, record.entry, record.time).to_dict())
    verdict = verify(await _stored(log), SIGNER.public_key)
    kinds = {(problem.seq, problem.kind) for problem in verdict.problems}
    assert (3, "checkpoint") in kinds and (4, "changed") in kinds
    assert verdict.first is not None and verdict.first.seq == 3


async def test_a_removed_record_is_named() -> None:
    """Record 5 deleted from the stream: it is missing, and record 6 follows record 4."""
    store, log = await _written(8)
    store.messages[_index_of(store, 5)] = None
    verdict = verify(await _stored(log), SIGNER.public_key)
    assert verdict.first is not None
    assert (verdict.first.seq, verdict.first.kind) == (5, "removed")
    assert "record 6 follows record 4" in verdict.first.reason


async def test_reordered_records_are_named() -> None:
    """Records 3 and 4 swapped: record 4 is stored before record 3."""
    store, log = await _written(6)
    three, four = _index_of(store, 3), _index_of(store, 4)
    store.messages[three], store.messages[four] = store.messages[four], store.messages[three]
    verdict = verify(await _stored(log), SIGNER.public_key)
    assert verdict.first is not None
    assert (verdict.first.seq, verdict.first.kind) == (4, "reordered")
    assert [problem.kind for problem in verdict.problems] == ["reordered"]


async def test_a_truncated_tail_is_found_against_a_kept_checkpoint(tmp_path: Path) -> None:
    """An export's last checkpoint kept off the mesh; then records 9-10 and their checkpoint are
    cut off the stream. Alone the shorter audit looks whole; against the anchor it is truncated."""
    store, log = await _written(10)
    await log.checkpoint()
    path = tmp_path / "audit.jsonl"
    write_export(path, Export(SIGNER.public_pem, SIGNER.key_id, "now", tuple(await _stored(log))))
    anchors = anchors_of(read_export(path))
    assert [anchor.seq for anchor in anchors] == [10]
    del store.messages[_index_of(store, 9) :]
    shorter = await _stored(log)
    assert verify(shorter, SIGNER.public_key).ok
    verdict = verify(shorter, SIGNER.public_key, anchors)
    assert verdict.first is not None
    assert (verdict.first.seq, verdict.first.kind) == (9, "truncated")
    assert "ends at record 8" in verdict.first.reason and "records 9-10 cut off" in verdict.first.reason


async def test_a_bad_signature_is_named() -> None:
    """A checkpoint whose head was moved (its signature no longer covers it), and one signed by
    another key: both fail against the mesh's key."""
    store, log = await _written(4, every=2)
    first_checkpoint = next(i for i, m in enumerate(store.messages) if m and "checkpoint" in m[0])
    doc = _doc(store, first_checkpoint)
    _put(store, first_checkpoint, {**doc, "time": "2020-01-01T00:00:00.000000Z"})
    verdict = verify(await _stored(log), SIGNER.public_key)
    assert verdict.first is not None
    assert (verdict.first.seq, verdict.first.kind) == (2, "signature")
    assert "does not verify" in verdict.first.reason
    other = Signer(Ed25519PrivateKey.generate())
    forged = other.sign(4, _doc(store, _index_of(store, 4))["hash"], "now")  # type: ignore[arg-type]
    store.messages.append(("tm.audit.checkpoint.4", forged.encode()))
    problems = verify(await _stored(log), SIGNER.public_key).problems
    assert any(p.kind == "signature" and other.key_id in p.reason for p in problems)


async def test_a_rewritten_chain_is_caught_by_its_checkpoints() -> None:
    """Every record re-sealed with new content and fresh hashes (a self-consistent chain): the
    signed checkpoints no longer match the records they covered."""
    store, log = await _written(6, every=3)
    prev = GENESIS
    for index, message in enumerate(store.messages):
        if message is None or "record" not in message[0]:
            continue
        record = AuditRecord.from_dict({**json.loads(message[1]), "detail": "rewritten"})
        rewritten = seal(record.seq, prev, record.entry, record.time)
        store.messages[index] = (message[0], rewritten.encode())
        prev = rewritten.hash
    verdict = verify(await _stored(log), SIGNER.public_key)
    assert {(p.seq, p.kind) for p in verdict.problems} == {(3, "checkpoint"), (6, "checkpoint")}


async def test_a_duplicate_and_junk_are_named() -> None:
    """A second copy of record 2 appended, and a message that is no audit entry."""
    store, log = await _written(3)
    copy = store.messages[_index_of(store, 2)]
    assert copy is not None
    store.messages.append(copy)
    store.messages.append(("tm.audit.record.9", b"\xffnot json"))
    problems = verify(await _stored(log), SIGNER.public_key).problems
    assert [(p.seq, p.kind) for p in problems] == [(2, "duplicate"), (4, "unreadable")]


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=2, max_value=25),
    data=st.data(),
    tamper=st.sampled_from(["changed", "removed", "reordered"]),
)
async def test_any_single_tampering_names_the_record_it_touched(count: int, data: st.DataObject, tamper: str) -> None:
    """For any chain and any record: an edit names that record; a removal names the missing one;
    a swap with the next record names the one stored too early. The untouched chain verifies."""
    store, log = await _written(count, every=4)
    assert verify(await _stored(log), SIGNER.public_key).ok
    # (The last record removed is a cut tail: found against a kept checkpoint, tested above.)
    seq = data.draw(st.integers(min_value=1, max_value=count if tamper == "changed" else count - 1))
    index = _index_of(store, seq)
    if tamper == "changed":
        _put(store, index, {**_doc(store, index), "resource": "dlq:tenant=someone-else"})
        expected = (seq, "changed")
    elif tamper == "removed":
        store.messages[index] = None
        expected = (seq, "removed")
    else:
        following = _index_of(store, seq + 1)
        store.messages[index], store.messages[following] = store.messages[following], store.messages[index]
        expected = (seq + 1, "reordered")
    verdict = verify(await _stored(log), SIGNER.public_key)
    assert verdict.first is not None
    # A removal or an edit under a checkpoint may also break that checkpoint: never before `seq`.
    assert (verdict.first.seq, verdict.first.kind) == expected, verdict.problems


@given(st.lists(st.text(max_size=12), max_size=4), st.text(max_size=40), st.integers(min_value=1, max_value=10**12))
def test_records_round_trip_through_their_stored_form(roles: list[str], detail: str, seq: int) -> None:
    """Whatever text a record holds, its stored bytes decode to the same record, still sealed."""
    entry = Entry(
        Actor("k", "t", tuple(roles), ("otp",)), "auth.revoke", "credential:k", ALLOWED, STARTED, detail=detail
    )
    record = seal(seq, GENESIS, entry, "2026-12-01T00:00:00.000000Z")
    stored = decode(7, record.encode())
    assert stored.record is not None
    assert stored.record.computed_hash() == record.hash
    assert stored.record.entry.actor.roles == tuple(sorted(roles))


def test_checkpoints_round_trip_and_bad_documents_name_their_field() -> None:
    """A checkpoint decodes as signed; documents that are not entries say which field is wrong."""
    checkpoint = SIGNER.sign(3, "a" * 64, "now")
    assert decode(1, checkpoint.encode()).checkpoint == checkpoint
    assert checkpoint.verifies(SIGNER.public_key)
    assert "seq: not a count" in decode(1, b'{"type": "checkpoint", "seq": -1}').error
    assert "actor: not an object" in decode(1, b'{"type": "record", "seq": 1}').error
    assert "neither" in decode(1, b'{"type": "x"}').error
    assert Checkpoint.from_dict(checkpoint.to_dict()) == checkpoint


def test_the_signing_key_is_made_once_owner_only_and_refused_when_readable(tmp_path: Path) -> None:
    """ensure_signing_key writes a 600 key in a 700 folder and its public half; a second call
    keeps the same key; a key others can read, or a missing one, is refused naming the file."""
    folder = ensure_signing_key(tmp_path / "audit")
    key = folder / "signing.key"
    assert key.stat().st_mode & 0o777 == 0o600 and folder.stat().st_mode & 0o777 == 0o700
    first = Signer.load(key)
    assert Signer.load(ensure_signing_key(folder) / "signing.key").key_id == first.key_id
    assert (folder / "signing.pub").read_text() == first.public_pem
    assert first.key_id in repr(first) and "PRIVATE" not in repr(first)
    key.chmod(0o640)
    with pytest.raises(SigningKeyError, match="readable by others"):
        Signer.load(key)
    with pytest.raises(SigningKeyError, match="no audit signing key"):
        Signer.load(tmp_path / "missing.key")


def test_a_tampered_export_line_is_reported_not_fatal(tmp_path: Path) -> None:
    """An export whose record line was mangled still reads; the line becomes an unreadable entry."""
    record = seal(1, GENESIS, _entry(1), "now")
    path = tmp_path / "audit.jsonl"
    write_export(path, Export(SIGNER.public_pem, SIGNER.key_id, "now", (Stored(1, record),)))
    assert path.stat().st_mode & 0o777 == 0o600
    lines = path.read_text().splitlines()
    path.write_text(
        "\n".join([lines[0], lines[1].replace('"seq":1', '"seq":"one"').replace('"seq": 1', '"seq": "one"')])
    )
    export = read_export(path)
    assert export.entries[0].item is None and "seq: not a count" in export.entries[0].error
    assert verify(export.entries, SIGNER.public_key).first is not None
