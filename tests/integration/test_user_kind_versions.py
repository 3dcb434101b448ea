"""Schema versions at consume time, capability labels, and a rolling upgrade, on the real mesh.

The kind here (`acme.score`) has its own message types, built from .proto text in private
descriptor pools so that two versions of one message live side by side in this process — as
they do in a fleet halfway through an upgrade."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message

from clients.sdk import Client, TaskContext, Worker, unpack
from mesh.schemas import compile_proto, message_class
from mesh.v1 import (
    deadletter_pb2,
    kind_pb2,
    kind_pb2_grpc,
    schema_pb2,
    schema_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    task_pb2,
)
from tests.conftest import eventually
from tests.integration._textpipe import events_of, running
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

REQUEST = "acme.v1.ScoreRequest"
RESULT = "acme.v1.ScoreResult"
V1 = """syntax = "proto3";
package acme.v1;
message ScoreRequest { string text = 1; }
message ScoreResult { uint32 score = 1; uint32 read_as = 2; string worker = 3; }
"""
# Backward compatible: a new field; readers of v2 read v1 data (boost is 0 there).
V2 = V1.replace(
    "message ScoreRequest { string text = 1; }", "message ScoreRequest { string text = 1; uint32 boost = 2; }"
)
V3 = V2.replace("uint32 boost = 2; }", "uint32 boost = 2; string note = 3; }")


def _classes(tmp: Path, name: str, source: str) -> tuple[bytes, type[Message], type[Message]]:
    path = tmp / name / "acme" / "v1" / "score.proto"
    path.parent.mkdir(parents=True)
    path.write_text(source)
    fds = compile_proto(path, [tmp / name])
    return fds, message_class(fds, REQUEST), message_class(fds, RESULT)


async def _register(mesh: Mesh, fds: bytes, *subjects: str) -> list[int]:
    async with mesh.public_channel() as channel:
        stub = schema_pb2_grpc.SchemaServiceStub(channel)
        versions = []
        for subject in subjects:
            request = schema_pb2.RegisterSchemaRequest(subject=subject, descriptor_set=fds)
            versions.append((await stub.RegisterSchema(request, timeout=10.0)).schema.version)
        return versions


def _scorer(
    mesh: Mesh, name: str, version: int, request: type[Message], result: type[Message], **labels: str
) -> Worker:
    worker = Worker(mesh.endpoint, name=name, capacity=4, ca=mesh.plan.ca_path, labels=labels, build_id=f"v{version}")

    @worker.task("acme.score", input=request, output=result, versions=range(1, version + 1))
    async def score(payload: Message, ctx: TaskContext) -> Message:
        boost = getattr(payload, "boost", 0)
        return result(score=len(payload.text) + boost, read_as=ctx.schema_version, worker=name)  # type: ignore[attr-defined, call-arg]

    return worker


@pytest.fixture(scope="module")
async def versions(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[bytes, type, type]]:  # type: ignore[type-arg]
    """acme.score registered with v1 of its types; v2 and v3 compiled, not yet registered."""
    tmp = tmp_path_factory.mktemp("acme")
    built = {n: _classes(tmp, f"v{n}", source) for n, source in ((1, V1), (2, V2), (3, V3))}
    assert await _register(mesh, built[1][0], REQUEST, RESULT) == [1, 1]
    declaration = kind_pb2.KindDeclaration(name="acme.score", input_type=REQUEST, output_type=RESULT)
    declaration.steps.add(name="score")
    async with mesh.public_channel() as channel:
        reply = await kind_pb2_grpc.KindServiceStub(channel).RegisterKind(
            kind_pb2.RegisterKindRequest(kind=declaration), timeout=10.0
        )
        assert reply.created
        # The same declaration again is accepted; another one under the name is refused, naming it.
        assert not (
            await kind_pb2_grpc.KindServiceStub(channel).RegisterKind(
                kind_pb2.RegisterKindRequest(kind=declaration), timeout=10.0
            )
        ).created
        other = kind_pb2.KindDeclaration()
        other.CopyFrom(declaration)
        other.max_attempts = 9
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await kind_pb2_grpc.KindServiceStub(channel).RegisterKind(
                kind_pb2.RegisterKindRequest(kind=other), timeout=10.0
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "acme.score" in (refused.value.details() or "")
    return built


async def test_rolling_upgrade_under_load_runs_every_task_exactly_once(mesh: Mesh, versions: dict) -> None:  # type: ignore[type-arg]
    """v1 workers serve while tasks flow; v2 of the input is registered and v2 workers attach; new
    tasks move to v2 (only v2 workers read them), in-flight v1 tasks keep to a worker that reads
    v1, the v1 workers drain; every task succeeds exactly once."""
    _, request_v1, result_v1 = versions[1]
    submitted: list[tuple[str, int]] = []  # (task id, the version it was written with)
    stop_load = asyncio.Event()

    async def load(client: Client) -> None:
        while not stop_load.is_set():
            latest = 2 if upgraded.is_set() else 1
            request = versions[2][1](text="abc", boost=10) if latest == 2 else request_v1(text="abc")
            # A client names the version it was built with (0 would mean "the latest", whatever that is now).
            reply = await client.submit("acme.score", request, schema_version=latest)
            submitted.append((reply.task_id, latest))
            await asyncio.sleep(0.02)  # a steady trickle, not a flood

    upgraded = asyncio.Event()
    async with Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
        old = _scorer(mesh, "scorer-v1", 1, request_v1, result_v1)
        old_stop = asyncio.Event()
        old_job = asyncio.create_task(old.run(old_stop))
        await asyncio.wait_for(old.attached.wait(), 30.0)
        loader = asyncio.create_task(load(client))
        await eventually(_at_least(submitted, 15), 30.0, "load before the upgrade")
        assert await _register(mesh, versions[2][0], REQUEST, RESULT) == [2, 2]
        upgraded.set()
        new = _scorer(mesh, "scorer-v2", 2, versions[2][1], versions[2][2])
        new_stop = asyncio.Event()
        new_job = asyncio.create_task(new.run(new_stop))
        await asyncio.wait_for(new.attached.wait(), 30.0)
        await eventually(_at_least(submitted, 15, version=2), 30.0, "load on v2")
        # The old workers drain (draining heartbeat: nothing new, the running finish) under load.
        old_stop.set()
        await asyncio.wait_for(old_job, 30.0)
        count = len(submitted)
        await eventually(_at_least(submitted, count + 10), 30.0, "load after the drain")
        stop_load.set()
        await loader
        finals = {task_id: await events_of(client, task_id) for task_id, _ in submitted}
        new_stop.set()
        await asyncio.wait_for(new_job, 30.0)
    results = collections.Counter()
    for task_id, version in submitted:
        events = finals[task_id]
        succeeded = [e for e in events if e.state == task_pb2.TASK_STATE_SUCCEEDED]
        assert len(succeeded) == 1 and events[-1] is succeeded[0], (task_id, [e.state for e in events])
        assert events[0].spec.schema_version == version
        result = unpack(succeeded[0].output, versions[2][2])
        assert result.read_as == version
        assert result.score == (13 if version == 2 else 3), "a v2 payload read by a v2 reader keeps its boost"
        if version == 2:
            assert result.worker.startswith("scorer-v2"), "only v2 workers read v2 work"
        results[result.worker] += 1
    assert results["scorer-v1"] > 0 and results["scorer-v2"] > 0, results


def _at_least(items: list[tuple[str, int]], count: int, version: int = 0) -> Callable[[], Awaitable[bool]]:
    """A predicate for `eventually`: `items` (read at each poll) holds `count` (of `version`, if given)."""

    async def check() -> bool:
        return sum(1 for _, v in items if not version or v == version) >= count

    return check


async def test_work_no_worker_reads_waits_then_dead_letters_as_schema_mismatch(mesh: Mesh, versions: dict) -> None:  # type: ignore[type-arg]
    """A newer input version nobody attached reads: its tasks wait ("no compatible worker" in
    ListKinds and `tidemesh status`), one past its deadline ends DEAD_LETTERED as schema_mismatch,
    one with time left runs as soon as a worker that reads the version attaches."""
    [newest] = await _register(mesh, versions[3][0], REQUEST)
    _, request_v3, result_v3 = versions[3]
    reader = _scorer(mesh, "scorer-old", 1, versions[1][1], versions[1][2])  # reads v1 only
    async with running(reader), Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
        doomed = await client.submit("acme.score", request_v3(text="x"), schema_version=newest, deadline_s=3.0)
        patient = await client.submit("acme.score", request_v3(text="xy"), schema_version=newest, deadline_s=120.0)

        async def stranded() -> kind_pb2.KindBacklog | None:
            [info] = [k for k in await client.kinds() if k.kind.name == "acme.score"]
            waiting = [b for b in info.backlog if b.schema_version == newest and b.queued]
            return waiting[0] if waiting and waiting[0].note == "no compatible worker" else None

        backlog = await eventually(stranded, 15.0, "the v3 work shows as waiting for a compatible worker")
        assert backlog.compatible_workers == 0 and backlog.step == "score"
        events = await events_of(client, doomed.task_id, timeout_s=30.0)
        assert events[-1].state == task_pb2.TASK_STATE_DEAD_LETTERED, events[-1]
        assert events[-1].error.error_class == "schema_mismatch"
        assert f"version {newest}" in events[-1].error.message and "read: 1" in events[-1].error.message
        letter = await client.dead_letter(doomed.task_id)
        assert letter.error_class == "schema_mismatch"
        assert letter.classification == deadletter_pb2.FAILURE_CLASS_SCHEMA_MISMATCH
        assert letter.runbook == "docs/runbooks/schema-mismatch.md"
        assert (await client.get(patient.task_id)).state == task_pb2.TASK_STATE_QUEUED, "the patient one waits"
        async with running(_scorer(mesh, "scorer-v3", newest, request_v3, result_v3)):
            events = await events_of(client, patient.task_id)
        assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
        assert unpack(events[-1].output, result_v3).worker == "scorer-v3"


async def test_a_required_label_is_never_relaxed(mesh: Mesh, versions: dict) -> None:  # type: ignore[type-arg]
    """A kind that requires gpu=nvidia: a worker without it (or with another value) is refused
    naming the label; one with it serves the kind."""
    declaration = kind_pb2.KindDeclaration(
        name="acme.gpu-score", input_type=REQUEST, output_type=RESULT, required_labels={"gpu": "nvidia"}
    )
    declaration.steps.add(name="score")
    async with mesh.public_channel() as channel:
        await kind_pb2_grpc.KindServiceStub(channel).RegisterKind(
            kind_pb2.RegisterKindRequest(kind=declaration), timeout=10.0
        )
        stub = session_pb2_grpc.WorkerSessionServiceStub(channel)
        for labels in ({}, {"gpu": "amd"}):
            attach = session_pb2.Attach(
                worker_name="cpu-box", kinds=[session_pb2.KindOffer(kind="acme.gpu-score")], labels=labels, capacity=1
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in stub.Connect(iter([session_pb2.ConnectRequest(attach=attach)])):
                    pass
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "gpu=nvidia" in (refused.value.details() or "")
    _, request, result = versions[1]
    worker = Worker(mesh.endpoint, name="gpu-box", capacity=1, ca=mesh.plan.ca_path, labels={"gpu": "nvidia"})

    @worker.task("acme.gpu-score", input=request, output=result, versions=[1])
    async def score(payload: Message, ctx: TaskContext) -> Message:
        return result(score=len(payload.text), read_as=ctx.schema_version, worker="gpu-box")  # type: ignore[attr-defined, call-arg]

    async with running(worker), Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
        reply = await client.submit("acme.gpu-score", request(text="abcd"), schema_version=1)
        events = await events_of(client, reply.task_id)
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    assert unpack(events[-1].output, result).score == 4
