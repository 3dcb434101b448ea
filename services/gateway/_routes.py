"""Every call the gateway serves, and the action (`mesh.access`) it is held to: one table.

Each RPC, REST route and WebSocket op names the action its handler checks (RunTask, which
submits and then streams the task back, names both of its own); the few that need a credential
and nothing more say why. A unit test walks the services the gateway hosts, the HTTP app's routes
and the WebSocket ops: a call missing here fails it, and so does a handler that refuses a caller
naming another action than the table's.
"""

from __future__ import annotations

RPC_ACTIONS: dict[str, tuple[str, ...]] = {
    "/mesh.v1.GatewayService/SubmitTask": ("task.submit",),
    "/mesh.v1.GatewayService/SubmitTasks": ("task.submit",),
    "/mesh.v1.GatewayService/WatchTask": ("task.read",),
    "/mesh.v1.GatewayService/WatchTasks": ("task.read",),
    "/mesh.v1.GatewayService/RunTask": ("task.read", "task.submit"),
    "/mesh.v1.GatewayService/GetTask": ("task.read",),
    "/mesh.v1.GatewayService/ListTasks": ("task.read",),
    "/mesh.v1.GatewayService/CancelTask": ("task.cancel",),
    "/mesh.v1.GatewayService/GetMeshStatus": ("status.read",),
    "/mesh.v1.GatewayService/WatchMeshStatus": ("status.read",),
    "/mesh.v1.GatewayService/GetLoad": ("status.read",),
    "/mesh.v1.GatewayService/ListDeadLetters": ("dlq.read",),
    "/mesh.v1.GatewayService/GetDeadLetter": ("dlq.read",),
    "/mesh.v1.GatewayService/ReplayDeadLetter": ("dlq.replay",),
    "/mesh.v1.GatewayService/PurgeDeadLetters": ("dlq.purge",),
    "/mesh.v1.GatewayService/CreateApiKey": ("auth.key.create",),
    "/mesh.v1.GatewayService/RevokeCredential": ("auth.revoke",),
    "/mesh.v1.SchemaService/RegisterSchema": ("schema.register",),
    "/mesh.v1.SchemaService/CheckSchema": ("schema.read",),
    "/mesh.v1.SchemaService/ListSchemas": ("schema.read",),
    "/mesh.v1.SchemaService/GetSchema": ("schema.read",),
    "/mesh.v1.KindService/RegisterKind": ("kind.register",),
    "/mesh.v1.KindService/ListKinds": ("kind.read",),
    "/mesh.v1.WorkerSessionService/Connect": ("worker.attach",),
    "/mesh.v1.InferenceService/Infer": ("model.infer",),
    "/mesh.v1.InferenceService/InferStream": ("model.infer",),
    "/mesh.v1.InferenceService/ModelInfer": ("model.infer",),
    "/mesh.v1.InferenceService/ModelStreamInfer": ("model.infer",),
    "/mesh.v1.InferenceService/ListModels": ("model.read",),
    "/mesh.v1.InferenceService/ModelMetadata": ("model.read",),
    "/mesh.v1.InferenceService/ModelReady": ("model.read",),
    "/mesh.v1.InferenceService/LoadModel": ("model.load",),
    "/mesh.v1.InferenceService/UnloadModel": ("model.unload",),
    "/mesh.v1.AuditService/ListAuditRecords": ("audit.read",),
    "/mesh.v1.AuditService/GetAuditRecord": ("audit.read",),
    "/mesh.v1.AuditService/ExportAudit": ("audit.export",),
    "/mesh.v1.ConfigService/GetConfig": ("config.plan",),
    "/mesh.v1.ConfigService/ListRevisions": ("config.plan",),
    "/mesh.v1.ConfigService/PlanConfig": ("config.plan",),
    "/mesh.v1.ConfigService/ApplyConfig": ("config.apply",),
}

# Actions a call checks only when the request asks for what they allow (beside its own action).
CONDITIONAL_ACTIONS: dict[str, tuple[str, str]] = {
    "/mesh.v1.ConfigService/ApplyConfig": ("policy.override", "with override_policies, past an enforced policy"),
}

# (method, route) of the HTTP app → its action; the routes under /v1 that need a credential only.
REST_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("POST", "/v1/tasks"): ("task.submit",),
    ("GET", "/v1/tasks"): ("task.read",),
    ("GET", "/v1/tasks/{task_id}"): ("task.read",),
    ("GET", "/v1/tasks/{task_id}/events"): ("task.read",),
    ("POST", "/v1/tasks/{task_id}/cancel"): ("task.cancel",),
}

WEBSOCKET_ACTIONS: dict[str, tuple[str, ...]] = {
    "submit": ("task.submit",),
    "subscribe": ("task.read",),
    "watch": ("task.read",),
    "cancel": ("task.cancel",),
}

CREDENTIAL_ONLY: dict[str, str] = {
    "/mesh.v1.GatewayService/RefreshStreamCredential": "swaps the credential of the caller's own open stream, "
    "which must keep its tenant and roles",
    "/mesh.v1.AccessService/CheckAccess": "explains the caller's own decisions, of its own credential only",
    "/mesh.v1.AccessService/EnrollTotp": "the caller's own second factor",
    "/mesh.v1.AccessService/ConfirmTotp": "the caller's own second factor",
    "/mesh.v1.AccessService/StepUp": "a step-up token for the caller's own credential: it grants nothing alone",
    "POST /v1/streams/{stream_id}/refresh": "the SSE stream's RefreshStreamCredential",
    "GET /v1/ws": "each op of the WebSocket checks its own action (WEBSOCKET_ACTIONS)",
    "GET /v1/openapi.json": "the API's description: no credential at all",
    "ws ping": "a keep-alive",
    "ws unsubscribe": "ends the caller's own subscription",
    "ws refresh": "the WebSocket's RefreshStreamCredential",
}
