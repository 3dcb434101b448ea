"""The gateway's HTTP side (behind Envoy on the same public port): REST reads and a WebSocket.

The WebSocket speaks JSON frames; every event frame is the task event in
protobuf's canonical JSON, with the same sequence numbers as gRPC:

    → {"op": "watch", "task_id": "...", "after_sequence": 0}
    ← {"type": "event", "event": {...}}   … until the final event
    ← {"type": "error", "code": "INVALID_ARGUMENT", "field": "task_id", "message": "..."}
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import WSMsgType, web
from google.protobuf.json_format import MessageToDict

from mesh.errors import InvalidArgument, MeshError, NotFound
from mesh.fabric import EventLog, fold
from services.gateway._hub import EventHub

_HTTP_STATUS = {
    "invalid_input": 400,
    "not_found": 404,
    "conflict": 409,
    "resource_exhausted": 429,
    "dependency_down": 503,
    "timeout": 504,
}


def http_app(events: EventLog, hub: EventHub) -> web.Application:
    async def get_task(request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        stored = [s.event async for s in events.read(task_id)]
        if not stored:
            return _error(NotFound(f"task {task_id!r} does not exist"))
        return web.json_response(MessageToDict(fold(stored)))

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=15.0)
        await ws.prepare(request)
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            try:
                command = _parse(frame.data)
                if command.get("op") != "watch":
                    raise InvalidArgument("op", f"unknown op {command.get('op')!r} (supported: watch)")
                task_id = command.get("task_id")
                if not isinstance(task_id, str) or not task_id:
                    raise InvalidArgument("task_id", "is required")
                after = command.get("after_sequence", 0)
                if not isinstance(after, int) or after < 0:
                    raise InvalidArgument("after_sequence", "must be a non-negative integer")
                async for event in hub.watch(task_id, after):
                    await ws.send_json({"type": "event", "event": MessageToDict(event)})
            except MeshError as exc:
                await ws.send_json(_error_body(exc))
        return ws

    app = web.Application()
    app.router.add_get("/v1/tasks/{task_id}", get_task)
    app.router.add_get("/v1/ws", websocket)
    return app


def _parse(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidArgument("frame", f"not JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(value, dict):
        raise InvalidArgument("frame", "must be a JSON object")
    return value


def _error_body(exc: MeshError) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error_class": exc.error_class, "message": exc.message}
    if isinstance(exc, InvalidArgument):
        body["field"] = exc.field
    return body


def _error(exc: MeshError) -> web.Response:
    return web.json_response(_error_body(exc), status=_HTTP_STATUS.get(exc.error_class, 500))
