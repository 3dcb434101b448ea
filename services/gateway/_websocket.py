"""The bidirectional WebSocket protocol (the browser's uplink, since gRPC-Web cannot stream up).

Client → server frames (JSON objects; `id` is echoed in the reply):

    {"op": "submit", "id": "c1", "task": {<same body as POST /v1/tasks>}}
    {"op": "subscribe", "task_id": "...", "after_sequence": 0}      ("watch" is an alias)
    {"op": "unsubscribe", "task_id": "..."}
    {"op": "cancel", "id": "c2", "task_id": "..."}
    {"op": "ping", "id": "c3"}
    {"op": "refresh", "id": "c4", "token": "<JWT>"}  (or "api_key": "tmk_..."): swap the
                                                     connection's credential in-band

Server → client frames:

    {"type": "submitted", "id": "c1", "task_id": "...", "deduplicated": false}
    {"type": "event", "event": {<TaskEvent JSON, same sequence numbers as gRPC and SSE>}}
    {"type": "cancelled", "id": "c2", "task_id": "...", "state": "TASK_STATE_CANCELLED"}
    {"type": "pong", "id": "c3"}
    {"type": "refreshed", "id": "c4", "expires_at": 1790000000.0}
    {"type": "error", "id": ..., "error_class": "...", "field": "...", "message": "..."}

Subscriptions run concurrently; one writer task sends every frame, so frames never interleave.
A malformed frame gets an error frame and the connection stays open. The server pings every
15 s (WebSocket ping frames). With auth on, the connection runs under the credential it opened
with: when that expires unrefreshed or is revoked, an `unauthenticated` error frame says why and
the server closes the connection (code 4401).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from mesh.errors import InvalidArgument, MeshError, Unauthenticated
from mesh.tasks import check_task_id
from mesh.v1 import task_pb2
from services.gateway._auth import Principal
from services.gateway._guard import Guard
from services.gateway._hub import EventHub
from services.gateway._json import MAX_DOCUMENT_BYTES, parse_object, reject_unknown
from services.gateway._leases import StreamLease, guarded
from services.gateway._userjson import JsonCodec

Admit = Callable[[task_pb2.TaskSpec, Principal | None], Awaitable[Any]]
Cancel = Callable[[str, str, Principal | None], Awaitable[int]]
CLOSE_UNAUTHENTICATED = 4401


# Frames up to this size are read whole, so that refusing one leaves no unread bytes behind: the
# close frame then reaches the client through Envoy (closing with a frame half-read resets the
# connection, and Envoy's client sees 1006 with no reason). Longer frames are cut off from their
# header. Bounded so that a hostile client cannot make the gateway buffer much per connection.
READ_CAP_BYTES = 8 << 20


class BoundedWebSocket(web.WebSocketResponse):
    """A WebSocket that takes frames of up to MAX_DOCUMENT_BYTES. A longer one closes the connection
    with 1009 (message too big) and a reason naming the limit (aiohttp sends 1009 with none)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_msg_size=READ_CAP_BYTES, **kwargs)

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not message:
            message = too_big_reason()
        return await super().close(code=code, message=message, drain=drain)


def too_big_reason() -> bytes:
    return f"frame over the {MAX_DOCUMENT_BYTES}-byte limit".encode()


class WebSocketSession:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        hub: EventHub,
        admit: Admit | None,
        cancel: Cancel | None,
        spec_from_json: Callable[[dict[str, Any]], Awaitable[task_pb2.TaskSpec]],
        codec: JsonCodec,
        error_body: Callable[[MeshError], dict[str, Any]],
        guard: Guard,
        principal: Principal | None,
    ) -> None:
        self._guard = guard
        self._principal = principal
        self._lease: StreamLease | None = None
        self._ws = ws
        self._hub = hub
        self._admit = admit
        self._cancel = cancel
        self._spec_from_json = spec_from_json
        self._codec = codec
        self._error_body = error_body
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscriptions: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        with self._guard.lease(self._principal) as lease:
            self._lease = lease
            await self._serve()

    async def _serve(self) -> None:
        writer = asyncio.create_task(self._write())
        expiry = asyncio.create_task(self._close_when_lease_ends())
        try:
            async for frame in self._ws:
                if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY) and len(frame.data) > MAX_DOCUMENT_BYTES:
                    await self._ws.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=too_big_reason())
                    break
                if frame.type == WSMsgType.TEXT:
                    await self._handle(frame.data)
                elif frame.type == WSMsgType.BINARY:
                    self._send(
                        {
                            "type": "error",
                            "error_class": "invalid_input",
                            "field": "frame",
                            "message": "frames are JSON text",
                        }
                    )
        finally:
            for task in self._subscriptions.values():
                task.cancel()
            await asyncio.gather(*self._subscriptions.values(), return_exceptions=True)
            expiry.cancel()
            writer.cancel()
            await asyncio.gather(expiry, writer, return_exceptions=True)

    async def _close_when_lease_ends(self) -> None:
        if self._lease is None:
            return
        reason = await self._lease.ended()
        self._send({**self._error_body(Unauthenticated(reason)), "id": None})
        await self._outbox.join()  # the reason goes out before the close
        await self._ws.close(code=CLOSE_UNAUTHENTICATED, message=b"unauthenticated")

    def _send(self, frame: dict[str, Any]) -> None:
        self._outbox.put_nowait(frame)

    async def _write(self) -> None:
        while True:
            frame = await self._outbox.get()
            try:
                if not self._ws.closed:
                    await self._ws.send_str(json.dumps(frame, separators=(",", ":")))
            finally:
                self._outbox.task_done()

    async def _handle(self, data: str) -> None:
        command: dict[str, Any] = {}
        try:
            command = parse_object(data, "frame")
            op = command.get("op")
            if isinstance(op, str) and op in _OP_FIELDS:
                reject_unknown(command, _OP_FIELDS[op])
            if op == "ping":
                self._send({"type": "pong", "id": command.get("id")})
            elif op in ("subscribe", "watch"):
                task_id = _task_id(command)
                mesh_id = await self._guard.resolve_task(self._principal, "task.read", task_id)
                self._subscribe(task_id, mesh_id, _after(command))
            elif op == "unsubscribe":
                task = self._subscriptions.pop(_task_id(command), None)
                if task is not None:
                    task.cancel()
            elif op == "submit":
                await self._submit(command)
            elif op == "cancel":
                await self._cancel_task(command)
            elif op == "refresh":
                await self._refresh(command)
            else:
                raise InvalidArgument(
                    "op", f"unknown op {op!r} (one of: submit, subscribe, unsubscribe, cancel, ping, refresh)"
                )
        except MeshError as exc:
            self._send({**self._error_body(exc), "id": command.get("id")})

    def _subscribe(self, task_id: str, mesh_id: str, after: int) -> None:
        """Follow the task `task_id` names (`mesh_id`), under the id the client gave, which is
        the one it unsubscribes with."""
        previous = self._subscriptions.pop(task_id, None)
        if previous is not None:
            previous.cancel()

        async def follow() -> None:
            # Cancelled on unsubscribe, a new subscribe of the task, or the connection's end.
            stream = self._hub.watch(mesh_id, after, protocol="websocket")
            try:
                async for event in guarded(stream, self._lease):
                    self._send({"type": "event", "event": await self._codec.to_dict(event)})
            except MeshError as exc:  # e.g. after_sequence past the task's last event: OutOfRange
                self._send({**self._error_body(exc), "task_id": task_id})
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
                if self._subscriptions.get(task_id) is asyncio.current_task():
                    del self._subscriptions[task_id]

        self._subscriptions[task_id] = asyncio.create_task(follow())

    async def _submit(self, command: dict[str, Any]) -> None:
        if self._admit is None:
            raise InvalidArgument("op", "this gateway does not accept submissions")
        task = command.get("task")
        if not isinstance(task, dict):
            raise InvalidArgument("task", "must be a JSON object (the POST /v1/tasks body)")
        admitted = await self._admit(await self._spec_from_json(task), self._principal)
        self._send(
            {
                "type": "submitted",
                "id": command.get("id"),
                "task_id": admitted.task_id,
                "deduplicated": admitted.deduplicated,
            }
        )

    async def _cancel_task(self, command: dict[str, Any]) -> None:
        if self._cancel is None:
            raise InvalidArgument("op", "this gateway does not cancel tasks")
        task_id = _task_id(command)
        state = await self._cancel(task_id, "cancelled over WebSocket", self._principal)
        self._send(
            {"type": "cancelled", "id": command.get("id"), "task_id": task_id, "state": task_pb2.TaskState.Name(state)}
        )

    async def _refresh(self, command: dict[str, Any]) -> None:
        token, api_key = command.get("token", ""), command.get("api_key", "")
        if not isinstance(token, str) or not isinstance(api_key, str) or not (token or api_key):
            raise InvalidArgument("token", "a refresh needs a token (JWT) or an api_key")
        principal = await self._guard.authenticate(f"Bearer {token}" if token else "", api_key)
        if self._lease is not None and principal is not None:
            self._lease.refresh(principal)
            self._principal = principal
        expires_at = principal.expires_at if principal else None
        self._send({"type": "refreshed", "id": command.get("id"), "expires_at": expires_at})


# The keys each op takes: an unknown one is an error frame, never silently dropped.
_OP_FIELDS: dict[str, frozenset[str]] = {
    "ping": frozenset({"op", "id"}),
    "subscribe": frozenset({"op", "id", "task_id", "after_sequence"}),
    "watch": frozenset({"op", "id", "task_id", "after_sequence"}),
    "unsubscribe": frozenset({"op", "id", "task_id"}),
    "submit": frozenset({"op", "id", "task"}),
    "cancel": frozenset({"op", "id", "task_id"}),
    "refresh": frozenset({"op", "id", "token", "api_key"}),
}


def _task_id(command: dict[str, Any]) -> str:
    task_id = command.get("task_id")
    if not isinstance(task_id, str):
        raise InvalidArgument("task_id", "is required")
    return check_task_id(task_id)


def _after(command: dict[str, Any]) -> int:
    after = command.get("after_sequence", 0)
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise InvalidArgument("after_sequence", "must be a non-negative integer")
    return after
