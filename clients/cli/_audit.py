"""`tidemesh audit list|show|verify|export` — the tamper-evident audit from the terminal.

``list`` and ``show`` read records through the gateway (AuditService; admin or auditor).
``export --file F`` writes every record, checkpoint and the public key to F (JSON Lines, see
`mesh.audit._export`), signed up to its last record. ``verify`` checks the live audit — or an
export with ``--file`` — and names the first bad record and why; ``--against OLD`` also checks
that nothing recorded up to an earlier export's last checkpoint was cut off, and trusts OLD's key;
``--public-key PEM`` pins the key (``<state>/audit/signing.pub``). Without either, it trusts the
key the audit carries, and says so. Exit 0 when the audit is intact, 1 when it is not.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clients.cli._exit import EXIT_FAILED, EXIT_OK
from clients.cli._output import Output
from clients.cli._stepup import step_up_on, with_step_up
from clients.cli._style import Style
from clients.sdk._client import STEP_UP_HEADER, mesh_channel
from mesh.audit import (
    AuditRecord,
    Checkpoint,
    Export,
    SigningKeyError,
    Stored,
    Unreadable,
    Verdict,
    anchors_of,
    key_id_of,
    load_public_key,
    read_export,
    record_from_proto,
    stored_from_proto,
    verify,
    write_export,
)
from mesh.errors import InvalidArgument
from mesh.rpc import raise_from_rpc_error
from mesh.v1 import audit_pb2, audit_pb2_grpc

__all__ = ["add_audit_commands", "audit_command"]

TIMEOUT_S = 30.0
EXPORT_TIMEOUT_S = 600.0
SHOWN_PROBLEMS = 10


def add_audit_commands(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    client_args: Callable[..., None],
) -> None:
    """``tidemesh audit ...``; `client_args` adds --endpoint, --api-key, --cacert and the rest."""
    p_audit = subparsers.add_parser("audit", help="the tamper-evident audit: list, show, verify, export")
    actions = p_audit.add_subparsers(dest="audit_action", required=True)
    p_list = actions.add_parser("list", help="audit records, newest first (admin or auditor)")
    p_list.add_argument("--limit", type=int, default=20, help="records per page (1..500)")
    p_list.add_argument("--before", type=int, default=0, metavar="SEQ", help="records numbered below SEQ")
    p_list.add_argument("--action", default="", help="only actions starting with this, e.g. dlq. or auth.revoke")
    p_list.add_argument("--credential", default="", help="only this credential's records (a key id or jti)")
    p_show = actions.add_parser("show", help="one record, every field")
    p_show.add_argument("seq", type=int, help="the record's number")
    p_verify = actions.add_parser(
        "verify", help="check the chain and its signatures; name the first bad record (exit 1 if any)"
    )
    p_verify.add_argument("--file", default="", help="verify this export instead of the live audit (off the mesh)")
    p_verify.add_argument(
        "--against", default="", metavar="EXPORT", help="an earlier export: nothing it holds may be cut off since"
    )
    p_verify.add_argument(
        "--public-key", default="", metavar="PEM", help="trust this key (e.g. a copy of state/audit/signing.pub)"
    )
    p_export = actions.add_parser("export", help="write records, checkpoints and the public key to a file")
    p_export.add_argument("--file", required=True, help="the file to write (JSON Lines)")
    for p in (p_list, p_show, p_verify, p_export):
        client_args(p)


async def audit_command(args: argparse.Namespace, transport: dict[str, Any], credential: str) -> int:
    """Run one ``tidemesh audit`` action against the gateway at ``args.endpoint`` (or a file)."""
    out = Output.from_args(args)
    if args.audit_action == "verify" and args.file:
        return _verify(args, _read(args.file, "--file"), f"the export {args.file}", out)
    channel = mesh_channel(
        args.endpoint, credential, transport.get("ca"), bool(transport.get("insecure")), surface="cli"
    )
    async with channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            if args.audit_action == "list":
                return await _list(stub, args, out)
            if args.audit_action == "show":
                return await _show(stub, args.seq, out)
            export = await with_step_up(out, step_up_on(channel), lambda token: _fetch(stub, token))
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)
    if args.audit_action == "export":
        write_export(Path(args.file), export)
        records, checkpoints = len(export.records), len(export.checkpoints)
        summary = {"file": args.file, "records": records, "checkpoints": checkpoints, "key_id": export.key_id}
        line = f"wrote {args.file}: {records} records, {checkpoints} checkpoints, key {export.key_id}"
        out.data(summary, table=lambda: out.line(line))
        return EXIT_OK
    return _verify(args, export, f"the live audit at {args.endpoint}", out)


def _read(path: str, flag: str) -> Export:
    try:
        return read_export(Path(path))
    except Unreadable as exc:
        raise InvalidArgument(flag, str(exc)) from exc


def _key(pem: str, flag: str) -> Ed25519PublicKey:
    try:
        return load_public_key(pem)
    except SigningKeyError as exc:
        raise InvalidArgument(flag, str(exc)) from exc


async def _fetch(stub: audit_pb2_grpc.AuditServiceStub, step_up: str = "") -> Export:
    """The whole audit through ExportAudit: its header, then every message in stored order (an
    export wants a fresh second factor where step-up is on: `step_up` is its token)."""
    header: audit_pb2.AuditExportHeader | None = None
    entries: list[Stored] = []
    metadata = ((STEP_UP_HEADER, step_up),) if step_up else ()
    try:
        async for part in stub.ExportAudit(audit_pb2.ExportAuditRequest(), timeout=EXPORT_TIMEOUT_S, metadata=metadata):
            if part.WhichOneof("part") == "header":
                header = part.header
            else:
                entries.append(stored_from_proto(part))
    except grpc.aio.AioRpcError as exc:
        raise_from_rpc_error(exc)  # a step-up challenge, too: `with_step_up` answers it
    if header is None:
        raise InvalidArgument("export", "the gateway sent no header (public key) with the audit")
    return Export(header.public_key, header.key_id, header.exported_at, tuple(entries))


def _record_dict(record: AuditRecord, stream_sequence: int = 0) -> dict[str, Any]:
    doc = record.to_dict()
    if stream_sequence:
        doc["stream_sequence"] = stream_sequence
    return doc


def _record_line(record: AuditRecord) -> str:
    e = record.entry
    who = e.actor.credential_id + (f"@{e.actor.tenant}" if e.actor.tenant else "")
    decision = "" if e.decision == "allowed" else f" {e.decision.upper()}"
    return (
        f"{record.seq:>6}  {record.time[:19].replace('T', ' ')}  {who:<22} {e.action:<16} {e.outcome:<9}"
        f"{decision} {e.resource}  ({e.surface})"
    )


async def _list(stub: audit_pb2_grpc.AuditServiceStub, args: argparse.Namespace, out: Output) -> int:
    request = audit_pb2.ListAuditRecordsRequest(
        before_seq=args.before, limit=args.limit, action_prefix=args.action, credential_id=args.credential
    )
    reply = await stub.ListAuditRecords(request, timeout=TIMEOUT_S)
    records = [(record_from_proto(message), message.stream_sequence) for message in reply.records]

    def table() -> None:
        if not records:
            out.note("no audit record matches")
        out.lines(_record_line(record) for record, _ in records)
        if reply.next_before_seq:
            out.note(f"older records: tidemesh audit list --before {reply.next_before_seq}")

    out.data([_record_dict(record, where) for record, where in records], table=table)
    return EXIT_OK


def _show_lines(record: AuditRecord, stream_sequence: int) -> Iterator[str]:
    e = record.entry
    yield f"record {record.seq}  (stream message {stream_sequence})"
    fields = [
        ("time", record.time),
        ("credential", e.actor.credential_id),
        ("tenant", e.actor.tenant),
        ("roles", ", ".join(e.actor.roles)),
        ("amr", ", ".join(e.actor.amr)),
        ("action", e.action),
        ("resource", e.resource),
        ("decision", e.decision),
        ("policies", ", ".join(e.policy_ids)),
        ("outcome", e.outcome),
        ("detail", e.detail),
        ("before", e.before),
        ("after", e.after),
        ("surface", e.surface),
        ("trace id", e.trace_id),
        ("prev", record.prev),
        ("hash", record.hash),
    ]
    for name, value in fields:
        yield f"  {name:<11} {value or '-'}"


async def _show(stub: audit_pb2_grpc.AuditServiceStub, seq: int, out: Output) -> int:
    reply = await stub.GetAuditRecord(audit_pb2.GetAuditRecordRequest(seq=seq), timeout=TIMEOUT_S)
    record, where = record_from_proto(reply.record), reply.record.stream_sequence
    out.data(_record_dict(record, where), table=lambda: out.lines(_show_lines(record, where)))
    return EXIT_OK


def _verify(args: argparse.Namespace, source: Export, what: str, out: Output) -> int:
    earlier = _read(args.against, "--against") if args.against else None
    anchors: list[Checkpoint] = anchors_of(earlier) if earlier else []
    if args.public_key:
        try:
            pem = Path(args.public_key).read_text()
        except OSError as exc:
            raise InvalidArgument("--public-key", f"cannot read {args.public_key}: {exc.strerror}") from exc
        key, trusted = _key(pem, "--public-key"), f"the key in {args.public_key}"
    elif earlier is not None:
        key, trusted = _key(earlier.public_key_pem, "--against"), f"the key of {args.against}"
    else:
        key, trusted = _key(source.public_key_pem, "--file" if args.file else "export"), "the key the audit carries"
        out.note(f"trusting {trusted} ({source.key_id}); pin one with --public-key or --against")
    verdict = verify(source.entries, key, anchors)
    report = _report(verdict, key_id_of(key), what, trusted, anchors)
    style = out.style or Style.for_stream(sys.stdout)
    out.data(report, table=lambda: out.lines(_verdict_lines(verdict, report, style)))
    return EXIT_OK if verdict.ok else EXIT_FAILED


def _problem_dict(problem: Any) -> dict[str, Any]:
    return {
        "seq": problem.seq,
        "stream_sequence": problem.stream_sequence,
        "kind": problem.kind,
        "reason": problem.reason,
    }


def _report(verdict: Verdict, key_id: str, what: str, trusted: str, anchors: list[Checkpoint]) -> dict[str, Any]:
    return {
        "ok": verdict.ok,
        "source": what,
        "key_id": key_id,
        "trusted_key": trusted,
        "records": verdict.records,
        "checkpoints": verdict.checkpoints,
        "head_seq": verdict.head_seq,
        "head_hash": verdict.head_hash,
        "signed_seq": verdict.signed_seq,
        "anchored_seq": max((anchor.seq for anchor in anchors), default=0),
        "first_bad": _problem_dict(verdict.first) if verdict.first else None,
        "problems": [_problem_dict(problem) for problem in verdict.problems],
    }


def _verdict_lines(verdict: Verdict, report: dict[str, Any], style: Style) -> Iterator[str]:
    if verdict.ok:
        yield style.state("audit intact", "ok") + (
            f": {verdict.records} records, {verdict.checkpoints} checkpoints in {report['source']}"
        )
        yield f"  head: record {verdict.head_seq} (sha256:{verdict.head_hash[:16]}…)"
        yield f"  signed up to record {verdict.signed_seq} by key {report['key_id']} ({report['trusted_key']})"
        if report["anchored_seq"]:
            yield f"  holds everything up to the kept checkpoint of record {report['anchored_seq']}"
        if verdict.unsigned:
            yield f"  {verdict.unsigned} records after the last checkpoint are not signed yet"
        return
    first = verdict.first
    assert first is not None
    yield style.state("audit TAMPERED", "error") + f": {report['source']}"
    yield f"  first bad record: {first}"
    if len(verdict.problems) > 1:
        yield f"  {len(verdict.problems) - 1} more problems:"
        for problem in verdict.problems[1 : SHOWN_PROBLEMS + 1]:
            yield f"    {problem}"
        if len(verdict.problems) > SHOWN_PROBLEMS + 1:
            yield f"    … and {len(verdict.problems) - SHOWN_PROBLEMS - 1} more (-o json lists them all)"
