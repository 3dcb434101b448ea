"""Auth on a real mesh when things go wrong: default submit limits, a credentials bucket deleted
under the gateway, and a key used the instant it is created, on every gateway replica."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import grpc.aio
import pytest

from clients.sdk import Client
from mesh.errors import ResourceExhausted, Unauthenticated
from mesh.supervisor import Plan, Supervisor, admin_key, build_plan
from mesh.v1 import gateway_pb2, gateway_pb2_grpc
from services.gateway._auth import CREDENTIALS_BUCKET
from tests.conftest import eventually
from tests.integration.conftest import Mesh as Running

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Mesh:
    plan: Plan
    admin: str

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.plan.public_port}"


@pytest.fixture(scope="module")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    """One gateway, auth on, a low per-credential limit (1 submit/s, burst 3), tenant limit as default."""
    state = tmp_path_factory.mktemp("robust")
    plan = build_plan(state, public_port=0, workers=1, auth=True, credential_limit=(1.0, 3.0))
    async with Supervisor(plan):
        yield Mesh(plan, admin_key(state))


async def _new_key(mesh: Mesh, tenant: str, roles: list[str]) -> tuple[str, str]:
    async with Client(mesh.endpoint, credential=mesh.admin) as admin:
        created = await admin.create_api_key(tenant, roles, name="robustness")
    return created.key_id, created.api_key


def test_submit_limits_are_on_by_default_in_the_plan(tmp_path: Path) -> None:
    """`tidemesh up`'s plan limits every gateway per tenant and per credential unless told otherwise."""
    plan = build_plan(tmp_path / "mesh", public_port=0, auth=True, gateways=2)
    for gateway in (p for p in plan.processes if p.name.startswith("gateway")):
        command = " ".join(gateway.command)
        assert "--tenant-rate 1000 --tenant-burst 2000" in command
        assert "--credential-rate 500 --credential-burst 1000" in command


async def test_a_burst_past_the_credential_limit_is_refused_with_a_retry_after(secured: Mesh) -> None:
    """Past the burst, gRPC answers RESOURCE_EXHAUSTED with a retry-after and REST 429 with Retry-After."""
    _, key = await _new_key(secured, "limited", ["submit", "read"])
    async with Client(secured.endpoint, tenant="limited", credential=key) as client:
        with pytest.raises(ResourceExhausted, match="credential") as caught:
            for i in range(10):
                await client.submit("echo", {"text": str(i)})
        assert 0 < caught.value.retry_after_s <= 1.0
    async with aiohttp.ClientSession() as session:
        statuses = []
        for i in range(6):
            async with session.post(
                f"https://{secured.endpoint}/v1/tasks",
                json={"kind": "echo", "tenant": "limited", "payload": {"text": f"rest {i}"}},
                headers={"x-api-key": key},
            ) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                    assert (await response.json())["error_class"] == "resource_exhausted"
                    break
        assert statuses[-1] == 429, statuses


async def test_a_deleted_credentials_bucket_is_declared_again_and_revocation_still_holds(secured: Mesh) -> None:
    """After `tm_credentials` is deleted, CreateApiKey and RevokeCredential succeed on a re-created
    bucket (never UNKNOWN), the revoked key is refused, and the watch follows the new bucket."""
    old_id, old_key = await _new_key(secured, "acme", ["read"])
    nc = await Running(secured.plan).nats()  # the admin NATS user, over TLS
    try:
        js = nc.jetstream()
        await js.delete_key_value(CREDENTIALS_BUCKET)

        new_id, new_key = await _new_key(secured, "acme", ["read"])  # was UNKNOWN NoStreamResponseError
        async with Client(secured.endpoint, credential=secured.admin) as admin:
            await admin.revoke_credential(old_id, "deleted bucket drill")
        kv = await js.key_value(CREDENTIALS_BUCKET)
        assert json.loads((await kv.get(f"revoked.{old_id}")).value)["reason"] == "deleted bucket drill"
        assert (await kv.get(f"apikey.{new_id}")).value

        async with Client(secured.endpoint, tenant="acme", credential=old_key) as revoked:
            with pytest.raises(Unauthenticated, match="revoked"):
                await revoked.list_tasks()
        async with Client(secured.endpoint, tenant="acme", credential=new_key) as fresh:
            await fresh.list_tasks()

            # A revocation recorded by someone else in the new bucket reaches this gateway by its watch.
            await kv.put(f"revoked.{new_id}", json.dumps({"reason": "written by another replica"}).encode())

            async def refused() -> bool:
                try:
                    await fresh.list_tasks()
                except Unauthenticated:
                    return True
                return False

            await eventually(refused, timeout_s=15, what="the gateway's watch follows the re-created bucket")
    finally:
        await nc.close()


async def test_a_new_key_works_on_the_next_call_on_every_replica(tmp_path: Path) -> None:
    """With two gateway replicas, a key CreateApiKey just returned is accepted by the first call on
    the other replica and on its own, over REST and gRPC, 20 times in a row."""
    state = tmp_path / "mesh"
    plan = build_plan(state, public_port=0, workers=0, auth=True, gateways=2)
    async with Supervisor(plan):
        endpoint, admin = f"127.0.0.1:{plan.public_port}", admin_key(state)
        base = f"https://{endpoint}"
        async with aiohttp.ClientSession() as session, Running(plan).public_channel() as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)

            async def replica_of(session_id: str) -> str:
                headers = {"x-tidemesh-session": session_id, "x-api-key": admin}
                async with session.get(f"{base}/v1/tasks/no-such-task", headers=headers) as response:
                    assert response.status == 404
                    return response.headers["x-tidemesh-replica"]

            sessions: dict[str, str] = {}
            for i in range(64):
                sessions.setdefault(await replica_of(f"s-{i}"), f"s-{i}")
                if len(sessions) == 2:
                    break
            assert len(sessions) == 2, "two session ids that reach the two replicas"
            (replica_a, session_a), (replica_b, session_b) = sessions.items()

            # One WebSocket per replica, under a key both know by now: each round refreshes them in-band
            # with a key just minted, which must be accepted on either replica too.
            opening = await stub.CreateApiKey(
                gateway_pb2.CreateApiKeyRequest(tenant="fresh", roles=["read"], name="websockets"),
                metadata=(("x-api-key", admin),),
                timeout=10,
            )
            sockets = {}
            for session_id in (session_a, session_b):
                sockets[session_id] = await session.ws_connect(
                    f"wss://{endpoint}/v1/ws", headers={"x-tidemesh-session": session_id, "x-api-key": opening.api_key}
                )
            failures = []
            for round_ in range(20):
                creator, other = (session_a, session_b) if round_ % 2 == 0 else (session_b, session_a)
                created = await stub.CreateApiKey(
                    gateway_pb2.CreateApiKeyRequest(tenant="fresh", roles=["read"], name=f"round {round_} ws"),
                    metadata=(("x-api-key", admin), ("x-tidemesh-session", creator)),
                    timeout=10,
                )
                for session_id in (other, creator):
                    ws = sockets[session_id]
                    await ws.send_json({"op": "refresh", "id": f"r{round_}", "api_key": created.api_key})
                    reply = await ws.receive_json(timeout=10)
                    if reply.get("type") != "refreshed":
                        failures.append((round_, "websocket refresh", session_id, reply))
                created = await stub.CreateApiKey(
                    gateway_pb2.CreateApiKeyRequest(tenant="fresh", roles=["read"], name=f"round {round_}"),
                    metadata=(("x-api-key", admin), ("x-tidemesh-session", creator)),
                    timeout=10,
                )
                for session_id in (other, creator):  # the replica that did not create it first
                    headers = {"x-tidemesh-session": session_id, "x-api-key": created.api_key}
                    async with session.get(f"{base}/v1/tasks?tenant=fresh", headers=headers) as response:
                        if response.status != 200:
                            failures.append((round_, "rest", response.headers["x-tidemesh-replica"], response.status))
                created = await stub.CreateApiKey(
                    gateway_pb2.CreateApiKeyRequest(tenant="fresh", roles=["read"], name=f"round {round_} grpc"),
                    metadata=(("x-api-key", admin), ("x-tidemesh-session", creator)),
                    timeout=10,
                )
                for session_id in (other, creator):
                    try:
                        await stub.ListTasks(
                            gateway_pb2.ListTasksRequest(tenant="fresh", limit=1),
                            metadata=(("x-api-key", created.api_key), ("x-tidemesh-session", session_id)),
                            timeout=10,
                        )
                    except grpc.aio.AioRpcError as exc:
                        failures.append((round_, "grpc", session_id, exc.code().name, exc.details()))
            for ws in sockets.values():
                await ws.close()
            assert failures == [], f"{len(failures)} first calls refused, replicas {replica_a} / {replica_b}"
