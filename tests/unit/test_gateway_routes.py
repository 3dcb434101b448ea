"""One action per call: every RPC of every service the gateway hosts, every REST route and every
WebSocket op is in services.gateway._routes, each action there is declared (mesh.access), and
each handler, called by a credential that lacks its action, is PERMISSION_DENIED naming exactly
the table's action — so a new RPC without an action, or a handler checking another, fails here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from mesh.access import ACTIONS, BY_NAME, RoleCatalog, custom_role
from mesh.v1 import (
    access_pb2,
    audit_pb2,
    config_pb2,
    gateway_pb2,
    inference_pb2,
    kind_pb2,
    schema_pb2,
    session_pb2,
    task_pb2,
)
from services.gateway._access import AccessApi
from services.gateway._audit import Auditor
from services.gateway._audit_api import AuditApi
from services.gateway._auth import Authenticator, CredentialStore
from services.gateway._config_api import ConfigApi
from services.gateway._guard import Guard
from services.gateway._http import http_app
from services.gateway._inference import InferenceRelay
from services.gateway._routes import CONDITIONAL_ACTIONS, CREDENTIAL_ONLY, REST_ACTIONS, RPC_ACTIONS, WEBSOCKET_ACTIONS
from services.gateway._schemas import SchemaApi
from services.gateway._service import Gateway
from services.gateway._sessions import Kinds, SessionProxy
from services.gateway._websocket import _OP_FIELDS

SERVICES: tuple[ServiceDescriptor, ...] = (
    gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"],
    schema_pb2.DESCRIPTOR.services_by_name["SchemaService"],
    kind_pb2.DESCRIPTOR.services_by_name["KindService"],
    session_pb2.DESCRIPTOR.services_by_name["WorkerSessionService"],
    inference_pb2.DESCRIPTOR.services_by_name["InferenceService"],
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"],
    access_pb2.DESCRIPTOR.services_by_name["AccessService"],
    config_pb2.DESCRIPTOR.services_by_name["ConfigService"],
)
TOKEN = "tmk_k1_secret"


def _path(service: ServiceDescriptor, method: MethodDescriptor) -> str:
    return f"/{service.full_name}/{method.name}"


METHODS = [(service, method) for service in SERVICES for method in service.methods]
GUARDED = [(s, m) for s, m in METHODS if _path(s, m) in RPC_ACTIONS]


def test_every_rpc_the_gateway_hosts_names_its_action_or_why_it_needs_none() -> None:
    paths = {_path(service, method) for service, method in METHODS}
    assert paths == set(RPC_ACTIONS) | {p for p in CREDENTIAL_ONLY if p.startswith("/")}
    assert not set(RPC_ACTIONS) & set(CREDENTIAL_ONLY)


def test_every_rest_route_and_websocket_op_names_its_action_or_why_it_needs_none() -> None:
    app = http_app(None, None, guard=Guard.disabled(None))  # type: ignore[arg-type]  (routes only)
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/v1/") and route.method != "HEAD"
    }
    assert routes == set(REST_ACTIONS) | {
        tuple(key.split(" ", 1)) for key in CREDENTIAL_ONLY if key.split(" ")[0] in ("GET", "POST")
    }
    assert set(_OP_FIELDS) == set(WEBSOCKET_ACTIONS) | {key[3:] for key in CREDENTIAL_ONLY if key.startswith("ws ")}


def test_every_action_is_declared_and_every_declared_one_guards_a_call() -> None:
    """The tables name declared actions only; every action not reserved guards some call, and a
    reserved one none yet (a conditional one guards a call when its request asks for it)."""
    named = {
        a for table in (RPC_ACTIONS, REST_ACTIONS, WEBSOCKET_ACTIONS) for actions in table.values() for a in actions
    } | {action for action, _ in CONDITIONAL_ACTIONS.values()}
    assert named <= set(BY_NAME)
    assert named == {action.name for action in ACTIONS if not action.reserved}


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class _Context:
    """What a servicer reads of a call: its credential; abort raises."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", TOKEN),)

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Refused(code, details)

    def time_remaining(self) -> float:
        return 5.0

    async def send_initial_metadata(self, metadata: Any) -> None:
        pass


def _request(method: MethodDescriptor) -> Any:
    """A request that passes every check made before the permission: a spec, ids, a tenant."""
    request = message_factory.GetMessageClass(method.input_type)()
    fields = request.DESCRIPTOR.fields_by_name
    spec = task_pb2.TaskSpec(tenant="acme", kind="echo", task_id="t1")
    values: dict[str, Any] = {"task_id": "t1", "tenant": "acme", "credential_id": "k1", "name": "m"}
    for name, value in values.items():
        if name in fields and fields[name].type == fields[name].TYPE_STRING:
            setattr(request, name, value)
    if "spec" in fields:
        request.spec.CopyFrom(spec)
    if "specs" in fields:
        request.specs.add().CopyFrom(spec)
    if "task_ids" in fields:
        request.task_ids.append("t1")
    if "roles" in fields:
        request.roles.append("viewer")
    return request


class _Nowhere:
    """Every dependency of a servicer: never reached, for every call here is refused before."""

    def __getattr__(self, name: str) -> Any:
        def reached(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"{name} was called before the permission was checked")

        return reached  # looked up (a method handed on) is fine; called is not


def _servicers(guard: Guard) -> dict[str, Any]:
    auditor = Auditor.disabled()
    none: Any = _Nowhere()
    return {
        "mesh.v1.GatewayService": Gateway(none, none, none, none, guard=guard, auditor=auditor),
        "mesh.v1.SchemaService": SchemaApi(none, guard),
        "mesh.v1.KindService": Kinds(none, guard, none, none, none, none),
        "mesh.v1.WorkerSessionService": SessionProxy([none], guard),
        "mesh.v1.InferenceService": InferenceRelay(none, guard, auditor),
        "mesh.v1.AuditService": AuditApi(guard, auditor),
        "mesh.v1.AccessService": AccessApi(guard),
        "mesh.v1.ConfigService": ConfigApi(none, none, guard, auditor),
    }


async def _call(servicer: Any, method: MethodDescriptor) -> None:
    handler = getattr(servicer, method.name)
    request = _request(method)
    if method.client_streaming:

        async def requests() -> AsyncIterator[Any]:
            yield request

        request = requests()
    if method.server_streaming:
        async for _ in handler(request, _Context()):
            pass
    else:
        await handler(request, _Context())


def _guard_granting(actions: set[str]) -> Guard:
    """A guard whose one key (tenant acme) holds a role granting exactly `actions`."""
    catalog = RoleCatalog([custom_role("granted", sorted(actions))] if actions else [])
    store = CredentialStore(None, None)  # type: ignore[arg-type]  (the key is known in memory)
    store.add_static_key(TOKEN, "acme", ["granted"] if actions else [], "test")
    return Guard(None, Authenticator(store, None, catalog))  # type: ignore[arg-type]


@pytest.mark.parametrize(("service", "method"), GUARDED, ids=[_path(s, m) for s, m in GUARDED])
async def test_each_handler_refuses_naming_the_tables_action(
    service: ServiceDescriptor, method: MethodDescriptor
) -> None:
    """Without its action, a call is PERMISSION_DENIED naming it; granted it, the next refusal (a
    call of two actions) names the other — and nothing else is ever named."""
    expected = RPC_ACTIONS[_path(service, method)]
    granted: set[str] = set()
    for _ in expected:
        with pytest.raises(_Refused) as refused:
            await _call(_servicers(_guard_granting(granted))[service.full_name], method)
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED, refused.value
        named = [action for action in expected if f"may not {action}" in refused.value.details]
        assert len(named) == 1 and named[0] not in granted, refused.value.details
        granted.add(named[0])
    assert granted == set(expected)
