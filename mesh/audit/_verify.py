"""Checking an audit: every record in its place, unchanged, chained, and covered by its signatures.

`verify` reads the stream's messages in stored order and reports each way they differ from what
the writers wrote, as `Problem`s sorted by record number — the first is the first bad record:

- ``changed``    a record whose content no longer matches its hash, or whose link to the
                 record before it is broken (one of the two was changed and re-hashed);
- ``removed``    a record number missing from the sequence;
- ``reordered``  a record stored before one with a lower number;
- ``duplicate``  a record number stored twice (a writer that ignored the chain: a fork);
- ``unreadable`` a message that is no audit entry;
- ``checkpoint`` a record that does not match a signed checkpoint of it (changed after it was
                 signed), or a checkpoint naming a record that is not there;
- ``signature``  a checkpoint whose signature does not verify with the trusted key;
- ``truncated``  the audit ends before a record an anchor (a checkpoint kept off the mesh, from
                 an earlier export) says exists.

A rewrite of the whole chain with fresh hashes is caught by the checkpoints (their heads no longer
match), unless the writer also holds the signing key; a cut tail, only against an anchor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mesh.audit._checkpoint import Checkpoint, key_id_of
from mesh.audit._entries import Stored
from mesh.audit._record import GENESIS

PROBLEM_KINDS = ("changed", "removed", "reordered", "duplicate", "unreadable", "checkpoint", "signature", "truncated")
_CHAIN_KINDS = frozenset(PROBLEM_KINDS[:5])


@dataclass(frozen=True)
class Problem:
    """What is wrong at record `seq` (stream message `stream_sequence`; 0 where none is stored)."""

    seq: int
    stream_sequence: int
    kind: str
    reason: str

    def __str__(self) -> str:
        where = f" (stream message {self.stream_sequence})" if self.stream_sequence else ""
        return f"record {self.seq}{where}: {self.kind}: {self.reason}"


@dataclass(frozen=True)
class Verdict:
    """The outcome: `ok` when nothing is wrong; `problems` in record order otherwise."""

    records: int
    checkpoints: int
    head_seq: int
    head_hash: str
    signed_seq: int  # the last record a checkpoint with a good signature covers (0: none)
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    @property
    def unsigned(self) -> int:
        """Records after the last signed checkpoint (not yet covered by a signature)."""
        return max(self.head_seq - self.signed_seq, 0)


def verify(stored: Iterable[Stored], public_key: Ed25519PublicKey, anchors: Sequence[Checkpoint] = ()) -> Verdict:
    """Check `stored` (the audit stream's messages, in stream order) against `public_key`, and
    against `anchors` — checkpoints kept from an earlier export — for a truncated tail."""
    entries = list(stored)
    trusted_key = key_id_of(public_key)
    problems: list[Problem] = []
    later = _later_numbers(entries)
    hashes: dict[int, tuple[str, int]] = {}  # record number → (hash, stream message), first kept
    checkpoints: list[tuple[Checkpoint, int]] = []
    expected, prev, position, head_hash = 1, GENESIS, 0, GENESIS
    for index, entry in enumerate(entries):
        where = entry.stream_sequence
        if entry.item is None:
            problems.append(Problem(expected, where, "unreadable", f"not an audit entry ({entry.error})"))
            continue
        checkpoint = entry.checkpoint
        if checkpoint is not None:
            checkpoints.append((checkpoint, where))
            continue
        record = entry.record
        assert record is not None
        seq = record.seq
        if seq in hashes:
            first = hashes[seq][1]
            problems.append(
                Problem(seq, where, "duplicate", f"record {seq} is stored twice (first at stream message {first})")
            )
            continue
        hashes[seq] = (record.hash, where)
        intact = record.computed_hash() == record.hash
        if not intact:
            problems.append(Problem(seq, where, "changed", "its content does not match its hash"))
        if seq < expected:
            continue  # stored late: reported where the record after it came too early
        in_place = seq == expected
        if not in_place:
            in_place = False
            if expected in later[index]:
                problems.append(Problem(seq, where, "reordered", f"record {seq} is stored before record {expected}"))
            else:
                gap = f"record {expected}" if seq == expected + 1 else f"records {expected}-{seq - 1}"
                problems.append(
                    Problem(expected, where, "removed", f"{gap} missing: record {seq} follows record {expected - 1}")
                )
        if intact and in_place and record.prev != prev:
            problems.append(
                Problem(
                    seq,
                    where,
                    "changed",
                    f"it does not chain to record {seq - 1}: its prev is {record.prev[:12]}…, record {seq - 1}'s "
                    f"hash is {prev[:12]}… (one of the two was changed and re-hashed)",
                )
            )
        prev, expected, head_hash = record.hash, seq + 1, record.hash
        position = max(position, seq)
    signed = 0
    for checkpoint, where in checkpoints:
        good = _check_checkpoint(checkpoint, where, public_key, trusted_key, hashes, problems, "a signed checkpoint")
        if good:
            signed = max(signed, checkpoint.seq)
    for anchor in anchors:
        if anchor.seq > position:
            cut = f"record {anchor.seq}" if anchor.seq == position + 1 else f"records {position + 1}-{anchor.seq}"
            problems.append(
                Problem(
                    position + 1,
                    0,
                    "truncated",
                    f"the audit ends at record {position}, but a kept checkpoint says record {anchor.seq} exists: "
                    f"{cut} cut off",
                )
            )
            _check_signature(anchor, 0, public_key, trusted_key, problems, "the kept checkpoint")
            continue
        _check_checkpoint(anchor, 0, public_key, trusted_key, hashes, problems, "the kept checkpoint")
    # At one record, what broke the chain comes before the checkpoint that therefore fails.
    problems.sort(key=lambda problem: (problem.seq, problem.kind not in _CHAIN_KINDS, problem.stream_sequence))
    return Verdict(len(hashes), len(checkpoints), position, head_hash, signed, tuple(problems))


def _later_numbers(entries: Sequence[Stored]) -> list[frozenset[int]]:
    """For each position, the record numbers stored after it."""
    after: list[frozenset[int]] = [frozenset()] * len(entries)
    seen: set[int] = set()
    for index in range(len(entries) - 1, -1, -1):
        after[index] = frozenset(seen)
        record = entries[index].record
        if record is not None:
            seen.add(record.seq)
    return after


def _check_signature(
    checkpoint: Checkpoint,
    where: int,
    public_key: Ed25519PublicKey,
    trusted_key: str,
    problems: list[Problem],
    what: str,
) -> bool:
    if checkpoint.key_id != trusted_key:
        reason = f"{what} is signed by key {checkpoint.key_id or '(none)'}, not the trusted key {trusted_key}"
    elif not checkpoint.verifies(public_key):
        reason = f"the signature of {what} does not verify"
    else:
        return True
    problems.append(Problem(checkpoint.seq, where, "signature", reason))
    return False


def _check_checkpoint(
    checkpoint: Checkpoint,
    where: int,
    public_key: Ed25519PublicKey,
    trusted_key: str,
    hashes: dict[int, tuple[str, int]],
    problems: list[Problem],
    what: str,
) -> bool:
    """Its signature, and the record it covers; True when both hold."""
    if not _check_signature(checkpoint, where, public_key, trusted_key, problems, what):
        return False
    if checkpoint.seq == 0:
        return True  # a checkpoint of the empty audit
    recorded = hashes.get(checkpoint.seq)
    if recorded is None:
        reason = f"{what} covers record {checkpoint.seq}, which is not stored"
        problems.append(Problem(checkpoint.seq, where, "checkpoint", reason))
        return False
    if recorded[0] != checkpoint.head:
        problems.append(
            Problem(
                checkpoint.seq,
                recorded[1],
                "checkpoint",
                f"its hash is not the one {what} signed (changed after it was signed)",
            )
        )
        return False
    return True
