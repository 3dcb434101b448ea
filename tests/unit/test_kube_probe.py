"""`python -m mesh.kube probe`: a pod's check of its own process over a unix socket and over gRPC
with mutual TLS (HTTP and HTTPS run against real servers in tests/integration/test_kube_pods.py)."""

from __future__ import annotations

import http.server
import os
import socketserver
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mesh.kube.__main__ import main
from mesh.kube._probe import check
from mesh.security import CertificateAuthority
from mesh.supervisor import free_port


class _Unix(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ready" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""

    def address_string(self) -> str:  # a unix peer has no host
        return "unix"


@pytest.fixture
def admin_socket(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "admin.sock")
    server = _Unix(path, _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_get_over_a_unix_socket_is_healthy_on_200_only(admin_socket: str) -> None:
    """Envoy's admin /ready: 200 is healthy; another status or no socket says what was wrong."""
    assert check("http://localhost/ready", socket_path=admin_socket) == ""
    assert check("http://localhost/other", socket_path=admin_socket) == "http://localhost/other: HTTP 503"
    assert "No such file" in check("http://localhost/ready", socket_path=admin_socket + ".gone")
    assert main(["probe", "http://localhost/ready", "--socket", admin_socket]) == 0
    assert main(["probe", "http://localhost/other", "--socket", admin_socket]) == 1


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """Leaves for a server and a pod, under the session's root."""
    ca = CertificateAuthority(tmp_path / "pki").adopt(Path(os.environ["TIDEMESH_CA_DIR"]))
    ca.issue("triton")
    return ca.directory


def test_grpc_health_is_checked_over_mutual_tls_with_the_pods_leaf(pki: Path) -> None:
    """SERVING is healthy; NOT_SERVING and a probe without a leaf the server accepts are not."""
    leaf = CertificateAuthority(pki).files("triton")
    credentials = grpc.ssl_server_credentials(
        [(leaf.key.read_bytes(), leaf.cert.read_bytes())], leaf.ca.read_bytes(), require_client_auth=True
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port(f"127.0.0.1:{free_port()}", credentials)
    server.start()
    try:
        target = f"grpc://127.0.0.1:{port}"
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert check(target, str(pki), "triton") == ""
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert check(target, str(pki), "triton") == f"{target}: NOT_SERVING"
        with pytest.raises(ValueError, match="--pki and --component"):
            check(target)
    finally:
        server.stop(None)


def test_a_target_it_cannot_probe_is_said() -> None:
    """A scheme the probe does not speak is a reason, not a crash."""
    assert "expected http://, https:// or grpc://" in check("ftp://127.0.0.1:21/")
