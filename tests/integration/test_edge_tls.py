"""The front door with TLS on real Envoy: TLS on the public port, mTLS to the gateway, SDS renewal, admin socket."""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography import x509

from mesh.edge import (
    CERT_SECRET,
    EdgeConfig,
    EdgeTls,
    admin_get,
    render_yaml,
    sds_path,
    wait_for_listener_port_unix,
    write_sds,
)
from mesh.security import CertificateAuthority, LeafFiles
from mesh.supervisor import find_binary, free_port
from tests.conftest import eventually, listening_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

REPO = Path(__file__).resolve().parents[2]
WHOAMI = "/tidemesh.test.Probe/WhoAmI"
ENVOY_ID = "spiffe://tidemesh/envoy"


def _peer_uri(peercert: dict[str, Any] | None) -> str:
    sans: tuple[tuple[str, str], ...] = peercert.get("subjectAltName", ()) if peercert else ()
    return next((value for kind, value in sans if kind == "URI"), "")


@dataclass
class Upstream:
    """A stand-in gateway: a grpc.aio server and an aiohttp https server, both requiring a client certificate."""

    leaf: LeafFiles
    grpc_port: int = 0
    http_port: int = 0
    calls: list[str] = field(default_factory=list)  # the caller identity of every request that got through
    server: grpc.aio.Server | None = None
    runner: web.AppRunner | None = None

    async def start(self) -> Upstream:
        async def who_am_i(_: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            peer = b"".join(context.auth_context().get("peer_spiffe_id", []))
            self.calls.append(peer.decode())
            return peer

        handler = grpc.method_handlers_generic_handler(
            "tidemesh.test.Probe", {"WhoAmI": grpc.unary_unary_rpc_method_handler(who_am_i)}
        )
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((handler,))
        credentials = grpc.ssl_server_credentials(
            [(self.leaf.key.read_bytes(), self.leaf.cert.read_bytes())],
            root_certificates=self.leaf.ca.read_bytes(),
            require_client_auth=True,
        )
        self.grpc_port = free_port()
        self.server.add_secure_port(f"127.0.0.1:{self.grpc_port}", credentials)
        await self.server.start()

        async def whoami(request: web.Request) -> web.Response:
            peer = _peer_uri(request.transport.get_extra_info("peercert") if request.transport else None)
            self.calls.append(peer)
            return web.Response(text=peer)

        async def echo(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            self.calls.append(_peer_uri(request.transport.get_extra_info("peercert") if request.transport else None))
            async for message in ws:
                await ws.send_str(f"echo {message.data}")
            return ws

        async def events(request: web.Request) -> web.StreamResponse:
            peer = _peer_uri(request.transport.get_extra_info("peercert") if request.transport else None)
            self.calls.append(peer)
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            await response.write(f"data: {peer}\n\n".encode())
            return response

        app = web.Application()
        app.router.add_get("/whoami", whoami)
        app.router.add_get("/events", events)
        app.router.add_get("/ws", echo)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.leaf.ca))
        context.load_cert_chain(self.leaf.cert, self.leaf.key)
        context.verify_mode = ssl.CERT_REQUIRED
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        self.http_port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.http_port, ssl_context=context).start()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class Edge:
    """A running Envoy (TLS config) in front of one `Upstream`."""

    port: int
    admin_socket: Path
    sds_dir: Path
    process: asyncio.subprocess.Process
    upstream: Upstream

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


async def _start_edge(state: Path, ca: CertificateAuthority, upstream: Upstream) -> Edge:
    sds_dir, admin_socket = state / "sds", state / "admin.sock"
    write_sds(sds_dir, ca.issue("envoy"))  # Envoy refuses to start without its SDS files
    cfg = EdgeConfig(
        listen_host="127.0.0.1",
        listen_port=free_port(),
        grpc_upstreams=(("127.0.0.1", upstream.grpc_port),),
        http_upstreams=(("127.0.0.1", upstream.http_port),),
        tls=EdgeTls(str(sds_dir)),
        admin_socket=str(admin_socket),
    )
    config_path = state / "edge.yaml"
    config_path.write_text(render_yaml(cfg))
    command = [find_binary("envoy"), "-c", str(config_path), "--log-level", "warn"]
    command += ["--base-id", str(random.randint(1_000, 1_000_000))]
    with (state / "envoy.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(*command, stdout=log, stderr=subprocess.STDOUT)
    port = await wait_for_listener_port_unix(admin_socket, timeout_s=10)
    return Edge(port, admin_socket, sds_dir, process, upstream)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pki(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """The mesh's CA for this module."""
    return CertificateAuthority(tmp_path_factory.mktemp("edge-tls-pki")).ensure()


@contextlib.asynccontextmanager
async def _edge_before(tmp: Path, pki: CertificateAuthority, identity: str) -> AsyncIterator[Edge]:
    """Envoy with TLS in front of a stand-in gateway that presents `identity`'s leaf."""
    upstream = await Upstream(pki.issue(identity)).start()
    process: asyncio.subprocess.Process | None = None
    try:
        started = await _start_edge(tmp, pki, upstream)
        process = started.process
        yield started
    finally:
        if process is not None:
            await _stop(process)
        await upstream.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def edge(tmp_path_factory: pytest.TempPathFactory, pki: CertificateAuthority) -> AsyncIterator[Edge]:
    """Envoy with TLS in front of a stand-in gateway presenting the gateway identity."""
    async with _edge_before(tmp_path_factory.mktemp("edge-tls"), pki, "gateway") as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def impostor_edge(tmp_path_factory: pytest.TempPathFactory, pki: CertificateAuthority) -> AsyncIterator[Edge]:
    """Envoy whose upstream presents a CA-signed leaf of the wrong identity (a worker's)."""
    async with _edge_before(tmp_path_factory.mktemp("edge-tls-impostor"), pki, "worker") as started:
        yield started


def _client_tls(ca: CertificateAuthority) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.root_path))


def _secure_channel(edge: Edge, ca: CertificateAuthority) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.root_path.read_bytes())
    return grpc.aio.secure_channel(f"127.0.0.1:{edge.port}", credentials)


async def _grpc_whoami(channel: grpc.aio.Channel) -> bytes:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(WHOAMI)
    return await call(b"", timeout=5)


async def _served_serial(edge: Edge, ca: CertificateAuthority) -> int:
    """The serial number of the certificate Envoy presents on a new connection."""
    _, writer = await asyncio.open_connection("127.0.0.1", edge.port, ssl=_client_tls(ca))
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()
        await writer.wait_closed()


async def _http1_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: edge\r\nContent-Length: 0\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head.split(b"\r\n")[0] + b" " + await reader.readexactly(length)


# --- the public port -------------------------------------------------------------------------


async def test_grpc_over_tls_reaches_gateway_as_envoy(edge: Edge, pki: CertificateAuthority) -> None:
    """A gRPC call over TLS to the public port is forwarded over mTLS; the gateway sees Envoy's identity."""
    async with _secure_channel(edge, pki) as channel:
        assert await _grpc_whoami(channel) == ENVOY_ID.encode()


async def test_rest_over_https_http1_and_h2(edge: Edge, pki: CertificateAuthority) -> None:
    """REST over https works on HTTP/1.1 (aiohttp) and h2 (curl's ALPN); the gateway sees Envoy's identity."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{edge.url}/whoami", ssl=_client_tls(pki)) as resp:
            assert (resp.status, resp.version, await resp.text()) == (200, aiohttp.HttpVersion11, ENVOY_ID)
    curl = await asyncio.create_subprocess_exec(
        "curl", "--http2", "--cacert", str(pki.root_path), "-sS", "-w", "\n%{http_version}", f"{edge.url}/whoami",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(curl.communicate(), 10)
    assert curl.returncode == 0, err
    assert out.decode().split("\n") == [ENVOY_ID, "2"]


async def test_grpc_web_and_sse_over_https(edge: Edge, pki: CertificateAuthority) -> None:
    """gRPC-Web (HTTP/1.1 over TLS, translated to h2 mTLS upstream) and an SSE stream both work on the TLS port."""
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
    async with aiohttp.ClientSession() as session:
        empty_message = b"\x00" + (0).to_bytes(4, "big")
        async with session.post(
            f"{edge.url}{WHOAMI}", data=empty_message, headers=headers, ssl=_client_tls(pki)
        ) as resp:
            body = await resp.read()
        assert resp.status == 200
        length = int.from_bytes(body[1:5], "big")
        assert (body[0], body[5 : 5 + length]) == (0, ENVOY_ID.encode())
        assert b"grpc-status:0" in body[5 + length :]
        async with session.get(f"{edge.url}/events", ssl=_client_tls(pki)) as resp:
            assert resp.headers["content-type"] == "text/event-stream"
            assert await resp.text() == f"data: {ENVOY_ID}\n\n"


async def test_websocket_over_wss(edge: Edge, pki: CertificateAuthority) -> None:
    """A WebSocket over wss upgrades through Envoy and echoes; the upstream hop is mTLS too."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"wss://127.0.0.1:{edge.port}/ws", ssl=_client_tls(pki)) as ws:
            await ws.send_str("hello")
            message = await asyncio.wait_for(ws.receive(), 5)
            assert message.data == "echo hello"
    assert edge.upstream.calls[-1] == ENVOY_ID


async def test_plaintext_to_tls_port_gets_no_response(edge: Edge) -> None:
    """Plaintext gRPC (h2c) and plain HTTP to the TLS port are refused: no response, nothing forwarded."""
    before = len(edge.upstream.calls)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _grpc_whoami(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{edge.port}/whoami", timeout=aiohttp.ClientTimeout(total=3)):
                pass
    assert len(edge.upstream.calls) == before


# --- Envoy → gateway -------------------------------------------------------------------------


async def test_upstream_with_wrong_identity_is_refused(impostor_edge: Edge, pki: CertificateAuthority) -> None:
    """An upstream whose CA-signed leaf names another identity (worker) never gets a request: 503 / UNAVAILABLE."""
    async with _secure_channel(impostor_edge, pki) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _grpc_whoami(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{impostor_edge.url}/whoami", ssl=_client_tls(pki)) as resp:
            assert resp.status == 503
    assert impostor_edge.upstream.calls == []


# --- renewal through SDS ---------------------------------------------------------------------


async def test_renewed_leaf_is_served_without_restart(edge: Edge, pki: CertificateAuthority) -> None:
    """After issue("envoy") + write_sds, new connections get the new serial; an open one and Envoy's PID stay."""
    old_serial = await _served_serial(edge, pki)
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port, ssl=_client_tls(pki))
    try:
        pid = edge.process.pid
        renewed = pki.issue("envoy")
        new_serial = x509.load_pem_x509_certificate(renewed.cert.read_bytes()).serial_number
        assert new_serial != old_serial
        write_sds(edge.sds_dir, renewed)

        async def serves_new() -> bool:
            return await _served_serial(edge, pki) == new_serial

        await eventually(serves_new, timeout_s=10, what="Envoy serves the renewed certificate")
        # The connection opened before the swap keeps its session and still carries requests.
        old_peer = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert x509.load_der_x509_certificate(old_peer).serial_number == old_serial
        assert await _http1_get(reader, writer, "/whoami") == b"HTTP/1.1 200 OK " + ENVOY_ID.encode()
        assert edge.process.returncode is None and edge.process.pid == pid
        # A new call still reaches the gateway over mTLS, now with Envoy's renewed leaf.
        async with _secure_channel(edge, pki) as channel:
            assert await _grpc_whoami(channel) == ENVOY_ID.encode()
    finally:
        writer.close()
        await writer.wait_closed()


# --- the CLI check ---------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh.edge", *args], cwd=REPO, capture_output=True, text=True, timeout=20, check=False
    )


def test_check_validates_a_tls_rendering(tmp_path: Path, pki: CertificateAuthority) -> None:
    """`check --validate` runs Envoy's validation on a TLS rendering: against a scratch CA while the SDS dir is
    empty, against the real secrets once write_sds ran, and fails on a config Envoy rejects."""
    sds_dir, config = tmp_path / "sds", tmp_path / "edge.yaml"
    options = ["--tls-sds-dir", str(sds_dir), "--admin-socket", str(tmp_path / "admin.sock")]
    assert _cli("render", *options, "-o", str(config)).returncode == 0
    before = _cli("check", str(config), *options, "--validate")
    assert before.returncode == 0, before.stdout + before.stderr
    assert "scratch CA" in before.stderr
    assert not sds_dir.exists()  # the real SDS directory was not touched
    write_sds(sds_dir, pki.issue("envoy"))
    after = _cli("check", str(config), *options, "--validate")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "scratch CA" not in after.stderr
    sds_path(sds_dir, CERT_SECRET).write_text("resources: []\n")  # Envoy wants exactly one secret per file
    broken = _cli("check", str(config), *options, "--validate")
    assert broken.returncode == 1
    assert "exactly one secret" in broken.stderr


# --- admin -----------------------------------------------------------------------------------


async def test_admin_is_a_private_unix_socket(edge: Edge) -> None:
    """The admin API is a mode-600 unix socket answering /ready; Envoy listens on no TCP port but the public one."""
    mode = edge.admin_socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert await admin_get(edge.admin_socket, "/ready") == (200, "LIVE\n")
    assert listening_ports(edge.process.pid) == {edge.port}
