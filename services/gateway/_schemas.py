"""SchemaService servicer: the schema registry's API, on the gateway's credentials.

Registering a version needs schema.register (it changes what every tenant's payloads must look
like: admin's); checking, listing and reading need schema.read. An incompatible candidate is FAILED_PRECONDITION
whose message lists every violation; `CheckSchema` returns them as data instead.
"""

from __future__ import annotations

from mesh.errors import MeshError
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with
from mesh.schemas import SchemaRegistry
from mesh.v1 import schema_pb2, schema_pb2_grpc
from services.gateway._guard import Guard


class SchemaApi(schema_pb2_grpc.SchemaServiceServicer):
    def __init__(self, registry: SchemaRegistry, guard: Guard) -> None:
        self._registry = registry
        self._guard = guard

    async def RegisterSchema(
        self, request: schema_pb2.RegisterSchemaRequest, context: Context
    ) -> schema_pb2.RegisterSchemaResponse:
        try:
            self._guard.check(await self._guard.from_grpc(context), "schema.register")
            version, created = await self._registry.register(request.subject, request.descriptor_set, request.mode)
        except MeshError as exc:
            await abort_with(context, exc)
        return schema_pb2.RegisterSchemaResponse(schema=version, created=created)

    async def CheckSchema(
        self, request: schema_pb2.CheckSchemaRequest, context: Context
    ) -> schema_pb2.CheckSchemaResponse:
        try:
            self._guard.check(await self._guard.from_grpc(context), "schema.read")
            violations, mode = await self._registry.check(request.subject, request.descriptor_set, request.mode)
        except MeshError as exc:
            await abort_with(context, exc)
        return schema_pb2.CheckSchemaResponse(
            compatible=not violations, violations=[v.to_proto() for v in violations], mode=mode
        )

    async def ListSchemas(
        self, request: schema_pb2.ListSchemasRequest, context: Context
    ) -> schema_pb2.ListSchemasResponse:
        try:
            self._guard.check(await self._guard.from_grpc(context), "schema.read")
            subjects = await self._registry.subjects()
        except MeshError as exc:
            await abort_with(context, exc)
        return schema_pb2.ListSchemasResponse(subjects=[subject.to_proto() for subject in subjects])

    async def GetSchema(self, request: schema_pb2.GetSchemaRequest, context: Context) -> schema_pb2.GetSchemaResponse:
        try:
            self._guard.check(await self._guard.from_grpc(context), "schema.read")
            version = await self._registry.get(request.subject, request.version)
        except MeshError as exc:
            await abort_with(context, exc)
        return schema_pb2.GetSchemaResponse(schema=version)
