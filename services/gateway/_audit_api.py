"""AuditService servicer: the audit read through the gateway, by credentials allowed audit.read
(listing, showing) and audit.export — the admin and auditor roles.

Listing and showing records are reads (not themselves recorded); an export is recorded like any
administrative action (`_audit`), and signs a checkpoint of the head before it streams, so what
it carries ends covered by a signature. A caller without the action is PERMISSION_DENIED naming
it, and the refused attempt is recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from mesh.audit import AuditLog, AuditRecord, now_rfc3339, record_to_proto, stored_to_proto
from mesh.errors import Conflict, InvalidArgument, MeshError, NotFound, PermissionDenied
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with
from mesh.v1 import audit_pb2, audit_pb2_grpc
from services.gateway._audit import Auditor, surface_of
from services.gateway._auth import Principal
from services.gateway._guard import Guard

MAX_PAGE = 500


class AuditApi(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, guard: Guard, auditor: Auditor) -> None:
        self._guard = guard
        self._auditor = auditor

    async def _reader(self, context: Context, action: str) -> tuple[AuditLog, Principal | None]:
        principal = await self._guard.from_grpc(context)
        try:
            self._guard.check(principal, action)
        except PermissionDenied as exc:
            await self._auditor.refused(principal, action, "audit", surface_of(context.invocation_metadata()), exc)
            raise
        if self._auditor.log is None:
            raise Conflict("the audit is off on this gateway (it was started without --audit-dir)")
        return self._auditor.log, principal

    async def ListAuditRecords(
        self, request: audit_pb2.ListAuditRecordsRequest, context: Context
    ) -> audit_pb2.ListAuditRecordsResponse:
        try:
            audit, _ = await self._reader(context, "audit.read")
            if request.limit > MAX_PAGE:
                raise InvalidArgument("limit", f"at most {MAX_PAGE}")

            def keep(record: AuditRecord) -> bool:
                return record.entry.action.startswith(request.action_prefix) and (
                    not request.credential_id or record.entry.actor.credential_id == request.credential_id
                )

            records, more = await audit.recent(request.before_seq, request.limit or 50, keep)
        except MeshError as exc:
            await abort_with(context, exc)
        return audit_pb2.ListAuditRecordsResponse(
            records=[record_to_proto(record) for record in records], next_before_seq=more
        )

    async def GetAuditRecord(
        self, request: audit_pb2.GetAuditRecordRequest, context: Context
    ) -> audit_pb2.GetAuditRecordResponse:
        try:
            audit, _ = await self._reader(context, "audit.read")
            if request.seq < 1:
                raise InvalidArgument("seq", "is required: records are numbered from 1")
            stored = await audit.record(request.seq)
            if stored is None:
                raise NotFound(f"no audit record {request.seq} (`tidemesh audit list` shows the newest)")
            if stored.record is None:
                raise Conflict(
                    f"audit record {request.seq} is stored (stream message {stored.stream_sequence}) but is "
                    f"unreadable: {stored.error}; `tidemesh audit verify` reports it"
                )
        except MeshError as exc:
            await abort_with(context, exc)
        return audit_pb2.GetAuditRecordResponse(record=record_to_proto(stored.record, stored.stream_sequence))

    async def ExportAudit(
        self, request: audit_pb2.ExportAuditRequest, context: Context
    ) -> AsyncIterator[audit_pb2.ExportAuditResponse]:
        try:
            audit, principal = await self._reader(context, "audit.export")
            surface = surface_of(context.invocation_metadata())
            async with self._auditor.action(principal, "audit.export", "audit", surface) as act:
                act.approved(await self._guard.approve(principal, "audit.export", "audit"))  # a fresh second factor
                await act.allowed()
                await audit.checkpoint()  # covers the export's own start record too
                yield audit_pb2.ExportAuditResponse(
                    header=audit_pb2.AuditExportHeader(
                        public_key=audit.signer.public_pem, key_id=audit.signer.key_id, exported_at=now_rfc3339()
                    )
                )
                count = 0
                async for stored in audit.entries():
                    count += 1
                    yield stored_to_proto(stored)
                act.done(f"exported {count} messages")
        except MeshError as exc:
            await abort_with(context, exc)
