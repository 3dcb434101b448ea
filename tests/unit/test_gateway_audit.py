"""The gateway's audited actions (services.gateway._audit) over the in-memory audit store: a
start is recorded before the action, its outcome after, a refusal as refused — and with the audit
unreachable the action fails closed, UNAVAILABLE with a retry-after, without running."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh.access import RoleCatalog
from mesh.audit import AuditLog, AuditRecord, MemoryAuditStore, Signer
from mesh.errors import Conflict, PermissionDenied, Unavailable
from services.gateway._audit import Auditor, surface_of
from services.gateway._auth import Principal

ADMIN = Principal("key-admin", "*", frozenset({"admin"}))
READER = Principal("key-reader", "acme", frozenset({"viewer"}))
ROLES = RoleCatalog()


def _auditor() -> tuple[MemoryAuditStore, Auditor]:
    store = MemoryAuditStore()
    return store, Auditor(AuditLog(store, Signer(Ed25519PrivateKey.generate())))


async def _records(auditor: Auditor) -> list[AuditRecord]:
    assert auditor.log is not None
    return [stored.record async for stored in auditor.log.entries() if stored.record is not None]


async def test_an_allowed_action_is_recorded_before_and_after() -> None:
    """`started` before the body goes on, then `succeeded` with what it did; both name the
    credential, its roles, the surface and the resource."""
    _, auditor = _auditor()
    async with auditor.action(ADMIN, "dlq.purge", "dlq:tenant=acme", "cli") as act:
        assert ROLES.decide(ADMIN.tenant, ADMIN.roles, "dlq.purge", "acme").allowed
        await act.allowed()
        assert [r.entry.outcome for r in await _records(auditor)] == ["started"]
        act.done("purged 3 dead letters")
    started, succeeded = await _records(auditor)
    assert (succeeded.entry.outcome, succeeded.entry.detail) == ("succeeded", "purged 3 dead letters")
    for record in (started, succeeded):
        assert record.entry.actor.credential_id == "key-admin" and record.entry.actor.roles == ("admin",)
        assert (record.entry.decision, record.entry.surface, record.entry.resource) == (
            "allowed",
            "cli",
            "dlq:tenant=acme",
        )


async def test_a_refused_attempt_is_recorded_and_still_refused() -> None:
    """A PERMISSION_DENIED before the start: one `refused` record, and the error reaches the caller."""
    _, auditor = _auditor()
    with pytest.raises(PermissionDenied):
        async with auditor.action(READER, "auth.key.create", "tenant:*", "grpc"):
            decision = ROLES.decide(READER.tenant, READER.roles, "auth.key.create", "*")
            raise PermissionDenied(f"credential {READER.credential_id} may not auth.key.create: {decision.reason}")
    (refused,) = await _records(auditor)
    assert (refused.entry.decision, refused.entry.outcome) == ("refused", "refused")
    assert refused.entry.actor.credential_id == "key-reader"
    assert "may not auth.key.create: no role of it grants auth.key.create" in refused.entry.detail


async def test_with_the_audit_down_the_action_fails_closed() -> None:
    """The start cannot be recorded: Unavailable with a retry-after, and the action never runs."""
    store, auditor = _auditor()
    store.down = True
    ran = False
    with pytest.raises(Unavailable, match="was not done") as refused:
        async with auditor.action(ADMIN, "auth.revoke", "credential:k1", "cli") as act:
            await act.allowed()
            ran = True
    assert not ran and refused.value.retry_after_s > 0
    store.down = False
    assert await _records(auditor) == []


async def test_a_failure_after_the_start_is_recorded_as_failed() -> None:
    """An error after `allowed()`: a `failed` record naming its code; the error reaches the caller."""
    _, auditor = _auditor()
    with pytest.raises(Conflict):
        async with auditor.action(ADMIN, "dlq.replay", "dlq:t1", "rest") as act:
            await act.allowed()
            raise Conflict("task 't1' did not end dead-lettered")
    assert [(r.entry.outcome, r.entry.detail.split(":")[0]) for r in await _records(auditor)] == [
        ("started", ""),
        ("failed", "FAILED_PRECONDITION"),
    ]


async def test_an_action_that_never_records_its_start_is_a_bug() -> None:
    """A body that finishes without `allowed()` did something unrecorded: RuntimeError."""
    _, auditor = _auditor()
    with pytest.raises(RuntimeError, match="without recording"):
        async with auditor.action(ADMIN, "model.load", "model:m", "grpc"):
            pass


def test_the_surface_is_what_the_client_declares_else_the_protocol() -> None:
    """x-tidemesh-surface names cli, console, dash or desktop; anything else is the protocol's."""
    assert surface_of([("x-tidemesh-surface", "dash")]) == "dash"
    assert surface_of([("x-tidemesh-surface", "mainframe")]) == "grpc"
    assert surface_of(None, "rest") == "rest"
