"""Errors cross the gRPC boundary deliberately, and come back as the same error."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

from mesh import errors
from mesh.rpc import raise_from_rpc_error, status_of


def _rpc_error(exc: errors.MeshError) -> grpc.aio.AioRpcError:
    code, trailers = status_of(exc)
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details=exc.message)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.InvalidArgument("spec.kind", "unknown"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound("no task"), grpc.StatusCode.NOT_FOUND),
        (errors.Conflict("busy"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.ResourceExhausted("slow down", 2.5), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.Unavailable("nats down"), grpc.StatusCode.UNAVAILABLE),
        (errors.DeadlineExceeded("late"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.Unauthenticated("credential expired"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.PermissionDenied("not your tenant"), grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_each_error_has_its_status_and_round_trips(exc: errors.MeshError, code: grpc.StatusCode) -> None:
    """The status code is deliberate, and translating back yields the same error class and details."""
    assert status_of(exc)[0] == code
    with pytest.raises(errors.MeshError) as caught:
        raise_from_rpc_error(_rpc_error(exc))
    assert type(caught.value) is type(exc)
    if isinstance(exc, errors.InvalidArgument):
        assert isinstance(caught.value, errors.InvalidArgument)
        assert (caught.value.field, caught.value.reason) == ("spec.kind", "unknown")
    if isinstance(exc, errors.ResourceExhausted):
        assert isinstance(caught.value, errors.ResourceExhausted)
        assert caught.value.retry_after_s == pytest.approx(2.5)


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS])
def test_unexpected_status_becomes_internal_not_unavailable(code: grpc.StatusCode) -> None:
    """A status no error class carries surfaces as the base MeshError (INTERNAL), never as the
    retryable Unavailable."""
    error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="boom")
    with pytest.raises(errors.MeshError, match=f"{code.name}: boom") as caught:
        raise_from_rpc_error(error)
    assert type(caught.value) is errors.MeshError
    assert status_of(caught.value)[0] == grpc.StatusCode.INTERNAL
