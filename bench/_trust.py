"""The benchmarks' trust root: every mesh a bench starts is secure (the default) and adopts it.

Like a user's machine that trusts an organisation's root: `TIDEMESH_CA` for the SDK,
`SSL_CERT_FILE` for Python's ssl (aiohttp), `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` for grpcio,
and `TIDEMESH_CA_DIR` so each mesh's CA adopts it. Processes a bench spawns inherit it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import grpc
import grpc.aio

from mesh.security import trust_in_this_process


def trust_bench_root() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="tidemesh-bench-ca-"))
    atexit.register(shutil.rmtree, directory, True)
    return trust_in_this_process(directory)


def public_channel(endpoint: str, secure: bool = True) -> grpc.aio.Channel:
    """gRPC to a mesh's public port: TLS (trusting the bench root), or h2c for --insecure meshes."""
    if not secure:
        return grpc.aio.insecure_channel(endpoint)
    return grpc.aio.secure_channel(endpoint, grpc.ssl_channel_credentials())
