"""What one audit record holds, its canonical encoding, and how it is sealed into the chain.

A record's hash is ``sha256(prev || canonical(body))``: `prev` is the previous record's hash as
32 bytes (32 zero bytes before the first record), `body` every field but ``prev`` and ``hash``.
The canonical encoding is JSON with sorted keys, no whitespace, UTF-8 — strings, integers,
booleans, lists and objects only (no floats: their text is not canonical), so the same record
is the same bytes in every process and every language.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mesh.audit._errors import Unreadable

GENESIS = "0" * 64  # the `prev` of the first record
FORMAT_VERSION = 1

ALLOWED, REFUSED = "allowed", "refused"
DECISIONS = (ALLOWED, REFUSED)
# `started` is written before the action runs (no action without its record); the outcome after.
STARTED, SUCCEEDED, FAILED = "started", "succeeded", "failed"
OUTCOMES = (STARTED, SUCCEEDED, FAILED, REFUSED)
# Where a call came from, as the client declares it (x-tidemesh-surface), else its protocol.
SURFACES = ("cli", "console", "dash", "desktop", "rest", "grpc", "websocket", "mesh")

ANONYMOUS = "anonymous"  # the credential id of every call when auth is off


def canonical(value: Any) -> bytes:
    """The one byte string of `value` (see the module docstring); TypeError on a float or another type."""
    return json.dumps(_checked(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _checked(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, list | tuple):
        return [_checked(item) for item in value]
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("canonical JSON keys are strings")
        return {key: _checked(item) for key, item in value.items()}
    raise TypeError(f"no canonical encoding for {type(value).__name__}")


def digest(value: Any) -> str:
    """``sha256:<hex>`` of `value`'s canonical encoding: a record's before/after state."""
    return "sha256:" + hashlib.sha256(canonical(value)).hexdigest()


def now_rfc3339() -> str:
    """The current UTC time as records carry it: RFC 3339, microseconds, ``Z``."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Actor:
    """Who acted: the credential, its tenant and roles, and how it was authenticated (`amr`,
    RFC 8176 values; empty until step-up authentication fills it)."""

    credential_id: str
    tenant: str = ""
    roles: tuple[str, ...] = ()
    amr: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", tuple(sorted(self.roles)))  # a set, in one order everywhere

    def to_dict(self) -> dict[str, Any]:
        return {
            "credential_id": self.credential_id,
            "tenant": self.tenant,
            "roles": list(self.roles),
            "amr": list(self.amr),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Actor:
        return cls(
            _text(doc, "credential_id"), _text(doc, "tenant"), tuple(_texts(doc, "roles")), tuple(_texts(doc, "amr"))
        )


@dataclass(frozen=True)
class Entry:
    """An action to record, before the chain gives it a place (`seal`)."""

    actor: Actor
    action: str  # e.g. dlq.purge, auth.key.create, model.load, task.cancel
    resource: str  # e.g. dlq:tenant=acme, credential:4f2a…, model:scaler, task:01J…
    decision: str  # ALLOWED or REFUSED
    outcome: str  # STARTED, SUCCEEDED, FAILED or REFUSED
    surface: str = "grpc"
    detail: str = ""  # what happened, in words; never a secret
    before: str = ""  # `digest` of the state before, where it applies
    after: str = ""
    policy_ids: tuple[str, ...] = ()  # the policies that decided (empty until the policy engine)
    trace_id: str = ""

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {self.decision!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.surface not in SURFACES:
            raise ValueError(f"surface must be one of {SURFACES}, got {self.surface!r}")
        if not self.action or not self.resource:
            raise ValueError("an audit entry names its action and its resource")


@dataclass(frozen=True)
class AuditRecord:
    """An entry at its place in the chain: record number `seq` (from 1), sealed by `hash`."""

    seq: int
    time: str
    entry: Entry
    prev: str
    hash: str = field(default="")

    def body(self) -> dict[str, Any]:
        """Every hashed field (all but ``prev`` and ``hash``)."""
        e = self.entry
        return {
            "type": "record",
            "v": FORMAT_VERSION,
            "seq": self.seq,
            "time": self.time,
            "actor": e.actor.to_dict(),
            "action": e.action,
            "resource": e.resource,
            "before": e.before,
            "after": e.after,
            "decision": e.decision,
            "policy_ids": list(e.policy_ids),
            "outcome": e.outcome,
            "detail": e.detail,
            "trace_id": e.trace_id,
            "surface": e.surface,
        }

    def computed_hash(self) -> str:
        """What `hash` must be: sha256 over `prev` (32 bytes) and the canonical body."""
        try:
            prev = bytes.fromhex(self.prev)
        except ValueError:
            prev = self.prev.encode()  # a malformed prev still hashes (to something that cannot match)
        return hashlib.sha256(prev + canonical(self.body())).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "prev": self.prev, "hash": self.hash}

    def encode(self) -> bytes:
        return canonical(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> AuditRecord:
        """The record `doc` holds; `Unreadable` naming the field if it is not one."""
        if doc.get("type") != "record":
            raise Unreadable("type: not 'record'")
        actor = doc.get("actor")
        if not isinstance(actor, Mapping):
            raise Unreadable("actor: not an object")
        try:
            entry = Entry(
                actor=Actor.from_dict(actor),
                action=_text(doc, "action"),
                resource=_text(doc, "resource"),
                decision=_text(doc, "decision"),
                outcome=_text(doc, "outcome"),
                surface=_text(doc, "surface"),
                detail=_text(doc, "detail"),
                before=_text(doc, "before"),
                after=_text(doc, "after"),
                policy_ids=tuple(_texts(doc, "policy_ids")),
                trace_id=_text(doc, "trace_id"),
            )
        except ValueError as exc:
            raise Unreadable(str(exc)) from exc
        return cls(_count(doc, "seq"), _text(doc, "time"), entry, _text(doc, "prev"), _text(doc, "hash"))


def seal(seq: int, prev: str, entry: Entry, time: str) -> AuditRecord:
    """`entry` as record `seq`, chained to `prev` and hashed."""
    unsealed = AuditRecord(seq, time, entry, prev)
    return AuditRecord(seq, time, entry, prev, unsealed.computed_hash())


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str):
        raise Unreadable(f"{key}: not a string")
    return value


def _texts(doc: Mapping[str, Any], key: str) -> Iterable[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Unreadable(f"{key}: not a list of strings")
    return value


def _count(doc: Mapping[str, Any], key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Unreadable(f"{key}: not a count")
    return value
