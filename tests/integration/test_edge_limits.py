"""The edge holds its limits: malformed gRPC-Web is answered at once, slow clients are cut off,
and the rendered bootstrap carries the timeouts, per-connection limits and overload actions."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from mesh.edge import EdgeConfig, EdgeTls, render_yaml, wait_for_listener_port_unix, write_sds
from mesh.security import CertificateAuthority, Transport
from mesh.supervisor import find_binary
from mesh.v1 import gateway_pb2
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GET_TASK = "mesh.v1.GatewayService/GetTask"
INTERNALS = ("DecodeError", "Error parsing", "<class", "Traceback", "Exception")


# --- malformed gRPC-Web through Envoy (finding 8) ------------------------------------------------


async def _grpc_web_post(endpoint: str, body: bytes) -> tuple[float, dict[str, str]]:
    """POST a raw gRPC-Web body; return the seconds until the reply ended and its status headers/trailers."""
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1", "origin": "https://browser.test"}
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        # The public port is TLS (the session trusts the mesh's root: tests/conftest.py).
        async with session.post(f"https://{endpoint}/{GET_TASK}", data=body, headers=headers) as response:
            await response.read()
            status = {k.lower(): v for k, v in response.headers.items() if k.lower().startswith(("grpc-", "tidemesh-"))}
    return time.monotonic() - started, status


_VALID = gateway_pb2.GetTaskRequest(task_id="t-1").SerializeToString()


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("prefix longer than the body", struct.pack(">BI", 0, 100) + _VALID),
        ("empty body", b""),
        ("a partial prefix", b"\x00\x00"),
        ("garbage protobuf", struct.pack(">BI", 0, 4) + b"\xff\xff\xff\xff"),
    ],
)
async def test_malformed_grpc_web_is_answered_at_once(mesh: Mesh, name: str, body: bytes) -> None:
    """Each malformed gRPC-Web call gets INVALID_ARGUMENT on `request` within 2 s, without parser internals."""
    seconds, status = await _grpc_web_post(mesh.endpoint, body)
    assert seconds < 2, f"{name}: answered after {seconds:.1f}s"
    assert status.get("grpc-status") == "3", f"{name}: {status}"
    assert status.get("tidemesh-field") == "request"
    assert not any(word in status.get("grpc-message", "") for word in INTERNALS), status


# --- the rendered bootstrap -------------------------------------------------------------------------


def _checked_in() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "envoy" / "tidemesh.yaml").read_text())


def test_bootstrap_has_timeouts_and_connection_limits() -> None:
    """Request-header, request and idle timeouts, h2 stream and buffer limits are set on the public listener."""
    config = _checked_in()
    (listener,) = config["static_resources"]["listeners"]
    assert int(listener["per_connection_buffer_limit_bytes"]) <= 64 * 1024
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["request_headers_timeout"] == "10s"
    assert hcm["request_timeout"] == "60s"
    assert hcm["stream_idle_timeout"] == "3600s"
    assert hcm["common_http_protocol_options"]["idle_timeout"] == "300s"
    assert int(hcm["http2_protocol_options"]["max_concurrent_streams"]) == 1000
    for cluster in config["static_resources"]["clusters"]:
        assert cluster["connect_timeout"] == "5s"
        assert int(cluster["per_connection_buffer_limit_bytes"]) <= 64 * 1024
        (threshold,) = cluster["circuit_breakers"]["thresholds"]
        assert int(threshold["max_connections"]) >= 50_000  # the edge's connection cap, not the breaker, limits


def test_overload_manager_acts_on_heap_and_connections() -> None:
    """The overload manager watches the heap and downstream connections and stops accepting before it breaks."""
    overload = _checked_in()["overload_manager"]
    monitors = {m["name"] for m in overload["resource_monitors"]}
    assert monitors == {
        "envoy.resource_monitors.global_downstream_max_connections",
        "envoy.resource_monitors.fixed_heap",
    }
    actions = {a["name"] for a in overload["actions"]}
    assert {
        "envoy.overload_actions.shrink_heap",
        "envoy.overload_actions.reset_high_memory_stream",
        "envoy.overload_actions.stop_accepting_connections",
        "envoy.overload_actions.stop_accepting_requests",
    } <= actions


def test_request_headers_timeout_is_a_config_field() -> None:
    """EdgeConfig.request_headers_timeout_s reaches the bootstrap, and nonsense values are refused."""
    text = render_yaml(EdgeConfig(request_headers_timeout_s=1.5))
    assert "request_headers_timeout: 1.500s" in text
    with pytest.raises(ValueError, match="request_headers_timeout_s"):
        EdgeConfig(request_headers_timeout_s=0)


def test_supervisor_children_inherit_the_hard_open_files_limit(tmp_path: Path) -> None:
    """A supervisor started with a low soft RLIMIT_NOFILE gives its children the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.fail(f"this check needs a finite hard limit above 256, got {hard}")
    report = tmp_path / "limits.txt"
    probe = f"import pathlib; pathlib.Path({str(report)!r}).write_text(open('/proc/self/limits').read())"
    script = f"""
import asyncio, resource, sys
from mesh.supervisor import Plan, Supervisor
from mesh.supervisor._plan import Health, ProcessSpec
resource.setrlimit(resource.RLIMIT_NOFILE, (256, {hard}))
# No health endpoint: the boot fails once the probe has run, and the supervisor stops it.
spec = ProcessSpec(name="probe", command=[sys.executable, "-c", {probe!r}], ports={{}},
                   health=Health(url="http://127.0.0.1:9/", host="127.0.0.1", port=9, path="/"))
async def main():
    try:
        async with Supervisor(Plan(state_dir={str(tmp_path)!r}, public_port=0, processes=[spec]), health_timeout_s=3):
            pass
    except TimeoutError:
        pass
asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    line = next(row for row in report.read_text().splitlines() if row.startswith("Max open files"))
    assert line.split()[3:5] == [str(hard), str(hard)], line  # "Max open files <soft> <hard> files"


# --- slowloris against a real Envoy with a short header timeout ----------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def short_edge(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[int]:
    """Envoy shaped as a secure mesh runs it (TLS, admin socket, mutual TLS to a gateway-identity
    upstream) with a 1 s request-headers timeout, in front of a one-route aiohttp app; yields its port."""
    state = tmp_path_factory.mktemp("edge-limits")
    pki = CertificateAuthority(state / "pki").adopt(Path(os.environ["TIDEMESH_CA_DIR"]))  # the session's root
    pki.issue("gateway")

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    server_tls = Transport.of(pki.directory, "gateway").server_ssl_context()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sds_dir, admin_socket = state / "sds", state / "admin.sock"
    write_sds(sds_dir, pki.issue("envoy"))  # Envoy refuses to start without its SDS files
    cfg = EdgeConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        grpc_upstreams=(("127.0.0.1", http_port),),
        http_upstreams=(("127.0.0.1", http_port),),
        request_headers_timeout_s=1.0,
        tls=EdgeTls(str(sds_dir)),
        admin_socket=str(admin_socket),
    )
    config_path = state / "edge.yaml"
    config_path.write_text(render_yaml(cfg))
    command = [find_binary("envoy"), "-c", str(config_path)]
    command += ["--base-id", str(random.randint(1_000, 1_000_000)), "--log-level", "warn"]
    with (state / "envoy.log").open("wb") as log:
        envoy = await asyncio.create_subprocess_exec(*command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield await wait_for_listener_port_unix(admin_socket, timeout_s=10)
    finally:
        envoy.terminate()
        try:
            await asyncio.wait_for(envoy.wait(), 10)
        except TimeoutError:
            envoy.kill()
            await envoy.wait()
        await runner.cleanup()


async def _trickle_headers(port: int, every_s: float, limit_s: float) -> float:
    """Over TLS, send request headers a byte every `every_s`; return the seconds until Envoy closed the connection."""
    # The clock starts once the handshake is done: the header timeout is about the request, not TLS.
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl.create_default_context())
    request = b"GET /hello HTTP/1.1\r\nHost: edge\r\nX-Slow: " + b"a" * 1000
    started = time.monotonic()

    async def until_closed() -> None:
        try:
            await reader.read()  # returns at EOF: Envoy closed the connection
        except ConnectionResetError:
            pass  # or reset it, which is closing it too

    closed = asyncio.create_task(until_closed())
    try:
        for byte in request:
            if closed.done() or time.monotonic() - started > limit_s:
                break
            writer.write(bytes([byte]))
            try:
                await writer.drain()
            except ConnectionError:
                break  # closed while we wrote: `closed` has it
            # The client's pace, not a wait for an effect: `closed` is the effect, awaited below.
            await asyncio.wait({closed}, timeout=every_s)
        await asyncio.wait_for(closed, timeout=max(0.1, limit_s - (time.monotonic() - started)))
        return time.monotonic() - started
    finally:
        closed.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_slowloris_connection_is_closed_within_the_header_timeout(short_edge: int) -> None:
    """A client trickling header bytes (one per 0.3 s) is cut off by Envoy soon after its 1 s header timeout."""
    seconds = await _trickle_headers(short_edge, every_s=0.3, limit_s=8)
    assert 0.9 <= seconds < 3, f"closed after {seconds:.2f}s"


async def test_prompt_requests_pass_the_short_edge(short_edge: int) -> None:
    """A client that sends its headers at once is served through the same Envoy."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"https://127.0.0.1:{short_edge}/hello") as response:
            assert response.status == 200
            assert await response.text() == "hello"
