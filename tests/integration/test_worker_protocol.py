"""The worker protocol spoken by hand, as an implementation in a third language would: resume a
session after a dropped stream without losing or duplicating work, resent reports confirmed
once, a wrong output type, a hung step, a crash (the stream gone for good)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import ModuleType

import grpc
import pytest

from clients.sdk import Client, pack
from mesh.v1 import kind_pb2, kind_pb2_grpc, session_pb2, session_pb2_grpc, task_pb2
from tests.integration._textpipe import events_of
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration


class Stream:
    """One Connect stream: send messages, receive the mesh's, skipping report acks unless asked."""

    def __init__(self, stub: session_pb2_grpc.WorkerSessionServiceStub) -> None:
        self._outbox: asyncio.Queue[session_pb2.ConnectRequest | None] = asyncio.Queue()
        self.call = stub.Connect(self._requests())
        # The protocol asks for a heartbeat every interval (2 s here); a silent session is ended.
        self._beats = asyncio.create_task(self._heartbeats())

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.send(heartbeat=session_pb2.Heartbeat())

    async def _requests(self) -> AsyncIterator[session_pb2.ConnectRequest]:
        while (message := await self._outbox.get()) is not None:
            yield message

    def send(self, **body: object) -> None:
        self._outbox.put_nowait(session_pb2.ConnectRequest(**body))  # type: ignore[arg-type]

    async def receive(self, case: str, timeout_s: float = 30.0) -> session_pb2.ConnectResponse:
        while True:
            message = await asyncio.wait_for(self.call.read(), timeout_s)
            assert message is not grpc.aio.EOF, f"the stream ended while waiting for {case}"
            if message.WhichOneof("body") == case:
                return message
            assert message.WhichOneof("body") in ("report_ack", "cancel"), message  # skipped unless asked for

    def drop(self) -> None:
        """The network drops the stream: no goodbye."""
        self._beats.cancel()
        self.call.cancel()

    async def close(self) -> None:
        """Say goodbye (a draining heartbeat), then end the request stream."""
        self._beats.cancel()
        self.send(heartbeat=session_pb2.Heartbeat(draining=True))
        self._outbox.put_nowait(None)


def _attach(name: str, session_id: str = "") -> session_pb2.Attach:
    return session_pb2.Attach(
        session_id=session_id,
        worker_name=name,
        kinds=[session_pb2.KindOffer(kind="textpipe.count")],
        capacity=1,
        sdk="test/hand",
    )


async def test_a_dropped_stream_resumes_the_session_and_its_assignment(
    mesh: Mesh, textpipe: ModuleType, registered: None
) -> None:
    """Attach, take an assignment, report a partial, lose the stream; reattach with the session id
    within the resume window: the same assignment comes again (resume_from counts the stored
    partial), the resent partial is confirmed but not stored twice, the result ends the task once."""
    CountRequest, CountResult = textpipe.CountRequest, textpipe.CountResult
    async with mesh.public_channel() as channel, Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
        stub = session_pb2_grpc.WorkerSessionServiceStub(channel)
        first = Stream(stub)
        first.send(attach=_attach("by-hand"))
        attached = (await first.receive("attached")).attached
        assert attached.session_id and not attached.resumed
        reply = await client.submit("textpipe.count", CountRequest(text="one\ntwo"))
        assignment = (await first.receive("assignment")).assignment
        assert assignment.spec.task_id == reply.task_id and assignment.attempt == 1 and assignment.resume_from == 0
        partial = session_pb2.PartialOutput(
            assignment_id=assignment.assignment_id,
            sequence=1,
            output=pack(CountResult(lines=1, words=1)),
            confidence=0.5,
        )
        first.send(partial=partial)
        ack = (await first.receive("report_ack")).report_ack
        assert ack.partial == 1 and not ack.stale
        first.drop()

        second = Stream(stub)
        second.send(attach=_attach("by-hand", attached.session_id))
        resumed = (await second.receive("attached")).attached
        assert resumed.resumed and resumed.session_id == attached.session_id
        again = (await second.receive("assignment")).assignment
        assert again.assignment_id == assignment.assignment_id and again.resume_from == 1
        second.send(partial=partial)  # resent, as the protocol says to for an unconfirmed report
        assert (await second.receive("report_ack")).report_ack.partial == 1
        result = session_pb2.StepResult(
            assignment_id=assignment.assignment_id, outputs=[pack(CountResult(lines=2, words=2))]
        )
        second.send(result=result)
        assert (await second.receive("report_ack")).report_ack.final
        events = await events_of(client, reply.task_id)
        await second.close()
    partials = [e for e in events if e.HasField("output") and not e.final]
    assert len(partials) == 1, "the resent partial is stored once"
    assert [e.state for e in events].count(task_pb2.TASK_STATE_SUCCEEDED) == 1
    assert {e.attempt for e in events if e.worker_id} == {1}, "resumed, not redelivered"


async def test_a_wrong_output_type_and_a_hung_step_are_classified_failures(
    mesh: Mesh, textpipe: ModuleType, registered: None
) -> None:
    """A result of another message type ends the task (invalid_output, no retry); a step that never
    answers is abandoned at its timeout and retried, then dead-lettered as a timeout — never a
    stuck lane (the session takes the next assignment meanwhile)."""
    CountRequest = textpipe.CountRequest
    async with mesh.public_channel() as channel, Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
        stream = Stream(session_pb2_grpc.WorkerSessionServiceStub(channel))
        stream.send(attach=_attach("liar"))
        await stream.receive("attached")
        reply = await client.submit("textpipe.count", CountRequest(text="x"))
        assignment = (await stream.receive("assignment")).assignment
        wrong = session_pb2.StepResult(assignment_id=assignment.assignment_id, outputs=[pack(CountRequest(text="?"))])
        stream.send(result=wrong)
        events = await events_of(client, reply.task_id)
        assert events[-1].state == task_pb2.TASK_STATE_DEAD_LETTERED
        assert events[-1].error.error_class == "invalid_output" and not events[-1].error.retryable
        assert "textpipe.v1.CountResult" in events[-1].error.message
        await stream.close()

        # A kind with a 1 s step timeout and two attempts, served by a worker that never answers.
        declaration = kind_pb2.KindDeclaration(
            name="textpipe.hang", input_type="textpipe.v1.CountRequest", output_type="textpipe.v1.CountResult"
        )
        declaration.steps.add(name="count")
        declaration.step_timeout.FromSeconds(1)
        declaration.max_attempts = 2
        await kind_pb2_grpc.KindServiceStub(channel).RegisterKind(
            kind_pb2.RegisterKindRequest(kind=declaration), timeout=10.0
        )
        silent = Stream(session_pb2_grpc.WorkerSessionServiceStub(channel))
        silent.send(
            attach=session_pb2.Attach(
                worker_name="silent", kinds=[session_pb2.KindOffer(kind="textpipe.hang")], capacity=1
            )
        )
        await silent.receive("attached")
        hung = await client.submit("textpipe.hang", CountRequest(text="x"))
        attempts = []
        for _ in range(2):
            assignment = (await silent.receive("assignment")).assignment
            attempts.append(assignment.attempt)
            cancel = await silent.receive("cancel", timeout_s=10.0)  # the mesh abandons it at the timeout
            assert cancel.cancel.assignment_id == assignment.assignment_id
            # A result that comes after that is stale: confirmed as such, never stored.
            late = session_pb2.StepResult(assignment_id=assignment.assignment_id, outputs=[pack(CountRequest())])
            silent.send(result=late)
            stale = (await silent.receive("report_ack")).report_ack
            assert stale.assignment_id == assignment.assignment_id and stale.stale
        events = await events_of(client, hung.task_id)
        await silent.close()
    assert attempts == [1, 2]
    assert [e.state for e in events].count(task_pb2.TASK_STATE_RETRYING) == 1
    assert events[-1].state == task_pb2.TASK_STATE_DEAD_LETTERED and events[-1].error.error_class == "timeout"
    assert not [e for e in events if e.final and e.state == task_pb2.TASK_STATE_SUCCEEDED], "the late result"


async def test_a_worker_that_vanishes_has_its_work_redelivered(
    mesh: Mesh, textpipe: ModuleType, registered: None
) -> None:
    """A worker whose stream breaks and never comes back: after the resume window its assignment
    goes to the next worker (attempt 2); nothing is lost."""
    CountRequest, CountResult = textpipe.CountRequest, textpipe.CountResult
    async with mesh.public_channel() as channel, Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
        stub = session_pb2_grpc.WorkerSessionServiceStub(channel)
        gone = Stream(stub)
        gone.send(attach=_attach("gone"))
        await gone.receive("attached")
        reply = await client.submit("textpipe.count", CountRequest(text="a"))
        taken = (await gone.receive("assignment")).assignment
        gone.drop()
        heir = Stream(stub)
        heir.send(attach=_attach("heir"))
        await heir.receive("attached")
        redelivered = (await heir.receive("assignment", timeout_s=60.0)).assignment
        assert redelivered.spec.task_id == taken.spec.task_id and redelivered.attempt == 2
        heir.send(
            result=session_pb2.StepResult(
                assignment_id=redelivered.assignment_id, outputs=[pack(CountResult(lines=1, words=1))]
            )
        )
        events = await events_of(client, reply.task_id)
        await heir.close()
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED and events[-1].attempt == 2
