"""The textpipe kind served by the Node worker (`@grpc/grpc-js`, stubs from proto/ by buf) through
Envoy: results and events exactly those the Python worker gives, a retry after a thrown error,
a cancellation that reaches the handler."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from clients.sdk import Client, unpack
from mesh.v1 import task_pb2
from tests.conftest import eventually
from tests.integration._textpipe import TEXT, attached, events_of, node_worker, python_worker, running, workers_of
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration


def _shape(events: list[task_pb2.TaskEvent]) -> list[tuple[object, ...]]:
    """What a worker decides in a task's events (ids, times and worker names aside)."""
    return [
        (
            task_pb2.TaskState.Name(e.state),
            e.step,
            e.attempt,
            e.final,
            e.output.SerializeToString(deterministic=True) if e.HasField("output") else b"",
            round(e.partial_confidence, 6),
            e.checkpoint,
            e.error.error_class,
            e.error.retryable,
        )
        for e in events
    ]


async def _run_both(mesh: Mesh, textpipe: ModuleType, tmp_path: Path, request: object) -> tuple[list, list]:  # type: ignore[type-arg]
    async with Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
        async with running(python_worker(mesh, textpipe, "py-ref")):
            by_python = await events_of(client, (await client.submit("textpipe.count", request)).task_id)
        with node_worker(mesh, "node-1", tmp_path / "node.log") as process:
            await attached(mesh, "textpipe.count", "node-1", process)
            by_node = await events_of(client, (await client.submit("textpipe.count", request)).task_id)
    return by_python, by_node


async def test_node_worker_gives_exactly_the_python_workers_events(
    mesh: Mesh, textpipe: ModuleType, registered: None, tmp_path: Path
) -> None:
    """Same task, once per language: the same states, partials, confidences, checkpoints and result."""
    request = textpipe.CountRequest(text=TEXT + "\nÉcole, école — ÉCOLE!", top=3)
    by_python, by_node = await _run_both(mesh, textpipe, tmp_path, request)
    assert by_node[-1].state == task_pb2.TASK_STATE_SUCCEEDED, by_node[-1]
    assert _shape(by_node) == _shape(by_python)
    result = unpack(by_node[-1].output, textpipe.CountResult)
    assert [(w.word, w.count) for w in result.top] == [("the", 3), ("école", 3), ("cat", 2)]


async def test_node_worker_retries_a_thrown_error_like_python(
    mesh: Mesh, textpipe: ModuleType, registered: None, tmp_path: Path
) -> None:
    """A handler that throws on attempt 1: RETRYING (class, retryable) then SUCCEEDED on attempt 2, as in Python."""
    request = textpipe.CountRequest(text="a b\nc", fail_first_attempt=True)
    by_python, by_node = await _run_both(mesh, textpipe, tmp_path, request)
    assert [e.state for e in by_node if e.state == task_pb2.TASK_STATE_RETRYING]
    assert by_node[-1].state == task_pb2.TASK_STATE_SUCCEEDED and by_node[-1].attempt == 2
    # The retry's message names the language's exception type; everything else is the same.
    assert _shape(by_node) == _shape(by_python)


async def test_node_worker_is_cancelled_mid_step(
    mesh: Mesh, textpipe: ModuleType, registered: None, tmp_path: Path
) -> None:
    """Cancel while the Node handler streams: CANCELLED, and the worker holds nothing afterwards."""
    text = "\n".join(f"line {i}" for i in range(200))
    with node_worker(mesh, "node-cancel", tmp_path / "node.log") as process:
        await attached(mesh, "textpipe.count", "node-cancel", process)
        async with Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
            reply = await client.submit("textpipe.count", textpipe.CountRequest(text=text, line_delay_ms=100))

            async def streaming() -> bool:
                return (await client.get(reply.task_id)).last_sequence >= 4

            await eventually(streaming, 30.0, "the Node worker streams")
            await client.cancel(reply.task_id, "test")
            events = await events_of(client, reply.task_id)
            assert events[-1].state == task_pb2.TASK_STATE_CANCELLED

            async def idle() -> bool:
                workers = [w for w in await workers_of(mesh, "textpipe.count") if w.worker_name == "node-cancel"]
                return bool(workers) and workers[0].in_flight == 0

            await eventually(idle, 15.0, "the cancelled step leaves the Node worker")
        assert process.poll() is None, "the worker survives a cancellation"
