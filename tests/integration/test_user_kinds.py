"""A user kind on the real mesh: declared once, its schema registered, a Python worker attached
through Envoy over the worker protocol, tasks submitted through Envoy — with the guarantees a
built-in kind has (partials, checkpoints, retries, cancellation, redelivery with resume)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from clients.sdk import Client, TaskContext, Worker, unpack
from mesh.v1 import kind_pb2, kind_pb2_grpc, session_pb2, session_pb2_grpc, task_pb2
from tests.conftest import eventually
from tests.integration._textpipe import PYTHON_EXAMPLE as EXAMPLE
from tests.integration._textpipe import TEXT, events_of, python_worker, running
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration


def _worker(mesh: Mesh, textpipe: ModuleType, name: str, capacity: int = 4) -> Worker:
    return python_worker(mesh, textpipe, name, capacity)


async def _events(client: Client, task_id: str) -> list[task_pb2.TaskEvent]:
    return await events_of(client, task_id)


async def test_python_worker_runs_a_user_kind_with_partials_and_checkpoints(
    mesh: Mesh, textpipe: ModuleType, registered: None
) -> None:
    """Submitted through Envoy, run by an attached Python worker: partials in order, a checkpoint
    per line, the typed result; the same events a built-in kind's stream has."""
    CountRequest, CountResult = textpipe.CountRequest, textpipe.CountResult
    async with running(_worker(mesh, textpipe, "py-1")):
        async with Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
            reply = await client.submit("textpipe.count", CountRequest(text=TEXT, top=2))
            events = await asyncio.wait_for(_events(client, reply.task_id), 30.0)
    final = events[-1]
    assert final.state == task_pb2.TASK_STATE_SUCCEEDED and final.final
    result = unpack(final.output, CountResult)
    assert (result.lines, result.words) == (3, 9)
    assert [(w.word, w.count) for w in result.top] == [("the", 3), ("cat", 2)]
    partials = [unpack(e.output, CountResult) for e in events if e.HasField("output") and not e.final]
    assert [(p.lines, p.words) for p in partials] == [(1, 3), (2, 8), (3, 9)]
    checkpoints = [e.checkpoint for e in events if e.checkpoint]
    assert checkpoints[-1] == b'{"counts":{"and":1,"cat":2,"dog":1,"fin":1,"sat":1,"the":3},"line":3}'
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert {e.worker_id for e in events if e.worker_id} and events[0].spec.schema_version == 1


async def test_a_thrown_error_is_retried_and_a_cancel_reaches_the_handler(
    mesh: Mesh, textpipe: ModuleType, registered: None
) -> None:
    """fail_first_attempt → RETRYING then SUCCEEDED on attempt 2; a long task cancelled mid-way
    ends CANCELLED and its handler stops (no result, the worker is free again)."""
    CountRequest = textpipe.CountRequest
    worker = _worker(mesh, textpipe, "py-2")
    async with running(worker):
        async with Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
            retried = await client.submit("textpipe.count", CountRequest(text="a b\nc", fail_first_attempt=True))
            events = await asyncio.wait_for(_events(client, retried.task_id), 30.0)
            states = [e.state for e in events]
            assert task_pb2.TASK_STATE_RETRYING in states and states[-1] == task_pb2.TASK_STATE_SUCCEEDED
            assert events[-1].attempt == 2
            retrying = next(e for e in events if e.state == task_pb2.TASK_STATE_RETRYING)
            assert "first attempt fails on purpose" in retrying.error.message and retrying.error.retryable

            long_text = "\n".join(f"line {i}" for i in range(200))
            slow = await client.submit("textpipe.count", CountRequest(text=long_text, line_delay_ms=100))

            async def streaming() -> bool:
                info = await client.get(slow.task_id)
                return info.state == task_pb2.TASK_STATE_RUNNING and info.last_sequence >= 4

            await eventually(streaming, 20.0, "the slow task streams")
            await client.cancel(slow.task_id, "test")
            events = await asyncio.wait_for(_events(client, slow.task_id), 30.0)
            assert events[-1].state == task_pb2.TASK_STATE_CANCELLED

            async def idle() -> bool:
                return not worker._running

            await eventually(idle, 10.0, "the cancelled handler stops")


async def test_attach_refusals_name_the_reason(mesh: Mesh, registered: None) -> None:
    """An unknown kind, an unregistered schema version, a built-in kind, an unknown step, a handler
    of other types than the kind declares, no capacity: the stream ends with a clear status before
    anything is assigned."""
    cases = [
        (session_pb2.KindOffer(kind="acme.nothing"), {}, grpc.StatusCode.NOT_FOUND, "acme.nothing"),
        (
            session_pb2.KindOffer(kind="textpipe.count", schema_versions=[9]),
            {},
            grpc.StatusCode.NOT_FOUND,
            "no version 9",
        ),
        (session_pb2.KindOffer(kind="echo"), {}, grpc.StatusCode.INVALID_ARGUMENT, "built-in"),
        (session_pb2.KindOffer(kind="textpipe.count", steps=["nope"]), {}, grpc.StatusCode.INVALID_ARGUMENT, "nope"),
        (
            session_pb2.KindOffer(kind="textpipe.count", input_type="acme.v1.Other"),
            {},
            grpc.StatusCode.INVALID_ARGUMENT,
            "the handler uses acme.v1.Other; kind 'textpipe.count' declares textpipe.v1.CountRequest",
        ),
    ]
    async with mesh.public_channel() as channel:
        stub = session_pb2_grpc.WorkerSessionServiceStub(channel)
        for offer, labels, code, words in cases:
            attach = session_pb2.Attach(worker_name="bad", kinds=[offer], labels=labels, capacity=1)
            call = stub.Connect(iter([session_pb2.ConnectRequest(attach=attach)]))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in call:
                    pass
            assert refused.value.code() == code and words in (refused.value.details() or ""), offer
        no_capacity = session_pb2.Attach(kinds=[session_pb2.KindOffer(kind="textpipe.count")], capacity=0)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in stub.Connect(iter([session_pb2.ConnectRequest(attach=no_capacity)])):
                pass
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "attach.capacity" in (refused.value.details() or "")


async def test_kinds_are_listed_with_versions_and_workers(mesh: Mesh, textpipe: ModuleType, registered: None) -> None:
    """ListKinds: the built-in kinds and the user kind, its schema versions and the attached worker."""
    async with running(_worker(mesh, textpipe, "py-list")):
        async with mesh.public_channel() as channel:
            reply = await kind_pb2_grpc.KindServiceStub(channel).ListKinds(kind_pb2.ListKindsRequest(), timeout=10.0)
    kinds = {info.kind.name: info for info in reply.kinds}
    assert {"echo", "embed", "stream", "fan_out", "webhook", "doc_embed"} <= set(kinds)
    assert all(kinds[name].kind.builtin for name in ("echo", "doc_embed"))
    user = kinds["textpipe.count"]
    assert not user.kind.builtin and list(user.schema_versions) == [1]
    assert "py-list" in {w.worker_name for w in user.workers}


async def test_bad_payloads_are_refused_naming_the_field(mesh: Mesh, textpipe: ModuleType, registered: None) -> None:
    """Unknown fields, a known field with the wrong wire type, another message type, an unknown
    schema version: INVALID_ARGUMENT naming the field path, nothing admitted."""
    from google.protobuf import any_pb2

    good = textpipe.CountRequest(text="x").SerializeToString()
    url = "type.googleapis.com/textpipe.v1.CountRequest"
    cases = [
        (any_pb2.Any(type_url=url, value=good + b"\xa8\x06\x01"), 0, "spec.payload.custom"),  # field 101
        (any_pb2.Any(type_url=url, value=b"\x10\x05\x12\x01x"), 0, "top"),  # `top` as length-delimited
        (any_pb2.Any(type_url="type.googleapis.com/textpipe.v1.CountResult", value=b""), 0, "type_url"),
        (any_pb2.Any(type_url=url, value=good), 9, "spec.schema_version"),
    ]
    async with Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
        for payload, version, field in cases:
            spec = client.spec("textpipe.count", task_pb2.TaskPayload(custom=payload), schema_version=version)
            from clients.sdk._client import gateway_pb2

            with pytest.raises(Exception) as refused:
                await client._stub.SubmitTask(gateway_pb2.SubmitTaskRequest(spec=spec), timeout=10.0)
            error = refused.value
            assert isinstance(error, grpc.aio.AioRpcError), error
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
            assert field in (error.details() or ""), (field, error.details())


def _worker_process(mesh: Mesh, name: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TIDEMESH_ENDPOINT": mesh.endpoint,
        "TIDEMESH_CA": mesh.plan.ca_path,
        "TEXTPIPE_WORKER_NAME": name,
        "TEXTPIPE_CAPACITY": "2",
    }
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "tidemesh"), "worker", "run", "textpipe_worker:worker"],
            cwd=EXAMPLE,
            env={**env, "PYTHONPATH": f"{Path(__file__).resolve().parents[2]}"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_kill_9_of_a_worker_mid_step_redelivers_and_resumes_from_its_checkpoint(
    mesh: Mesh, textpipe: ModuleType, registered: None, tmp_path: Path
) -> None:
    """A worker process killed with SIGKILL mid-step: its session ends after the resume window,
    the step is redelivered to another worker, which resumes from the stored checkpoint; the
    result is exact and no partial is stored twice."""
    CountRequest, CountResult = textpipe.CountRequest, textpipe.CountResult
    victim = _worker_process(mesh, "victim", tmp_path / "victim.log")
    try:
        async with Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
            text = "\n".join(f"w{i} common" for i in range(40))
            reply = await client.submit("textpipe.count", CountRequest(text=text, line_delay_ms=50))

            async def half_way() -> bool:
                info = await client.get(reply.task_id)
                return info.last_sequence >= 20

            await eventually(half_way, 30.0, "the victim streams half the lines")
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            rescuer = _worker(mesh, textpipe, "rescuer")
            resumed_from: list[bytes | None] = []
            definition = rescuer.definitions[("textpipe.count", "")]

            async def recording(request: object, ctx: TaskContext) -> object:
                resumed_from.append(ctx.resume_state)
                return await definition.handler(request, ctx)

            rescuer.definitions[("textpipe.count", "")] = dataclasses.replace(definition, handler=recording)
            async with running(rescuer):
                events = await asyncio.wait_for(_events(client, reply.task_id), 60.0)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(10)
    final = events[-1]
    assert final.state == task_pb2.TASK_STATE_SUCCEEDED, final
    assert final.attempt >= 2
    result = unpack(final.output, CountResult)
    assert (result.lines, result.words) == (40, 80)
    assert result.top[0].word == "common" and result.top[0].count == 40
    partials = [unpack(e.output, CountResult).lines for e in events if e.HasField("output") and not e.final]
    assert partials == list(range(1, 41)), "every line's partial exactly once, in order"
    workers = {e.worker_id for e in events if e.worker_id}
    assert len(workers) >= 2, workers
    # The rescuer started from the victim's last stored checkpoint, not from line 0.
    stored = [e.checkpoint for e in events if e.checkpoint and e.worker_id != final.worker_id]
    assert resumed_from and resumed_from[0] == stored[-1], (resumed_from[:1], stored[-1:])
    assert json.loads(resumed_from[0] or b"{}")["line"] >= 5


async def test_rest_sse_and_websocket_take_and_give_a_user_kinds_plain_json(
    mesh: Mesh, textpipe: ModuleType, registered: None
) -> None:
    """POST a user kind's payload as plain JSON (mapped through its registered schema), follow it
    over SSE and WebSocket: outputs come back as JSON fields with their @type; a misspelt payload
    field is a 400 naming it."""
    import aiohttp

    url = "type.googleapis.com/textpipe.v1.CountResult"
    body = {"kind": "textpipe.count", "tenant": "rest-user", "payload": {"text": "a b\nb", "top": 1}}
    async with running(_worker(mesh, textpipe, "py-rest")), aiohttp.ClientSession() as http:
        async with http.post(f"{mesh.base_url}/v1/tasks", json=body) as response:
            assert response.status == 201, await response.text()
            task_id = (await response.json())["task_id"]
        events = []
        async with http.get(f"{mesh.base_url}/v1/tasks/{task_id}/events") as response:
            async for line in response.content:
                if line.startswith(b"data: "):
                    events.append(json.loads(line[6:]))
                    if events[-1].get("final"):
                        break
        assert events[-1]["state"] == "TASK_STATE_SUCCEEDED"
        assert events[-1]["output"]["custom"] == {
            "@type": url,
            "lines": 2,
            "words": 3,
            "top": [{"word": "b", "count": 2}],
        }
        assert events[0]["spec"]["payload"]["custom"]["text"] == "a b\nb"
        partials = [e["output"]["custom"]["lines"] for e in events if "output" in e and not e.get("final")]
        assert partials == [1, 2]
        async with http.get(f"{mesh.base_url}/v1/tasks/{task_id}") as response:
            assert (await response.json())["result"]["custom"]["words"] == 3

        bad = {**body, "payload": {"text": "x", "lines_": 2}}
        async with http.post(f"{mesh.base_url}/v1/tasks", json=bad) as response:
            error = await response.json()
            assert response.status == 400 and error["field"] == "payload.lines_", error
        wrong_version = {**body, "schema_version": 7}
        async with http.post(f"{mesh.base_url}/v1/tasks", json=wrong_version) as response:
            error = await response.json()
            assert response.status == 400 and error["field"] == "schema_version", error

        async with http.ws_connect(f"{mesh.ws_url}/v1/ws") as ws:
            await ws.send_json({"op": "submit", "id": "s1", "task": {**body, "payload": {"text": "z z z"}}})
            submitted = await ws.receive_json(timeout=10.0)
            assert submitted["type"] == "submitted", submitted
            await ws.send_json({"op": "subscribe", "task_id": submitted["task_id"]})
            while True:
                message = await ws.receive_json(timeout=30.0)
                assert message["type"] == "event", message
                if message["event"].get("final"):
                    break
            assert message["event"]["output"]["custom"]["top"] == [{"word": "z", "count": 3}]


async def test_worker_run_shuts_down_in_two_stages(
    mesh: Mesh, textpipe: ModuleType, registered: None, tmp_path: Path
) -> None:
    """`tidemesh worker run`: the first SIGTERM lets the running task finish on this worker, then
    the process exits 0; a second SIGTERM stops at once, and the interrupted task is finished by
    another worker, not lost."""
    CountRequest = textpipe.CountRequest
    text = "\n".join(f"w{i}" for i in range(30))
    async with Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
        for signals, name in ((1, "graceful"), (2, "hasty")):
            process = _worker_process(mesh, name, tmp_path / f"{name}.log")
            try:
                reply = await client.submit("textpipe.count", CountRequest(text=text, line_delay_ms=60))

                async def streaming(task_id: str = reply.task_id) -> bool:
                    return (await client.get(task_id)).last_sequence >= 4

                await eventually(streaming, 30.0, f"{name} streams")
                for _ in range(signals):
                    process.send_signal(signal.SIGTERM)
                    await asyncio.sleep(0.2)  # the two signals are two separate decisions of an operator
                code = await asyncio.to_thread(process.wait, 30)
                log = (tmp_path / f"{name}.log").read_text()
                assert code == 0, log
                info = await client.get(reply.task_id)
                if signals == 1:
                    assert info.state == task_pb2.TASK_STATE_SUCCEEDED, log
                else:
                    assert info.state != task_pb2.TASK_STATE_SUCCEEDED, "stopped at once, not after the task"
                    async with running(_worker(mesh, textpipe, "finisher")):
                        events = await events_of(client, reply.task_id)
                    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
