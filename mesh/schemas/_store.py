"""`SchemaRegistry`: subjects and their versions in the NATS KV bucket ``tm_schemas``.

Keys (a subject is a full message name, so it is itself dotted):

    s.<subject>.<version>   a serialized SchemaVersion, written once with `create` (never changed)
    latest.<subject>        the highest version written, a hint: readers look one past it
    mode.<subject>          the subject's CompatibilityMode name
    ids                     the last global id handed out (a counter moved with `update`)

A version is taken by creating its key: two registrations racing for version n+1 cannot both win,
and the loser compares itself again with what won (the same schema: it returns that version, not a
duplicate). Global ids move the ``ids`` counter with an expected revision, retried on conflict; an
id taken by a registration that then lost its version race is skipped, never reused, so ids are
unique but may have gaps. The gateway creates the bucket; the scheduler and workers only read it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import nats.errors
import nats.js.api
import nats.js.errors
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from google.protobuf.message import Message
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mesh.errors import Conflict, NotFound, Unavailable
from mesh.schemas._compat import Mode, Violation, check
from mesh.schemas._descriptors import check_subject, fingerprint, load_descriptor_set, message_class
from mesh.telemetry import get_logger
from mesh.v1 import schema_pb2

__all__ = ["SCHEMAS_BUCKET", "IncompatibleSchema", "SchemaRegistry", "Subject"]

log = get_logger(__name__)

SCHEMAS_BUCKET = "tm_schemas"
_ATTEMPTS = 64  # registrations of one subject racing each other; each retry follows a winner
_UNAVAILABLE = (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError)


class IncompatibleSchema(Conflict):
    """A candidate that breaks the subject's compatibility mode; `violations` lists every reason.

    FAILED_PRECONDITION / HTTP 409 (as Conflict): the request is well-formed, the registry's state
    refuses it — the same answer a Confluent registry gives an incompatible schema."""

    def __init__(self, subject: str, mode: Mode, violations: Sequence[Violation]) -> None:
        from mesh.schemas._compat import mode_name

        lines = "\n".join(f"  {violation}" for violation in violations)
        super().__init__(
            f"{subject}: the candidate is not {mode_name(mode)}-compatible ({len(violations)} violations):\n{lines}",
            field="descriptor_set",
        )
        self.subject = subject
        self.mode = mode
        self.violations = list(violations)


@dataclass(frozen=True)
class Subject:
    """A subject, its mode, and its versions (without descriptor sets)."""

    subject: str
    mode: Mode
    versions: list[schema_pb2.SchemaVersion]

    def to_proto(self) -> schema_pb2.SchemaSubject:
        return schema_pb2.SchemaSubject(subject=self.subject, mode=self.mode, versions=self.versions)


def _version_key(subject: str, version: int) -> str:
    return f"s.{subject}.{version}"


def _without_set(version: schema_pb2.SchemaVersion) -> schema_pb2.SchemaVersion:
    copy = schema_pb2.SchemaVersion()
    copy.CopyFrom(version)
    copy.ClearField("descriptor_set")
    return copy


class SchemaRegistry:
    """Register, check and read schema versions; `resolve` is the cached read path of submit and consume."""

    def __init__(self, js: JetStreamContext, kv: KeyValue | None, replicas: int = 1, create: bool = True) -> None:
        self._js = js
        self._kv = kv
        self._replicas = replicas
        self._create = create
        # (subject, version) → the immutable version and its message class.
        self._resolved: dict[tuple[str, int], tuple[schema_pb2.SchemaVersion, type[Message]]] = {}

    @classmethod
    async def open(cls, js: JetStreamContext, replicas: int = 1, create: bool = True) -> SchemaRegistry:
        """The registry on ``tm_schemas``: `create` declares the bucket (the gateway); readers
        (`create=False`) bind to it when it exists and again on each miss until it does."""
        registry = cls(js, None, replicas, create)
        await registry._bucket(required=False)
        return registry

    # --- the bucket --------------------------------------------------------------------------

    async def _bucket(self, required: bool = True) -> KeyValue | None:
        if self._kv is not None:
            return self._kv
        try:
            self._kv = await self._js.key_value(SCHEMAS_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            if self._create:
                try:
                    self._kv = await self._js.create_key_value(
                        nats.js.api.KeyValueConfig(bucket=SCHEMAS_BUCKET, history=1, replicas=self._replicas)
                    )
                except nats.js.errors.BadRequestError:  # another gateway created it a moment ago
                    self._kv = await self._js.key_value(SCHEMAS_BUCKET)
        except _UNAVAILABLE as exc:
            raise Unavailable(f"schema registry: NATS did not answer ({type(exc).__name__})") from exc
        if self._kv is None and required:
            raise NotFound("no schema is registered yet (the bucket tm_schemas does not exist)")
        return self._kv

    async def _read(self, key: str) -> tuple[bytes, int] | None:
        kv = await self._bucket()
        assert kv is not None
        try:
            entry = await kv.get(key)
        except nats.js.errors.NotFoundError:  # no such key, or a deleted one
            return None
        except _UNAVAILABLE as exc:
            raise Unavailable(f"schema registry: reading {key} timed out ({type(exc).__name__})") from exc
        return entry.value or b"", entry.revision or 0

    # --- reads -------------------------------------------------------------------------------

    async def _latest_number(self, subject: str) -> int:
        """The highest version of `subject` (0: none): the hint, then one past it while that exists."""
        hint = await self._read(f"latest.{subject}")
        latest = int(hint[0]) if hint and hint[0].isdigit() else 0
        while await self._read(_version_key(subject, latest + 1)) is not None:
            latest += 1  # a registration that stopped between its version and the hint
        return latest

    async def _version(self, subject: str, version: int) -> schema_pb2.SchemaVersion | None:
        found = await self._read(_version_key(subject, version))
        if found is None:
            return None
        return schema_pb2.SchemaVersion.FromString(found[0])

    async def mode(self, subject: str) -> Mode:
        """The subject's mode; BACKWARD for a subject that has none yet."""
        found = await self._read(f"mode.{check_subject(subject)}")
        if found is None:
            return schema_pb2.COMPATIBILITY_MODE_BACKWARD
        try:
            return cast(Mode, schema_pb2.CompatibilityMode.Value(found[0].decode()))
        except ValueError:  # not a mode this build knows: the default, rather than no registrations at all
            log.warning("schema registry: unknown mode %r for %s; using BACKWARD", found[0][:40], subject)
            return schema_pb2.COMPATIBILITY_MODE_BACKWARD

    async def get(self, subject: str, version: int = 0) -> schema_pb2.SchemaVersion:
        """One version (0: the latest), with its descriptor set; NotFound naming the subject and version."""
        check_subject(subject)
        number = version or await self._latest_number(subject)
        found = await self._version(subject, number) if number else None
        if found is None:
            what = f"version {version} of subject {subject!r}" if version else f"subject {subject!r}"
            raise NotFound(f"{what} is not registered")
        return found

    async def versions(self, subject: str) -> list[schema_pb2.SchemaVersion]:
        """Every version of `subject`, oldest first, with descriptor sets ([] for an unknown subject)."""
        check_subject(subject)
        latest = await self._latest_number(subject)
        found = await asyncio.gather(*(self._version(subject, n) for n in range(1, latest + 1)))
        return [version for version in found if version is not None]

    async def subjects(self) -> list[Subject]:
        """Every subject with its mode and versions (without descriptor sets), by name."""
        kv = await self._bucket(required=False)
        if kv is None:
            return []
        names: list[str] = []
        try:
            watcher = await kv.watch("latest.>", meta_only=True, ignore_deletes=True)
            try:
                async for entry in watcher:
                    if entry is None:  # the end of what is stored
                        break
                    names.append(entry.key.removeprefix("latest."))
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]
        except _UNAVAILABLE as exc:
            raise Unavailable(f"schema registry: listing subjects timed out ({type(exc).__name__})") from exc
        out = []
        for name in sorted(set(names)):
            versions, mode = await asyncio.gather(self.versions(name), self.mode(name))
            out.append(Subject(name, mode, [_without_set(v) for v in versions]))
        return out

    async def resolve(self, subject: str, version: int = 0) -> tuple[schema_pb2.SchemaVersion, type[Message]]:
        """A version and its message class, for decoding payloads. A version never changes, so each is
        read from KV once; version 0 (the latest) reads the subject's hint on each call (one KV get) so
        a version registered on another gateway a moment ago is used at once."""
        check_subject(subject)
        number = version or await self._latest_number(subject)
        cached = self._resolved.get((subject, number))
        if cached is not None:
            return cached
        found = await self.get(subject, number) if number else await self.get(subject)
        resolved = (found, message_class(found.descriptor_set, subject))
        self._resolved[(subject, number)] = resolved
        return resolved

    # --- writes ------------------------------------------------------------------------------

    async def check(
        self, subject: str, descriptor_set: bytes, mode: Mode = schema_pb2.COMPATIBILITY_MODE_UNSPECIFIED
    ) -> tuple[list[Violation], Mode]:
        """(every violation of the candidate, the mode checked in) without registering anything."""
        candidate = load_descriptor_set(descriptor_set, subject)
        chosen = mode or await self.mode(subject)
        existing = await self.versions(subject)
        return self._violations(existing, candidate, subject, chosen), chosen

    @staticmethod
    def _violations(
        existing: list[schema_pb2.SchemaVersion], candidate: FileDescriptorSet, subject: str, mode: Mode
    ) -> list[Violation]:
        previous = [(v.version, FileDescriptorSet.FromString(v.descriptor_set)) for v in existing]
        return check(previous, candidate, subject, mode)

    async def register(
        self, subject: str, descriptor_set: bytes, mode: Mode = schema_pb2.COMPATIBILITY_MODE_UNSPECIFIED
    ) -> tuple[schema_pb2.SchemaVersion, bool]:
        """(the version, whether it was created now). The latest version's own schema again is that
        version; an incompatible one raises IncompatibleSchema listing every violation. A `mode`
        given becomes the subject's mode (once the candidate passes it)."""
        candidate = load_descriptor_set(descriptor_set, subject)
        digest = fingerprint(candidate)
        stored = candidate.SerializeToString(deterministic=True)
        for _ in range(_ATTEMPTS):
            chosen = mode or await self.mode(subject)
            existing = await self.versions(subject)
            if existing and existing[-1].fingerprint == digest:
                await self._set_mode(subject, mode)
                return existing[-1], False
            violations = self._violations(existing, candidate, subject, chosen)
            if violations:
                raise IncompatibleSchema(subject, chosen, violations)
            number = existing[-1].version + 1 if existing else 1
            version = schema_pb2.SchemaVersion(
                subject=subject,
                version=number,
                id=await self._next_id(),
                fingerprint=digest,
                descriptor_set=stored,
                mode=chosen,
            )
            version.registered.FromNanoseconds(time.time_ns())
            if not await self._create_key(_version_key(subject, number), version.SerializeToString()):
                continue  # another registration took this number: compare with it, then try the next
            await self._set_mode(subject, mode)
            await self._raise_hint(subject, number)
            log.info("schema registered", extra={"subject": subject, "version": number, "id": version.id})
            return version, True
        raise Unavailable(f"{subject}: {_ATTEMPTS} registrations raced this one; try again")

    async def _create_key(self, key: str, value: bytes) -> bool:
        """Create `key`; False if it exists already."""
        kv = await self._bucket()
        assert kv is not None
        try:
            await kv.create(key, value)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except _UNAVAILABLE as exc:
            raise Unavailable(f"schema registry: writing {key} timed out ({type(exc).__name__})") from exc
        return True

    async def _swap(self, key: str, value: bytes, revision: int) -> bool:
        """`value` at `key` if it is still at `revision` (0: absent); False if another writer moved it."""
        kv = await self._bucket()
        assert kv is not None
        if revision == 0:
            return await self._create_key(key, value)
        try:
            await kv.update(key, value, last=revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except _UNAVAILABLE as exc:
            raise Unavailable(f"schema registry: writing {key} timed out ({type(exc).__name__})") from exc
        return True

    async def _next_id(self) -> int:
        while True:
            current = await self._read("ids")
            last = int(current[0]) if current and current[0].isdigit() else 0
            if await self._swap("ids", str(last + 1).encode(), current[1] if current else 0):
                return last + 1

    async def _raise_hint(self, subject: str, number: int) -> None:
        """Move ``latest.<subject>`` up to `number` (never down: a later version may have won already)."""
        key = f"latest.{subject}"
        while True:
            current = await self._read(key)
            if current is not None and current[0].isdigit() and int(current[0]) >= number:
                return
            if await self._swap(key, str(number).encode(), current[1] if current else 0):
                return

    async def _set_mode(self, subject: str, mode: Mode) -> None:
        if mode == schema_pb2.COMPATIBILITY_MODE_UNSPECIFIED:
            return
        kv = await self._bucket()
        assert kv is not None
        try:
            await kv.put(f"mode.{subject}", schema_pb2.CompatibilityMode.Name(mode).encode())
        except _UNAVAILABLE as exc:
            raise Unavailable(f"schema registry: writing the mode of {subject} timed out") from exc
