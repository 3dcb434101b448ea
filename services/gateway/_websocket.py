"""The bidirectional WebSocket protocol (the browser's uplink, since gRPC-Web cannot stream up).

Client → server frames (JSON objects; `id` is echoed in the reply):

    {"op": "submit", "id": "c1", "task": {<same body as POST /v1/tasks>}}
    {"op": "subscribe", "task_id": "...", "after_sequence": 0}      ("watch" is an alias)
    {"op": "unsubscribe", "task_id": "..."}
    {"op": "cancel", "id": "c2", "task_id": "..."}
    {"op": "ping", "id": "c3"}

Server → client frames:

    {"type": "submitted", "id": "c1", "task_id": "...", "deduplicated": false}
    {"type": "event", "event": {<TaskEvent JSON, same sequence numbers as gRPC and SSE>}}
    {"type": "cancelled", "id": "c2", "task_id": "...", "state": "TASK_STATE_CANCELLED"}
    {"type": "pong", "id": "c3"}
    {"type": "error", "id": ..., "error_class": "...", "field": "...", "message": "..."}

Subscriptions run concurrently; one writer task sends every frame, so frames never interleave.
A malformed frame gets an error frame and the connection stays open. The server pings every
15 s (WebSocket ping frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web
from google.protobuf.json_format import MessageToDict

from mesh.errors import InvalidArgument, MeshError
from mesh.tasks import check_task_id
from mesh.v1 import task_pb2
from services.gateway._hub import EventHub

Admit = Callable[[task_pb2.TaskSpec], Awaitable[Any]]
Cancel = Callable[[str, str], Awaitable[int]]


class WebSocketSession:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        hub: EventHub,
        admit: Admit | None,
        cancel: Cancel | None,
        spec_from_json: Callable[[dict[str, Any]], task_pb2.TaskSpec],
        error_body: Callable[[MeshError], dict[str, Any]],
    ) -> None:
        self._ws = ws
        self._hub = hub
        self._admit = admit
        self._cancel = cancel
        self._spec_from_json = spec_from_json
        self._error_body = error_body
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscriptions: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        try:
            async for frame in self._ws:
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
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def _send(self, frame: dict[str, Any]) -> None:
        self._outbox.put_nowait(frame)

    async def _write(self) -> None:
        while True:
            frame = await self._outbox.get()
            if self._ws.closed:
                return
            await self._ws.send_str(json.dumps(frame, separators=(",", ":")))

    async def _handle(self, data: str) -> None:
        command: dict[str, Any] = {}
        try:
            try:
                value = json.loads(data)
            except json.JSONDecodeError as exc:
                raise InvalidArgument("frame", f"not JSON: {exc.msg} at position {exc.pos}") from exc
            if not isinstance(value, dict):
                raise InvalidArgument("frame", "must be a JSON object")
            command = value
            op = command.get("op")
            if op == "ping":
                self._send({"type": "pong", "id": command.get("id")})
            elif op in ("subscribe", "watch"):
                self._subscribe(_task_id(command), _after(command))
            elif op == "unsubscribe":
                task = self._subscriptions.pop(_task_id(command), None)
                if task is not None:
                    task.cancel()
            elif op == "submit":
                await self._submit(command)
            elif op == "cancel":
                await self._cancel_task(command)
            else:
                raise InvalidArgument("op", f"unknown op {op!r} (one of: submit, subscribe, unsubscribe, cancel, ping)")
        except MeshError as exc:
            self._send({**self._error_body(exc), "id": command.get("id")})

    def _subscribe(self, task_id: str, after: int) -> None:
        previous = self._subscriptions.pop(task_id, None)
        if previous is not None:
            previous.cancel()

        async def follow() -> None:
            try:
                async for event in self._hub.watch(task_id, after):
                    self._send({"type": "event", "event": MessageToDict(event)})
            except MeshError as exc:
                self._send({**self._error_body(exc), "task_id": task_id})
            finally:
                if self._subscriptions.get(task_id) is asyncio.current_task():
                    del self._subscriptions[task_id]

        self._subscriptions[task_id] = asyncio.create_task(follow())

    async def _submit(self, command: dict[str, Any]) -> None:
        if self._admit is None:
            raise InvalidArgument("op", "this gateway does not accept submissions")
        task = command.get("task")
        if not isinstance(task, dict):
            raise InvalidArgument("task", "must be a JSON object (the POST /v1/tasks body)")
        admitted = await self._admit(self._spec_from_json(task))
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
        state = await self._cancel(task_id, "cancelled over WebSocket")
        self._send(
            {"type": "cancelled", "id": command.get("id"), "task_id": task_id, "state": task_pb2.TaskState.Name(state)}
        )


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
