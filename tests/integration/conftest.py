"""Real components on free ports: a bare nats-server, and a whole supervised mesh."""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from nats.aio.client import Client as NATS

from clients.sdk import Client
from mesh.access import ROLES_FILE, read_roles
from mesh.edge import admin_get
from mesh.fabric import Quarantine, QuarantineRecord, connect
from mesh.security import CertificateAuthority
from mesh.security._ca import write_private
from mesh.security._nats import NatsUser, ensure_nats_users, tls_block
from mesh.supervisor import MeshSecurity, Plan, Supervisor, admin_key, build_plan, find_binary
from mesh.supervisor._triton import triton_available
from mesh.supervisor._triton_server import TritonServer
from services.gateway._auth import mint_token
from tests.conftest import eventually
from tests.integration._textpipe import registered, textpipe  # noqa: F401  (the user-work tests' fixtures)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class NatsServer:
    """A bare nats-server as the mesh runs its own: TLS under the session's root, one user."""

    url: str
    store_dir: Path
    user_file: Path

    async def connect(self, name: str = "test") -> NATS:
        return await connect(self.url, name=name, tls=ssl.create_default_context(), user_file=self.user_file)


def _start_nats(tmp: Path) -> tuple[subprocess.Popen[bytes], NatsServer]:
    """nats-server on a random port (-1) with TLS (a leaf of the session root) and one user;
    the ports file tells where it listens."""
    ports_dir = tmp / "ports"
    ports_dir.mkdir(parents=True, exist_ok=True)
    leaf = CertificateAuthority(tmp / "pki").adopt(Path(os.environ["TIDEMESH_CA_DIR"])).issue("nats")
    user_file = ensure_nats_users(tmp / "users", ["test"])["test"]
    user = NatsUser.load(user_file)
    config = tmp / "nats.conf"
    write_private(
        config,
        (
            "listen: 127.0.0.1:-1\n"
            f'jetstream {{ store_dir: "{tmp / "js"}" }}\n'
            f"{tls_block(leaf)}"
            f'authorization {{ users: [ {{ user: "{user.user}", password: "{user.password}" }} ] }}\n'
        ).encode(),
    )
    process = subprocess.Popen(
        [find_binary("nats-server"), "-c", str(config), "--ports_file_dir", str(ports_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ports_file = ports_dir / f"nats-server_{process.pid}.ports"
    for _ in range(500):
        if ports_file.exists():
            try:
                ports = json.loads(ports_file.read_text())
                url = ports["nats"][0].replace("nats://", "tls://")
                return process, NatsServer(url, tmp / "js", user_file)
            except (json.JSONDecodeError, KeyError, IndexError):
                pass  # the server is still writing the file: read it again
        if process.poll() is not None:
            break
        time.sleep(0.01)  # polling the ports file, bounded by the loop
    process.kill()
    raise RuntimeError("nats-server did not report its ports")


@contextlib.contextmanager
def running_nats(tmp: Path) -> Iterator[NatsServer]:
    """A bare nats-server (JetStream, store under `tmp`) for the block; stopped after it."""
    process, server = _start_nats(tmp)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One bare nats-server for the session (default limits: max_payload 1 MiB)."""
    with running_nats(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh bare nats-server for one test, for tests that must see only their own messages."""
    with running_nats(tmp_path) as server:
        yield server


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    async with await nats_server.connect() as client:
        yield client


@dataclass(frozen=True)
class Mesh:
    plan: Plan
    supervisor: Supervisor | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.plan.public_port}"

    @property
    def base_url(self) -> str:
        """The public port over HTTPS (the test session trusts the mesh's root: tests/conftest.py)."""
        return f"https://127.0.0.1:{self.plan.public_port}"

    @property
    def ws_url(self) -> str:
        return f"wss://127.0.0.1:{self.plan.public_port}"

    @property
    def nats_url(self) -> str:
        return self.plan.nats_servers

    @property
    def security(self) -> MeshSecurity:
        assert self.plan.security is not None, "this mesh runs --insecure"
        return self.plan.security

    def port(self, process: str, name: str) -> int:
        return self.plan.by_name(process).ports[name]

    def public_channel(self) -> grpc.aio.Channel:
        """gRPC to Envoy over TLS, as any outside caller."""
        return grpc.aio.secure_channel(self.endpoint, grpc.ssl_channel_credentials())

    def internal_channel(self, process: str, identity: str = "cli") -> grpc.aio.Channel:
        """gRPC straight to a component's port, with `identity`'s leaf (mutual TLS)."""
        return self.security.transport(identity).channel(f"127.0.0.1:{self.port(process, 'grpc')}")

    def internal_ssl(self, identity: str = "cli") -> ssl.SSLContext:
        """For HTTPS to a component's ops port (/metrics, /healthz): `identity`'s leaf."""
        context = self.security.transport(identity).client_ssl_context()
        assert context is not None
        return context

    def ops_url(self, process: str, path: str) -> str:
        return f"https://127.0.0.1:{self.port(process, 'http')}{path}"

    @property
    def admin_socket(self) -> Path:
        return Path(self.plan.state_dir) / "envoy-admin.sock"

    async def envoy_admin(self, path: str, timeout_s: float = 5.0) -> tuple[int, str]:
        """GET from Envoy's admin API (a mode-600 unix socket in the state dir; no TCP port)."""
        return await admin_get(self.admin_socket, path, timeout_s=timeout_s)

    async def nats(self, component: str = "cli") -> NATS:
        """A NATS client as `component` (default: the operators' admin user), over TLS."""
        return await self.security.connect_nats(self.nats_url, component, f"test-{component}")


@pytest.fixture
async def broker(mesh: Mesh) -> AsyncIterator[NATS]:
    """A NATS client of the mesh's own broker (the admin user), for tests that write to the fabric directly."""
    async with await mesh.nats() as client:
        yield client


async def quarantined(client: NATS, source: str, subject: str, sequence: int = 0) -> QuarantineRecord:
    """The newest quarantine record of `subject` (at `sequence`, if given), waiting for it to be stored."""
    quarantine = Quarantine(client.jetstream(), client)

    async def probe() -> QuarantineRecord | None:
        found = [
            record
            for record in await quarantine.list(source)
            if record.subject == subject and sequence in (0, record.stream_sequence)
        ]
        return found[-1] if found else None

    return await eventually(probe, timeout_s=20, what=f"a quarantine record of {subject}")


@pytest.fixture(scope="session")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    """The whole mesh — nats, scheduler, inference, a worker, gateway, Envoy — as `tidemesh up` runs it.
    Its worker-protocol sessions outlive a broken stream 4 s (the default is 10 s): the tests of a
    worker that vanishes or is killed wait that long for its work to move, and the tests that
    reattach do so at once."""
    plan = build_plan(
        tmp_path_factory.mktemp("mesh"),
        public_port=0,
        workers=1,
        ack_wait_s=5.0,
        worker_args=("--resume-window", "4"),
    )
    async with Supervisor(plan, health_timeout_s=60) as supervisor:
        yield Mesh(plan, supervisor)


@dataclass(frozen=True)
class Secured:
    """A mesh with auth on, its bootstrap admin key, JWT secret and custom roles (`secured`)."""

    endpoint: str
    admin: str
    secret: str
    state: Path

    def token(self, tenant: str, roles: list[str], ttl_s: float, audience: str = "tidemesh", jti: str = "") -> str:
        return mint_token(self.secret, tenant, roles, audience, ttl_s, jti, catalog=read_roles(self.roles_file))

    @property
    def roles_file(self) -> Path:
        return self.state / "auth" / ROLES_FILE

    async def key(self, tenant: str, roles: list[str], name: str = "test") -> tuple[str, str]:
        """(key id, API key) minted by the admin."""
        async with Client(self.endpoint, credential=self.admin) as admin:
            created = await admin.create_api_key(tenant, roles, name=name)
        return created.key_id, created.api_key


# The shared auth mesh's own roles (tests/integration/test_roles.py uses them).
SECURED_ROLES = {
    "replayer": {"permissions": ["dlq.read", "dlq.replay", "task.read"], "tenants": ["roles-a"]},
    "model-ops": {"permissions": ["model.read", "model.load", "model.unload"], "tenants": None},
}


@pytest.fixture(scope="session")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Secured]:
    """One mesh with auth on for the session: submits limited to 2/s (bursts of 10) per credential,
    custom roles `SECURED_ROLES`."""
    state = tmp_path_factory.mktemp("secured")
    plan = build_plan(
        state,
        public_port=0,
        workers=1,
        auth=True,
        gateway_args=("--credential-rate", "2", "--credential-burst", "10"),
        roles=SECURED_ROLES,
    )
    async with Supervisor(plan):
        yield Secured(
            f"127.0.0.1:{plan.public_port}",
            admin_key(state),
            (state / "auth" / "jwt.secret").read_text().strip(),
            state,
        )


@pytest.fixture(scope="module")
async def triton(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TritonServer]:
    if not triton_available():
        pytest.fail("tritonserver is missing: `make venv` installs nvidia-pytriton")
    server = TritonServer(tmp_path_factory.mktemp("triton"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
