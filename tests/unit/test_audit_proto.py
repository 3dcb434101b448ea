"""The audit on the wire: a record or checkpoint through `mesh.v1.audit_pb2` and back is the same,
and still hashes to what was stored (what `tidemesh audit verify` relies on through the gateway)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from mesh.audit import (
    GENESIS,
    OUTCOMES,
    SURFACES,
    Actor,
    Entry,
    Signer,
    Stored,
    record_from_proto,
    record_to_proto,
    seal,
    stored_from_proto,
    stored_to_proto,
)
from mesh.v1 import audit_pb2

SIGNER = Signer(Ed25519PrivateKey.generate())
texts = st.text(max_size=20)


@given(
    actor=st.builds(Actor, texts, texts, st.tuples(texts, texts), st.tuples(texts)),
    action=st.text(min_size=1, max_size=20),
    resource=st.text(min_size=1, max_size=20),
    decision=st.sampled_from(["allowed", "refused"]),
    outcome=st.sampled_from(OUTCOMES),
    surface=st.sampled_from(SURFACES),
    detail=texts,
    seq=st.integers(min_value=1, max_value=2**62),
)
def test_a_record_round_trips_through_its_message(
    actor: Actor, action: str, resource: str, decision: str, outcome: str, surface: str, detail: str, seq: int
) -> None:
    """Every field survives the message, so the hash computed on the far side matches."""
    entry = Entry(actor, action, resource, decision, outcome, surface=surface, detail=detail, policy_ids=("p1",))
    record = seal(seq, GENESIS, entry, "2026-12-01T00:00:00.000001Z")
    back = record_from_proto(audit_pb2.AuditRecord.FromString(record_to_proto(record, 9).SerializeToString()))
    assert back.computed_hash() == record.hash == back.hash
    assert back.entry.actor.roles == tuple(sorted(actor.roles))


def test_export_parts_round_trip_and_a_record_no_entry_can_hold_becomes_unreadable() -> None:
    """Checkpoints and unreadable messages keep their stream sequence; a record with a decision
    no record can have (altered on the way) arrives as an unreadable entry, never as a record."""
    checkpoint = SIGNER.sign(4, "b" * 64, "now")
    assert stored_from_proto(stored_to_proto(Stored(7, checkpoint))) == Stored(7, checkpoint)
    junk = Stored(8, None, "not JSON", b"\x00")
    assert stored_from_proto(stored_to_proto(junk)) == junk
    record = seal(1, GENESIS, Entry(Actor("k"), "a", "r", "allowed", "started"), "now")
    part = stored_to_proto(Stored(3, record))
    part.record.decision = "maybe"
    arrived = stored_from_proto(part)
    assert arrived.item is None and arrived.stream_sequence == 3 and "decision" in arrived.error
