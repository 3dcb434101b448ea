"""Least privilege on a real mesh (the shared auth mesh, `secured`): keys of several built-in and
custom roles make real calls through Envoy — each allowed or PERMISSION_DENIED naming its action,
and `can-i` (the SDK's and the CLI's) answers exactly as the call went; a tenant-admin mints and
revokes its own tenant's keys only, never more than it holds; refusals are audited by action."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc.aio
import pytest

from clients.sdk import Client
from clients.sdk._client import mesh_channel
from mesh.errors import InvalidArgument, PermissionDenied
from mesh.rpc import raise_from_rpc_error
from mesh.v1 import audit_pb2, audit_pb2_grpc
from tests.integration.conftest import Secured

pytestmark = pytest.mark.integration

TIDEMESH = str(Path(sys.executable).parent / "tidemesh")
OWN, OTHER = "roles-a", "roles-b"


async def _audit(secured: Secured, credential: str) -> list[Any]:
    async with mesh_channel(secured.endpoint, credential) as channel:
        request = audit_pb2.ListAuditRecordsRequest(limit=500)
        try:
            return list((await audit_pb2_grpc.AuditServiceStub(channel).ListAuditRecords(request, timeout=10)).records)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)


def _calls(secured: Secured, client: Client, credential: str) -> list[tuple[str, str, Callable[[], Awaitable[Any]]]]:
    """(action, tenant, a real call that needs exactly it) — tenant "" for an action on what tenants share."""
    return [
        ("task.submit", OWN, lambda: client.submit("echo", {"text": "mine"})),
        ("task.submit", OTHER, lambda: Client.submit(_for(client, OTHER), "echo", {"text": "theirs"})),
        ("task.read", OWN, lambda: client.list_tasks(tenant=OWN)),
        ("task.read", OTHER, lambda: client.list_tasks(tenant=OTHER)),
        ("dlq.read", OWN, lambda: client.dead_letters(tenant=OWN)),
        ("dlq.purge", OWN, lambda: client.purge_dead_letters(tenant=OWN)),
        ("dlq.purge", OTHER, lambda: client.purge_dead_letters(tenant=OTHER)),
        ("status.read", OWN, client.status),
        ("auth.key.create", OWN, lambda: client.create_api_key(OWN, ["viewer"], name="minted")),
        ("model.read", "", lambda: client.models.list()),
        ("audit.read", "", lambda: _audit(secured, credential)),
    ]


def _for(client: Client, tenant: str) -> Client:
    client.tenant = tenant
    return client


# Which of the calls above each key may make (written out: the mesh must agree).
KEYS: dict[str, tuple[str, list[str], set[tuple[str, str]]]] = {
    "viewer": (OWN, ["viewer"], {("task.read", OWN), ("dlq.read", OWN), ("status.read", OWN), ("model.read", "")}),
    "submitter": (OWN, ["submitter"], {("task.submit", OWN)}),
    "operator": (
        OWN,
        ["operator"],
        {("task.submit", OWN), ("task.read", OWN), ("dlq.read", OWN), ("dlq.purge", OWN), ("status.read", OWN)}
        | {("model.read", "")},
    ),
    "tenant-admin": (
        OWN,
        ["tenant-admin"],
        {("task.submit", OWN), ("task.read", OWN), ("dlq.read", OWN), ("dlq.purge", OWN), ("status.read", OWN)}
        | {("model.read", ""), ("auth.key.create", OWN)},
    ),
    "auditor": ("*", ["auditor"], {("audit.read", "")}),
    "replayer": ("*", ["replayer"], {("task.read", OWN), ("dlq.read", OWN)}),  # custom: limited to roles-a
    "legacy read": (OWN, ["read"], {("task.read", OWN), ("dlq.read", OWN), ("status.read", OWN), ("model.read", "")}),
}


@pytest.mark.parametrize("name", sorted(KEYS))
async def test_each_role_makes_the_calls_it_holds_and_can_i_agrees(secured: Secured, name: str) -> None:
    tenant, roles, allowed = KEYS[name]
    key_id, key = await secured.key(tenant, roles, name=name)
    async with Client(secured.endpoint, tenant=OWN, credential=key) as client:
        for action, where, call in _calls(secured, client, key):
            client.tenant = OWN
            answer = await client.check_access(action, where)
            try:
                await call()
                went = True
            except PermissionDenied as exc:
                went = False
                assert f"may not {action}" in exc.message, (name, action, where, exc.message)
            expected = (action, where) in allowed
            assert went is expected, (name, action, where)
            assert answer.allowed is expected, (name, action, where, answer)
            assert answer.credential_id == key_id and answer.action == action
            if expected:
                assert answer.role and answer.role in answer.reason
            else:
                assert not answer.role and answer.reason


async def test_a_tenant_admin_manages_its_own_tenants_keys_only(secured: Secured) -> None:
    """It mints an operator key for its tenant (which works there), never one for another tenant,
    for every tenant, or with more than it holds; it revokes its tenant's keys, and another
    tenant's key answers exactly like one that does not exist."""
    _, admin_of_a = await secured.key(OWN, ["tenant-admin"])
    other_id, _ = await secured.key(OTHER, ["viewer"])
    async with Client(secured.endpoint, tenant=OWN, credential=admin_of_a) as admin_a:
        minted = await admin_a.create_api_key(OWN, ["operator"], name="on-call")
        async with Client(secured.endpoint, tenant=OWN, credential=minted.api_key) as operator:
            assert await operator.purge_dead_letters(tenant=OWN) == 0
        with pytest.raises(PermissionDenied, match=r"may not auth\.key\.create: .*not in tenant 'roles-b'"):
            await admin_a.create_api_key(OTHER, ["viewer"])
        with pytest.raises(PermissionDenied, match=r"may not auth\.key\.create"):
            await admin_a.create_api_key("*", ["auditor"])
        with pytest.raises(PermissionDenied, match=r"may not give roles: model-ops grants model\.load"):
            await admin_a.create_api_key(OWN, ["model-ops"])
        with pytest.raises(InvalidArgument) as bad:
            await admin_a.create_api_key(OWN, ["opertor"])
        assert bad.value.field == "roles" and "did you mean operator?" in bad.value.reason
        refusals = []
        for credential_id in (other_id, "no-such-key"):
            with pytest.raises(PermissionDenied) as refused:
                await admin_a.revoke_credential(credential_id, "not mine")
            refusals.append(refused.value.message.replace(credential_id, "ID"))
        assert refusals[0] == refusals[1] and "is no API key of a tenant this credential administers" in refusals[0]
        await admin_a.revoke_credential(minted.key_id, "rotated")
    async with Client(secured.endpoint, tenant=OWN, credential=minted.api_key) as revoked:
        with pytest.raises(Exception, match="was revoked"):
            await revoked.status()


async def test_a_custom_role_is_limited_to_its_tenants(secured: Secured) -> None:
    """replayer (the manifest's own, tenants [roles-a]) is not minted for roles-b; model-ops, which
    lists no tenants but acts on no tenant, is minted for every tenant and only reads and loads models."""
    with pytest.raises(InvalidArgument, match="replayer is limited to tenants roles-a, not 'roles-b'"):
        await secured.key(OTHER, ["replayer"])
    _, model_ops = await secured.key("*", ["model-ops"])
    async with Client(secured.endpoint, tenant=OWN, credential=model_ops) as client:
        assert (await client.check_access("model.load")).role == "model-ops"
        await client.models.list()
        with pytest.raises(PermissionDenied, match=r"may not task\.submit"):
            await client.submit("echo", {"text": "x"})


async def test_refusals_are_audited_with_their_action_and_rest_names_it_too(secured: Secured) -> None:
    """An operator's attempt to mint a key is recorded as refused under auth.key.create, with why;
    a viewer's REST submit is a 403 naming task.submit."""
    key_id, operator = await secured.key(OWN, ["operator"])
    async with Client(secured.endpoint, tenant=OWN, credential=operator) as client:
        with pytest.raises(PermissionDenied):
            await client.create_api_key(OWN, ["viewer"])
    records = [r for r in await _audit(secured, secured.admin) if r.actor.credential_id == key_id]
    assert [(r.action, r.decision, r.outcome) for r in records] == [("auth.key.create", "refused", "refused")]
    assert "may not auth.key.create: no role of it grants auth.key.create" in records[0].detail
    assert list(records[0].actor.roles) == ["operator"]
    _, viewer = await secured.key(OWN, ["viewer"])
    async with aiohttp.ClientSession(headers={"Authorization": f"ApiKey {viewer}"}) as session:
        body = {"kind": "echo", "tenant": OWN, "payload": {"text": "x"}}
        async with session.post(f"https://{secured.endpoint}/v1/tasks", json=body) as response:
            answer = await response.json()
    assert response.status == 403 and "may not task.submit" in answer["message"], answer


async def _cli(secured: Secured, credential: str, *argv: str) -> tuple[int, str, str]:
    """`tidemesh ARGV` against the shared auth mesh; the credential in the environment, never in argv."""
    process = await asyncio.create_subprocess_exec(
        TIDEMESH,
        *argv,
        "--endpoint",
        secured.endpoint,
        "--state-dir",
        str(secured.state),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TIDEMESH_API_KEY": credential},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_can_i_explains_and_exits_by_the_answer(secured: Secured) -> None:
    """`tidemesh auth can-i`: exit 0 and the allowing role; exit 1 and what is missing; an unknown
    action is exit 2 naming the field; `auth key --roles` takes the new names and refuses a wrong one."""
    _, operator = await secured.key(OWN, ["operator"])
    code, out, _ = await _cli(secured, operator, "auth", "can-i", "dlq.purge", "-o", "json")
    assert code == 0 and json.loads(out) | {"credential_id": ""} == {
        "allowed": True,
        "action": "dlq.purge",
        "tenant": OWN,
        "role": "operator",
        "reason": "operator grants dlq.purge in tenant 'roles-a'",
        "credential_id": "",
        "credential_tenant": OWN,
        "roles": ["operator"],
    }
    code, out, _ = await _cli(secured, operator, "auth", "can-i", "dlq.purge", "--tenant", OTHER)
    assert code == 1 and out.startswith("no: dlq.purge in roles-b — its roles grant dlq.purge in tenant 'roles-a'")
    code, _, err = await _cli(secured, operator, "auth", "can-i", "dlq.prge")
    assert code == 2 and "action: unknown action 'dlq.prge'; did you mean dlq.purge?" in err
    code, out, _ = await _cli(
        secured, secured.admin, "auth", "key", "--tenant", OWN, "--roles", "tenant-admin", "-o", "json"
    )
    assert code == 0 and json.loads(out)["api_key"].startswith("tmk_")
    code, _, err = await _cli(secured, secured.admin, "auth", "key", "--tenant", OWN, "--roles", "viewer,bogus")
    assert code == 2 and "roles: unknown role 'bogus'" in err
