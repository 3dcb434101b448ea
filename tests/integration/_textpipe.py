"""The textpipe example for the user-work tests: its Python worker module, registration once per
session, a worker attached for the length of a block, and Node worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from clients.sdk import Client, Worker
from mesh.v1 import kind_pb2, kind_pb2_grpc, task_pb2
from tests.conftest import eventually

if TYPE_CHECKING:
    from tests.integration.conftest import Mesh

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "textpipe"
PYTHON_EXAMPLE = EXAMPLE / "python"
TEXT = "The cat sat.\nThe dog, and the cat!\nfin"


@pytest.fixture(scope="session")
def textpipe() -> Iterator[ModuleType]:
    """The example's worker module (and its generated textpipe.v1 messages) importable."""
    sys.path.insert(0, str(PYTHON_EXAMPLE))
    try:
        import textpipe_worker

        yield textpipe_worker
    finally:
        sys.path.remove(str(PYTHON_EXAMPLE))


def python_worker(mesh: Mesh, textpipe: ModuleType, name: str, capacity: int = 4, **labels: str) -> Worker:
    worker = Worker(
        mesh.endpoint, name=name, labels={"lang": "python", **labels}, capacity=capacity, ca=mesh.plan.ca_path
    )
    worker.definitions = dict(textpipe.worker.definitions)
    return worker


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """`worker` attached for the block; on leaving it drains (the mesh ends its session)."""
    stop = asyncio.Event()
    job = asyncio.create_task(worker.run(stop))
    try:
        attached = asyncio.ensure_future(worker.attached.wait())
        done, _ = await asyncio.wait({attached, job}, timeout=30.0, return_when=asyncio.FIRST_COMPLETED)
        if job in done:
            attached.cancel()
            job.result()  # the attach was refused: raise why
        assert attached in done, "the worker did not attach within 30 s"
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(job, 30.0)


@pytest.fixture(scope="session")
async def registered(mesh: Mesh, textpipe: ModuleType) -> None:
    """The kind and its two message types, registered once for the session."""
    responses = await python_worker(mesh, textpipe, "registrar").register()
    assert [r.kind.name for r in responses] == ["textpipe.count"]


async def events_of(client: Client, task_id: str, timeout_s: float = 60.0) -> list[task_pb2.TaskEvent]:
    async def collect() -> list[task_pb2.TaskEvent]:
        return [event async for event in client.watch(task_id)]

    return await asyncio.wait_for(collect(), timeout_s)


async def workers_of(mesh: Mesh, kind: str) -> list[kind_pb2.KindWorker]:
    async with mesh.public_channel() as channel:
        reply = await kind_pb2_grpc.KindServiceStub(channel).ListKinds(kind_pb2.ListKindsRequest(), timeout=10.0)
    return [w for info in reply.kinds if info.kind.name == kind for w in info.workers]


@contextlib.contextmanager
def node_worker(mesh: Mesh, name: str, log: Path, capacity: int = 2, *labels: str) -> Iterator[subprocess.Popen[bytes]]:
    """The example's Node worker as its own process, stopped (SIGTERM, then SIGKILL) on leaving."""
    from tests.node_env import TEXTPIPE_NODE_WORKER, ensure_node_worker, node_binary

    ensure_node_worker()
    env = {**os.environ, "TIDEMESH_LOG_LEVEL": "info"}
    env.pop("TIDEMESH_API_KEY", None)
    command = [
        node_binary(),
        str(TEXTPIPE_NODE_WORKER),
        "--endpoint",
        mesh.endpoint,
        "--ca",
        mesh.plan.ca_path,
        "--name",
        name,
        "--capacity",
        str(capacity),
        *(arg for label in labels for arg in ("--label", label)),
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


async def attached(mesh: Mesh, kind: str, name: str, process: subprocess.Popen[bytes] | None = None) -> None:
    async def present() -> bool:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"worker {name} exited with {process.returncode}")
        return name in {w.worker_name for w in await workers_of(mesh, kind)}

    await eventually(present, 30.0, f"worker {name} attaches")
