"""A pod's own health check of its process: what the supervisor's `Probe` asks, from inside the pod.

The kubelet cannot pass an ops port's mutual TLS (it holds no leaf of the mesh's root), so each
probe is an exec of ``python -m mesh.kube probe TARGET``, which presents the pod's own leaf. It
runs every few seconds in every pod: HTTP(S) and unix-socket checks use the standard library only
(a fiftieth of the start-up time of importing the mesh); gRPC (Triton) imports grpc when asked.

- ``https://127.0.0.1:8081/healthz --pki DIR --component C``: 200, over mutual TLS with C's leaf;
- ``http://127.0.0.1:8222/healthz?…``: 200 (NATS's monitoring port, bound to the pod's loopback);
- ``http://localhost/ready --socket PATH``: 200 over a unix socket (Envoy's admin);
- ``grpc://127.0.0.1:8001 --pki DIR --component C``: the standard gRPC health check says SERVING.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _leaf(pki: str, component: str) -> tuple[Path, Path, Path]:
    if not pki or not component:
        raise ValueError("a TLS check needs --pki and --component (whose leaf the pod presents)")
    folder = Path(pki)
    return folder / "ca.crt", folder / f"{component}.crt", folder / f"{component}.key"


def check(target: str, pki: str = "", component: str = "", socket_path: str = "", timeout_s: float = 4.0) -> str:
    """ "" when `target` is healthy, else what was wrong (one line)."""
    url = urlsplit(target)
    if url.scheme == "grpc":
        return _check_grpc(url.netloc, _leaf(pki, component), timeout_s)
    if url.scheme not in ("http", "https") or not url.hostname:
        return f"cannot probe {target!r}: expected http://, https:// or grpc://HOST:PORT"
    path = url.path + (f"?{url.query}" if url.query else "")
    connection: http.client.HTTPConnection
    if socket_path:
        connection = _UnixConnection(socket_path, timeout_s)
    elif url.scheme == "https":
        ca, cert, key = _leaf(pki, component)
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(cert, key)
        connection = http.client.HTTPSConnection(url.hostname, url.port or 443, context=context, timeout=timeout_s)
    else:
        connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout_s)
    try:
        connection.request("GET", path or "/")
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"{target}: {exc}"
    finally:
        connection.close()
    return "" if status == 200 else f"{target}: HTTP {status}"


def _check_grpc(address: str, leaf: tuple[Path, Path, Path], timeout_s: float) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    ca, cert, key = (path.read_bytes() for path in leaf)
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    with grpc.secure_channel(address, credentials) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            return f"grpc://{address}: {exc.code().name}"
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    return "" if serving else f"grpc://{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
