"""The one error base of tidemesh and its hierarchy.

    MeshError
    ├── InvalidArgument     bad input; names the offending field   → INVALID_ARGUMENT / HTTP 400
    │   └── OutOfRange      a position past the end, e.g. a resume  → OUT_OF_RANGE / HTTP 400
    ├── NotFound            no such task, model, …                  → NOT_FOUND / HTTP 404
    ├── Conflict            state does not allow the operation      → FAILED_PRECONDITION / HTTP 409
    ├── ResourceExhausted   overload or quota; carries retry_after_s → RESOURCE_EXHAUSTED / HTTP 429
    ├── Unavailable         a dependency is down; safe to retry     → UNAVAILABLE / HTTP 503
    │                       (retry_after_s when it knows when)
    ├── DeadlineExceeded    the task's deadline passed              → DEADLINE_EXCEEDED / HTTP 504
    ├── Unauthenticated     no credential, or a bad one             → UNAUTHENTICATED / HTTP 401
    │   └── StepUpRequired  a sensitive action wants a fresh second factor (the action and
    │                       resource to step up for; WWW-Authenticate, RFC 9470)
    └── PermissionDenied    a credential that may not do this       → PERMISSION_DENIED / HTTP 403

MeshError itself (a bug, or a failure nobody classified) is INTERNAL / HTTP 500, which
no client retries.

Each class carries its status as class attributes (`grpc_code`, the name of a
`grpc.StatusCode`, and `http_status`), so a subclass inherits its parent's unless
it says otherwise: a new error is classified the moment it names its parent.
Lower-layer errors (nats, grpc) are translated into these at the boundary that
sees them; `mesh.rpc` and the gateway's HTTP surface read the attributes.
"""

from __future__ import annotations


class MeshError(Exception):
    """Base of every error tidemesh raises on purpose."""

    error_class = "internal"
    grpc_code = "INTERNAL"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(MeshError):
    """The request is malformed; `field` is its dotted path, e.g. ``spec.payload.echo``."""

    error_class = "invalid_input"
    grpc_code = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class OutOfRange(InvalidArgument):
    """A position past what exists, e.g. a stream resumed after its last sequence number."""

    grpc_code = "OUT_OF_RANGE"


class NotFound(MeshError):
    error_class = "not_found"
    grpc_code = "NOT_FOUND"
    http_status = 404


class Conflict(MeshError):
    """`field`, when set, names the part of the request in conflict, e.g. a reused ``idempotency_key``."""

    error_class = "conflict"
    grpc_code = "FAILED_PRECONDITION"
    http_status = 409

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class ResourceExhausted(MeshError):
    """The mesh is saturated or a quota is spent; retry after `retry_after_s` seconds."""

    error_class = "resource_exhausted"
    grpc_code = "RESOURCE_EXHAUSTED"
    http_status = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(MeshError):
    """A dependency is down; `retry_after_s`, when set, says when to try again (0: the caller's backoff)."""

    error_class = "dependency_down"
    grpc_code = "UNAVAILABLE"
    http_status = 503

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(MeshError):
    error_class = "timeout"
    grpc_code = "DEADLINE_EXCEEDED"
    http_status = 504


class Unauthenticated(MeshError):
    """No credential, or one that is malformed, expired or revoked."""

    error_class = "unauthenticated"
    grpc_code = "UNAUTHENTICATED"
    http_status = 401


class StepUpRequired(Unauthenticated):
    """A sensitive action needs a fresh second factor first: a step-up token (`tidemesh auth step-up`)
    bound to `action` on `resource`, with ``amr`` ``otp``; the challenge says what is missing."""

    error_class = "step_up_required"

    def __init__(self, message: str, action: str = "", resource: str = "") -> None:
        super().__init__(message)
        self.action = action
        self.resource = resource

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value (RFC 9470's insufficient_user_authentication; acr_values otp)."""
        quoted = self.message.replace("\\", "\\\\").replace('"', '\\"')
        return (
            f'Bearer error="insufficient_user_authentication", error_description="{quoted}", '
            f'acr_values="otp", action="{self.action}", resource="{self.resource}"'
        )


class PermissionDenied(MeshError):
    """A valid credential that does not allow this operation or this tenant."""

    error_class = "permission_denied"
    grpc_code = "PERMISSION_DENIED"
    http_status = 403
