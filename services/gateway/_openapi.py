"""The OpenAPI 3.1 document of the gateway's REST surface, served at GET /v1/openapi.json.

Written by hand next to the handlers in `_http` (the REST shapes are JSON views of
the protobuf contract, not generated from it); a test runs Schemathesis against it.
"""

from __future__ import annotations

from typing import Any

from mesh.fabric import CLASS_OF_LANE
from mesh.tasks import KINDS

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


_TOKEN = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": _TOKEN}

_SUBMIT = {
    "type": "object",
    "required": ["kind"],
    "properties": {
        "kind": {"type": "string", "enum": sorted(KINDS)},
        "tenant": {"type": "string", "description": "letters, digits, '-' and '_', up to 64"},
        "priority": {"type": "string", "enum": list(CLASS_OF_LANE), "default": "standard"},
        "payload": {"type": "object", "description": 'the kind\'s input fields, e.g. {"text": "hi"} for echo'},
        "idempotency_key": {"type": "string"},
        "ordering_key": {"type": "string"},
        "task_id": {"type": "string", "description": "optional client-chosen id"},
    },
}


_SUBMITTED = {
    "type": "object",
    "required": ["task_id", "deduplicated", "sequence"],
    "properties": {"task_id": {"type": "string"}, "deduplicated": {"type": "boolean"}, "sequence": {"type": "integer"}},
}


_UNAUTHENTICATED = _error("no credential, or one that is malformed, expired or revoked")
_FORBIDDEN = _error("the credential lacks the role, or is for another tenant")


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidemesh gateway",
            "version": "1",
            "description": "REST and SSE views of mesh.v1.GatewayService; the WebSocket protocol is at /v1/ws.",
        },
        "paths": {
            "/v1/tasks": {
                "get": {
                    "operationId": "listTasks",
                    "description": "A tenant's tasks, newest first, a page at a time.",
                    "parameters": [
                        {"name": "tenant", "in": "query", "required": False, "schema": _TOKEN},
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0, "maximum": 500},
                        },
                        {"name": "page_token", "in": "query", "required": False, "schema": _TOKEN},
                    ],
                    "responses": {
                        "200": {
                            "description": "one page",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["tasks", "next_page_token"],
                                        "properties": {
                                            "tasks": {"type": "array", "items": {"type": "object"}},
                                            "next_page_token": {"type": "string"},
                                        },
                                    }
                                }
                            },
                        },
                        "400": _error("a malformed tenant, limit or page token, or no tenant at all"),
                        "401": _UNAUTHENTICATED,
                        "403": _FORBIDDEN,
                    },
                },
                "post": {
                    "operationId": "submitTask",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubmitTask"}}},
                    },
                    "responses": {
                        "201": {"description": "admitted", "content": {"application/json": {"schema": _SUBMITTED}}},
                        "200": {
                            "description": "the same idempotency key was seen: the original task",
                            "content": {"application/json": {"schema": _SUBMITTED}},
                        },
                        "400": _error("malformed request; `field` names the culprit"),
                        "401": _UNAUTHENTICATED,
                        "403": _FORBIDDEN,
                        "429": _error("over a quota or rate limit; see Retry-After"),
                        "503": _error("a dependency is down; retry"),
                    },
                },
            },
            "/v1/tasks/{task_id}": {
                "get": {
                    "operationId": "getTask",
                    "parameters": [_TASK_ID],
                    "responses": {
                        "200": {
                            "description": "the task folded from its events",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _error("a malformed task id"),
                        "401": _UNAUTHENTICATED,
                        "403": _FORBIDDEN,
                        "404": _error("no such task"),
                    },
                }
            },
            "/v1/tasks/{task_id}/cancel": {
                "post": {
                    "operationId": "cancelTask",
                    "parameters": [_TASK_ID],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"reason": {"type": "string"}}}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "the task's state after the cancel (a finished task keeps its state)",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["task_id", "state"],
                                        "properties": {"task_id": {"type": "string"}, "state": {"type": "string"}},
                                    }
                                }
                            },
                        },
                        "400": _error("a malformed task id or body"),
                        "401": _UNAUTHENTICATED,
                        "403": _FORBIDDEN,
                        "404": _error("no such task"),
                        "409": _error("the task kept changing; cancel again"),
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
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["stream_id"],
                                        "properties": {
                                            "stream_id": {"type": "string"},
                                            "expires_at": {"type": ["number", "null"]},
                                        },
                                    }
                                }
                            },
                        },
                        "401": _UNAUTHENTICATED,
                        "403": _error("the new credential is for another tenant or lacks the stream's roles"),
                        "404": _error("no open stream with that id on this gateway"),
                    },
                }
            },
            "/v1/tasks/{task_id}/events": {
                "get": {
                    "operationId": "streamTaskEvents",
                    "description": "Server-Sent Events, one `task` event per task event; `id:` is its sequence "
                    "number. Resume with the Last-Event-ID header (or `?after=`).",
                    "parameters": [
                        _TASK_ID,
                        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}},
                        {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "the event stream", "content": {"text/event-stream": {}}},
                        "400": _error("a malformed task id, or a resume id that is not a sequence number"),
                        "401": _UNAUTHENTICATED,
                        "403": _FORBIDDEN,
                        "404": _error("no such task"),
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
