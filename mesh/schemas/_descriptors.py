"""Descriptor sets: validated, fingerprinted, compiled from .proto, turned into message classes.

A subject's schema travels as a ``FileDescriptorSet`` holding the subject's file and every file it
imports (``protoc --include_imports``). Each set is checked by building it into a pool of its own
(never the process's default pool, where a user's ``acme.v1.ResizeRequest`` could collide with a
generated class), and stored in one canonical form — files sorted by name, no source info,
deterministic serialization — whose sha256 is its fingerprint: the same schema compiled twice,
or with other comments, is the same version.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FileDescriptor
from google.protobuf.descriptor_pb2 import DescriptorProto, FileDescriptorProto, FileDescriptorSet
from google.protobuf.message import DecodeError, Message

from mesh.errors import InvalidArgument

__all__ = [
    "SUBJECT_RE",
    "canonical",
    "check_subject",
    "compile_proto",
    "descriptor_set_of",
    "fingerprint",
    "load_descriptor_set",
    "message_class",
    "message_descriptor",
]

# A full protobuf message name: dotted identifiers. It is also a NATS KV key fragment (no spaces,
# no wildcards), and long names are a mistake rather than a need.
SUBJECT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MAX_SUBJECT_LEN = 200
MAX_DESCRIPTOR_SET_BYTES = 4 << 20


def check_subject(subject: str, field: str = "subject") -> str:
    """`subject` if it is a full message name such as ``acme.v1.ResizeRequest``; else InvalidArgument."""
    if not subject:
        raise InvalidArgument(field, "is required: the full name of a message, e.g. acme.v1.ResizeRequest")
    if len(subject) > MAX_SUBJECT_LEN or not SUBJECT_RE.match(subject):
        raise InvalidArgument(
            field, f"{subject[:MAX_SUBJECT_LEN]!r} is not a full message name (dotted identifiers, e.g. acme.v1.Resize)"
        )
    return subject


def canonical(fds: FileDescriptorSet) -> FileDescriptorSet:
    """The stored form: files sorted by name, without source info (comments do not make a version),
    every field's json_name spelled out. protoc writes the default JSON names into a descriptor
    set, a generated module's descriptors omit them: the same .proto must be one version either way."""
    files = sorted(fds.file, key=lambda file: file.name)
    out = FileDescriptorSet()
    for file in files:
        copy = out.file.add()
        copy.CopyFrom(file)
        copy.ClearField("source_code_info")
        for message in copy.message_type:
            _spell_json_names(message)
    return out


def _spell_json_names(message: DescriptorProto) -> None:
    for field in (*message.field, *message.extension):
        if not field.HasField("json_name"):
            field.json_name = _default_json_name(field.name)
    for nested in message.nested_type:
        _spell_json_names(nested)


def _default_json_name(name: str) -> str:
    """protoc's ToJsonName: underscores dropped, the letter after each one upper-cased."""
    out: list[str] = []
    upper = False
    for char in name:
        if char == "_":
            upper = True
        elif upper:
            out.append(char.upper())
            upper = False
        else:
            out.append(char)
    return "".join(out)


def fingerprint(fds: FileDescriptorSet) -> str:
    """sha256 (hex) of the canonical form of `fds`."""
    return hashlib.sha256(canonical(fds).SerializeToString(deterministic=True)).hexdigest()


def _well_known(name: str) -> FileDescriptorProto | None:
    """A google/protobuf/*.proto file this runtime ships, for a set that imports it without holding it."""
    if not name.startswith("google/protobuf/"):
        return None
    try:
        file = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        return None
    proto = FileDescriptorProto()
    file.CopyToProto(proto)
    return proto


def _in_dependency_order(fds: FileDescriptorSet, field: str) -> list[FileDescriptorProto]:
    """Every file after the files it imports; a missing well-known import is taken from the runtime."""
    by_name: dict[str, FileDescriptorProto] = {}
    for file in fds.file:
        if not file.name:
            raise InvalidArgument(field, "a file in the descriptor set has no name")
        if file.name in by_name:
            raise InvalidArgument(field, f"the descriptor set holds {file.name!r} twice")
        by_name[file.name] = file
    ordered: list[FileDescriptorProto] = []
    state: dict[str, str] = {}  # name → "visiting" | "done"

    def visit(name: str, importer: str) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise InvalidArgument(field, f"import cycle through {name!r}")
        file = by_name.get(name)
        if file is None:
            file = _well_known(name)
            if file is None:
                raise InvalidArgument(
                    field,
                    f"{importer!r} imports {name!r}, which the descriptor set does not hold "
                    "(compile with protoc --include_imports, or buf build)",
                )
            by_name[name] = file
        state[name] = "visiting"
        for dependency in file.dependency:
            visit(dependency, name)
        state[name] = "done"
        ordered.append(file)

    for name in sorted(list(by_name)):
        visit(name, name)
    return ordered


def _build(fds: FileDescriptorSet, field: str) -> tuple[FileDescriptorSet, descriptor_pool.DescriptorPool]:
    """(the canonical set, with any well-known import it lacked; a fresh pool holding it)."""
    pool = descriptor_pool.DescriptorPool()
    complete = FileDescriptorSet()
    for file in _in_dependency_order(fds, field):
        try:
            pool.Add(file)
        except (TypeError, ValueError) as exc:  # what upb raises for a file it cannot build
            raise InvalidArgument(field, f"file {file.name!r} does not build: {exc}") from exc
        complete.file.add().CopyFrom(file)
    return canonical(complete), pool


def _parse_set(data: bytes, field: str) -> FileDescriptorSet:
    if not data:
        raise InvalidArgument(field, "is required: a serialized google.protobuf.FileDescriptorSet")
    if len(data) > MAX_DESCRIPTOR_SET_BYTES:
        raise InvalidArgument(field, f"{len(data)} bytes; at most {MAX_DESCRIPTOR_SET_BYTES}")
    fds = FileDescriptorSet()
    try:
        fds.ParseFromString(data)
    except DecodeError as exc:
        raise InvalidArgument(field, f"not a serialized FileDescriptorSet ({exc})") from exc
    # Random bytes often parse as some message: a set with no files, or with unknown fields, is junk.
    from mesh.schemas._decode import check_no_unknown_fields

    check_no_unknown_fields(fds, field)
    if not fds.file:
        raise InvalidArgument(field, "the descriptor set holds no files")
    return fds


def message_descriptor(pool: descriptor_pool.DescriptorPool, subject: str, field: str = "subject") -> Descriptor:
    try:
        return pool.FindMessageTypeByName(subject)
    except KeyError:
        raise InvalidArgument(field, f"{subject!r} is not a message in the descriptor set") from None


def load_descriptor_set(data: bytes, subject: str, field: str = "descriptor_set") -> FileDescriptorSet:
    """The canonical, validated set in `data`, which must define the message `subject`.

    InvalidArgument names what is wrong: bytes that are not a FileDescriptorSet, a missing import,
    a file that does not build, or a subject the set does not define."""
    check_subject(subject)
    fds, pool = _build(_parse_set(data, field), field)
    message_descriptor(pool, subject)
    return fds


def pool_of(fds: FileDescriptorSet) -> descriptor_pool.DescriptorPool:
    """A fresh pool holding a set that `load_descriptor_set` accepted."""
    return _build(fds, "descriptor_set")[1]


def _files_of(file: FileDescriptor) -> Iterator[FileDescriptor]:
    """`file` and everything it imports, each once, imports first."""
    seen: set[str] = set()

    def walk(current: FileDescriptor) -> Iterator[FileDescriptor]:
        if current.name in seen:
            return
        seen.add(current.name)
        for dependency in current.dependencies:
            yield from walk(dependency)
        yield current

    yield from walk(file)


def descriptor_set_of(message_type: type[Message]) -> bytes:
    """The canonical descriptor set of a generated message class: its file and every transitive import."""
    fds = FileDescriptorSet()
    for file in _files_of(cast(FileDescriptor, message_type.DESCRIPTOR.file)):
        file.CopyToProto(fds.file.add())
    return canonical(fds).SerializeToString(deterministic=True)


_PROTOC_LOCK = threading.Lock()  # protoc's error text is read from fd 2, which is process-wide


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """What the C++ protoc writes to fd 2 while the block runs (Python's sys.stderr never sees it)."""
    captured: list[str] = []
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


def compile_proto(path: str | Path, include_dirs: list[str | Path] | None = None) -> bytes:
    """The canonical descriptor set of a .proto file and its imports, compiled in-process.

    `include_dirs` default to the file's folder; the well-known types are always importable.
    A file protoc refuses is InvalidArgument (field ``proto``) carrying protoc's own message."""
    from grpc_tools import protoc

    source = Path(path)
    if not source.is_file():
        raise InvalidArgument("proto", f"{source} is not a file")
    includes = [Path(d) for d in include_dirs] if include_dirs else [source.parent]
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "set.binpb"
        argv = [
            "protoc",
            *(f"-I{d}" for d in includes),
            f"-I{well_known}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            str(source),
        ]
        with _PROTOC_LOCK, _captured_stderr() as errors:
            code = protoc.main(argv)
        if code != 0 or not out.exists():
            text = "".join(errors).strip() or f"protoc exited with status {code}"
            raise InvalidArgument("proto", f"{source} does not compile: {text}")
        data = out.read_bytes()
    fds = FileDescriptorSet()
    fds.ParseFromString(data)
    return canonical(fds).SerializeToString(deterministic=True)


_CLASSES: dict[tuple[str, str], type[Message]] = {}
_CLASSES_LOCK = threading.Lock()
_MAX_CLASSES = 4096


def message_class(fds_bytes: bytes, subject: str) -> type[Message]:
    """The message class of `subject` in a descriptor set, built in a private pool.

    Cached by the bytes' digest (a stored set is canonical, so that is its fingerprint): a hit costs
    one sha256, not a parse and a build."""
    key = (hashlib.sha256(fds_bytes).hexdigest(), subject)
    with _CLASSES_LOCK:
        cached = _CLASSES.get(key)
    if cached is not None:
        return cached
    fds = load_descriptor_set(fds_bytes, subject)
    made = message_factory.GetMessageClass(message_descriptor(pool_of(fds), subject))
    with _CLASSES_LOCK:
        if len(_CLASSES) >= _MAX_CLASSES:  # a registry holds far fewer; a bound keeps junk from growing it
            _CLASSES.clear()
        return _CLASSES.setdefault(key, made)
