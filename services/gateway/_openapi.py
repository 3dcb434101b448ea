"""The OpenAPI 3.1 document of the gateway's REST surface, served at GET /v1/openapi.json.

Written by hand next to the handlers in `_http` (the REST shapes are JSON views of
the protobuf contract, not generated from it); a test runs Schemathesis against it.
"""

from __future__ import annotations

from typing import Any

from mesh.oip import DATATYPES, MAX_INPUTS, MAX_RANK
from mesh.priority import CLASS_BY_NAME
from mesh.tasks import KINDS, QOS_TIERS, Limits
from mesh.tasks._validate import FAN_OUT_CHILD_KINDS
from services.gateway._listing import KIND_PATTERN, STATE_NAMES

_ERROR = {
    "type": "object",
    "required": ["type", "error_class", "message"],
    "properties": {
        "type": {"const": "error"},
        "error_class": {"type": "string", "examples": ["invalid_input", "not_found", "resource_exhausted"]},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "the offending field, for invalid_input"},
    },
}


def _error(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_TOKEN_PATTERN = "^[A-Za-z0-9_-]{1,64}$"  # TOKEN_RE in mesh.fabric: ids and tenants become subject tokens
_TOKEN = {"type": "string", "pattern": _TOKEN_PATTERN}
_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": _TOKEN}
_LIMITS = Limits()
_NOT_BLANK = {"type": "string", "pattern": "\\S", "description": "not empty, not only whitespace"}
_COUNT = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}

# Each kind's payload, as `mesh.tasks.payload_from_json` and `validate_spec` take it.
_PAYLOADS: dict[str, dict[str, Any]] = {
    "echo": {"properties": {"text": {"type": "string"}}},
    "embed": {"required": ["text"], "properties": {"text": _NOT_BLANK, "model": {"type": "string"}}},
    "stream": {
        "required": ["chunks"],
        "properties": {
            "text": {"type": "string"},
            "chunks": {"type": "integer", "minimum": 1, "maximum": _LIMITS.max_stream_chunks},
            "chunk_delay_ms": {"type": "integer", "minimum": 0, "maximum": _LIMITS.max_chunk_delay_ms},
        },
    },
    "fan_out": {
        "required": ["child_kind", "texts"],
        "properties": {
            "child_kind": {"type": "string", "enum": sorted(FAN_OUT_CHILD_KINDS)},
            "texts": {"type": "array", "minItems": 1, "maxItems": _LIMITS.max_fan_out, "items": _NOT_BLANK},
        },
    },
    "webhook": {
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
            "body": {"type": "string"},
        },
    },
    "doc_embed": {
        "required": ["text"],
        "properties": {
            "text": _NOT_BLANK,
            "model": {"type": "string"},
            "chunk_words": {"type": "integer", "minimum": 0, "maximum": _LIMITS.max_chunk_words},
        },
    },
}
_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_CONTENTS = {
    "bool_contents": {"type": "array", "items": {"type": "boolean"}},
    "int_contents": {"type": "array", "items": _INT32},
    "int64_contents": {"type": "array", "items": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}},
    "uint_contents": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}},
    "uint64_contents": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}},
    "fp32_contents": {"type": "array", "items": {"type": "number"}},
    "fp64_contents": {"type": "array", "items": {"type": "number"}},
    "bytes_contents": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}},
}
_PAYLOADS["infer"] = {
    "required": ["model", "inputs"],
    "description": "any model (`tidemesh model list`) on tensors in the Open Inference Protocol's JSON form; "
    "checked against the model's metadata at submit",
    "properties": {
        "model": {"type": "string", "minLength": 1, "maxLength": 128},
        "model_version": {"type": "string"},
        "inputs": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_INPUTS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "datatype", "shape"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "datatype": {"type": "string", "enum": list(DATATYPES)},
                    "shape": {
                        "type": "array",
                        "maxItems": MAX_RANK,
                        "items": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                    },
                    "contents": {
                        "type": "object",
                        "additionalProperties": False,
                        "description": "the values, row-major, in the datatype's one field; their count is the "
                        "shape's product (checked at submit, with the model's own tensors)",
                        "properties": _CONTENTS,
                    },
                },
            },
        },
        "outputs": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "raw_input_contents": {
            "type": "array",
            "description": "one per input instead of contents: little-endian values (FP16 travels only so)",
            "items": {"type": "string", "contentEncoding": "base64"},
        },
        "parameters": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "maxProperties": 1,
                "properties": {
                    "bool_param": {"type": "boolean"},
                    "int64_param": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
                    "string_param": {"type": "string"},
                    "double_param": {"type": "number"},
                    "uint64_param": {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
                },
            },
        },
    },
}
# The built-in kinds are documented here; a user kind's payload is its registered schema
# (`tidemesh schema show`), taken as plain JSON with an optional `schema_version`.
_BUILTIN = sorted(name for name, kind in KINDS.items() if kind.builtin)
assert set(_PAYLOADS) == set(_BUILTIN), "every built-in task kind needs its payload schema here"


def _submit_variant(kind: str) -> dict[str, Any]:
    """The POST /v1/tasks body for one kind."""
    payload = {"type": "object", "additionalProperties": False, **_PAYLOADS[kind]}
    return {
        "type": "object",
        "additionalProperties": False,
        # A credential bound to a tenant may leave `tenant` out (it acts for its own); one that
        # spans tenants (admin) or no credential (auth off) must name it.
        "required": ["kind", "tenant", *(["payload"] if "required" in payload else [])],
        "properties": {
            "kind": {"const": kind},
            "tenant": {**_TOKEN, "description": "defaults to the credential's own tenant; required otherwise"},
            "priority": {"type": "string", "enum": list(CLASS_BY_NAME), "default": "standard"},
            "qos": {"type": "string", "enum": list(QOS_TIERS), "default": "guaranteed"},
            "payload": payload,
            "idempotency_key": {"type": "string", "maxLength": _LIMITS.max_idempotency_key},
            "ordering_key": {"type": "string", "maxLength": _LIMITS.max_idempotency_key},
            "task_id": {
                **_TOKEN,
                "description": "optional client-chosen id, a name in the tenant's own namespace: the task's id "
                "(returned) is derived from it, and the tenant may address the task by either",
            },
        },
    }


_SUBMIT = {
    "description": "A task to run. Unknown fields are refused (400 naming the field); the encoded "
    f"payload is at most {_LIMITS.max_payload_bytes} bytes.",
    "oneOf": [_submit_variant(kind) for kind in _BUILTIN],
    "discriminator": {"propertyName": "kind"},
}


_SUBMITTED = {
    "type": "object",
    "required": ["task_id", "deduplicated", "sequence"],
    "properties": {"task_id": _TOKEN, "deduplicated": {"type": "boolean"}, "sequence": {"type": "integer"}},
}


_STATUSES = {
    "400": "malformed request; `field` names the culprit",
    "401": "no credential, or one that is malformed, expired or revoked",
    "403": "the credential may not take the action (named, with why): it lacks it, or is for another tenant",
    "404": "no such task (or route)",
    "405": "the path does not take this method (see Allow)",
    "409": "a conflict; the message says which",
    "413": "a body over 1 MiB",
    "429": "over a quota or rate limit; see Retry-After",
    "503": "a dependency is down; retry",
}


def _errors(*statuses: str, **descriptions: str) -> dict[str, Any]:
    """The error responses of an operation: those every /v1 route can give, and `statuses`."""
    codes = sorted({"400", "401", "403", "404", "405", "429", "503", *statuses, *descriptions})
    return {code: _error(descriptions.get(code) or _STATUSES[code]) for code in codes}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


# The task a submit returns, for the operations that take a task id (Schemathesis's stateful phase
# follows these). Events are reached through a cancel: a cancelled task's stream ends at once.
_TASK_ID_FROM_BODY = {"task_id": "$response.body#/task_id"}
_SUBMIT_LINKS = {
    "GetTask": {"operationId": "getTask", "parameters": _TASK_ID_FROM_BODY},
    "CancelTask": {"operationId": "cancelTask", "parameters": _TASK_ID_FROM_BODY},
}
_CANCEL_LINKS = {
    "GetTask": {"operationId": "getTask", "parameters": _TASK_ID_FROM_BODY},
    "StreamTaskEvents": {"operationId": "streamTaskEvents", "parameters": _TASK_ID_FROM_BODY},
}


def openapi_document() -> dict[str, Any]:
    submitted = {"schema": _SUBMITTED}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidemesh gateway",
            "version": "1",
            "description": "REST and SSE views of mesh.v1.GatewayService; the WebSocket protocol is at /v1/ws. "
            "Every error has the Error shape.",
        },
        "paths": {
            "/v1/tasks": {
                "get": {
                    "operationId": "listTasks",
                    "description": "A tenant's tasks, newest first, a page at a time. With a filter, a page "
                    "may hold fewer than `limit` tasks (even none) while next_page_token goes on.",
                    "parameters": [
                        {
                            "name": "tenant",
                            "in": "query",
                            # A credential bound to a tenant may leave it out (it lists its own).
                            "required": True,
                            "schema": _TOKEN,
                            "description": "defaults to the credential's own tenant; required otherwise",
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0, "maximum": 500},
                            "description": "at most this many tasks (0: 50)",
                        },
                        {
                            "name": "page_token",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{0,64}$"},
                            "description": "the previous page's next_page_token (empty: the first page); "
                            "a place in the list, valid under any filter",
                        },
                        {
                            "name": "kind",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "pattern": KIND_PATTERN},
                            "description": "only tasks of this kind",
                        },
                        {
                            "name": "state",
                            "in": "query",
                            "required": False,
                            "style": "form",
                            "explode": True,
                            "schema": {"type": "array", "items": {"type": "string", "enum": list(STATE_NAMES)}},
                            "description": "only tasks in one of these states (repeat the parameter for several)",
                        },
                        {
                            "name": "created_after",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "format": "date-time"},
                            "description": "only tasks created at or after this time (RFC 3339, e.g. "
                            "2026-12-03T17:05:00Z)",
                        },
                        {
                            "name": "created_before",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "format": "date-time"},
                            "description": "only tasks created before this time; later than created_after (else 400)",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "one page",
                            "content": _json(
                                {
                                    "type": "object",
                                    "required": ["tasks", "next_page_token"],
                                    "properties": {
                                        "tasks": {"type": "array", "items": {"type": "object"}},
                                        "next_page_token": {"type": "string"},
                                    },
                                }
                            ),
                        },
                        **_errors("409"),
                    },
                },
                "post": {
                    "operationId": "submitTask",
                    "requestBody": {"required": True, "content": _json({"$ref": "#/components/schemas/SubmitTask"})},
                    "responses": {
                        "201": {
                            "description": "admitted",
                            "content": {"application/json": submitted},
                            "links": _SUBMIT_LINKS,
                        },
                        "200": {
                            "description": "the same idempotency key was seen: the original task",
                            "content": {"application/json": submitted},
                            "links": _SUBMIT_LINKS,
                        },
                        **_errors("413", **{"409": "the idempotency key was used for another request"}),
                    },
                },
            },
            "/v1/tasks/{task_id}": {
                "get": {
                    "operationId": "getTask",
                    "parameters": [_TASK_ID],
                    "responses": {
                        "200": {"description": "the task folded from its events", "content": _json({"type": "object"})},
                        **_errors(),
                    },
                }
            },
            "/v1/tasks/{task_id}/cancel": {
                "post": {
                    "operationId": "cancelTask",
                    "parameters": [_TASK_ID],
                    "requestBody": {
                        "required": False,
                        "content": _json(
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {"reason": {"type": "string"}},
                            }
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "the task's state after the cancel (a finished task keeps its state)",
                            "content": _json(
                                {
                                    "type": "object",
                                    "required": ["task_id", "state"],
                                    "properties": {"task_id": _TOKEN, "state": {"type": "string"}},
                                }
                            ),
                            "links": _CANCEL_LINKS,
                        },
                        **_errors("413", **{"409": "the task kept changing; cancel again"}),
                    },
                }
            },
            "/v1/streams/{stream_id}/refresh": {
                "post": {
                    "operationId": "refreshStreamCredential",
                    "description": "Swap the credential of an open SSE stream in-band: send the new credential "
                    "with this request. The stream's first event (`event: stream`) names its id.",
                    "parameters": [{"name": "stream_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {
                            "description": "the stream now runs under the new credential",
                            "content": _json(
                                {
                                    "type": "object",
                                    "required": ["stream_id"],
                                    "properties": {
                                        "stream_id": {"type": "string"},
                                        "expires_at": {"type": ["number", "null"]},
                                    },
                                }
                            ),
                        },
                        **_errors(
                            **{
                                "403": "the new credential is for another tenant or lacks the stream's roles",
                                "404": "no open stream with that id on this gateway",
                            }
                        ),
                    },
                }
            },
            "/v1/tasks/{task_id}/events": {
                "get": {
                    "operationId": "streamTaskEvents",
                    "description": "Server-Sent Events, one `task` event per task event; `id:` is its sequence "
                    "number. Resume with the Last-Event-ID header (or `?after=`); the header wins.",
                    "parameters": [
                        _TASK_ID,
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "pattern": "^[0-9]{1,20}$"},
                        },
                        {
                            "name": "after",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                    "responses": {
                        "200": {"description": "the event stream", "content": {"text/event-stream": {}}},
                        **_errors(
                            **{
                                "400": "a malformed task id, or a resume position that is not a sequence "
                                "number or lies past the task's last event"
                            }
                        ),
                    },
                }
            },
        },
        "components": {
            "schemas": {"Error": _ERROR, "SubmitTask": _SUBMIT},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "accessToken": {"type": "apiKey", "in": "query", "name": "access_token"},
            },
        },
        # With auth on (`tidemesh up` default), one of these; with auth off, none is needed.
        "security": [{"bearer": []}, {"apiKey": []}, {"accessToken": []}, {}],
    }
