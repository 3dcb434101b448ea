"""Translation between `mesh.errors` and gRPC status — the only place that does it.

Details travel as trailing metadata so that every client (grpcio, gRPC-Web in a
browser, grpcurl) can read them without google.rpc protos:

    tidemesh-error-class   stable error class, e.g. ``invalid_input``
    tidemesh-field         the offending field for INVALID_ARGUMENT
    retry-after            seconds, for RESOURCE_EXHAUSTED
"""

from __future__ import annotations

from typing import NoReturn

import grpc
import grpc.aio

from mesh import errors

_CODES: dict[type[errors.MeshError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}


def status_of(exc: errors.MeshError) -> tuple[grpc.StatusCode, tuple[tuple[str, str], ...]]:
    """The gRPC code and trailing metadata that represent `exc`."""
    code = _CODES.get(type(exc), grpc.StatusCode.INTERNAL)
    trailers: list[tuple[str, str]] = [("tidemesh-error-class", exc.error_class)]
    if isinstance(exc, errors.InvalidArgument):
        trailers.append(("tidemesh-field", exc.field))
    if isinstance(exc, errors.ResourceExhausted):
        trailers.append(("retry-after", f"{exc.retry_after_s:.3f}"))
    return code, tuple(trailers)


async def abort_with(context: grpc.aio.ServicerContext, exc: errors.MeshError) -> NoReturn:  # type: ignore[type-arg]
    code, trailers = status_of(exc)
    context.set_trailing_metadata(trailers)
    await context.abort(code, exc.message)
    raise AssertionError("unreachable: abort() raises")


def raise_from_rpc_error(exc: grpc.aio.AioRpcError) -> NoReturn:
    """Re-raise a downstream gRPC failure as the matching MeshError."""
    trailers = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
    code = exc.code()
    details = exc.details() or code.name
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field = trailers.get("tidemesh-field", "")
        reason = details.removeprefix(f"{field}: ") if field else details
        raise errors.InvalidArgument(field or "request", reason) from exc
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        raise errors.ResourceExhausted(details, float(trailers.get("retry-after", "1"))) from exc
    if code == grpc.StatusCode.NOT_FOUND:
        raise errors.NotFound(details) from exc
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        raise errors.Conflict(details) from exc
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise errors.DeadlineExceeded(details) from exc
    if code == grpc.StatusCode.UNAUTHENTICATED:
        raise errors.Unauthenticated(details) from exc
    if code == grpc.StatusCode.PERMISSION_DENIED:
        raise errors.PermissionDenied(details) from exc
    raise errors.Unavailable(f"{code.name}: {details}") from exc
