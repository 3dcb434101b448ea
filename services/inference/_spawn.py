"""`python -m services.inference` as a child process on free ports, for tests and benchmarks
(`tidemesh up` runs it under the supervisor instead)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio

from mesh.security import Transport
from mesh.supervisor import guarded
from mesh.v1 import inference_pb2_grpc


class InferenceProcess(inference_pb2_grpc.InferenceServiceStub):
    """A stub of a running inference service that also knows the service's pid and reads its
    Prometheus metrics (its ops port, under the same transport)."""

    def __init__(self, channel: grpc.aio.Channel, pid: int, http_port: int = 0, transport: Transport | None = None):
        super().__init__(channel)
        self.pid = pid
        self._http_port = http_port
        self._transport = transport or Transport.insecure()

    async def metrics(self) -> str:
        import aiohttp

        context = self._transport.client_ssl_context()
        scheme = "https" if context is not None else "http"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{scheme}://127.0.0.1:{self._http_port}/metrics", ssl=context or False) as response,
        ):
            response.raise_for_status()
            return await response.text()


@contextlib.asynccontextmanager
async def inference_process(
    workdir: Path, *args: str, timeout_s: float = 60.0, pki: Path | None = None
) -> AsyncIterator[InferenceProcess]:
    """A stub connected to a fresh inference service started with `args` (never registered in
    NATS); its log is ``workdir/inference.log``. Stopped (SIGTERM, then SIGKILL) on exit.

    With `pki` (a mesh's pki dir) it serves mutual TLS as ``inference`` (and reaches Triton so),
    and the stub calls it as ``cli``; without, plaintext."""
    if pki is not None:
        args = ("--pki", str(pki), *args)
    ready = workdir / f"inference-{uuid.uuid4().hex}.json"
    log_path = workdir / "inference.log"
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *guarded([sys.executable, "-m", "services.inference", "--no-register", "--ready-file", str(ready), *args]),
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while not ready.exists():
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"inference service did not start:\n{log_path.read_text()[-3000:]}")
            await asyncio.sleep(0.05)
        ports = json.loads(ready.read_text())
        transport = Transport.of(pki, "cli") if pki is not None else Transport.insecure()
        async with transport.channel(f"127.0.0.1:{ports['grpc_port']}") as channel:
            yield InferenceProcess(channel, process.pid, ports["http_port"], transport)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
