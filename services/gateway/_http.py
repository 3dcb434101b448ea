"""The gateway's HTTP side (behind Envoy on the same public port): REST, SSE and a WebSocket.

POST /v1/tasks                  submit (JSON: kind, tenant, payload, priority, idempotency_key)
GET  /v1/tasks?tenant=&limit=&page_token=   a tenant's tasks, newest first; filters: kind=, state= (repeated),
                                created_after=, created_before= (RFC 3339)
GET  /v1/tasks/{id}             the task's current state
GET  /v1/tasks/{id}/events      Server-Sent Events; resume with Last-Event-ID (= sequence number)
POST /v1/tasks/{id}/cancel      cancel (JSON, optional: reason)
POST /v1/streams/{id}/refresh   swap the credential of an open SSE stream (its first event names the id)
GET  /v1/openapi.json           the OpenAPI document of the above

With auth on, every /v1 route needs a credential (see `_auth`); health stays open.

GET  /v1/ws                     the bidirectional WebSocket protocol (see `_websocket`)
GET  /console/…                 the web console's built page and assets (see `_console`)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from mesh.errors import InvalidArgument, MeshError, NotFound, OutOfRange, ResourceExhausted, StepUpRequired
from mesh.fabric import EventLog
from mesh.priority import CLASS_BY_NAME
from mesh.tasks import check_task_id, payload_from_json, qos_tier
from mesh.telemetry import get_logger
from mesh.v1 import task_pb2
from services.gateway._auth import Principal
from services.gateway._console import add_console
from services.gateway._guard import Guard, no_such_task
from services.gateway._hub import EventHub
from services.gateway._json import MAX_DOCUMENT_BYTES, parse_object, reject_unknown
from services.gateway._leases import StreamLease, guarded
from services.gateway._listing import TaskFilter, filter_of_query
from services.gateway._openapi import openapi_document
from services.gateway._userjson import JsonCodec
from services.gateway._websocket import BoundedWebSocket, WebSocketSession

log = get_logger(__name__)

SSE_PING_S = 15.0


def http_app(
    events: EventLog,
    hub: EventHub,
    admit: Callable[[task_pb2.TaskSpec, Principal | None], Awaitable[Any]] | None = None,
    cancel: Callable[[str, str, Principal | None], Awaitable[int]] | None = None,
    *,
    guard: Guard,  # required: auth off is `Guard.disabled(events)`, never a forgotten argument
    listing: Callable[[str, int, str, Principal | None, TaskFilter], Awaitable[tuple[list[task_pb2.TaskInfo], str]]]
    | None = None,
    getter: Callable[[str, Principal | None], Awaitable[task_pb2.TaskInfo]] | None = None,
    codec: JsonCodec | None = None,
) -> web.Application:
    codec = codec or JsonCodec()

    async def spec_from_json(body: dict[str, Any]) -> task_pb2.TaskSpec:
        return _spec_from_json(body, await codec.user_payload(body.get("kind"), body))

    @web.middleware
    async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/v1/") and request.path not in _PUBLIC:
            try:
                request["principal"] = await guard.from_http(request)
            except MeshError as exc:
                return _error(exc)
        return await handler(request)

    async def submit_task(request: web.Request) -> web.Response:
        try:
            if admit is None:
                raise NotFound("this gateway does not accept submissions over HTTP")
            spec = await spec_from_json(parse_object(await request.read(), "body"))
            admitted = await admit(spec, request["principal"])
        except MeshError as exc:
            return _error(exc)
        return web.json_response(
            {"task_id": admitted.task_id, "deduplicated": admitted.deduplicated, "sequence": admitted.sequence},
            status=200 if admitted.deduplicated else 201,
        )

    async def list_tasks(request: web.Request) -> web.Response:
        try:
            if listing is None:
                raise NotFound("this gateway does not list tasks")
            query = request.query
            for name in query:
                if name not in _LIST_PARAMETERS:  # a misspelt filter must not list every task
                    shown = name if len(name) <= 32 else f"{name[:32]}…"
                    raise InvalidArgument(shown, f"no such parameter (known: {', '.join(_LIST_PARAMETERS)})")
            page_size = _whole_number(query.get("limit", "0"), "limit")
            if query.get("tenant") == "":
                raise InvalidArgument("tenant", _EMPTY_TENANT)
            wanted = filter_of_query(query, query.getall("state", []))
            tasks, token = await listing(
                query.get("tenant", ""), page_size, query.get("page_token", ""), request["principal"], wanted
            )
        except MeshError as exc:
            return _error(exc)
        return web.json_response({"tasks": [await codec.to_dict(task) for task in tasks], "next_page_token": token})

    async def task_events(request: web.Request) -> web.StreamResponse:
        """SSE: one `task` event per task event, `id:` = its sequence number, pings while quiet."""
        task_id = request.match_info["task_id"]
        field = "Last-Event-ID" if "Last-Event-ID" in request.headers else "after"
        resume = request.headers.get("Last-Event-ID", request.query.get("after", "0"))
        try:
            check_task_id(task_id)
            after = _whole_number(resume, field, "a sequence number")
            mesh_id = await guard.resolve_task(request["principal"], "task.read", task_id)  # action, then owner
            last = await events.last(mesh_id)
            if last is None:
                raise no_such_task(task_id)
            if after > last.event.sequence:  # a 400 before the stream starts; the hub checks again
                raise OutOfRange(field, f"{resume} is past the task's last event ({last.event.sequence})")
        except MeshError as exc:
            return _error(exc)

        def client_gone() -> bool:
            return request.transport is None or request.transport.is_closing()

        with guard.lease(request["principal"]) as lease:
            stream = hub.watch(mesh_id, after, field, client_gone, protocol="sse")
            return await _sse(request, stream, lease, codec)

    async def refresh_stream(request: web.Request) -> web.Response:
        try:
            lease = guard.refresh(request.match_info["stream_id"], request["principal"])
        except MeshError as exc:
            return _error(exc)
        return web.json_response({"stream_id": lease.stream_id, "expires_at": lease.principal.expires_at})

    async def get_task(request: web.Request) -> web.Response:
        try:
            if getter is None:
                raise NotFound("this gateway does not read tasks over HTTP")
            task = await getter(request.match_info["task_id"], request["principal"])
        except MeshError as exc:
            return _error(exc)
        return web.json_response(await codec.to_dict(task))

    async def cancel_task(request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        try:
            if cancel is None:
                raise NotFound("this gateway does not cancel over HTTP")
            check_task_id(task_id)
            raw = await request.read()
            body = parse_object(raw, "body") if raw.strip() else {}
            reject_unknown(body, _CANCEL_FIELDS)
            reason = body.get("reason", "")
            if not isinstance(reason, str):
                raise InvalidArgument("reason", "must be a string")
            state = await cancel(task_id, reason, request["principal"])
        except MeshError as exc:
            return _error(exc)
        return web.json_response({"task_id": task_id, "state": task_pb2.TaskState.Name(state)})

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = BoundedWebSocket(heartbeat=SSE_PING_S)
        request[_STREAMING] = True
        await ws.prepare(request)
        session = WebSocketSession(
            ws, hub, admit, cancel, spec_from_json, codec, _error_body, guard, request["principal"]
        )
        await session.run()
        return ws

    document = openapi_document()
    app = web.Application(middlewares=[_json_errors, authenticate], client_max_size=MAX_DOCUMENT_BYTES)
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_post("/v1/tasks", submit_task)
    app.router.add_get("/v1/tasks", list_tasks)
    app.router.add_post("/v1/tasks/{task_id}/cancel", cancel_task)
    app.router.add_post("/v1/streams/{stream_id}/refresh", refresh_stream)
    app.router.add_get("/v1/tasks/{task_id}/events", task_events)
    app.router.add_get("/v1/tasks/{task_id}", get_task)
    app.router.add_get("/v1/ws", websocket)
    add_console(app)
    return app


# Set on a request once its handler starts a streamed answer (SSE, WebSocket).
_STREAMING = "tidemesh.streaming"


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """aiohttp's own answers (no route, a method the route lacks, a body over client_max_size) in
    the one JSON error shape, so a client reads every error the same way."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body: dict[str, Any] = {"type": "error", "error_class": "invalid_input", "message": exc.reason}
        if exc.status == 404:
            body.update(error_class="not_found", message=f"no route {request.method} {request.path}")
        elif exc.status == 405:
            allowed = exc.headers.get("Allow", "")
            body.update(field="method", message=f"{request.method} is not allowed here (allowed: {allowed})")
        elif exc.status == 413:
            body.update(field="body", message=f"over the {MAX_DOCUMENT_BYTES}-byte limit")
        elif exc.status >= 500:
            body.update(error_class="internal")
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return web.json_response(body, status=exc.status, headers=headers)
    except Exception as exc:
        if request.get(_STREAMING):
            raise  # its response has started: a second one cannot follow
        if isinstance(exc, MeshError):  # a failure the handler did not answer itself (a broker fault, say)
            return _error(exc)
        # A bug: the client gets the one error shape without internals; the trace goes to the log.
        log.exception("unexpected error answering %s %s", request.method, request.path)
        body = {"type": "error", "error_class": "internal", "message": "internal error; it has been logged"}
        return web.json_response(body, status=500)


_PUBLIC: frozenset[str] = frozenset()  # every /v1 route needs a credential when auth is on


async def _sse(
    request: web.Request, stream: AsyncIterator[task_pb2.TaskEvent], lease: StreamLease | None, codec: JsonCodec
) -> web.StreamResponse:
    """One `task` event per task event (`id:` = its sequence number), pings while quiet; with auth
    on, a first `stream` event names the stream for refreshes, and a lapsed credential ends the
    stream with an `error` event."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    request[_STREAMING] = True
    await response.prepare(request)
    if lease is not None:
        await response.write(f"event: stream\ndata: {json.dumps({'stream_id': lease.stream_id})}\n\n".encode())
    pending: asyncio.Queue[task_pb2.TaskEvent | MeshError | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in guarded(stream, lease):
                pending.put_nowait(event)
        except MeshError as exc:
            pending.put_nowait(exc)
        finally:
            pending.put_nowait(None)

    pumping = asyncio.create_task(pump())
    try:
        while True:
            try:
                async with asyncio.timeout(SSE_PING_S):
                    event = await pending.get()
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            if event is None:
                break
            if isinstance(event, MeshError):
                data = json.dumps(_error_body(event), separators=(",", ":"))
                await response.write(f"event: error\ndata: {data}\n\n".encode())
                break
            data = json.dumps(await codec.to_dict(event), separators=(",", ":"))
            # A best-effort partial has no id of its own: Last-Event-ID stays on the stored event.
            event_id = "" if event.live_index else f"id: {event.sequence}\n"
            await response.write(f"{event_id}event: task\ndata: {data}\n\n".encode())
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, MeshError):
            await pumping
        await stream.aclose()  # type: ignore[attr-defined]
    return response


_EMPTY_TENANT = "must not be empty: leave it out to act for the credential's own tenant"
_SUBMIT_FIELDS = frozenset(
    {"kind", "tenant", "priority", "payload", "qos", "idempotency_key", "ordering_key", "task_id", "schema_version"}
)
_CANCEL_FIELDS = frozenset({"reason"})
_LIST_PARAMETERS = ("tenant", "limit", "page_token", "kind", "state", "created_after", "created_before")


def _spec_from_json(body: dict[str, Any], user_payload: task_pb2.TaskPayload | None = None) -> task_pb2.TaskSpec:
    """A TaskSpec from the REST body; the payload's fields go under the kind's payload case (a
    user kind's payload comes mapped through its registered schema, `user_payload`).

    A field this surface does not know is an error, never dropped: a misspelt `priority` would
    otherwise run the task in another class without a word."""
    reject_unknown(body, _SUBMIT_FIELDS)
    kind = body.get("kind")
    if not isinstance(kind, str):
        raise InvalidArgument("kind", "must be a string naming a task kind")
    priority = body.get("priority", "standard")
    if not isinstance(priority, str) or priority not in CLASS_BY_NAME:
        raise InvalidArgument("priority", f"one of: {', '.join(CLASS_BY_NAME)}")
    spec = task_pb2.TaskSpec(
        kind=kind,
        priority_class=CLASS_BY_NAME[priority],
        payload=user_payload or payload_from_json(kind, body.get("payload", {})),
        qos=qos_tier(body.get("qos", "guaranteed")),
    )
    if user_payload is not None:
        spec.schema_version = body.get("schema_version", 0)  # checked when the payload was mapped
    elif "schema_version" in body:
        raise InvalidArgument("schema_version", "only a user kind's payload has a registered version")
    for field in ("tenant", "idempotency_key", "ordering_key", "task_id"):
        value = body.get(field, "")
        if not isinstance(value, str):
            raise InvalidArgument(field, "must be a string")
        setattr(spec, field, value)
    # Left out, these default (the credential's tenant, a new id); given empty, they are a mistake.
    if body.get("tenant") == "":
        raise InvalidArgument("tenant", _EMPTY_TENANT)
    if body.get("task_id") == "":
        raise InvalidArgument("task_id", "must not be empty: leave it out for a new id")
    return spec


# A uint64 has at most 20 digits; a longer string is refused before int() has to read it (Python
# refuses over 4 300 digits with a ValueError, which would surface as a 500).
_MAX_DIGITS = 20


def _whole_number(text: str, field: str, what: str = "a whole number") -> int:
    """A non-negative integer query or header value, or InvalidArgument naming `field`."""
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DIGITS:
        shown = text if len(text) <= 32 else f"{text[:32]}… ({len(text)} characters)"
        raise InvalidArgument(field, f"must be {what} of at most {_MAX_DIGITS} digits, got {shown!r}")
    return int(text)


def _error_body(exc: MeshError) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error_class": exc.error_class, "message": exc.message}
    if field := getattr(exc, "field", ""):  # InvalidArgument always; Conflict when it names one
        body["field"] = field
    return body


def _error(exc: MeshError) -> web.Response:
    # HTTP's Retry-After is whole seconds: round up so a client never comes back early.
    headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))} if isinstance(exc, ResourceExhausted) else None
    if isinstance(exc, StepUpRequired):  # RFC 9470: what the client must bring to be let through
        headers = {"WWW-Authenticate": exc.challenge}
    # The status is the error class's own (`mesh.errors`): a subclass gets its parent's.
    return web.json_response(_error_body(exc), status=exc.http_status, headers=headers)
