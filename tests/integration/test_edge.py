"""The Envoy front door: the generated bootstrap validates, has no drift, and routes real traffic.

The live Envoy has the shape a secure mesh gives it: TLS on the public port (certificate via
SDS), mutual TLS to upstreams that must present the gateway's identity, and the admin API on a
unix socket. Its root is the test session's (tests/conftest.py), which clients already trust.
"""

from __future__ import annotations

import base64
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mesh.edge import (
    EdgeConfig,
    EdgeTls,
    read_admin_address,
    render_yaml,
    wait_for_listener_port,
    wait_for_listener_port_unix,
    write_sds,
)
from mesh.security import CertificateAuthority, Transport
from mesh.supervisor import find_binary

pytestmark = [pytest.mark.integration, pytest.mark.timeout(10)]

REPO = Path(__file__).resolve().parents[2]
CHECKED_IN = REPO / "envoy" / "tidemesh.yaml"
SESSION_HEADER = EdgeConfig().session_header
UPSTREAM_IDS = ("replica-a", "replica-b")


def _envoy() -> str:
    return find_binary("envoy")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh.edge", *args], cwd=REPO, capture_output=True, text=True, timeout=8
    )


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_envoy(), "--mode", "validate", "-c", str(path), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=8,
    )


# --- static checks ---------------------------------------------------------------------------


def test_envoy_validates_checked_in_config() -> None:
    """`envoy --mode validate` accepts envoy/tidemesh.yaml."""
    result = _validate(CHECKED_IN)
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_validates_multi_replica_config(tmp_path: Path) -> None:
    """A rendering with 2 gRPC + 2 HTTP upstreams (one a hostname) validates too."""
    out = tmp_path / "multi.yaml"
    rendered = _cli(
        "render",
        "--grpc-upstream",
        "127.0.0.1:50051",
        "--grpc-upstream",
        "127.0.0.1:50052",
        "--http-upstream",
        "127.0.0.1:8081",
        "--http-upstream",
        "localhost:8082",
        "-o",
        str(out),
    )
    assert rendered.returncode == 0, rendered.stderr
    result = _validate(out)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checked_in_config_has_no_drift() -> None:
    """`python -m mesh.edge check envoy/tidemesh.yaml` exits 0 and matches render_yaml()."""
    result = _cli("check", str(CHECKED_IN))
    assert result.returncode == 0, result.stdout + result.stderr
    assert CHECKED_IN.read_text() == render_yaml(EdgeConfig())


def test_hand_edit_is_detected(tmp_path: Path) -> None:
    """A modified copy makes `check` exit 1 with a unified diff naming the change."""
    edited = tmp_path / "tidemesh.yaml"
    original = CHECKED_IN.read_text()
    assert "port_value: 8080" in original
    edited.write_text(original.replace("port_value: 8080", "port_value: 8088"))
    result = _cli("check", str(edited))
    assert result.returncode == 1
    assert "-        port_value: 8088" in result.stdout
    assert "+        port_value: 8080" in result.stdout


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "localhost"])
def test_non_loopback_admin_host_is_rejected(host: str) -> None:
    """The admin API must stay on a loopback IP."""
    with pytest.raises(ValueError, match="admin_host"):
        EdgeConfig(admin_host=host)


# --- live routing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """A running Envoy (TLS) in front of one gRPC health server and two aiohttp replicas (mutual TLS)."""

    port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _replica_app(replica_id: str) -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"upstream": replica_id, "request_id": request.headers.get("x-request-id")})

    async def ws_echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.add_routes([web.get("/hello", hello), web.get("/ws", ws_echo)])
    return app


@contextmanager
def _running(cmd: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` with output to ``log_path``; always terminate it (then kill) on exit."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture(scope="module")
def envoy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def edge(envoy_dir: Path) -> AsyncIterator[Edge]:
    envoy = _envoy()
    # The session's root (which every client here trusts), with leaves for the upstreams and Envoy.
    pki = CertificateAuthority(envoy_dir / "pki").adopt(Path(os.environ["TIDEMESH_CA_DIR"]))
    pki.issue("gateway")
    upstream = Transport.of(pki.directory, "gateway")
    grpc_server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), grpc_server)
    grpc_port = grpc_server.add_secure_port("127.0.0.1:0", upstream.server_credentials())
    runners: list[web.AppRunner] = []
    try:
        await grpc_server.start()
        http_ports = []
        for replica_id in UPSTREAM_IDS:
            runner = web.AppRunner(_replica_app(replica_id))
            await runner.setup()
            runners.append(runner)
            sock = _bound_socket()
            http_ports.append(sock.getsockname()[1])
            await web.SockSite(runner, sock, ssl_context=upstream.server_ssl_context()).start()

        sds_dir, admin_socket = envoy_dir / "sds", envoy_dir / "admin.sock"
        write_sds(sds_dir, pki.issue("envoy"))  # Envoy refuses to start without its SDS files
        cfg = EdgeConfig(
            listen_host="127.0.0.1",
            listen_port=0,
            grpc_upstreams=(("127.0.0.1", grpc_port),),
            http_upstreams=tuple(("127.0.0.1", p) for p in http_ports),
            tls=EdgeTls(str(sds_dir)),
            admin_socket=str(admin_socket),
        )
        config_path, log_path = envoy_dir / "edge.yaml", envoy_dir / "envoy.log"
        config_path.write_text(render_yaml(cfg))
        base_id = str(random.randint(1_000, 1_000_000))  # distinct shared-memory names per Envoy
        cmd = [envoy, "-c", str(config_path), "--base-id", base_id, "--log-level", "warn"]
        with _running(cmd, log_path) as proc:
            try:
                port = await wait_for_listener_port_unix(admin_socket, timeout_s=5)
            except TimeoutError as exc:
                log = log_path.read_text()
                raise AssertionError(f"envoy did not come up (exit={proc.poll()}): {log}") from exc
            yield Edge(port=port)
    finally:
        for runner in runners:
            await runner.cleanup()
        await grpc_server.stop(None)


def _grpc_web_frame(payload: bytes, flag: int = 0x00) -> bytes:
    return bytes([flag]) + len(payload).to_bytes(4, "big") + payload


def _parse_grpc_web(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """Split a gRPC-Web response body into message payloads and the trailer map."""
    messages: list[bytes] = []
    trailers: dict[str, str] = {}
    i = 0
    while i < len(body):
        flag, length = body[i], int.from_bytes(body[i + 1 : i + 5], "big")
        chunk = body[i + 5 : i + 5 + length]
        assert len(chunk) == length, "truncated gRPC-Web frame"
        if flag & 0x80:
            for line in chunk.decode().split("\r\n"):
                if line:
                    key, _, value = line.partition(":")
                    trailers[key.strip().lower()] = value.strip()
        else:
            assert flag == 0x00, f"unexpected frame flag {flag:#x}"
            messages.append(chunk)
        i += 5 + length
    return messages, trailers


def _b64_decode_stream(text: str) -> bytes:
    """Decode gRPC-Web-text: Envoy may emit several padded base64 chunks back to back."""
    out, start = bytearray(), 0
    for i, ch in enumerate(text):
        if ch == "=" and (i + 1 == len(text) or text[i + 1] != "="):
            out += base64.b64decode(text[start : i + 1])
            start = i + 1
    if start < len(text):
        out += base64.b64decode(text[start:])
    return bytes(out)


async def test_grpc_over_tls_through_envoy(edge: Edge) -> None:
    """A grpc.aio Health/Check over TLS (h2) reaches the upstream via the gateway_grpc route."""
    async with grpc.aio.secure_channel(f"127.0.0.1:{edge.port}", grpc.ssl_channel_credentials()) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_grpc_web_binary_over_http1(edge: Edge) -> None:
    """A gRPC-Web (binary) POST over HTTPS/1.1 gets a data frame, a grpc-status:0 trailer and CORS exposure."""
    origin = "https://app.example"
    body = _grpc_web_frame(health_pb2.HealthCheckRequest().SerializeToString())
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1", "origin": origin}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{edge.url}/grpc.health.v1.Health/Check", data=body, headers=headers) as resp:
            assert resp.status == 200
            assert resp.version == aiohttp.HttpVersion11
            assert resp.headers["content-type"].startswith("application/grpc-web")
            assert resp.headers["access-control-allow-origin"] == origin
            assert "grpc-status" in resp.headers["access-control-expose-headers"]
            raw = await resp.read()
    messages, trailers = _parse_grpc_web(raw)
    assert len(messages) == 1
    assert trailers.get("grpc-status") == "0"
    assert health_pb2.HealthCheckResponse.FromString(messages[0]).status == health_pb2.HealthCheckResponse.SERVING


async def test_grpc_web_text_over_http1(edge: Edge) -> None:
    """The base64 `application/grpc-web-text` variant round-trips too."""
    frame = _grpc_web_frame(health_pb2.HealthCheckRequest().SerializeToString())
    headers = {
        "content-type": "application/grpc-web-text",
        "accept": "application/grpc-web-text",
        "x-grpc-web": "1",
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{edge.url}/grpc.health.v1.Health/Check", data=base64.b64encode(frame), headers=headers
        ) as resp:
            assert resp.status == 200
            assert resp.headers["content-type"].startswith("application/grpc-web-text")
            raw = _b64_decode_stream((await resp.read()).decode("ascii"))
    messages, trailers = _parse_grpc_web(raw)
    assert trailers.get("grpc-status") == "0"
    assert [health_pb2.HealthCheckResponse.FromString(m).status for m in messages] == [
        health_pb2.HealthCheckResponse.SERVING
    ]


async def test_cors_preflight(edge: Edge) -> None:
    """An OPTIONS preflight from a browser origin is answered by Envoy with allow-origin/-headers."""
    origin = "https://app.example"
    headers = {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": f"content-type,x-grpc-web,{SESSION_HEADER}",
    }
    async with aiohttp.ClientSession() as session:
        async with session.options(f"{edge.url}/grpc.health.v1.Health/Check", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["access-control-allow-origin"] == origin
            allowed = resp.headers["access-control-allow-headers"]
            assert "x-grpc-web" in allowed and SESSION_HEADER in allowed
            assert "POST" in resp.headers["access-control-allow-methods"]


async def test_rest_reaches_aiohttp(edge: Edge) -> None:
    """A plain GET /hello goes to an aiohttp replica via gateway_http, with an x-request-id generated."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{edge.url}/hello") as resp:
            assert resp.status == 200
            reply = await resp.json()
    assert reply["upstream"] in UPSTREAM_IDS
    assert reply["request_id"], "Envoy should generate x-request-id for the upstream"


async def test_websocket_echo_through_envoy(edge: Edge) -> None:
    """A WebSocket upgraded through Envoy echoes text frames both ways."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{edge.url}/ws", timeout=aiohttp.ClientWSTimeout(ws_receive=5)) as ws:
            for text in ("ping", "tidemesh"):
                await ws.send_str(text)
                assert await ws.receive_str(timeout=5) == text


async def test_session_header_sticks_to_one_replica(edge: Edge) -> None:
    """Same x-tidemesh-session -> same replica (20 tries); 40 distinct sessions reach both replicas."""

    async def whoami(session: aiohttp.ClientSession, sid: str) -> str:
        async with session.get(f"{edge.url}/hello", headers={SESSION_HEADER: sid}) as resp:
            assert resp.status == 200
            return str((await resp.json())["upstream"])

    async with aiohttp.ClientSession() as session:
        sticky = {await whoami(session, "session-fixed") for _ in range(20)}
        spread = {await whoami(session, f"session-{i}") for i in range(40)}
    assert len(sticky) == 1
    assert spread == set(UPSTREAM_IDS)


async def test_admin_helpers_time_out_clearly(tmp_path: Path) -> None:
    """The discovery helpers (TCP admin and admin socket) raise TimeoutError, not hang, when Envoy never shows up."""
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="admin address"):
        await read_admin_address(tmp_path / "missing", timeout_s=0.2)
    with pytest.raises(TimeoutError, match="not bound"):
        await wait_for_listener_port_unix(tmp_path / "missing.sock", timeout_s=0.2)
    sock = _bound_socket()  # bound but not listening: connections are refused
    try:
        with pytest.raises(TimeoutError, match="not bound"):
            await wait_for_listener_port("127.0.0.1", sock.getsockname()[1], timeout_s=0.2)
    finally:
        sock.close()
    assert time.monotonic() - started < 2
