"""Error classes carry their gRPC code and HTTP status, subclasses inherit them, and the SDK
retries only what a retry can fix."""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Iterator

import grpc
import grpc.aio
import pytest

from clients.sdk._retry import should_resume, should_retry
from mesh import errors
from mesh.rpc import raise_from_rpc_error, status_of
from mesh.v1 import schema_pb2
from services.gateway._http import _error


def _every_error_class() -> Iterator[type[errors.MeshError]]:
    """Every MeshError subclass defined anywhere in mesh, services and clients."""
    for root in ("mesh", "services", "clients"):
        package = importlib.import_module(root)
        for module in pkgutil.walk_packages(package.__path__, f"{root}."):
            importlib.import_module(module.name)

    def below(cls: type[errors.MeshError]) -> Iterator[type[errors.MeshError]]:
        for sub in cls.__subclasses__():
            if not sub.__module__.startswith("tests"):
                yield sub
                yield from below(sub)

    return below(errors.MeshError)


def _instance(cls: type[errors.MeshError]) -> errors.MeshError:
    from mesh.manifest._load import Issue, ManifestError
    from mesh.schemas import IncompatibleSchema

    if issubclass(cls, IncompatibleSchema):
        return cls("acme.v1.Shape", schema_pb2.COMPATIBILITY_MODE_BACKWARD, [])
    if issubclass(cls, ManifestError):
        return cls("tidemesh.yaml", [Issue("pools.general.workers", "must be at least 1")])
    if issubclass(cls, errors.InvalidArgument):
        return cls("spec.field", "is wrong")
    if issubclass(cls, errors.ResourceExhausted):
        return cls("slow down", 2.0)
    return cls("it failed")


def test_the_codebase_defines_error_classes_beyond_the_base_tree() -> None:
    """The walk finds classes outside mesh.errors (e.g. the inference service's BackendDown)."""
    found = {f"{cls.__module__}.{cls.__name__}" for cls in _every_error_class()}
    assert "services.inference._backend.BackendDown" in found
    assert "mesh.errors.InvalidArgument" in found


@pytest.mark.parametrize("cls", sorted(_every_error_class(), key=lambda c: f"{c.__module__}.{c.__name__}"), ids=str)
def test_every_error_class_maps_to_a_deliberate_status(cls: type[errors.MeshError]) -> None:
    """No MeshError subclass in the codebase falls through to INTERNAL / HTTP 500: only the base is."""
    exc = _instance(cls)
    code, _ = status_of(exc)
    assert code != grpc.StatusCode.INTERNAL, f"{cls.__name__} is INTERNAL"
    assert _error(exc).status != 500, f"{cls.__name__} is HTTP 500"
    assert 400 <= _error(exc).status < 600


def test_backend_down_is_unavailable_on_both_surfaces() -> None:
    """BackendDown (a subclass of Unavailable) is UNAVAILABLE over gRPC and 503 over HTTP."""
    from services.inference._backend import BackendDown

    exc = BackendDown("triton is not ready")
    assert status_of(exc)[0] == grpc.StatusCode.UNAVAILABLE
    assert _error(exc).status == 503


def test_a_new_subclass_inherits_its_parents_status_and_the_most_specific_wins() -> None:
    """A subclass that says nothing gets its parent's code; one that names its own gets that."""

    class Throttled(errors.ResourceExhausted):
        pass

    class Gone(errors.NotFound):
        grpc_code = "DATA_LOSS"
        http_status = 410

    throttled = Throttled("slow down", 3.2)
    code, trailers = status_of(throttled)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ("retry-after", "3.200") in trailers
    response = _error(throttled)
    assert (response.status, response.headers["Retry-After"]) == (429, "4")
    assert status_of(Gone("no such thing"))[0] == grpc.StatusCode.DATA_LOSS
    assert _error(Gone("no such thing")).status == 410


def test_the_base_is_internal_and_http_500() -> None:
    """A bare MeshError — a failure nobody classified — is INTERNAL and 500, with the one JSON shape."""
    response = _error(errors.MeshError("bug"))
    assert status_of(errors.MeshError("bug"))[0] == grpc.StatusCode.INTERNAL
    assert response.status == 500
    assert response.body is not None and json.loads(bytes(response.body))["error_class"] == "internal"


def test_a_subclass_comes_back_from_the_wire_as_its_canonical_parent() -> None:
    """Across a service boundary a subclass is raised as the most general class of its code."""

    class Flaky(errors.Unavailable):
        pass

    code, trailers = status_of(Flaky("node down"))
    wire = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details="node down")
    with pytest.raises(errors.Unavailable) as caught:
        raise_from_rpc_error(wire)
    assert type(caught.value) is errors.Unavailable


def _rpc_error(code: grpc.StatusCode, trailers: tuple[tuple[str, str], ...] = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details="x")


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_sdk_retries_unary_calls_only_on_unavailable(code: grpc.StatusCode) -> None:
    """A unary call is retried on UNAVAILABLE (and DEADLINE_EXCEEDED when idempotent), never on
    INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED or anything else."""
    assert should_retry(_rpc_error(code)) is (code == grpc.StatusCode.UNAVAILABLE)
    idempotent = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert should_retry(_rpc_error(code), idempotent=True) is idempotent


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN])
def test_sdk_resumes_a_stream_broken_in_transport_but_not_an_error_the_mesh_answered(code: grpc.StatusCode) -> None:
    """INTERNAL/UNKNOWN with no tidemesh trailer is a broken stream (resumed); with one it is the
    mesh's answer (final)."""
    assert should_resume(_rpc_error(code))
    answered = status_of(errors.MeshError("bug"))[1]
    assert not should_resume(_rpc_error(code, answered))
    assert should_resume(_rpc_error(grpc.StatusCode.UNAVAILABLE, (("tidemesh-error-class", "dependency_down"),)))
    assert not should_resume(_rpc_error(grpc.StatusCode.INVALID_ARGUMENT))
