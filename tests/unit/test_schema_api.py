"""SchemaService's access control and error mapping, with the registry and the caller faked."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from mesh.access import RoleCatalog
from mesh.errors import NotFound, PermissionDenied
from mesh.v1 import schema_pb2
from services.gateway._auth import Principal
from services.gateway._schemas import SchemaApi


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: tuple[tuple[str, str], ...] = ()

    def set_trailing_metadata(self, trailers: tuple[tuple[str, str], ...]) -> None:
        self.trailers = trailers

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted(details)


class FakeGuard:
    """The caller is `principal`; `check` decides as the gateway's own guard does (mesh.access)."""

    def __init__(self, roles: set[str]) -> None:
        self.principal = Principal("key1", "acme", frozenset(roles))

    async def from_grpc(self, context: Any) -> Principal:
        return self.principal

    @staticmethod
    def check(principal: Principal, action: str, tenant: str | None = None) -> None:
        decision = RoleCatalog().decide(principal.tenant, principal.roles, action, tenant)
        if not decision.allowed:
            raise PermissionDenied(f"credential {principal.credential_id} may not {action}: {decision.reason}")


class FakeRegistry:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def register(self, subject: str, data: bytes, mode: int) -> tuple[schema_pb2.SchemaVersion, bool]:
        self.calls.append("register")
        return schema_pb2.SchemaVersion(subject=subject, version=1), True

    async def subjects(self) -> list[Any]:
        self.calls.append("subjects")
        return []

    async def get(self, subject: str, version: int) -> schema_pb2.SchemaVersion:
        raise NotFound(f"version {version} of subject {subject!r} is not registered")


def _api(roles: set[str]) -> tuple[SchemaApi, FakeRegistry]:
    registry = FakeRegistry()
    return SchemaApi(registry, FakeGuard(roles)), registry  # type: ignore[arg-type]


async def test_registering_needs_admin() -> None:
    """A `read` or `submit` credential is PERMISSION_DENIED at register, before the registry is asked."""
    api, registry = _api({"read", "submit"})
    context = FakeContext()
    with pytest.raises(Aborted):
        await api.RegisterSchema(schema_pb2.RegisterSchemaRequest(subject="acme.v1.Req"), context)  # type: ignore[arg-type]
    assert context.code == grpc.StatusCode.PERMISSION_DENIED and "may not schema.register" in context.details
    assert registry.calls == []
    admin, admin_registry = _api({"admin"})
    reply = await admin.RegisterSchema(schema_pb2.RegisterSchemaRequest(subject="acme.v1.Req"), FakeContext())  # type: ignore[arg-type]
    assert reply.created and admin_registry.calls == ["register"]


async def test_reading_needs_read() -> None:
    """Listing needs `read`: a submit-only credential is refused, a reader is served."""
    api, _ = _api({"submit"})
    context = FakeContext()
    with pytest.raises(Aborted):
        await api.ListSchemas(schema_pb2.ListSchemasRequest(), context)  # type: ignore[arg-type]
    assert context.code == grpc.StatusCode.PERMISSION_DENIED
    reader, registry = _api({"read"})
    await reader.ListSchemas(schema_pb2.ListSchemasRequest(), FakeContext())  # type: ignore[arg-type]
    assert registry.calls == ["subjects"]


async def test_a_missing_version_is_not_found() -> None:
    """GetSchema of an unregistered version is NOT_FOUND naming it."""
    api, _ = _api({"read"})
    context = FakeContext()
    with pytest.raises(Aborted):
        await api.GetSchema(schema_pb2.GetSchemaRequest(subject="acme.v1.Req", version=4), context)  # type: ignore[arg-type]
    assert context.code == grpc.StatusCode.NOT_FOUND and "version 4" in context.details
