"""Admission of user kinds: the kind read through from the store, the payload decoded strictly
against the registered schema version it names (0: the latest, which is then written into the
spec), so what a worker receives is always a payload its declared version reads."""

from __future__ import annotations

from google.protobuf.message import Message

from mesh.errors import InvalidArgument, NotFound
from mesh.fabric import KindStore
from mesh.schemas import SchemaRegistry, decode_strict
from mesh.v1 import schema_pb2, task_pb2

# (subject, requested version) → (the version, its message class), for one batch of specs.
Resolved = dict[tuple[str, int], tuple[schema_pb2.SchemaVersion, type[Message]]]


class UserPayloads:
    def __init__(self, kinds: KindStore, schemas: SchemaRegistry) -> None:
        self._kinds = kinds
        self._schemas = schemas

    async def know(self, spec: task_pb2.TaskSpec) -> None:
        """Make a user kind registered elsewhere a moment ago known here (validation reads the registry)."""
        if spec.kind:
            await self._kinds.ensure(spec.kind)

    async def check(self, spec: task_pb2.TaskSpec, where: str = "spec", memo: Resolved | None = None) -> int:
        """The schema version of a valid spec's payload (its own for a built-in kind); bad bytes name the field.

        `memo` carries resolutions across the specs of one batch: "the latest" is read once per batch."""
        kind = await self._kinds.ensure(spec.kind)
        if kind is None or kind.builtin:
            return spec.schema_version
        try:
            key = (kind.input_type, spec.schema_version)
            resolved = memo.get(key) if memo is not None else None
            if resolved is None:
                resolved = await self._schemas.resolve(kind.input_type, spec.schema_version)
                if memo is not None:
                    memo[key] = resolved
            version, message_class = resolved
        except NotFound as exc:
            raise InvalidArgument(
                f"{where}.schema_version", f"{kind.input_type} has no version {spec.schema_version or '(any)'}"
            ) from exc
        decode_strict(message_class, spec.payload.custom.value, f"{where}.payload.custom")
        return version.version
