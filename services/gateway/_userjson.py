"""JSON ↔ protobuf on the gateway's JSON surfaces (REST, SSE, WebSocket) for every kind.

A built-in kind's payload is its own case of `TaskPayload`; a user kind's is plain JSON mapped
through the message type registered for the kind's input (the version the body names, else the
latest), so a REST client never builds an Any. Outputs and payloads of user kinds are written
back as proto3 JSON writes an Any: ``{"@type": URL, ...fields}``."""

from __future__ import annotations

import time
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.message import Message

from mesh.errors import InvalidArgument, MeshError, NotFound
from mesh.fabric import KindStore
from mesh.schemas import SchemaRegistry, from_json, to_dict, type_urls
from mesh.tasks import TYPE_URL_PREFIX
from mesh.telemetry import get_logger
from mesh.v1 import task_pb2

log = get_logger(__name__)

_CLASS_TTL_S = 5.0  # how long a type URL's latest class is reused before the registry is asked again


class JsonCodec:
    def __init__(self, kinds: KindStore | None = None, schemas: SchemaRegistry | None = None) -> None:
        self._kinds = kinds
        self._schemas = schemas
        self._classes: dict[str, tuple[type[Message] | None, float]] = {}

    async def user_payload(self, kind_name: object, body: dict[str, Any]) -> task_pb2.TaskPayload | None:
        """The payload of a user kind's submit body (None for a built-in or unknown kind)."""
        if self._kinds is None or self._schemas is None or not isinstance(kind_name, str) or not kind_name:
            return None
        kind = await self._kinds.ensure(kind_name)
        if kind is None or kind.builtin:
            return None
        version = body.get("schema_version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise InvalidArgument("schema_version", "must be a whole number (0: the latest)")
        try:
            _, message_class = await self._schemas.resolve(kind.input_type, version)
        except NotFound as exc:
            raise InvalidArgument("schema_version", f"{kind.input_type} has no version {version or '(any)'}") from exc
        fields = body.get("payload", {})
        if not isinstance(fields, dict):
            raise InvalidArgument("payload", "must be a JSON object")
        message = from_json(message_class, fields, "payload")
        return task_pb2.TaskPayload(custom=any_pb2.Any(type_url=kind.input_type_url, value=message.SerializeToString()))

    async def to_dict(self, message: Message) -> dict[str, Any]:
        """`message` as JSON, user messages inside it through their registered types."""
        urls = type_urls(message)
        classes = {url: found for url in urls if (found := await self._class_of(url)) is not None}
        return to_dict(message, classes)

    async def _class_of(self, url: str) -> type[Message] | None:
        cached = self._classes.get(url)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        found: type[Message] | None = None
        if self._schemas is not None and url.startswith(TYPE_URL_PREFIX):
            try:
                _, found = await self._schemas.resolve(url.removeprefix(TYPE_URL_PREFIX))
            except MeshError as exc:  # unregistered, or the registry did not answer: base64 it is
                log.debug("no schema for a type URL", extra={"type_url": url[:200], "error": str(exc)})
        self._classes[url] = (found, now + _CLASS_TTL_S)
        return found
