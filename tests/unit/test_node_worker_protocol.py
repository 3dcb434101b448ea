"""The Node worker (clients/node + examples/textpipe/node) against a scripted mesh.

The mesh side here is a fake: a grpc.aio WorkerSessionService on a TLS port (a throwaway CA), each
test scripting the conversation of session.proto. The worker is the real example process,
`node examples/textpipe/node/worker.mjs`. The textpipe rules are checked against a Python
reference of the same rules (results and checkpoints must be byte-identical across languages).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2, duration_pb2

from mesh.security import CertificateAuthority
from mesh.v1 import session_pb2, session_pb2_grpc, task_pb2
from tests.node_env import ROOT, TEXTPIPE_NODE_WORKER, ensure_node_worker

API_KEY = "tmk_0123456789ab_not-a-real-secret"
WAIT_S = 15.0
COUNT_RESULT_URL = "type.googleapis.com/textpipe.v1.CountResult"


# --- the Python reference of textpipe.count -------------------------------------------------------


def reference_words(line: str) -> list[str]:
    """The Python example worker's own rule (examples/textpipe/python): the Node worker must match it."""
    return _python_example().words_of(line)  # type: ignore[no-any-return]


@functools.cache
def _python_example() -> ModuleType:
    folder = str(Path(__file__).resolve().parents[2] / "examples" / "textpipe" / "python")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module("textpipe_worker")
    finally:
        sys.path.remove(folder)


def reference_lines(text: str) -> list[str]:
    return text.split("\n") if text else []


def canonical(state: dict[str, Any]) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":")).encode()


def reference_run(text: str, top: int = 0, start: int = 0, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """Partials (lines, words, confidence), checkpoints (bytes) and the final result from line `start`."""
    lines = reference_lines(text)
    counts = dict(counts or {})
    words = sum(counts.values())
    partials, checkpoints = [], []
    for i in range(start, len(lines)):
        for word in reference_words(lines[i]):
            counts[word] = counts.get(word, 0) + 1
            words += 1
        partials.append((i + 1, words, (i + 1) / len(lines)))
        checkpoints.append(canonical({"line": i + 1, "counts": counts}))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: top or 3]
    return {"partials": partials, "checkpoints": checkpoints, "final": (len(lines), words, ranked)}


# --- the scripted mesh ----------------------------------------------------------------------------

_END = object()  # end the response stream with OK


@dataclass
class _Abort:
    code: grpc.StatusCode
    details: str


@dataclass
class Session:
    """One Connect stream: what the worker sent (heartbeats apart) and a queue of what to answer."""

    metadata: dict[str, str]
    inbox: asyncio.Queue[session_pb2.ConnectRequest | None] = field(default_factory=asyncio.Queue)
    outbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    heartbeats: list[session_pb2.Heartbeat] = field(default_factory=list)

    async def next(self, timeout_s: float = WAIT_S) -> session_pb2.ConnectRequest | None:
        """The worker's next non-heartbeat message; None once it ended its request stream."""
        return await asyncio.wait_for(self.inbox.get(), timeout_s)

    async def expect(self, case: str) -> Any:
        message = await self.next()
        assert message is not None, f"the worker ended its stream; expected {case}"
        assert message.WhichOneof("body") == case, f"expected {case}, got {message}"
        return getattr(message, case)

    async def heartbeat_seen(self, matches: Callable[[session_pb2.Heartbeat], bool], after: int = 0) -> None:
        """Wait for a heartbeat (the `after`-th or later) that `matches`."""
        deadline = time.monotonic() + WAIT_S
        while not any(matches(h) for h in self.heartbeats[after:]):
            assert time.monotonic() < deadline, f"no matching heartbeat among {self.heartbeats[after:]}"
            await asyncio.sleep(0.01)

    def send(self, **body: Any) -> None:
        self.outbox.put_nowait(session_pb2.ConnectResponse(**body))

    def ack(self, assignment_id: str, stale: bool = False, **report: Any) -> None:
        self.send(report_ack=session_pb2.ReportAck(assignment_id=assignment_id, stale=stale, **report))

    def end(self) -> None:
        self.outbox.put_nowait(_END)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.outbox.put_nowait(_Abort(code, details))


class FakeMesh(session_pb2_grpc.WorkerSessionServiceServicer):
    def __init__(self) -> None:
        self.sessions: asyncio.Queue[Session] = asyncio.Queue()

    async def Connect(
        self, request_iterator: AsyncIterator[session_pb2.ConnectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[session_pb2.ConnectResponse]:
        session = Session({key: str(value) for key, value in context.invocation_metadata() or ()})
        await self.sessions.put(session)

        async def read() -> None:
            async for request in request_iterator:
                if request.WhichOneof("body") == "heartbeat":
                    session.heartbeats.append(request.heartbeat)
                else:
                    session.inbox.put_nowait(request)
            session.inbox.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await session.outbox.get()
                if item is _END:
                    return
                if isinstance(item, _Abort):
                    await context.abort(item.code, item.details)
                yield item
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await reader


@dataclass
class MeshEndpoint:
    fake: FakeMesh
    address: str
    ca: Path

    async def session(self) -> Session:
        return await asyncio.wait_for(self.fake.sessions.get(), WAIT_S)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[MeshEndpoint]:
    """A scripted WorkerSessionService on a TLS port whose root only this test trusts."""
    authority = CertificateAuthority(tmp_path / "pki").ensure()
    leaf = authority.issue("gateway")
    server = grpc.aio.server()
    fake = FakeMesh()
    session_pb2_grpc.add_WorkerSessionServiceServicer_to_server(fake, server)
    credentials = grpc.ssl_server_credentials([(leaf.key.read_bytes(), leaf.cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield MeshEndpoint(fake, f"127.0.0.1:{port}", authority.root_path)
    finally:
        await server.stop(grace=None)


@pytest.fixture(scope="session")
def textpipe_pb2(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """Python classes for the example's contract, generated for this run (the example ships none)."""
    out = tmp_path_factory.mktemp("textpipe_py")
    proto_root = ROOT / "examples" / "textpipe" / "proto"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"--python_out={out}",
            "textpipe/v1/textpipe.proto",
        ],
        check=True,
    )
    sys.path.insert(0, str(out))
    try:
        import textpipe.v1.textpipe_pb2 as module  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(out))
    return module


@pytest.fixture(scope="session")
def node_package() -> Path:
    return ensure_node_worker()


def _process_group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # fields after "(comm)": state, ppid, pgrp
                members.append(int(stat.parent.name))
    return members


@dataclass
class NodeWorker:
    process: asyncio.subprocess.Process
    log: list[str] = field(default_factory=list)

    async def logged(self, fragment: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not any(fragment in line for line in self.log):
            assert self.process.returncode is None, f"worker exited {self.process.returncode}: {self.log}"
            assert time.monotonic() < deadline, f"no log line with {fragment!r}: {self.log}"
            await asyncio.sleep(0.01)

    async def exited(self) -> int:
        code = await asyncio.wait_for(self.process.wait(), WAIT_S)
        assert _process_group_members(self.process.pid) == [], "the worker left processes behind"
        return code


@contextlib.asynccontextmanager
async def node_worker(mesh: MeshEndpoint, *args: str, env: dict[str, str] | None = None) -> AsyncIterator[NodeWorker]:
    """The example worker process, connected to `mesh`; killed (with its group) if the test leaves it running."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "TIDEMESH_CA": str(mesh.ca),
        "TIDEMESH_API_KEY": API_KEY,
        "TIDEMESH_LOG_LEVEL": "debug",
        **(env or {}),
    }
    process = await asyncio.create_subprocess_exec(
        "node",
        str(TEXTPIPE_NODE_WORKER),
        "--endpoint",
        mesh.address,
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    worker = NodeWorker(process)

    async def collect() -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            worker.log.append(line.decode(errors="replace").rstrip())

    collector = asyncio.create_task(collect())
    try:
        yield worker
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        await collector


def _millis(ms: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


async def attach(
    mesh: MeshEndpoint, session_id: str = "s-1", resumed: bool = False, heartbeat_ms: int = 30_000
) -> tuple[Session, session_pb2.Attach]:
    session = await mesh.session()
    hello = await session.expect("attach")
    session.send(
        attached=session_pb2.Attached(
            session_id=session_id,
            worker_id="w-1",
            heartbeat_interval=_millis(heartbeat_ms),
            resume_window=_millis(60_000),
            resumed=resumed,
        )
    )
    return session, hello


def assignment(
    textpipe_pb2: ModuleType,
    assignment_id: str,
    text: str,
    *,
    attempt: int = 1,
    resume_from: int = 0,
    checkpoint: bytes | None = None,
    **request: Any,
) -> session_pb2.Assignment:
    payload = any_pb2.Any()
    payload.Pack(textpipe_pb2.CountRequest(text=text, **request))
    spec = task_pb2.TaskSpec(
        task_id=f"t-{assignment_id}", tenant="acme", kind="textpipe.count", payload=task_pb2.TaskPayload(custom=payload)
    )
    message = session_pb2.Assignment(
        assignment_id=assignment_id,
        spec=spec,
        step="count",
        attempt=attempt,
        resume_from=resume_from,
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        worker_id="w-1",
    )
    if checkpoint is not None:
        message.checkpoint = checkpoint
    return message


def unpack_result(textpipe_pb2: ModuleType, output: task_pb2.TaskOutput) -> Any:
    assert output.WhichOneof("body") == "custom"
    assert output.custom.type_url == COUNT_RESULT_URL
    result = textpipe_pb2.CountResult()
    output.custom.Unpack(result)
    return result


async def run_acked(session: Session, assignment_id: str) -> tuple[list[Any], list[Any], Any]:
    """Read an assignment's reports up to its result or failure, confirming each: (partials, checkpoints, final)."""
    partials, checkpoints = [], []
    while True:
        message = await session.next()
        assert message is not None, "the worker ended its stream mid-assignment"
        case = message.WhichOneof("body")
        report = getattr(message, case)
        assert report.assignment_id == assignment_id, f"unexpected report {message}"
        if case == "partial":
            partials.append(report)
            session.ack(assignment_id, partial=report.sequence)
        elif case == "checkpoint":
            checkpoints.append(report)
            session.ack(assignment_id, checkpoint=report.sequence)
        elif case in ("result", "failure"):
            session.ack(assignment_id, final=True)
            return partials, checkpoints, message
        else:
            raise AssertionError(f"unexpected {case}: {message}")


def as_tuples(textpipe_pb2: ModuleType, partials: list[Any]) -> list[tuple[int, int, float]]:
    return [
        (unpack_result(textpipe_pb2, p.output).lines, unpack_result(textpipe_pb2, p.output).words, p.confidence)
        for p in partials
    ]


def float32(values: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    return [(lines, words, struct.unpack("f", struct.pack("f", c))[0]) for lines, words, c in values]


TEXT = "Hello world\nhello, Tide! hello\n\n  mesh's   WORLD...  "
# Text the two languages could disagree on: Python's str.split() whitespace (\x1c, \x85, \u3000, not
# \ufeff), str.lower() (İ -> i + U+0307), isalnum() at the ends, code-point order (U+FF5A < U+1D41A; not so
# in UTF-16), and json.dumps' ensure_ascii escapes (\x7f and up) in checkpoints.
TRICKY = (
    "Ünïcode café—CAFÉ\u00a0naïve\x1cword\x85x 'quoted' (parens) ½ Ⅻ 🙂smile🙂\n"
    "İstanbul \ufeffbom\ufeff del\x7fchar\n"
    "\ttabs\u3000\uff5a\u2028a 123 \uff41 Zz zz ZZ \uff5a \U0001d41a \U0001d41a"
)


# --- tests ----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _node(node_package: Path) -> Path:
    return node_package


async def test_attach_declares_kind_labels_capacity_and_sdk(mesh: MeshEndpoint) -> None:
    """The first message is an Attach naming the kind, labels, capacity, build and SDK, with the API key as metadata."""
    args = ("--name", "tp-node-1", "--capacity", "2", "--label", "region=eu", "--build-id", "abc123")
    async with node_worker(mesh, *args) as worker:
        session, hello = await attach(mesh)
        assert session.metadata["authorization"] == f"ApiKey {API_KEY}"
        assert hello.session_id == ""
        assert hello.worker_name == "tp-node-1"
        assert [(k.kind, list(k.schema_versions), list(k.steps)) for k in hello.kinds] == [("textpipe.count", [], [])]
        assert dict(hello.labels) == {"region": "eu"}
        assert hello.capacity == 2
        assert hello.build_id == "abc123"
        assert hello.sdk == "node/0.1.0"
        assert not any(API_KEY in line for line in worker.log), "the credential reached the log"
        session.send(drain=session_pb2.Drain())
        assert await session.next() is None, "after Drain with nothing running the worker ends its stream"
        session.end()
        assert await worker.exited() == 0


async def test_credential_file_and_a_jwt_go_as_bearer(mesh: MeshEndpoint, tmp_path: Path) -> None:
    """Without TIDEMESH_API_KEY the credential comes from TIDEMESH_API_KEY_FILE; a non-tmk_ one is a Bearer token."""
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnQiOiJhY21lIn0.c2ln\n")
    env = {"TIDEMESH_API_KEY": "", "TIDEMESH_API_KEY_FILE": str(token_file)}
    async with node_worker(mesh, env=env) as worker:
        session, _ = await attach(mesh)
        assert session.metadata["authorization"] == "Bearer eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnQiOiJhY21lIn0.c2ln"
        worker.process.send_signal(signal.SIGTERM)
        assert await session.next() is None
        session.end()
        assert await worker.exited() == 0


async def test_a_credential_on_the_command_line_is_refused(mesh: MeshEndpoint) -> None:
    """argv is readable by every local user: the worker takes no credential option and exits 2 before connecting."""
    async with node_worker(mesh, "--api-key", API_KEY) as worker:
        assert await worker.exited() == 2
        assert any("Unknown option '--api-key'" in line for line in worker.log)
        assert mesh.fake.sessions.empty()


def test_generated_node_code_matches_the_protos(node_package: Path, tmp_path: Path) -> None:
    """clients/node/src/gen is what `npm run generate` (buf + the pinned protoc-gen-es) writes from the protos."""
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    subprocess.run([buf, "generate", "--template", "buf.gen.yaml", "-o", str(tmp_path)], cwd=node_package, check=True)
    fresh, checked_in = tmp_path / "src" / "gen", node_package / "src" / "gen"
    names = sorted(str(p.relative_to(fresh)) for p in fresh.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(checked_in)) for p in checked_in.rglob("*") if p.is_file())
    stale = [name for name in names if (fresh / name).read_bytes() != (checked_in / name).read_bytes()]
    assert stale == [], f"regenerate with `cd clients/node && npm run generate`: {stale}"


@pytest.mark.parametrize("text", [TEXT, TRICKY, ""], ids=["plain", "unicode", "empty"])
async def test_partials_checkpoints_and_result_match_the_python_rules(
    mesh: MeshEndpoint, textpipe_pb2: ModuleType, text: str
) -> None:
    """A partial and a checkpoint per line, numbered from resume_from+1, then the result: all as Python computes."""
    async with node_worker(mesh):
        session, _ = await attach(mesh)
        session.send(assignment=assignment(textpipe_pb2, "a-1", text, top=4))
        partials, checkpoints, final = await run_acked(session, "a-1")
    expected = reference_run(text, top=4)
    assert [p.sequence for p in partials] == list(range(1, len(expected["partials"]) + 1))
    assert as_tuples(textpipe_pb2, partials) == float32(expected["partials"])
    assert all(len(unpack_result(textpipe_pb2, p.output).top) == 0 for p in partials)
    assert [c.sequence for c in checkpoints] == list(range(1, len(checkpoints) + 1))
    assert [c.state for c in checkpoints] == expected["checkpoints"]
    assert final.WhichOneof("body") == "result"
    [output] = final.result.outputs
    result = unpack_result(textpipe_pb2, output)
    lines, words, ranked = expected["final"]
    assert (result.lines, result.words) == (lines, words)
    assert [(w.word, w.count) for w in result.top] == ranked
    want = textpipe_pb2.CountResult(
        lines=lines, words=words, top=[textpipe_pb2.WordCount(word=w, count=n) for w, n in ranked]
    )
    assert output.custom.value == want.SerializeToString(deterministic=True)


async def test_first_attempt_fails_retryably_then_the_retry_succeeds(
    mesh: MeshEndpoint, textpipe_pb2: ModuleType
) -> None:
    """fail_first_attempt: attempt 1 is a retryable StepFailure (class retryable) before any partial; attempt 2 ends."""
    async with node_worker(mesh):
        session, _ = await attach(mesh)
        session.send(assignment=assignment(textpipe_pb2, "f-1", "a b\nc", fail_first_attempt=True))
        partials, _, final = await run_acked(session, "f-1")
        assert partials == []
        assert final.WhichOneof("body") == "failure"
        assert (final.failure.retryable, final.failure.error_class) == (True, "retryable")
        assert final.failure.message == "first attempt fails on purpose"
        session.send(assignment=assignment(textpipe_pb2, "f-2", "a b\nc", attempt=2, fail_first_attempt=True))
        partials, _, final = await run_acked(session, "f-2")
        assert [p.sequence for p in partials] == [1, 2]
        assert unpack_result(textpipe_pb2, final.result.outputs[0]).words == 3


@pytest.mark.parametrize(("resume_from", "sequences"), [(1, [2, 3]), (2, [3])], ids=["in-step", "partial-ahead"])
async def test_resumes_from_the_assignments_checkpoint(
    mesh: MeshEndpoint, textpipe_pb2: ModuleType, resume_from: int, sequences: list[int]
) -> None:
    """Counting resumes at the checkpoint's line; partials an earlier attempt stored (<= resume_from) are not resent."""
    text = "one two\nthree one\nfour"
    saved = {"one": 1, "two": 1}
    state = canonical({"line": 1, "counts": saved})
    async with node_worker(mesh):
        session, _ = await attach(mesh)
        request = assignment(textpipe_pb2, "r-2", text, attempt=2, resume_from=resume_from, checkpoint=state)
        session.send(assignment=request)
        partials, checkpoints, final = await run_acked(session, "r-2")
    expected = reference_run(text, start=1, counts=saved)
    assert [p.sequence for p in partials] == sequences
    assert as_tuples(textpipe_pb2, partials) == float32(expected["partials"])[-len(sequences) :]
    assert [c.sequence for c in checkpoints] == [1, 2]
    assert [c.state for c in checkpoints] == expected["checkpoints"]
    result = unpack_result(textpipe_pb2, final.result.outputs[0])
    assert (result.lines, result.words) == (3, 5)
    assert [(w.word, w.count) for w in result.top] == [("one", 2), ("four", 1), ("three", 1)]


async def test_cancel_stops_the_handler_and_is_acknowledged_without_a_result(
    mesh: MeshEndpoint, textpipe_pb2: ModuleType
) -> None:
    """CancelAssignment aborts the handler mid-sleep: a CancelAck follows, and no result or failure for it."""
    async with node_worker(mesh):
        session, _ = await attach(mesh)
        session.send(assignment=assignment(textpipe_pb2, "c-1", "a\nb\nc", line_delay_ms=600_000))
        assert (await session.expect("partial")).sequence == 1
        assert (await session.expect("checkpoint")).sequence == 1
        session.send(cancel=session_pb2.CancelAssignment(assignment_id="c-1", reason="user asked"))
        assert (await session.expect("cancel_ack")).assignment_id == "c-1"
        session.send(assignment=assignment(textpipe_pb2, "c-2", "x"))
        _, _, final = await run_acked(session, "c-2")  # reports only for c-2: nothing more came for c-1
        assert final.WhichOneof("body") == "result"


async def test_reconnect_resumes_the_session_and_resends_unconfirmed_reports(
    mesh: MeshEndpoint, textpipe_pb2: ModuleType
) -> None:
    """After a dropped stream the worker reattaches with its session id and resends exactly the unconfirmed reports."""
    async with node_worker(mesh) as worker:
        session, _ = await attach(mesh, session_id="s-77")
        session.send(assignment=assignment(textpipe_pb2, "d-1", "x y\nz"))
        first = await session.expect("partial")
        session.ack("d-1", partial=first.sequence)  # the only report confirmed before the drop
        sent = [await session.next() for _ in range(4)]  # checkpoint 1, partial 2, checkpoint 2, result
        assert [m.WhichOneof("body") for m in sent] == ["checkpoint", "partial", "checkpoint", "result"]
        session.abort(grpc.StatusCode.UNAVAILABLE, "the test drops the stream")

        again, hello = await attach(mesh, session_id="s-77", resumed=True)
        assert hello.session_id == "s-77"
        # A resumed session's open assignments are sent again: the worker must not run it twice.
        again.send(assignment=assignment(textpipe_pb2, "d-1", "x y\nz"))
        resent = [await again.next() for _ in range(4)]
        assert resent == sent
        for message in resent:
            case = message.WhichOneof("body")
            if case in ("partial", "checkpoint"):
                again.ack("d-1", **{case: getattr(message, case).sequence})
            else:
                again.ack("d-1", final=True)
        again.send(assignment=assignment(textpipe_pb2, "d-2", "q"))
        _, _, final = await run_acked(again, "d-2")  # nothing from a second run of d-1 came first
        assert final.WhichOneof("body") == "result"
        assert any("session resumed" in line for line in worker.log)


async def test_heartbeats_list_running_work_and_a_stale_ack_stops_it(
    mesh: MeshEndpoint, textpipe_pb2: ModuleType
) -> None:
    """Heartbeats name the running assignment; a stale report_ack aborts it with nothing more reported."""
    async with node_worker(mesh):
        session, _ = await attach(mesh, heartbeat_ms=50)
        session.send(assignment=assignment(textpipe_pb2, "h-1", "a\nb", line_delay_ms=600_000))
        assert (await session.expect("partial")).sequence == 1
        assert (await session.expect("checkpoint")).sequence == 1
        await session.heartbeat_seen(lambda h: list(h.running) == ["h-1"] and not h.draining)
        session.ack("h-1", partial=1, stale=True)
        await session.heartbeat_seen(lambda h: list(h.running) == [], after=len(session.heartbeats))
        session.send(assignment=assignment(textpipe_pb2, "h-2", "x"))
        _, _, final = await run_acked(session, "h-2")  # no failure or cancel_ack for h-1 came first
        assert final.WhichOneof("body") == "result"


async def test_sigterm_finishes_running_work_then_exits_cleanly(mesh: MeshEndpoint, textpipe_pb2: ModuleType) -> None:
    """First SIGTERM: take nothing new, finish and confirm the running assignment, end the stream, exit 0."""
    async with node_worker(mesh) as worker:
        session, _ = await attach(mesh)
        session.send(assignment=assignment(textpipe_pb2, "g-1", "a\nb", line_delay_ms=200))
        first = await session.expect("partial")
        session.ack("g-1", partial=first.sequence)
        worker.process.send_signal(signal.SIGTERM)
        # At once (the interval is 30 s): a heartbeat saying it drains, still running g-1.
        await session.heartbeat_seen(lambda h: h.draining and list(h.running) == ["g-1"])
        session.send(assignment=assignment(textpipe_pb2, "g-late", "never started"))
        _, checkpoints, final = await run_acked(session, "g-1")
        assert final.WhichOneof("body") == "result"
        assert len(checkpoints) == 2
        assert await session.next() is None, "the worker should end its request stream once drained"
        session.end()
        assert await worker.exited() == 0


async def test_second_signal_exits_at_once(mesh: MeshEndpoint, textpipe_pb2: ModuleType) -> None:
    """A second SIGTERM while draining exits immediately (128 + SIGTERM), not after the work."""
    async with node_worker(mesh) as worker:
        session, _ = await attach(mesh)
        session.send(assignment=assignment(textpipe_pb2, "k-1", "a\nb", line_delay_ms=600_000))
        await session.expect("partial")
        worker.process.send_signal(signal.SIGTERM)
        await worker.logged("draining")
        worker.process.send_signal(signal.SIGTERM)
        assert await worker.exited() == 128 + signal.SIGTERM


async def test_a_refused_session_stops_the_worker(mesh: MeshEndpoint) -> None:
    """The mesh ending the attach with PERMISSION_DENIED is final: the worker exits 1 naming the reason."""
    async with node_worker(mesh) as worker:
        session = await mesh.session()
        await session.expect("attach")
        session.abort(grpc.StatusCode.PERMISSION_DENIED, "credential lacks the work role")
        assert await worker.exited() == 1
        assert any("credential lacks the work role" in line for line in worker.log)
