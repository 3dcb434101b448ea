"""The attack suite: every way in that an outside review found, tried on a real secure mesh.

Each test is one attempt, from the same host, with what such an attacker has: the public and
internal ports, the broker's port, and — where the attack is "a component beyond its role" —
that component's own credential. Every attempt must be refused, and the mesh must be
unchanged afterwards (positive controls show the same call succeeds for the rightful caller).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import grpc
import grpc.aio
import nats
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NATS
from nats.js.errors import APIError

from clients.sdk import Client
from clients.sdk._client import mesh_channel
from mesh.errors import NotFound, PermissionDenied, Unavailable
from mesh.fabric import EVENTS_STREAM, WORK_STREAM, connect, event_subject
from mesh.rpc import raise_from_rpc_error
from mesh.supervisor import Supervisor, admin_key, build_plan
from mesh.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    task_pb2,
    worker_pb2,
    worker_pb2_grpc,
)
from tests.conftest import eventually, listening_ports
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

SERVICES = ("scheduler", "inference", "worker-1", "gateway")
CREDENTIALS = "tm_credentials"
# A refused publish or JetStream API call gets no reply: how long an attempt waits for one. An
# accepted one is answered within milliseconds, and each test's look afterwards catches one that
# went through anyway (however late its reply).
REFUSED_WAIT_S = 0.5
REFUSED = (APIError, nats.errors.TimeoutError, nats.errors.NoRespondersError)


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    """A secure mesh (the default) with auth on, as `tidemesh up` runs it."""
    plan = build_plan(tmp_path_factory.mktemp("attacked"), public_port=0, workers=1, auth=True)
    async with Supervisor(plan, health_timeout_s=60) as supervisor:
        yield Mesh(plan, supervisor)


def _admin(mesh: Mesh) -> str:
    return admin_key(Path(mesh.plan.state_dir))


async def _task(mesh: Mesh, tenant: str = "victim") -> str:
    """A finished task of `tenant`, for attacks that target an existing task."""
    async with Client(mesh.endpoint, tenant=tenant, credential=_admin(mesh)) as client:
        submitted = await client.submit("echo", {"text": "the real result"})
        events = [event async for event in client.watch(submitted.task_id)]
        assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    return submitted.task_id


async def _connect_as(mesh: Mesh, user: str, password: str, *, tls: bool = True) -> NATS:
    url = mesh.nats_url if tls else mesh.nats_url.replace("tls://", "nats://")
    return await nats.connect(
        url,
        user=user,
        password=password,
        tls=ssl.create_default_context() if tls else None,
        tls_hostname="localhost" if tls else None,
        connect_timeout=3,
        allow_reconnect=False,
        max_reconnect_attempts=0,
    )


# --- NATS -------------------------------------------------------------------------------------


async def test_nats_refuses_a_connection_without_a_credential(mesh: Mesh) -> None:
    """No user, a made-up user, and a real user with a wrong password are all refused."""
    for user, password in [("", ""), ("intruder", "guess"), ("gateway", "not-the-password")]:
        with pytest.raises(Exception, match="Authorization Violation"):
            client = await nats.connect(
                mesh.nats_url,
                user=user or None,
                password=password or None,
                tls=ssl.create_default_context(),
                tls_hostname="localhost",
                connect_timeout=3,
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
            await client.close()


def _nats_user(mesh: Mesh, component: str) -> dict[str, str]:
    return dict(json.loads((Path(mesh.plan.state_dir) / "nats" / f"{component}.json").read_text()))


async def test_nats_refuses_plaintext(mesh: Mesh) -> None:
    """A client that speaks plaintext after the server's INFO (valid user and all) is cut off
    before any command runs: the server wants a TLS handshake first."""
    creds = _nats_user(mesh, "cli")
    reader, writer = await asyncio.open_connection("127.0.0.1", mesh.plan.by_name("nats").ports["client"])
    try:
        info = json.loads((await asyncio.wait_for(reader.readline(), 5)).decode().removeprefix("INFO "))
        assert info["tls_required"] is True
        connect = {"user": creds["user"], "pass": creds["password"], "verbose": False, "tls_required": False}
        writer.write(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()
    assert b"PONG" not in answer  # closed, or an error line: never a session


def test_nats_monitoring_is_not_served(mesh: Mesh) -> None:
    """nats-server listens on its client port only: no /varz, /connz or /jsz on any TCP port."""
    nats_process = mesh.plan.by_name("nats")
    pid = mesh.supervisor.children["nats"].pid if mesh.supervisor else None
    assert pid is not None
    assert listening_ports(pid) == {nats_process.ports["client"]}
    assert "monitor" not in nats_process.ports
    assert "http:" not in (Path(mesh.plan.state_dir) / "nats.conf").read_text()


@pytest.mark.parametrize("component", ["gateway", "inference", "supervisor"])
async def test_a_forged_succeeded_event_is_refused(mesh: Mesh, component: str) -> None:
    """Only the scheduler and workers append task events: another component's user cannot
    write a fake SUCCEEDED event, and GetTask keeps answering the real result."""
    task_id = await _task(mesh)
    async with await mesh.nats(component) as intruder:
        forged = task_pb2.TaskEvent(task_id=task_id, sequence=99, state=task_pb2.TASK_STATE_SUCCEEDED)
        with pytest.raises(Exception):  # noqa: B017 - the server drops it: no ack comes back
            await intruder.jetstream(timeout=REFUSED_WAIT_S).publish(event_subject(task_id), forged.SerializeToString())
    async with Client(mesh.endpoint, credential=_admin(mesh)) as client:
        events = [event async for event in client.watch(task_id)]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert all(e.sequence != 99 for e in events)


@pytest.mark.parametrize("component", ["worker", "inference", "scheduler", "supervisor"])
async def test_only_the_gateway_writes_credentials(mesh: Mesh, component: str) -> None:
    """An admin API key record put into tm_credentials by anyone but the gateway is refused,
    and the key it would have made is unknown to Envoy's callers."""
    token = f"tmk_forged{component}_{'x' * 32}"
    record = {"digest": hashlib.sha256(token.encode()).hexdigest(), "tenant": "*", "roles": ["admin"], "name": "x"}
    async with await mesh.nats(component) as intruder:
        with pytest.raises(Exception):  # noqa: B017 - a permissions violation: no ack, or no access
            kv = await intruder.jetstream(timeout=REFUSED_WAIT_S).key_value(CREDENTIALS)
            await kv.put(f"apikey.forged{component}", json.dumps(record).encode())
    async with Client(mesh.endpoint, tenant="victim", credential=token) as forged:
        with pytest.raises(Exception, match="unknown API key"):
            await forged.status()


@pytest.mark.parametrize("component", ["scheduler", "worker", "gateway", "inference", "supervisor"])
async def test_no_service_deletes_or_purges_a_stream_or_bucket(mesh: Mesh, component: str) -> None:
    """Deleting a bucket (revocation would stop working) or purging or deleting a stream is an
    explicit admin operation: every service's user is refused, and everything is still there."""
    async with await mesh.nats(component) as intruder:
        # All at once: each waits out its own REFUSED_WAIT_S for the reply that never comes.
        js = intruder.jetstream(timeout=REFUSED_WAIT_S)
        outcomes = await asyncio.gather(
            js.delete_key_value(CREDENTIALS),
            js.delete_stream(EVENTS_STREAM),
            js.purge_stream(WORK_STREAM),
            js.purge_stream("TM_TASKS"),  # the listing: no service purges it either
            js.purge_stream("TM_DLQ"),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, REFUSED) for outcome in outcomes), outcomes
    async with await mesh.nats() as admin:
        js = admin.jetstream(timeout=5)
        for stream in (EVENTS_STREAM, WORK_STREAM, f"KV_{CREDENTIALS}"):
            assert (await js.stream_info(stream)).config.name == stream


@pytest.mark.parametrize("component", ["worker", "gateway", "inference", "supervisor"])
async def test_only_the_scheduler_reshapes_a_stream(mesh: Mesh, component: str) -> None:
    """Updating a stream can rewrite its limits or subjects (a purge or a forgery by other means):
    only the scheduler, which declares the topology, may; the stream keeps its config."""
    async with await mesh.nats() as admin:
        config = (await admin.jetstream(timeout=5).stream_info(EVENTS_STREAM)).config
    async with await mesh.nats(component) as intruder:
        with pytest.raises(REFUSED):
            await intruder.jetstream(timeout=REFUSED_WAIT_S).update_stream(replace(config, max_msgs=1))
    async with await mesh.nats() as admin:
        assert (await admin.jetstream(timeout=5).stream_info(EVENTS_STREAM)).config.max_msgs == config.max_msgs


async def test_a_junk_message_on_a_lane_cannot_come_from_outside_the_work_path(mesh: Mesh) -> None:
    """Only the scheduler and workers publish work items: the gateway's user cannot push junk
    into a lane (and what the rightful publishers send that cannot be parsed is set aside)."""
    async with await mesh.nats("gateway") as intruder:
        with pytest.raises(Exception):  # noqa: B017 - no ack for a publish the server refuses
            await intruder.jetstream(timeout=REFUSED_WAIT_S).publish(
                "tm.work.ingestion.interactive.victim", b"\x00junk"
            )
    assert (await _task(mesh)) != ""  # the lane still serves


# --- internal gRPC ports -----------------------------------------------------------------------


@pytest.mark.parametrize("process", SERVICES)
async def test_internal_ports_refuse_callers_without_a_client_certificate(mesh: Mesh, process: str) -> None:
    """Plaintext, and TLS that trusts the root but presents no certificate, both fail the handshake."""
    target = f"127.0.0.1:{mesh.port(process, 'grpc')}"
    for channel in (
        grpc.aio.insecure_channel(target),
        grpc.aio.secure_channel(target, grpc.ssl_channel_credentials()),
    ):
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_worker_identity_cannot_admit_or_abort(mesh: Mesh) -> None:
    """The scheduler's admission and abort belong to the gateway: a worker's leaf is refused
    (PERMISSION_DENIED naming the caller), another tenant's running task is left alone."""
    spec = task_pb2.TaskSpec(
        tenant="victim", kind="echo", payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput(text="x"))
    )
    async with mesh.internal_channel("scheduler", identity="worker") as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        for call in (
            lambda: stub.AdmitTask(scheduler_pb2.AdmitTaskRequest(spec=spec), timeout=5),
            lambda: stub.AbortTask(scheduler_pb2.AbortTaskRequest(task_id="t", reason="x"), timeout=5),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call()
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "worker may not call" in (caught.value.details() or "")
    async with mesh.internal_channel("scheduler", identity="gateway") as channel:  # the rightful caller
        admitted = await scheduler_pb2_grpc.SchedulerServiceStub(channel).AdmitTask(
            scheduler_pb2.AdmitTaskRequest(spec=spec), timeout=10
        )
    assert admitted.task_id


@pytest.mark.parametrize(
    ("process", "identity", "call"),
    [
        (
            "inference",
            "scheduler",
            lambda ch: inference_pb2_grpc.InferenceServiceStub(ch).ListModels(
                inference_pb2.ListModelsRequest(), timeout=5
            ),
        ),
        (  # the gateway relays InferenceService for Envoy's callers only, never for a worker's leaf
            "gateway",
            "worker",
            lambda ch: inference_pb2_grpc.InferenceServiceStub(ch).LoadModel(
                inference_pb2.LoadModelRequest(name="x"), timeout=5
            ),
        ),
        (
            "inference",
            "envoy",
            lambda ch: inference_pb2_grpc.InferenceServiceStub(ch).Infer(
                inference_pb2.InferRequest(texts=["x"]), timeout=5
            ),
        ),
        (
            "scheduler",
            "inference",
            lambda ch: worker_pb2_grpc.WorkerServiceStub(ch).RegisterWorker(
                worker_pb2.RegisterWorkerRequest(), timeout=5
            ),
        ),
        (
            "gateway",
            "worker",
            lambda ch: gateway_pb2_grpc.GatewayServiceStub(ch).GetMeshStatus(
                gateway_pb2.GetMeshStatusRequest(), timeout=5
            ),
        ),
    ],
)
async def test_a_mesh_identity_outside_the_allow_list_is_refused(
    mesh: Mesh, process: str, identity: str, call: object
) -> None:
    """A valid leaf of the mesh's root is not enough: each method names who may call it."""
    async with mesh.internal_channel(process, identity=identity) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(channel)  # type: ignore[operator]
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        ("envoy", grpc.StatusCode.PERMISSION_DENIED),
        ("cli", grpc.StatusCode.PERMISSION_DENIED),
        ("worker", grpc.StatusCode.PERMISSION_DENIED),
        ("gateway", grpc.StatusCode.INVALID_ARGUMENT),  # the rightful relay: past the policy, a bad first message
    ],
)
async def test_session_hosts_take_worker_streams_from_the_gateway_only(
    mesh: Mesh, identity: str, expected: grpc.StatusCode
) -> None:
    """A worker process hosting worker-protocol sessions trusts that the gateway checked the
    worker's credential: nobody else — Envoy's identity included — may open a stream there."""
    async with mesh.internal_channel("worker-1", identity=identity) as channel:
        call = session_pb2_grpc.WorkerSessionServiceStub(channel).Connect()
        if expected != grpc.StatusCode.PERMISSION_DENIED:
            # Past the policy the host waits for a first message (an attach): give it a wrong one. A
            # refused caller sends nothing: the policy ends the call at its start, and a message
            # racing that end would fail on the client's side (INTERNAL) instead.
            await call.write(session_pb2.ConnectRequest(heartbeat=session_pb2.Heartbeat()))
        code = await asyncio.wait_for(call.code(), 10.0)
    assert code == expected, await call.details()


async def test_a_worker_cannot_steer_the_reaper_onto_other_subjects(mesh: Mesh) -> None:
    """A heartbeat that names a task's event subject as an in-flight ack, then goes silent, does
    not make the scheduler publish there (with its wider permissions): only work acks are naked."""
    task_id = await _task(mesh)
    async with await mesh.nats() as admin:
        js = admin.jetstream(timeout=5)
        before = (await js.stream_info(EVENTS_STREAM, subjects_filter=event_subject(task_id))).state.messages
        watcher = await admin.subscribe(event_subject(task_id))
        async with mesh.internal_channel("scheduler", identity="worker") as channel:
            stub = worker_pb2_grpc.WorkerServiceStub(channel)
            status = worker_pb2.RegisterWorkerRequest().worker
            status.worker_id = "rogue-worker"
            await stub.RegisterWorker(worker_pb2.RegisterWorkerRequest(worker=status), timeout=5)
            await stub.Heartbeat(
                worker_pb2.HeartbeatRequest(worker=status, in_flight_ack_subjects=[event_subject(task_id)]), timeout=5
            )

        async def reaped() -> bool:  # the scheduler logs that it ignored the subject once the worker is dead
            log = (Path(mesh.plan.state_dir) / "logs" / "scheduler.log").read_text()
            return "not work acks: ignored" in log

        await eventually(reaped, timeout_s=20, what="the rogue worker presumed dead")
        await admin.flush()
        with pytest.raises(nats.errors.TimeoutError):
            await watcher.next_msg(timeout=0.5)
        after = (await js.stream_info(EVENTS_STREAM, subjects_filter=event_subject(task_id))).state.messages
        assert after == before


# --- ops ports, Envoy's admin, the public port ------------------------------------------------------


@pytest.mark.parametrize("process", SERVICES)
async def test_metrics_need_a_mesh_certificate(mesh: Mesh, process: str) -> None:
    """/metrics (tenant names in labels) answers only a caller with a leaf of the mesh's root."""
    url = mesh.ops_url(process, "/metrics")
    async with aiohttp.ClientSession() as session:
        for attempt in (url.replace("https://", "http://"), url):  # plaintext; TLS with no certificate
            with pytest.raises(aiohttp.ClientError):
                async with session.get(attempt, timeout=aiohttp.ClientTimeout(total=5)) as response:
                    await response.read()
        async with session.get(url, ssl=mesh.internal_ssl("cli")) as response:  # the scraper's leaf
            assert response.status == 200
            assert "tidemesh" in await response.text()


def _socket_mode(path: Path) -> int:
    return path.stat().st_mode


async def test_envoy_admin_is_an_owner_only_socket(mesh: Mesh) -> None:
    """No TCP admin port (/config_dump, /quitquitquit): Envoy listens on the public port only,
    and its admin is a unix socket only the mesh's owner can open."""
    pid = mesh.supervisor.children["envoy"].pid if mesh.supervisor else None
    assert pid is not None
    assert listening_ports(pid) == {mesh.plan.public_port}
    mode = _socket_mode(mesh.admin_socket)
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    status, _ = await mesh.envoy_admin("/ready")
    assert status == 200


async def test_the_public_port_refuses_plaintext(mesh: Mesh) -> None:
    """h2c gRPC and plain HTTP to the TLS port get no answer; the same calls over TLS work."""
    async with grpc.aio.insecure_channel(mesh.endpoint) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://{mesh.endpoint}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as r:
                await r.read()
    async with mesh.public_channel() as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def _audit_of(mesh: Mesh, credential: str, credential_id: str) -> list[audit_pb2.AuditRecord]:
    """The audit records of `credential_id`, read with `credential` (PermissionDenied if it may not)."""
    async with mesh_channel(mesh.endpoint, credential) as channel:
        request = audit_pb2.ListAuditRecordsRequest(credential_id=credential_id, limit=500)
        try:
            reply = await audit_pb2_grpc.AuditServiceStub(channel).ListAuditRecords(request, timeout=10)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)
    return list(reply.records)


async def test_a_refused_admin_attempt_is_audited_and_only_admins_read_the_audit(mesh: Mesh) -> None:
    """A read-only key tries to purge dead letters, mint a key and read the audit: each is refused,
    and each refusal is in the audit under that key's id — which only the admin may read. The key
    the admin minted is recorded by its id, never its secret."""
    async with Client(mesh.endpoint, credential=_admin(mesh)) as admin:
        created = await admin.create_api_key("victim", ["read"], name="audited")
    async with Client(mesh.endpoint, tenant="victim", credential=created.api_key) as reader:
        with pytest.raises(PermissionDenied):
            await reader.purge_dead_letters(tenant="victim")
        with pytest.raises(PermissionDenied):
            await reader.create_api_key("*", ["admin"])
    with pytest.raises(PermissionDenied, match=r"may not audit\.read"):
        await _audit_of(mesh, created.api_key, created.key_id)
    refused = {(r.action, r.decision, r.outcome) for r in await _audit_of(mesh, _admin(mesh), created.key_id)}
    assert refused == {
        ("dlq.purge", "refused", "refused"),
        ("auth.key.create", "refused", "refused"),
        ("audit.read", "refused", "refused"),
    }
    minted = [r for r in await _audit_of(mesh, _admin(mesh), "admin") if created.key_id in r.detail]
    assert [r.outcome for r in minted] == ["succeeded"] and minted[0].after.startswith("sha256:")
    everything = await _audit_of(mesh, _admin(mesh), "")
    assert everything and not any(created.api_key in str(record) for record in everything)


# --- files ------------------------------------------------------------------------------------------


def test_keys_and_passwords_are_owner_only(mesh: Mesh) -> None:
    """Private keys (the audit's signing key too), NATS users, the NATS config and Envoy's SDS secrets
    are mode 600 in 700 folders."""
    state = Path(mesh.plan.state_dir)
    secrets = [
        *state.glob("pki/*.key"),
        *state.glob("nats/*.json"),
        state / "nats.conf",
        *state.glob("pki/envoy-sds/*"),
        state / "audit" / "signing.key",
    ]
    assert len(secrets) > 10
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (state / "pki", state / "nats", state / "pki" / "envoy-sds", state / "audit"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_no_secret_is_a_process_argument(mesh: Mesh) -> None:
    """Passwords and keys travel in files: none appears in any child's command line."""
    state = Path(mesh.plan.state_dir)
    secrets = [json.loads(p.read_text())["password"] for p in state.glob("nats/*.json")]
    secrets += [admin_key(state), (state / "auth" / "jwt.secret").read_text().strip()]
    secrets += [line for line in (state / "audit" / "signing.key").read_text().splitlines() if "PRIVATE" not in line]
    assert mesh.supervisor is not None
    for name, pid in mesh.supervisor.pids().items():
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        for secret in secrets:
            assert secret not in command, name


# --- tenants ----------------------------------------------------------------------------------------


async def test_a_foreign_task_answers_like_a_missing_one(mesh: Mesh) -> None:
    """Tenant B probing tenant A's task id learns nothing: NOT_FOUND, the same words as a missing id."""
    task_id = await _task(mesh, tenant="tenant-a")
    async with Client(mesh.endpoint, credential=_admin(mesh)) as admin:
        created = await admin.create_api_key("tenant-b", ["submit", "read"], name="prober")
    async with Client(mesh.endpoint, tenant="tenant-b", credential=created.api_key) as prober:
        answers = []
        for probe in (task_id, "no-such-task-id"):
            with pytest.raises(NotFound) as caught:
                await prober.get(probe)
            answers.append(caught.value.message.replace(probe, "ID"))
        assert answers[0] == answers[1]
        status = await prober.status()
        assert {q.tenant for q in status.tenant_queues} <= {"tenant-b"}


# --- renewal (last: it swaps every leaf of this module's mesh) ------------------------------------


def _leaf_serial(mesh: Mesh, component: str) -> int:
    path = Path(mesh.plan.state_dir) / "pki" / f"{component}.crt"
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


async def _served_serial(port: int, context: ssl.SSLContext, starttls_after_line: bool = False) -> int:
    """The serial of the certificate a port presents to a new connection (NATS: after its INFO)."""
    if starttls_after_line:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.wait_for(reader.readline(), 5)
        await writer.start_tls(context, server_hostname="localhost")
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return x509.load_der_x509_certificate(der).serial_number


async def test_leaves_are_renewed_without_downtime(mesh: Mesh) -> None:
    """Every leaf renewed at once: each port serves its new certificate to new connections, a
    stream open across the swap runs to its end, and new tasks go through every hop."""
    assert mesh.supervisor is not None and mesh.supervisor.renewer is not None
    cli = mesh.internal_ssl("cli")
    public = ssl.create_default_context()  # the session trusts the root (tests/conftest.py)
    ports = {
        f"{p}:{kind}": (mesh.port(p, kind), cli, False, p.split("-")[0]) for p in SERVICES for kind in ("grpc", "http")
    }
    ports["envoy:public"] = (mesh.plan.public_port, public, False, "envoy")
    ports["nats:client"] = (mesh.plan.by_name("nats").ports["client"], public, True, "nats")
    before = {name: await _served_serial(port, ctx, tls_late) for name, (port, ctx, tls_late, _) in ports.items()}
    assert all(before[name] == _leaf_serial(mesh, component) for name, (*_, component) in ports.items())

    async with Client(mesh.endpoint, tenant="victim", credential=_admin(mesh)) as client:
        slow = await client.submit("stream", {"text": "a b c d e f", "chunks": 6, "chunk_delay_ms": 400})
        stream = client.watch(slow.task_id)
        first = await anext(stream)
        renewed = mesh.supervisor.renewer.renew_due(everything=True)
        assert set(renewed) >= {"nats", "scheduler", "inference", "worker", "gateway", "envoy"}

        async def all_new() -> bool:
            for port, ctx, tls_late, component in ports.values():
                if await _served_serial(port, ctx, tls_late) != _leaf_serial(mesh, component):
                    return False
            return True

        await eventually(all_new, timeout_s=30, what="every port serving its renewed leaf")
        rest = [event async for event in stream]
        assert first.sequence == 1 and rest[-1].state == task_pb2.TASK_STATE_SUCCEEDED
        assert [e.sequence for e in rest] == list(range(2, len(rest) + 2))
        for kind, payload in (("echo", {"text": "after"}), ("embed", {"text": "after the renewal"})):
            submitted = await client.submit(kind, payload)
            events = [event async for event in client.watch(submitted.task_id)]
            assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED, kind
    assert all(mesh.supervisor.children[name].restarts == 0 for name in mesh.supervisor.children)


async def test_a_refused_nats_user_fails_the_start_instead_of_hanging(mesh: Mesh) -> None:
    """A service whose NATS user is refused stops with UNAVAILABLE naming the reason, at once."""
    bogus = Path(mesh.plan.state_dir) / "bogus-user.json"
    bogus.write_text(json.dumps({"user": "gateway", "password": "wrong"}))
    with pytest.raises(Unavailable, match="Authorization Violation"):
        await connect(
            mesh.nats_url, name="test-bogus", tls=ssl.create_default_context(), user_file=bogus, start_timeout_s=3
        )
