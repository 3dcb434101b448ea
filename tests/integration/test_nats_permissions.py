"""NATS users, permissions and TLS (mesh.security._nats) on a real nats-server.

Each component connects as its own user over TLS (verified against a local CA) and runs the
fabric code its service runs: those operations must succeed with no permissions violation, or
wiring the permissions in would break the mesh. Then the attacks: no credential, a wrong
password, plaintext, forged events, credential records written by the wrong service, stream and
bucket deletion or purge — each refused by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
import nats.js.api as api
import nats.js.errors
import pytest
from nats.aio.client import Client

from mesh.fabric import (
    EVENTS_STREAM,
    IDEMPOTENCY_BUCKET,
    INFERENCE_BUCKET,
    ORDER_KEYS_BUCKET,
    WORK_STREAM,
    DeadLetterStore,
    EventLog,
    KeySequencer,
    TaskIndex,
    Topology,
    WorkQueue,
    await_topology,
    ensure_topology,
    event_subject,
    fold,
)
from mesh.security import CertificateAuthority
from mesh.security._nats import (
    CREDENTIALS_BUCKET,
    NATS_COMPONENTS,
    NatsUser,
    authorization_block,
    cluster_tls_block,
    ensure_nats_users,
    route_url,
    tls_block,
    write_private_config,
)
from mesh.supervisor import find_binary, free_port
from mesh.tasks import Limits, new_task_id
from mesh.v1 import deadletter_pb2, status_pb2, task_pb2
from services.gateway._auth import CredentialStore
from services.gateway._hub import EventHub
from services.scheduler._admission import Admitter
from services.scheduler._backends import inference_backends
from services.scheduler._cancel import cancel_task
from services.scheduler._queues import queue_status
from services.scheduler._reconcile import ReconcilePolicy, Reconciler
from services.worker._dispatch import Dispatcher
from services.worker._runner import Runner
from tests.conftest import eventually

pytestmark = pytest.mark.integration

# How long a refused JetStream request waits for the answer that never comes.
REFUSED_WAIT_S = 0.5


@dataclass(frozen=True)
class SecuredNats:
    port: int
    ca: Path
    users: dict[str, NatsUser]
    log: Path

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}"


@dataclass
class Session:
    """One component's connection and the permission errors the server sent it."""

    component: str
    nc: Client
    errors: list[str] = field(default_factory=list)

    def js(self, timeout: float = 5.0):  # type: ignore[no-untyped-def]
        return self.nc.jetstream(timeout=timeout)

    async def refused(self, subject: str) -> str:
        """The server's permissions violation naming `subject` (waits for it, bounded)."""

        async def seen() -> str | None:
            # nats-py lower-cases the server's error line.
            return next((e for e in self.errors if "permissions violation" in e and subject.lower() in e), None)

        return await eventually(seen, 5.0, f"a permissions violation for {subject} sent to {self.component}")


def _client_tls(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredNats]:
    """nats-server with the rendered authorization and TLS blocks, JetStream under tmp."""
    tmp = tmp_path_factory.mktemp("secured-nats")
    leaf = CertificateAuthority(tmp / "pki").ensure().issue("nats")
    users = {c: NatsUser.load(p) for c, p in ensure_nats_users(tmp / "nats-users", NATS_COMPONENTS).items()}
    port = free_port()
    config = tmp / "nats.conf"
    write_private_config(
        config,
        f"listen: 127.0.0.1:{port}\n"
        f'jetstream {{ store_dir: "{tmp / "js"}" }}\n' + authorization_block(users) + tls_block(leaf),
    )
    log = tmp / "nats.log"
    with log.open("wb") as out:
        process = subprocess.Popen([find_binary("nats-server"), "-c", str(config)], stdout=out, stderr=out)
    try:
        server = SecuredNats(port, leaf.ca, users, log)

        async def up() -> bool:
            nc = await nats.connect(
                server.url,
                user="cli",
                password=users["cli"].password,
                tls=_client_tls(leaf.ca),
                allow_reconnect=False,
                connect_timeout=1,
            )
            await nc.close()
            return True

        asyncio.run(eventually(up, 15.0, "nats-server accepts TLS connections"))
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def _session(server: SecuredNats, component: str) -> AsyncIterator[Session]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        server.url,
        user=server.users[component].user,
        password=server.users[component].password,
        tls=_client_tls(server.ca),
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=2,
    )
    session = Session(component, nc, errors)
    try:
        yield session
    finally:
        await nc.close()


def _violations(*sessions: Session) -> dict[str, list[str]]:
    return {s.component: s.errors for s in sessions if s.errors}


def _spec(tenant: str, kind: str = "echo", **fields: object) -> task_pb2.TaskSpec:
    if kind == "stream":
        payload = task_pb2.TaskPayload(stream=task_pb2.StreamInput(text="a b", chunks=2))
    else:
        payload = task_pb2.TaskPayload(echo=task_pb2.EchoInput(text="hello"))
    return task_pb2.TaskSpec(tenant=tenant, kind=kind, payload=payload, **fields)  # type: ignore[arg-type]


async def _last_state(events: EventLog, task_id: str) -> int | None:
    last = await events.last(task_id)
    return last.event.state if last else None


# --- every role's own work succeeds -----------------------------------------------------------


async def test_each_component_runs_its_real_fabric_code_without_a_violation(secured: SecuredNats) -> None:
    """Scheduler, worker, gateway and inference, each as its own user over TLS, run the fabric code
    of their services end to end (declare, admit, park, pull, run, append, watch, list, credentials,
    backends, dead letters, quarantine) and the server reports no permissions violation."""
    tenant = f"perm-{new_task_id()[-8:]}"
    topology = Topology()
    async with (
        _session(secured, "scheduler") as scheduler,
        _session(secured, "worker") as worker,
        _session(secured, "gateway") as gateway,
        _session(secured, "inference") as inference,
        _session(secured, "supervisor") as supervisor,
    ):
        # The scheduler declares the topology; the gateway and workers wait for it (their entry points).
        await ensure_topology(scheduler.js(), topology)
        for session in (worker, gateway):
            await await_topology(session.js(), timeout_s=5)

        # Inference registers a backend; the supervisor's autoscaler follows scale recommendations.
        backend = status_pb2.InferenceBackendStatus(instance="host-1", backend="cpu", address="local")
        inference_kv = await inference.js().key_value(INFERENCE_BUCKET)
        await inference_kv.put("host-1.cpu", backend.SerializeToString())
        scale = asyncio.Queue[bytes]()

        async def on_scale(msg):  # type: ignore[no-untyped-def]
            scale.put_nowait(msg.data)

        await supervisor.nc.subscribe("tm.scale.>", cb=on_scale)
        await supervisor.js().account_info()  # its health probe of the broker

        # Gateway: the hub follows live events, the credential store mirrors its bucket.
        g_js = gateway.js()
        g_events = EventLog(g_js, gateway.nc)
        hub = EventHub(gateway.nc, g_events)
        await hub.start()
        store = await CredentialStore.open(g_js)
        await store.start()

        # Scheduler: admission of a plain task, an ordered one and a two-step one.
        s_js = scheduler.js()
        s_events = EventLog(s_js, scheduler.nc)
        work = WorkQueue(scheduler.nc, s_js)
        sequencer = KeySequencer(s_js, await s_js.key_value(ORDER_KEYS_BUCKET), work, s_events)
        index = TaskIndex(s_js)
        admitter = Admitter(
            work, s_events, await s_js.key_value(IDEMPOTENCY_BUCKET), Limits(), sequencer=sequencer, index=index
        )
        plain = (await admitter.admit(_spec(tenant, idempotency_key="k1"))).task_id
        again = await admitter.admit(_spec(tenant, idempotency_key="k1"))
        assert again.task_id == plain
        ordered = (await admitter.admit(_spec(tenant, ordering_key="order-1"))).task_id
        two_steps = (await admitter.admit(_spec(tenant, kind="stream"))).task_id
        watched = hub.watch(plain, 0)

        # Worker: the real dispatcher and runner pull, run and append until all three succeed.
        w_js = worker.js()
        w_events = EventLog(w_js, worker.nc)
        w_sequencer = KeySequencer(w_js, await w_js.key_value(ORDER_KEYS_BUCKET), WorkQueue(worker.nc, w_js), w_events)
        runner = Runner.on_fabric(w_js, w_events, "w-perm", None, ack_wait_s=topology.ack_wait_s, sequencer=w_sequencer)
        dispatcher = Dispatcher(
            worker.nc, w_js, w_events, runner, ["ingestion", "post-processing"], 4, topology=topology
        )
        await dispatcher.start()
        try:
            for task_id in (plain, ordered, two_steps):

                async def succeeded(task_id: str = task_id) -> bool:
                    return await _last_state(g_events, task_id) == task_pb2.TASK_STATE_SUCCEEDED

                await eventually(succeeded, 20.0, f"task {task_id} SUCCEEDED")
        finally:
            await dispatcher.shutdown(2.0)

        # Gateway reads: the watcher saw the final event; fold, listing, dead letters.
        async def final_event() -> task_pb2.TaskEvent | None:
            event = await anext(watched)
            return event if event.final else None

        assert (await eventually(final_event, 10.0, "the watcher's final event")).state == (
            task_pb2.TASK_STATE_SUCCEEDED
        )
        await watched.aclose()  # type: ignore[attr-defined]
        folded = fold([stored.event async for stored in g_events.read(two_steps)])
        assert folded.state == task_pb2.TASK_STATE_SUCCEEDED
        listed, _ = await TaskIndex(g_js).page(tenant, 10)
        assert set(listed) == {plain, ordered, two_steps}

        # Gateway: API keys and revocations in tm_credentials, read back through a KV lookup.
        key_id, _ = await store.create_key(tenant, ["submit"], "perm test")
        await store.revoke("some-jwt-id", "test")
        store._keys.pop(key_id)  # forget it here: the next lookup reads KV
        assert (await store.find_api_key(key_id)) is not None

        # Worker: a dead letter and its alert; gateway: list, get, replay version, purge it.
        letter = deadletter_pb2.DeadLetter(task_id=plain, spec=_spec(tenant), step="echo", error_class="bug")
        letter.spec.task_id = plain
        await DeadLetterStore(w_js, worker.nc).record(letter)
        g_letters = DeadLetterStore(g_js, gateway.nc)
        assert [d.task_id for d in await g_letters.list(tenant)] == [plain]
        letter.replayed_as.append(f"{plain}-r")
        await g_letters.record(letter)
        assert await g_letters.purge(task_id=plain) == 1

        # A junk event (a worker may append to any chain) is set aside by the gateway's reader.
        junk = new_task_id()
        await w_js.publish(event_subject(junk), b"\xff not an event")
        assert [s async for s in g_events.read(junk)] == []

        # Scheduler: cancel, queue and backend status, the reconciler, the index taken back.
        assert await cancel_task(scheduler.nc, s_events, plain, "done anyway") == task_pb2.TASK_STATE_SUCCEEDED
        await scheduler.nc.publish("tm.scale.ingestion", b"recommendation")
        assert await asyncio.wait_for(scale.get(), 5.0) == b"recommendation"
        await queue_status(s_js)
        assert [b.instance for b in await inference_backends(s_js)] == ["host-1"]
        reconciler = Reconciler(s_js, s_events, admitter, ReconcilePolicy(grace_s=0.0))
        await reconciler.run_pass()
        await index.remove(tenant, two_steps)
        listed, _ = await TaskIndex(g_js).page(tenant, 10)
        assert two_steps not in listed
        await store.close()
        await hub.close()
        for session in (scheduler, worker, gateway, inference, supervisor):
            await session.nc.flush()
        assert _violations(scheduler, worker, gateway, inference, supervisor) == {}


# --- refused -----------------------------------------------------------------------------------


@pytest.mark.parametrize("password", [None, "wrong-password"])
async def test_a_connection_without_the_right_password_is_refused(secured: SecuredNats, password: str | None) -> None:
    """No credential, or a known user with a wrong password: the server refuses the connection."""
    credentials = {} if password is None else {"user": "gateway", "password": password}
    with pytest.raises((nats.errors.Error, OSError)):
        await nats.connect(
            secured.url, tls=_client_tls(secured.ca), allow_reconnect=False, connect_timeout=2, **credentials
        )


def test_plaintext_is_refused_even_with_a_valid_password(secured: SecuredNats) -> None:
    """A client that speaks plaintext (CONNECT with the right password, no TLS) gets no PONG:
    the server requires TLS and closes the connection."""
    user = secured.users["cli"]
    with socket.create_connection(("127.0.0.1", secured.port), timeout=5) as raw:
        reader = raw.makefile("rb")
        info = json.loads(reader.readline().removeprefix(b"INFO "))
        assert info["tls_required"] is True
        connect = {"user": user.user, "pass": user.password, "verbose": False, "protocol": 1}
        with contextlib.suppress(OSError):  # the server may close before the write lands
            raw.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        answer = b""
        with contextlib.suppress(OSError):
            answer = reader.read()  # until the server closes
    assert b"PONG" not in answer


async def test_a_client_that_does_not_trust_the_local_ca_is_refused(secured: SecuredNats) -> None:
    """Without the local CA (the system's trust store only) the server's certificate fails to verify."""
    user = secured.users["cli"]
    with pytest.raises((ssl.SSLError, nats.errors.Error, OSError)):
        await nats.connect(
            secured.url,
            user=user.user,
            password=user.password,
            tls=ssl.create_default_context(),
            allow_reconnect=False,
            connect_timeout=2,
        )


async def _stream_last_seq(secured: SecuredNats, stream: str) -> int:
    async with _session(secured, "cli") as admin:
        return (await admin.js().stream_info(stream)).state.last_seq


async def _declared(secured: SecuredNats) -> None:
    async with _session(secured, "scheduler") as scheduler:
        await ensure_topology(scheduler.js(), Topology())


@pytest.mark.parametrize("component", ["gateway", "inference", "supervisor"])
async def test_only_the_scheduler_and_workers_append_task_events(secured: SecuredNats, component: str) -> None:
    """A forged SUCCEEDED event on a task's subject, from any other user, is refused and not stored."""
    await _declared(secured)
    task_id = new_task_id()
    forged = task_pb2.TaskEvent(task_id=task_id, sequence=2, state=task_pb2.TASK_STATE_SUCCEEDED, final=True)
    async with _session(secured, component) as session:
        with pytest.raises(nats.errors.TimeoutError):
            await session.js(REFUSED_WAIT_S).publish(event_subject(task_id), forged.SerializeToString())
        await session.refused(event_subject(task_id))
        await session.nc.publish(event_subject(task_id), forged.SerializeToString())  # core NATS too

        async def both_refused() -> bool:
            return len([e for e in session.errors if event_subject(task_id).lower() in e]) == 2

        await eventually(both_refused, 5.0, "the core publish refused too")
    async with _session(secured, "cli") as admin:
        with pytest.raises(nats.js.errors.NotFoundError):
            await admin.js().get_last_msg(EVENTS_STREAM, event_subject(task_id))


@pytest.mark.parametrize("component", ["worker", "inference", "scheduler", "supervisor"])
async def test_only_the_gateway_writes_credentials(secured: SecuredNats, component: str) -> None:
    """An admin API key record put into tm_credentials by any other service is refused and absent."""
    async with _session(secured, "gateway") as gateway:
        await CredentialStore.open(gateway.js())
    key = f"apikey.forged{new_task_id()[-6:]}"
    record = json.dumps({"digest": "x", "tenant": "*", "roles": ["admin"], "name": "forged"}).encode()
    async with _session(secured, component) as session:
        with pytest.raises(nats.errors.TimeoutError):
            await session.js(REFUSED_WAIT_S).publish(f"$KV.{CREDENTIALS_BUCKET}.{key}", record)
        await session.refused(f"$KV.{CREDENTIALS_BUCKET}.{key}")
    async with _session(secured, "cli") as admin:
        kv = await admin.js().key_value(CREDENTIALS_BUCKET)
        with pytest.raises(nats.js.errors.KeyNotFoundError):
            await kv.get(key)


@pytest.mark.parametrize("component", ["scheduler", "worker", "gateway", "inference", "supervisor"])
async def test_no_service_deletes_or_purges_a_stream_or_bucket(secured: SecuredNats, component: str) -> None:
    """Stream and bucket deletion and whole-stream purges are refused to every service; the
    streams keep their messages and the buckets exist."""
    await _declared(secured)
    async with _session(secured, "gateway") as gateway:
        await CredentialStore.open(gateway.js())
    async with _session(secured, "scheduler") as scheduler:
        js = scheduler.js()
        await js.publish(event_subject(new_task_id()), b"")
        await js.publish("tm.work.ingestion.standard.keep", b"")
    before = {s: await _stream_last_seq(secured, s) for s in (EVENTS_STREAM, WORK_STREAM)}
    async with _session(secured, component) as session:
        js = session.js(REFUSED_WAIT_S)
        attempts = {
            "$JS.API.STREAM.DELETE.TM_EVENTS": lambda: js.delete_stream(EVENTS_STREAM),
            "$JS.API.STREAM.PURGE.TM_EVENTS": lambda: js.purge_stream(EVENTS_STREAM),
            "$JS.API.STREAM.PURGE.TM_WORK": lambda: js.purge_stream(WORK_STREAM),
            f"$JS.API.STREAM.DELETE.KV_{CREDENTIALS_BUCKET}": lambda: js.delete_key_value(CREDENTIALS_BUCKET),
            f"$JS.API.STREAM.PURGE.KV_{IDEMPOTENCY_BUCKET}": lambda: js.purge_stream(f"KV_{IDEMPOTENCY_BUCKET}"),
        }
        # All at once: each waits out its own REFUSED_WAIT_S for the answer that never comes.
        outcomes = await asyncio.gather(*(attempt() for attempt in attempts.values()), return_exceptions=True)
        assert all(isinstance(outcome, nats.errors.TimeoutError) for outcome in outcomes), outcomes
        for subject in attempts:
            await session.refused(subject)
    async with _session(secured, "cli") as admin:
        admin_js = admin.js()
        for stream, last_seq in before.items():
            info = await admin_js.stream_info(stream)
            assert info.state.last_seq == last_seq and info.state.messages > 0
        await admin_js.key_value(CREDENTIALS_BUCKET)
        await admin_js.key_value(IDEMPOTENCY_BUCKET)


@pytest.mark.parametrize(
    "subject",
    ["tm.task.acme.t1", "tm.ord.acme.abc", f"$KV.{IDEMPOTENCY_BUCKET}.k", "tm.cancel.t1", "tm.scale.ingestion"],
)
async def test_a_worker_cannot_publish_what_only_admission_does(secured: SecuredNats, subject: str) -> None:
    """Listing entries, parked ordered items, idempotency claims, cancels and scale advice are the
    scheduler's: a worker's publish on them is refused."""
    async with _session(secured, "worker") as worker:
        await worker.nc.publish(subject, b"x")
        await worker.refused(subject)


async def test_a_service_cannot_read_what_its_role_does_not_need(secured: SecuredNats) -> None:
    """Inference subscribing to every task's events, or the supervisor to the credential bucket's
    subjects, is refused by the server."""
    async with _session(secured, "inference") as inference:
        await inference.nc.subscribe("tm.evt.>")
        await inference.refused("tm.evt.>")
    async with _session(secured, "supervisor") as supervisor:
        await supervisor.nc.subscribe(f"$KV.{CREDENTIALS_BUCKET}.>")
        await supervisor.refused(f"$KV.{CREDENTIALS_BUCKET}.>")


async def test_the_cli_admin_may_delete_a_bucket(secured: SecuredNats) -> None:
    """Deletion is an explicit admin operation: the cli user deletes a bucket."""
    bucket = f"scratch_{new_task_id()[-6:]}"
    async with _session(secured, "cli") as admin:
        js = admin.js()
        await js.create_key_value(api.KeyValueConfig(bucket=bucket))
        assert await js.delete_key_value(bucket)
        with pytest.raises(nats.js.errors.BucketNotFoundError):
            await js.key_value(bucket)
        assert admin.errors == []


def test_no_password_reaches_the_server_log_or_its_arguments(secured: SecuredNats) -> None:
    """The server runs as ``nats-server -c <file>`` and its log names no password."""
    log = secured.log.read_text()
    for user in secured.users.values():
        assert user.password not in log


@dataclass(frozen=True)
class Cluster:
    first: SecuredNats
    cluster_ports: list[int]
    route: NatsUser


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three nodes whose routes are mutual TLS under the local CA with a route password."""
    leaf = CertificateAuthority(tmp_path / "pki").ensure().issue("nats")
    users = {c: NatsUser.load(p) for c, p in ensure_nats_users(tmp_path / "nats-users", NATS_COMPONENTS).items()}
    route = NatsUser.generate("route")
    nodes = [(free_port(), free_port()) for _ in range(3)]
    processes = []
    try:
        for index, (client_port, cluster_port) in enumerate(nodes):
            routes = ", ".join(json.dumps(route_url(c, route)) for _, c in nodes if c != cluster_port)
            config = tmp_path / f"n{index}.conf"
            write_private_config(
                config,
                f"server_name: n{index}\nlisten: 127.0.0.1:{client_port}\n"
                f'jetstream {{ store_dir: "{tmp_path / f"js{index}"}" }}\n'
                + authorization_block(users)
                + tls_block(leaf)
                + f"cluster {{\n  name: tidemesh\n  listen: 127.0.0.1:{cluster_port}\n"
                + cluster_tls_block(leaf, route)
                + f"  routes: [{routes}]\n}}\n",
            )
            with (tmp_path / f"n{index}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen([find_binary("nats-server"), "-c", str(config)], stdout=log, stderr=log)
                )
        yield Cluster(SecuredNats(nodes[0][0], leaf.ca, users, tmp_path / "n0.log"), [c for _, c in nodes], route)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def test_a_tls_cluster_with_route_passwords_forms_and_refuses_a_plaintext_route(tls_cluster: Cluster) -> None:
    """The three TLS-routed nodes form one JetStream cluster (an R3 topology is declared through
    it); a plaintext route, even with the route password, gets no PONG."""

    async def declared() -> bool:
        async with _session(tls_cluster.first, "scheduler") as scheduler:
            await ensure_topology(scheduler.js(), Topology(replicas=3))
            info = await scheduler.js().stream_info(EVENTS_STREAM)
            return info.cluster is not None and len(info.cluster.replicas or []) == 2

    await eventually(declared, 60.0, "an R3 topology declared through the TLS cluster")
    route = tls_cluster.route
    hello = {"user": route.user, "pass": route.password, "verbose": False, "name": "intruder"}
    answer = b""
    with socket.create_connection(("127.0.0.1", tls_cluster.cluster_ports[0]), timeout=5) as raw:
        with contextlib.suppress(OSError):  # the server may close before the write lands
            raw.sendall(b"CONNECT " + json.dumps(hello).encode() + b"\r\nPING\r\n")
        with contextlib.suppress(OSError):
            while chunk := raw.recv(65536):  # until the server closes
                answer += chunk
    assert b"PONG" not in answer
