"""Translation between `mesh.errors` and gRPC status — the only place that does it.

Details travel as trailing metadata so that every client (grpcio, gRPC-Web in a
browser, grpcurl) can read them without google.rpc protos:

    tidemesh-error-class   stable error class, e.g. ``invalid_input``
    tidemesh-field         the offending field for INVALID_ARGUMENT
    retry-after            seconds, for RESOURCE_EXHAUSTED (and UNAVAILABLE when the server knows)
    www-authenticate       a step-up challenge (StepUpRequired, RFC 9470), with
    tidemesh-step-up-action / tidemesh-step-up-resource   what to step up for
"""

from __future__ import annotations

from typing import NoReturn

import grpc
import grpc.aio

from mesh import errors
from mesh.v1 import scheduler_pb2


def _canonical_classes() -> dict[grpc.StatusCode, type[errors.MeshError]]:
    """For each code, the most general class of `mesh.errors` that carries it: what a
    status coming back from another service is raised as."""
    by_code: dict[grpc.StatusCode, type[errors.MeshError]] = {}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.MeshError):
            code = code_of(value)
            known = by_code.get(code)
            if known is None or len(value.__mro__) < len(known.__mro__):
                by_code[code] = value
    return by_code


def code_of(error_type: type[errors.MeshError]) -> grpc.StatusCode:
    """The gRPC code of an error class: its own `grpc_code`, else the nearest parent's."""
    return grpc.StatusCode[error_type.grpc_code]


def status_of(exc: errors.MeshError) -> tuple[grpc.StatusCode, tuple[tuple[str, str], ...]]:
    """The gRPC code and trailing metadata that represent `exc`."""
    code = code_of(type(exc))
    trailers: list[tuple[str, str]] = [("tidemesh-error-class", exc.error_class)]
    if field := getattr(exc, "field", ""):  # InvalidArgument always; Conflict when it names one
        trailers.append(("tidemesh-field", field))
    if isinstance(exc, errors.ResourceExhausted) or (isinstance(exc, errors.Unavailable) and exc.retry_after_s):
        trailers.append(("retry-after", f"{exc.retry_after_s:.3f}"))
    if isinstance(exc, errors.StepUpRequired):
        trailers += [
            ("www-authenticate", exc.challenge),
            ("tidemesh-step-up-action", exc.action),
            ("tidemesh-step-up-resource", exc.resource),
        ]
    return code, tuple(trailers)


async def abort_with(context: grpc.aio.ServicerContext, exc: errors.MeshError) -> NoReturn:  # type: ignore[type-arg]
    code, trailers = status_of(exc)
    context.set_trailing_metadata(trailers)
    await context.abort(code, exc.message)
    raise AssertionError("unreachable: abort() raises")


def raise_from_rpc_error(exc: grpc.aio.AioRpcError) -> NoReturn:
    """Re-raise a downstream gRPC failure as the matching MeshError.

    A code no class of `mesh.errors` carries (INTERNAL, UNKNOWN, CANCELLED, …) is raised as the
    base MeshError: INTERNAL, which nobody retries — a bug does not go away by calling again."""
    trailers = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
    raise error_from_status(exc.code(), exc.details() or "", trailers) from exc


def error_from_status(code: grpc.StatusCode, details: str, trailers: dict[str, str]) -> errors.MeshError:
    """The MeshError a status (code, details, `status_of`'s trailers) stands for."""
    details = details or code.name
    error_type = _CANONICAL.get(code, errors.MeshError)
    field = trailers.get("tidemesh-field", "")
    if issubclass(error_type, errors.InvalidArgument):
        reason = details.removeprefix(f"{field}: ") if field else details
        return error_type(field or "request", reason)
    if issubclass(error_type, errors.ResourceExhausted):
        return error_type(details, _seconds(trailers.get("retry-after", "")))
    if issubclass(error_type, errors.Unavailable) and "retry-after" in trailers:
        return error_type(details, _seconds(trailers["retry-after"]))
    if issubclass(error_type, errors.Conflict) and field:
        return error_type(details, field)
    if issubclass(error_type, errors.Unauthenticated) and "tidemesh-step-up-action" in trailers:
        action, resource = trailers["tidemesh-step-up-action"], trailers.get("tidemesh-step-up-resource", "")
        return errors.StepUpRequired(details, action, resource)
    if error_type is errors.MeshError:
        return errors.MeshError(f"{code.name}: {details}")
    return error_type(details)


def refusal_of(exc: errors.MeshError) -> scheduler_pb2.Refusal:
    """One refused item of a batch, carrying what `status_of` would put on the wire."""
    code, trailers = status_of(exc)
    extra = dict(trailers)
    return scheduler_pb2.Refusal(
        code=code.name,
        message=exc.message,
        field=extra.get("tidemesh-field", ""),
        retry_after_s=float(extra.get("retry-after", "0")),
    )


def error_of_refusal(refusal: scheduler_pb2.Refusal) -> errors.MeshError:
    """The MeshError a `refusal_of` stands for (an unknown code is INTERNAL)."""
    code = grpc.StatusCode.__members__.get(refusal.code, grpc.StatusCode.INTERNAL)
    trailers = {"tidemesh-field": refusal.field} if refusal.field else {}
    if refusal.retry_after_s:
        trailers["retry-after"] = f"{refusal.retry_after_s:.3f}"
    return error_from_status(code, refusal.message, trailers)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return 1.0
    return value if value > 0 else 1.0


_CANONICAL = _canonical_classes()
