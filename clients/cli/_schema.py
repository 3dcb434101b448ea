"""`tidemesh schema register|list|show|check|export` — the schema registry from the terminal.

A schema is given as a ``.proto`` (compiled here, in-process, with its imports; ``-I`` adds import
roots) or as a descriptor set (``.binpb``/``.pb``, e.g. from ``buf build -o``). ``export`` writes a
registered version's descriptor set, so a CI job can run ``buf breaking new.binpb --against old.binpb``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from google.protobuf.json_format import MessageToDict

from clients.cli._exit import EXIT_FAILED, EXIT_OK
from clients.cli._output import Output
from clients.sdk._client import mesh_channel
from mesh.errors import Conflict, InvalidArgument
from mesh.rpc import raise_from_rpc_error
from mesh.schemas import MODE_NAMES, compile_proto, mode_from_name, mode_name
from mesh.v1 import schema_pb2, schema_pb2_grpc

__all__ = ["add_schema_commands", "schema_command"]

TIMEOUT_S = 30.0


def add_schema_commands(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    client_args: Callable[..., None],
) -> None:
    """``tidemesh schema ...``; `client_args` adds --endpoint, --api-key, --cacert and the rest."""
    p_schema = subparsers.add_parser("schema", help="the schema registry: register, list, show, check, export")
    actions = p_schema.add_subparsers(dest="schema_action", required=True)

    def source_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", help="a .proto file, or a FileDescriptorSet (.binpb, .pb)")
        p.add_argument("--subject", required=True, help="the full message name, e.g. acme.v1.ResizeRequest")
        p.add_argument(
            "--mode", default="", help=f"compatibility mode: {', '.join(MODE_NAMES)} (default: the subject's)"
        )
        p.add_argument("-I", "--proto-path", action="append", default=[], help="an import root for a .proto")

    p_register = actions.add_parser("register", help="register a new version of a subject (admin)")
    source_args(p_register)
    p_check = actions.add_parser("check", help="check a candidate against a subject's versions, registering nothing")
    source_args(p_check)
    p_list = actions.add_parser("list", help="every subject, its mode and versions")
    p_show = actions.add_parser("show", help="one version of a subject (default: the latest)")
    p_show.add_argument("subject")
    p_show.add_argument("--version", type=int, default=0)
    p_export = actions.add_parser("export", help="write a version's descriptor set, e.g. for buf breaking")
    p_export.add_argument("subject")
    p_export.add_argument("--version", type=int, default=0)
    p_export.add_argument("--file", required=True, help="the file to write (.binpb)")
    for p in (p_register, p_check, p_list, p_show, p_export):
        client_args(p)


def read_descriptor_set(file: str, include_dirs: list[str]) -> bytes:
    """The descriptor set of a .proto (compiled) or of a descriptor-set file, as given."""
    path = Path(file)
    if path.suffix == ".proto":
        return compile_proto(path, list(include_dirs) or None)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument("file", f"cannot read {path}: {exc.strerror}") from exc
    try:
        FileDescriptorSet.FromString(data)
    except Exception as exc:  # the registry says precisely what is wrong; here: not even a message
        raise InvalidArgument("file", f"{path} is neither a .proto nor a FileDescriptorSet") from exc
    return data


def _write(path: str, data: bytes) -> None:
    Path(path).write_bytes(data)


def _channel(endpoint: str, transport: dict[str, Any], credential: str) -> grpc.aio.Channel:
    return mesh_channel(endpoint, credential, transport.get("ca"), bool(transport.get("insecure")))


def _version_line(version: schema_pb2.SchemaVersion) -> str:
    when = version.registered.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if version.HasField("registered") else "-"
    return (
        f"{version.subject} version {version.version}  id {version.id}  {mode_name(version.mode)}  "
        f"{when}  sha256:{version.fingerprint[:16]}"
    )


def _violation_line(violation: schema_pb2.CompatibilityViolation) -> str:
    return f"  {violation.rule} {violation.path}: {violation.message} (version {violation.against_version})"


def _schema_lines(schema: schema_pb2.SchemaVersion) -> Iterator[str]:
    yield _version_line(schema)
    for file in FileDescriptorSet.FromString(schema.descriptor_set).file:
        messages = ", ".join(message.name for message in file.message_type)
        yield f"  {file.name}" + (f": {messages}" if messages else "")


async def schema_command(args: argparse.Namespace, transport: dict[str, Any], credential: str) -> int:
    """Run one ``tidemesh schema`` action against the gateway at ``args.endpoint``."""
    action, out = args.schema_action, Output.from_args(args)
    mode = mode_from_name(args.mode) if getattr(args, "mode", "") else schema_pb2.COMPATIBILITY_MODE_UNSPECIFIED
    data = read_descriptor_set(args.file, args.proto_path) if action in ("register", "check") else b""
    async with _channel(args.endpoint, transport, credential) as channel:
        stub = schema_pb2_grpc.SchemaServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            if action == "register":
                return await _register(stub, args, data, mode, out)
            if action == "check":
                return await _check(stub, args, data, mode, out)
            if action == "list":
                return await _list(stub, out)
            got = await stub.GetSchema(
                schema_pb2.GetSchemaRequest(subject=args.subject, version=args.version), timeout=TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)
    if action == "export":
        _write(args.file, got.schema.descriptor_set)
        written = {"schema": _version_dict(got.schema), "file": args.file, "bytes": len(got.schema.descriptor_set)}
        out.data(
            written,
            table=lambda: out.lines([_version_line(got.schema), f"wrote {args.file} ({written['bytes']} bytes)"]),
        )
        return EXIT_OK
    out.data(MessageToDict(got.schema), table=lambda: out.lines(_schema_lines(got.schema)))
    return EXIT_OK


def _version_dict(schema: schema_pb2.SchemaVersion) -> dict[str, Any]:
    """A version without its descriptor set (the bytes are what export writes)."""
    return {k: v for k, v in MessageToDict(schema).items() if k != "descriptorSet"}


async def _register(
    stub: schema_pb2_grpc.SchemaServiceStub,
    args: argparse.Namespace,
    data: bytes,
    mode: schema_pb2.CompatibilityMode,
    out: Output,
) -> int:
    request = schema_pb2.RegisterSchemaRequest(subject=args.subject, descriptor_set=data, mode=mode)
    try:
        try:
            reply = await stub.RegisterSchema(request, timeout=TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)
    except Conflict as exc:  # incompatible: the registry's message lists every violation
        print(f"tidemesh: schema refused: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    note = "" if reply.created else "  (unchanged: the same schema is already the latest version)"
    out.data(
        {"created": reply.created, "schema": MessageToDict(reply.schema)},
        table=lambda: out.line(_version_line(reply.schema) + note),
    )
    return EXIT_OK


async def _check(
    stub: schema_pb2_grpc.SchemaServiceStub,
    args: argparse.Namespace,
    data: bytes,
    mode: schema_pb2.CompatibilityMode,
    out: Output,
) -> int:
    request = schema_pb2.CheckSchemaRequest(subject=args.subject, descriptor_set=data, mode=mode)
    reply = await stub.CheckSchema(request, timeout=TIMEOUT_S)

    def table() -> None:
        if reply.compatible:
            out.line(f"{args.subject}: compatible ({mode_name(reply.mode)})")
            return
        out.line(f"{args.subject}: NOT {mode_name(reply.mode)}-compatible ({len(reply.violations)} violations):")
        out.lines(_violation_line(violation) for violation in reply.violations)

    out.data(MessageToDict(reply, always_print_fields_with_no_presence=True), table=table)
    return EXIT_OK if reply.compatible else EXIT_FAILED


def _subject_line(subject: schema_pb2.SchemaSubject) -> str:
    latest = subject.versions[-1] if subject.versions else None
    where = f"latest {latest.version} (id {latest.id})" if latest else "no versions"
    return f"{subject.subject:<40} {mode_name(subject.mode):<20} {len(subject.versions):>3} versions  {where}"


async def _list(stub: schema_pb2_grpc.SchemaServiceStub, out: Output) -> int:
    reply = await stub.ListSchemas(schema_pb2.ListSchemasRequest(), timeout=TIMEOUT_S)

    def table() -> None:
        if not reply.subjects:
            out.note("no schema is registered")
        out.lines(_subject_line(subject) for subject in reply.subjects)

    out.data([MessageToDict(s) for s in reply.subjects], table=table)
    return EXIT_OK
