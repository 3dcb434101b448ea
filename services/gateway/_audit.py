"""The gateway's administrative actions, recorded in the audit (`mesh.audit`) where they are checked.

Each audited call runs inside ``async with auditor.action(principal, "dlq.purge", resource,
surface) as act``: the body checks the caller's role, then calls ``await act.allowed()`` just
before it changes anything, then does it. What is written:

- ``allowed()``: a record *started* (decision allowed) — before the action, so no action happens
  unrecorded. If it cannot be stored the call **fails closed**: UNAVAILABLE with a retry-after,
  and nothing was done.
- after the body: its outcome, *succeeded* (with `act.done`'s detail) or *failed* (the error's
  code and message). Should that second write fail, the action stands and the gateway logs it
  loudly — the started record already says it was attempted, by whom.
- a PERMISSION_DENIED before ``allowed()``, or a step-up challenge (a sensitive action without a
  fresh second factor): a record *refused*, best effort (the caller is refused either way). Calls
  without a valid credential are not recorded (there is no one to name).
- after a step-up, ``act.approved(principal)``: the records name the ``amr`` it brought (``otp``).

Reads and Submit are never audited: nothing here is on the hot path. The surface is what the
client declares in ``x-tidemesh-surface`` (cli, console, dash, desktop) — a label, not a proof —
else the protocol it came by.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from opentelemetry import trace

from mesh.audit import (
    ALLOWED,
    ANONYMOUS,
    FAILED,
    REFUSED,
    STARTED,
    SUCCEEDED,
    Actor,
    AuditLog,
    Entry,
)
from mesh.errors import MeshError, PermissionDenied, StepUpRequired, Unavailable
from mesh.telemetry import get_logger
from services.gateway._auth import Principal

log = get_logger(__name__)

SURFACE_HEADER = "x-tidemesh-surface"
DECLARED_SURFACES = frozenset({"cli", "console", "dash", "desktop"})
REFUSAL_WRITE_S = 2.0  # a refusal is answered at once; its record waits no longer than this


def surface_of(metadata: Iterable[tuple[str, Any]] | None, default: str = "grpc") -> str:
    """The surface a call declares (``x-tidemesh-surface``), else `default` (its protocol)."""
    for key, value in metadata or ():
        if key.lower() == SURFACE_HEADER and isinstance(value, str) and value in DECLARED_SURFACES:
            return value
    return default


def current_trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.trace_id else ""


def actor_of(principal: Principal | None) -> Actor:
    if principal is None:
        return Actor(ANONYMOUS)
    return Actor(principal.credential_id, principal.tenant, tuple(sorted(principal.roles)), tuple(principal.amr))


class Auditor:
    """Writes the gateway's audit records (`AuditLog`); `Auditor.disabled()` writes none, said in the log."""

    def __init__(self, audit_log: AuditLog) -> None:
        if not isinstance(audit_log, AuditLog):  # a forgotten log must not quietly mean "no audit"
            raise TypeError("Auditor needs an AuditLog; Auditor.disabled() turns the audit off on purpose")
        self.log: AuditLog | None = audit_log

    @classmethod
    def disabled(cls) -> Auditor:
        log.warning("AUDIT IS OFF on this gateway: administrative actions are not recorded (start it with --audit-dir)")
        auditor = cls.__new__(cls)
        auditor.log = None
        return auditor

    def action(self, principal: Principal | None, action: str, resource: str, surface: str) -> AuditedAction:
        return AuditedAction(self, principal, action, resource, surface)

    async def write(self, entry: Entry) -> None:
        if self.log is not None:
            await self.log.append(entry)

    async def refused(
        self,
        principal: Principal | None,
        action: str,
        resource: str,
        surface: str,
        exc: MeshError,
        policy_ids: tuple[str, ...] = (),
    ) -> None:
        """Record a refused attempt, best effort: the caller is refused whether or not it is stored.
        `policy_ids`: the policies that refused it."""
        entry = Entry(
            actor_of(principal),
            action,
            resource,
            REFUSED,
            REFUSED,
            surface=surface,
            detail=f"{exc.grpc_code}: {exc.message}",
            policy_ids=policy_ids,
            trace_id=current_trace_id(),
        )
        try:
            await asyncio.wait_for(self.write(entry), REFUSAL_WRITE_S)
        except (Unavailable, TimeoutError) as write_error:
            log.warning("audit: a refused %s was not recorded: %s", action, write_error)


class AuditedAction:
    """One audited call (see the module docstring)."""

    def __init__(self, auditor: Auditor, principal: Principal | None, action: str, resource: str, surface: str) -> None:
        self._auditor = auditor
        self._principal = principal
        self._actor = actor_of(principal)
        self.action = action
        self.resource = resource
        self._surface = surface
        self._trace_id = current_trace_id()
        self._started = False
        self._detail = ""
        self._after = ""
        self._before = ""
        self._failed = False

    def _entry(self, decision: str, outcome: str, detail: str) -> Entry:
        return Entry(
            self._actor,
            self.action,
            self.resource,
            decision,
            outcome,
            surface=self._surface,
            detail=detail,
            before=self._before,
            after=self._after,
            trace_id=self._trace_id,
        )

    async def allowed(self, before: str = "", detail: str = "") -> None:
        """Record that the action starts; `Unavailable` (retry-after) if the audit cannot take it."""
        self._before = before
        try:
            await self._auditor.write(self._entry(ALLOWED, STARTED, detail))
        except Unavailable as exc:
            log.error("audit unavailable: %s refused (fail closed)", self.action, extra={"resource": self.resource})
            raise Unavailable(
                f"{self.action} was not done: the audit cannot record it ({exc.message})",
                retry_after_s=exc.retry_after_s or 1.0,
            ) from exc
        self._started = True

    def approved(self, principal: Principal | None) -> None:
        """The caller as a step-up approved it (its ``amr``), for every record from here on."""
        self._principal = principal
        self._actor = actor_of(principal)

    def done(self, detail: str = "", after: str = "") -> None:
        """What the action did, for its outcome record (never a secret)."""
        self._detail, self._after = detail, after

    def failed(self, detail: str) -> None:
        """The action ran and did not do what it was for (a change rolled back): its outcome is failed."""
        self._detail, self._failed = detail, True

    async def __aenter__(self) -> AuditedAction:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if not self._started:
            if isinstance(exc, PermissionDenied | StepUpRequired):
                await self._auditor.refused(self._principal, self.action, self.resource, self._surface, exc)
            elif exc is None:
                raise RuntimeError(f"audited action {self.action} ended without recording that it started")
            return  # refused for another reason (bad input, not found) before anything was done
        if exc is None:
            outcome, detail = (FAILED if self._failed else SUCCEEDED), self._detail
        elif isinstance(exc, MeshError):
            outcome, detail = FAILED, f"{exc.grpc_code}: {exc.message}"
        elif isinstance(exc, asyncio.CancelledError):
            outcome, detail = FAILED, "CANCELLED: the caller went away; the action may have been done"
        else:
            outcome, detail = FAILED, f"INTERNAL: {type(exc).__name__}"
        try:
            await asyncio.shield(self._auditor.write(self._entry(ALLOWED, outcome, detail)))
        except Unavailable as write_error:
            log.error(
                "audit: the outcome of %s was not recorded (its start was): %s",
                self.action,
                write_error.message,
                extra={"resource": self.resource},
            )
