"""The one error base of tidemesh and its hierarchy.

    MeshError
    ├── InvalidArgument     bad input; names the offending field   → INVALID_ARGUMENT / HTTP 400
    ├── NotFound            no such task, model, …                  → NOT_FOUND / HTTP 404
    ├── Conflict            state does not allow the operation      → FAILED_PRECONDITION / HTTP 409
    ├── ResourceExhausted   overload or quota; carries retry_after_s → RESOURCE_EXHAUSTED / HTTP 429
    ├── Unavailable         a dependency is down; safe to retry     → UNAVAILABLE / HTTP 503
    └── DeadlineExceeded    the task's deadline passed              → DEADLINE_EXCEEDED / HTTP 504

Lower-layer errors (nats, grpc) are translated into these at the boundary that
sees them; `mesh.rpc` maps them to gRPC status codes in one place.
"""

from __future__ import annotations


class MeshError(Exception):
    """Base of every error tidemesh raises on purpose."""

    error_class = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(MeshError):
    """The request is malformed; `field` is its dotted path, e.g. ``spec.payload.echo``."""

    error_class = "invalid_input"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(MeshError):
    error_class = "not_found"


class Conflict(MeshError):
    error_class = "conflict"


class ResourceExhausted(MeshError):
    """The mesh is saturated or a quota is spent; retry after `retry_after_s` seconds."""

    error_class = "resource_exhausted"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(MeshError):
    error_class = "dependency_down"


class DeadlineExceeded(MeshError):
    error_class = "timeout"


class Unauthenticated(MeshError):
    """No credential, or one that is malformed, expired or revoked."""

    error_class = "unauthenticated"


class PermissionDenied(MeshError):
    """A valid credential that does not allow this operation or this tenant."""

    error_class = "permission_denied"
