"""Auth on a real mesh, through Envoy: API keys and JWTs on every protocol, tenant and role
scopes, in-band refresh that keeps a stream going, expiry and revocation that end one."""

from __future__ import annotations

import asyncio
import json
import math
import time
from types import ModuleType

import aiohttp
import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.sdk import Client
from mesh.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, Unauthenticated
from mesh.v1 import task_pb2
from services.gateway._auth import mint_token
from tests.conftest import eventually
from tests.integration.conftest import Secured

pytestmark = pytest.mark.integration

SLOW = {"text": "a b c d e f", "chunks": 12, "chunk_delay_ms": 400}  # about 5 s of partial results


async def _key(secured: Secured, tenant: str, roles: list[str]) -> tuple[str, str]:
    return await secured.key(tenant, roles)


async def test_every_endpoint_but_health_requires_a_credential(secured: Secured) -> None:
    base = f"https://{secured.endpoint}"
    async with Client(secured.endpoint, tenant="acme") as anonymous:
        with pytest.raises(Unauthenticated, match="credential is required"):
            await anonymous.submit("echo", {"text": "x"})
        with pytest.raises(Unauthenticated):
            await anonymous.status()
    for credential, reason in [("Bearer not-a-jwt", "invalid token"), ("ApiKey tmk_nope_x", "unknown API key")]:
        async with Client(secured.endpoint, tenant="acme", credential=credential.split(" ")[1]) as bad:
            with pytest.raises(Unauthenticated, match=reason):
                await bad.submit("echo", {"text": "x"})
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/v1/tasks", json={"kind": "echo", "tenant": "acme"}) as response:
            assert response.status == 401
            assert (await response.json())["error_class"] == "unauthenticated"
        async with session.get(f"{base}/v1/tasks/abc/events") as response:
            assert response.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"wss://{secured.endpoint}/v1/ws")
        assert refused.value.status == 401
        async with session.get(f"{base}/v1/openapi.json") as response:
            assert response.status == 401
        async with session.get(f"{base}/v1/openapi.json", headers={"X-Api-Key": secured.admin}) as response:
            assert response.status == 200
        async with session.get(f"{base}/metrics") as response:
            assert response.status == 404  # scrapers use the gateway's own port, not the public one
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
    async with grpc.aio.secure_channel(secured.endpoint, grpc.ssl_channel_credentials()) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_api_keys_are_scoped_to_a_tenant_and_roles(secured: Secured) -> None:
    _, writer = await _key(secured, "acme", ["submit", "read"])
    _, reader = await _key(secured, "acme", ["read"])
    _, other = await _key(secured, "globex", ["submit", "read"])
    async with Client(secured.endpoint, tenant="acme", credential=writer) as acme:
        submitted = await acme.submit("echo", {"text": "mine"})
        events = [e async for e in acme.watch(submitted.task_id)]
        assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
        with pytest.raises(PermissionDenied, match="tenant 'globex'"):
            await Client.submit(_as_tenant(acme, "globex"), "echo", {"text": "not mine"})
        with pytest.raises(PermissionDenied, match="admin"):
            await acme.create_api_key("acme", ["admin"])
    async with Client(secured.endpoint, tenant="acme", credential=reader) as read_only:
        assert (await read_only.get(submitted.task_id)).state == task_pb2.TASK_STATE_SUCCEEDED
        with pytest.raises(PermissionDenied, match=r"may not task\.submit: no role of it grants"):
            await read_only.submit("echo", {"text": "x"})
    async with Client(secured.endpoint, tenant="", credential=reader) as own:

        async def listed() -> bool:
            tasks, _ = await own.list_tasks()  # no tenant named: the credential's own
            return submitted.task_id in [task.spec.task_id for task in tasks]

        await eventually(listed, what="the reader lists its tenant's task")
    async with Client(secured.endpoint, tenant="globex", credential=other) as globex:
        with pytest.raises(PermissionDenied):
            await globex.list_tasks(tenant="acme")  # naming a tenant is a question of permission
        # Another tenant's task is answered exactly like a missing one: ids cannot be probed.
        with pytest.raises(NotFound, match=f"task '{submitted.task_id}' does not exist"):
            await globex.get(submitted.task_id)
        with pytest.raises(NotFound, match=f"task '{submitted.task_id}' does not exist"):
            [e async for e in globex.watch(submitted.task_id)]


def _as_tenant(client: Client, tenant: str) -> Client:
    client.tenant = tenant
    return client


async def test_jwts_are_checked(secured: Secured) -> None:
    good = secured.token("acme", ["submit", "read"], ttl_s=60)
    async with Client(secured.endpoint, tenant="acme", credential=good) as client:
        await client.submit("echo", {"text": "signed"})
    cases = [
        (secured.token("acme", ["submit"], ttl_s=-5), "token expired"),
        (secured.token("acme", ["submit"], ttl_s=60, audience="elsewhere"), "audience"),
        (mint_token("another-secret-of-at-least-32-bytes!", "acme", ["submit"], "tidemesh", 60), "signature"),
        (secured.token("*", ["submit"], ttl_s=60), "holds only roles for every tenant"),
    ]
    for token, reason in cases:
        async with Client(secured.endpoint, tenant="acme", credential=token) as client:
            with pytest.raises(Unauthenticated, match=reason):
                await client.submit("echo", {"text": "x"})


async def test_grpc_stream_survives_an_in_band_refresh_and_ends_on_expiry(secured: Secured) -> None:
    """A 2 s token on a ~5 s stream: refreshed in-band, the stream runs to its final event with
    every sequence number once; not refreshed, it ends with UNAUTHENTICATED soon after expiry."""
    async with Client(secured.endpoint, tenant="acme", credential=secured.token("acme", ["submit", "read"], 2)) as c:
        task = await c.submit("stream", SLOW)
        sequences = []
        async for event in c.watch(task.task_id):
            sequences.append(event.sequence)
            if len(sequences) == 2:
                await c.refresh_credential(secured.token("acme", ["submit", "read"], 60))
        assert sequences == list(range(1, len(sequences) + 1)) and len(sequences) >= 14

    async with Client(secured.endpoint, tenant="acme", credential=secured.token("acme", ["submit", "read"], 2)) as c:
        task = await c.submit("stream", SLOW)
        started = time.monotonic()
        with pytest.raises(Unauthenticated, match="expired"):
            [e async for e in c.watch(task.task_id)]
        assert time.monotonic() - started < 4.0


async def test_revoking_a_key_ends_its_sse_stream_and_its_calls(secured: Secured) -> None:
    key_id, key = await _key(secured, "acme", ["submit", "read"])
    async with Client(secured.endpoint, tenant="acme", credential=key) as client:
        task = await client.submit("stream", SLOW)
    headers = {"Authorization": f"ApiKey {key}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"https://{secured.endpoint}/v1/tasks/{task.task_id}/events", headers=headers) as sse:
            assert sse.status == 200
            first = await sse.content.readuntil(b"\n\n")
            assert first.startswith(b"event: stream")
            await sse.content.readuntil(b"\n\n")  # a task event: the stream is live
            async with Client(secured.endpoint, credential=secured.admin) as admin:
                revoked_at = time.monotonic()
                await admin.revoke_credential(key_id, "leaked")
            rest = await asyncio.wait_for(sse.content.read(), timeout=5.0)
            ended_after = time.monotonic() - revoked_at
        assert b"event: error" in rest and b"revoked: leaked" in rest
        assert ended_after < 2.0
        async with session.post(
            f"https://{secured.endpoint}/v1/tasks", json={"kind": "echo", "tenant": "acme"}, headers=headers
        ) as response:
            assert response.status == 401
            assert "revoked" in (await response.json())["message"]


async def test_websocket_refresh_in_band_and_expiry(secured: Secured) -> None:
    async with Client(secured.endpoint, tenant="acme", credential=secured.admin) as admin:
        first = await admin.submit("stream", SLOW)
        second = await admin.submit("stream", SLOW)
    short = secured.token("acme", ["read"], ttl_s=2)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"wss://{secured.endpoint}/v1/ws?access_token={short}") as ws:
            await ws.send_json({"op": "subscribe", "task_id": first.task_id})
            await ws.send_json({"op": "refresh", "id": "r1", "token": secured.token("acme", ["read"], 60)})
            events, refreshed = [], None
            async for frame in ws:
                message = json.loads(frame.data)
                if message["type"] == "refreshed":
                    refreshed = message
                elif message["type"] == "event":
                    events.append(message["event"])
                    if message["event"].get("final"):
                        break
                else:
                    raise AssertionError(message)
            assert refreshed is not None and refreshed["expires_at"] > time.time() + 30
            assert [int(e["sequence"]) for e in events] == list(range(1, len(events) + 1))

        short = secured.token("acme", ["read"], ttl_s=2)
        async with session.ws_connect(f"wss://{secured.endpoint}/v1/ws?access_token={short}") as ws:
            await ws.send_json({"op": "subscribe", "task_id": second.task_id})
            errors = []
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT and json.loads(frame.data)["type"] == "error":
                    errors.append(json.loads(frame.data))
            assert ws.close_code == 4401
            assert any(e["error_class"] == "unauthenticated" and "expired" in e["message"] for e in errors)


async def test_submits_are_rate_limited_per_credential(secured: Secured) -> None:
    """Burst 10 at 2/s per credential: quick submits are refused with a retry-after once the burst and
    what refilled meanwhile are spent, while another credential of the same tenant still submits.
    (The count admitted allows for the tokens a slow machine refills during the burst itself.)"""
    _, key = await _key(secured, "acme", ["submit"])
    _, other = await _key(secured, "acme", ["submit"])
    async with Client(secured.endpoint, tenant="acme", credential=key) as client:
        admitted, refused = 0, None
        started = time.monotonic()
        while refused is None and admitted < 40:
            try:
                await client.submit("echo", {"text": str(admitted)})
                admitted += 1
            except ResourceExhausted as error:
                refused = error
        elapsed = time.monotonic() - started
        assert refused is not None and "credential" in str(refused)
        assert 10 <= admitted <= 10 + math.ceil(2 * elapsed), (admitted, elapsed)
        assert 0 < refused.retry_after_s <= 0.6
    async with Client(secured.endpoint, tenant="acme", credential=other) as client:
        await client.submit("echo", {"text": "fine"})


async def test_secrets_never_reach_the_logs(secured: Secured) -> None:
    """A realistic workload — a JWT refused for a role, API keys created, used, refreshed in-band and
    revoked, a malformed and an unknown key, a revoked key's stream — leaves no secret in any log file."""
    token = secured.token("acme", ["read"], 60)
    fresh = secured.token("acme", ["read"], 120)
    async with Client(secured.endpoint, tenant="acme", credential=token) as client:
        with pytest.raises(PermissionDenied):
            await client.submit("echo", {"text": "x"})
    key_id, key = await _key(secured, "acme", ["submit", "read"])
    async with Client(secured.endpoint, tenant="acme", credential=key) as client:
        task_id = (await client.submit("echo", {"text": "logged?"})).task_id
        [e async for e in client.watch(task_id)]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"wss://{secured.endpoint}/v1/ws?access_token={token}") as ws:
            await ws.send_json({"op": "refresh", "id": "r", "token": fresh})
            assert json.loads((await ws.receive()).data)["type"] == "refreshed"
        bad = ("tmk_nosuch00000_" + "s3cr3t" * 6, "tmk_" + "x" * 40, "not-even-a-key-" + "q" * 30)
        for credential in bad:
            async with session.get(f"https://{secured.endpoint}/v1/tasks/{task_id}", headers={"x-api-key": credential}):
                pass
    async with Client(secured.endpoint, credential=secured.admin) as admin:
        await admin.revoke_credential(key_id, reason="rotated")
    logs = "".join(path.read_text() for path in (secured.state / "logs").glob("*.log"))
    assert "gateway" in logs
    for secret in (secured.admin, secured.secret, token, fresh, key, *bad):
        assert secret not in logs
    assert key.split("_", 2)[2] not in logs  # not even the secret part alone


async def test_sse_stream_survives_an_in_band_refresh(secured: Secured) -> None:
    """SSE cannot send upward: the stream's first event names it, and POST /v1/streams/{id}/refresh
    with a new credential keeps it going past the first token's expiry, every event once."""
    async with Client(secured.endpoint, tenant="acme", credential=secured.admin) as admin:
        task = await admin.submit("stream", SLOW)
    short = secured.token("acme", ["read"], ttl_s=2)
    url = f"https://{secured.endpoint}/v1/tasks/{task.task_id}/events?access_token={short}"
    async with aiohttp.ClientSession() as session, session.get(url) as sse:
        announced = json.loads((await sse.content.readuntil(b"\n\n")).split(b"data: ", 1)[1])
        fresh = {"Authorization": f"Bearer {secured.token('acme', ['read'], 60)}"}
        refresh_url = f"https://{secured.endpoint}/v1/streams/{announced['stream_id']}/refresh"
        async with session.post(refresh_url, headers=fresh) as response:
            assert response.status == 200
            assert (await response.json())["expires_at"] > time.time() + 30
        other = {"Authorization": f"Bearer {secured.token('globex', ['read'], 60)}"}
        async with session.post(refresh_url, headers=other) as response:
            assert response.status == 403  # a refresh may not move the stream to another tenant
        body = await asyncio.wait_for(sse.content.read(), timeout=15.0)
    assert b"event: error" not in body
    sequences = [int(line[4:]) for line in body.decode().splitlines() if line.startswith("id: ")]
    assert sequences == list(range(1, len(sequences) + 1)) and len(sequences) >= 14


async def test_another_tenants_task_answers_like_a_missing_one_on_every_surface(secured: Secured) -> None:
    """gRPC get/watch/cancel, REST get and cancel, SSE and WebSocket subscribe, and the dead-letter
    record: a foreign task's answer is the same as a never-existing id's, in code and in message."""
    _, mine = await _key(secured, "iso-a", ["submit", "read"])
    _, theirs = await _key(secured, "iso-b", ["submit", "read"])
    _, submit_only = await _key(secured, "iso-b", ["submit"])
    async with Client(secured.endpoint, tenant="iso-a", credential=mine) as owner:
        task_id = (await owner.submit("echo", {"text": "private"})).task_id
        [e async for e in owner.watch(task_id)]
        failed = (await owner.submit("embed", {"text": "x", "model": "no-such-model"})).task_id
        [e async for e in owner.watch(failed)]
        assert (await owner.dead_letter(failed)).task_id == failed  # a record exists to be hidden
    missing = "never-existed-0000"
    async with Client(secured.endpoint, tenant="iso-b", credential=theirs) as stranger:
        for probe in (task_id, missing):
            with pytest.raises(NotFound) as got:
                await stranger.get(probe)
            assert got.value.message == f"task {probe!r} does not exist"
            with pytest.raises(NotFound):
                [e async for e in stranger.watch(probe)]
            with pytest.raises(NotFound):
                await stranger.cancel(probe)
        for probe in (failed, missing):
            with pytest.raises(NotFound) as got:
                await stranger.dead_letter(probe)
            assert got.value.message == f"task {probe!r} has no dead-letter record"
    async with Client(secured.endpoint, tenant="iso-b", credential=submit_only) as roleless:
        for probe in (task_id, failed, missing):  # without the role, existing and missing ids look alike
            with pytest.raises(PermissionDenied, match=r"may not task\.read: no role of it grants"):
                await roleless.get(probe)
            with pytest.raises(PermissionDenied, match=r"may not dlq\.read: no role of it grants"):
                await roleless.dead_letter(probe)
    headers = {"Authorization": f"ApiKey {theirs}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for probe in (task_id, missing):
            base = f"https://{secured.endpoint}/v1/tasks/{probe}"
            for method, url in (("GET", base), ("GET", f"{base}/events"), ("POST", f"{base}/cancel")):
                async with session.request(method, url) as response:
                    body = await response.json()
                    assert response.status == 404 and body["message"] == f"task {probe!r} does not exist", body
            async with session.ws_connect(f"wss://{secured.endpoint}/v1/ws") as ws:
                await ws.send_json({"op": "subscribe", "task_id": probe})
                frame = json.loads((await ws.receive()).data)
                assert frame["error_class"] == "not_found" and frame["message"] == f"task {probe!r} does not exist"


async def test_a_key_for_every_tenant_needs_the_admin_role(secured: Secured) -> None:
    """CreateApiKey for tenant '*' with only the read role is INVALID_ARGUMENT naming `tenant`, as a
    JWT naming every tenant without admin is refused; with admin it is created."""
    async with Client(secured.endpoint, credential=secured.admin) as admin:
        with pytest.raises(InvalidArgument) as refused:
            await admin.create_api_key("*", ["read"], name="wide reader")
        assert refused.value.field == "tenant"
        assert (await admin.create_api_key("*", ["admin"], name="second admin")).api_key


async def test_a_tenants_status_shows_only_its_own_figures(secured: Secured) -> None:
    """While another tenant has work queued and running, GetMeshStatus with a tenant's read key lists
    only that tenant's partitions and lane totals that count only them; the admin sees the other."""
    _, reader = await _key(secured, "status-a", ["submit", "read"])
    _, busy = await _key(secured, "status-b", ["submit", "read"])
    async with (
        Client(secured.endpoint, tenant="status-b", credential=busy) as other,
        Client(secured.endpoint, tenant="status-a", credential=reader) as own,
        Client(secured.endpoint, credential=secured.admin) as admin,
    ):
        payload = {"text": "hold", "chunks": 1, "chunk_delay_ms": 3000}
        held = await other.submit_many([other.spec("stream", payload) for _ in range(8)])  # within the burst
        mine = await own.submit_many([own.spec("stream", payload) for _ in range(2)])
        try:

            async def both_visible_to_admin() -> bool:
                tenants = {q.tenant for q in (await admin.status()).tenant_queues}
                return {"status-a", "status-b"} <= tenants

            await eventually(both_visible_to_admin, what="both tenants' work in the admin's status")
            status = await own.status()
        finally:
            everything = [*held, *mine]
            await asyncio.gather(*(admin.cancel(r.task_id) for r in everything), return_exceptions=True)
    assert {q.tenant for q in status.tenant_queues} == {"status-a"}, "its own partitions, and only those"
    for lane in status.queues:
        parts = [q for q in status.tenant_queues if q.pool == lane.pool and q.priority_class == lane.priority_class]
        assert lane.pending == sum(q.pending for q in parts) and lane.in_flight == sum(q.in_flight for q in parts)


async def test_a_worker_attaches_with_a_work_key_and_nothing_else_does(secured: Secured, textpipe: ModuleType) -> None:
    """A key with the work role alone, for every tenant, attaches a worker that runs a user kind;
    it may not submit or register schemas; a submit key, a tenant's work token and no key may not
    attach, and no key for one tenant is minted with the work role (it is for every tenant)."""
    from clients.sdk import Worker, unpack
    from tests.integration._textpipe import events_of, running

    registrar = Worker(secured.endpoint, credential=secured.admin)
    registrar.definitions = dict(textpipe.worker.definitions)
    await registrar.register()
    _, work_key = await _key(secured, "*", ["work"])
    _, submit_key = await _key(secured, "acme", ["submit", "read"])
    with pytest.raises(InvalidArgument, match="worker is a role for every tenant") as refused_key:
        await _key(secured, "acme", ["work"])
    assert refused_key.value.field == "tenant"
    tenant_work_key = secured.token("acme", ["work"], ttl_s=60)  # a token for one tenant can still say so
    for credential, words in (
        (submit_key, "may not worker.attach: no role of it grants"),
        (tenant_work_key, "worker.attach for every tenant needs a role for every tenant"),
        ("", "credential"),
    ):
        refused = Worker(secured.endpoint, name="refused", credential=credential)
        refused.definitions = dict(textpipe.worker.definitions)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await asyncio.wait_for(refused.run(), 20.0)
        assert error.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
        assert words in (error.value.details() or ""), error.value.details()
    worker = Worker(secured.endpoint, name="keyed", credential=work_key)
    worker.definitions = dict(textpipe.worker.definitions)
    with pytest.raises(PermissionDenied):
        await worker.register()
    async with running(worker), Client(secured.endpoint, tenant="acme", credential=submit_key) as client:
        reply = await client.submit("textpipe.count", textpipe.CountRequest(text="a a b"))
        events = await events_of(client, reply.task_id)
        assert unpack(events[-1].output, textpipe.CountResult).words == 3
    async with Client(secured.endpoint, tenant="acme", credential=work_key) as worker_as_client:
        with pytest.raises(PermissionDenied):
            await worker_as_client.submit("textpipe.count", textpipe.CountRequest(text="x"))


async def test_run_task_needs_read_as_well_as_submit_and_stores_nothing_without_it(secured: Secured) -> None:
    """RunTask streams the task back, so it asks for both roles before anything is stored."""
    _, submit_only = await _key(secured, "runner", ["submit"])
    _, both = await _key(secured, "runner", ["submit", "read"])
    async with Client(secured.endpoint, tenant="runner", credential=submit_only) as client:
        with pytest.raises(PermissionDenied):
            async for _ in client.run("echo", {"text": "x"}, task_id="run-denied"):
                pass
    async with Client(secured.endpoint, tenant="runner", credential=both) as client:
        with pytest.raises(NotFound):
            await client.get("run-denied")
        events = [event async for event in client.run("echo", {"text": "allowed"})]
    assert events[0].state == task_pb2.TASK_STATE_QUEUED
    assert events[-1].final and events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
