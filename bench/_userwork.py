"""The cost of the worker protocol: the built-in `echo` kind against a user kind doing the same work.

One mesh (secure default, one built-in worker at concurrency 64, no submit limit) serves both,
side by side in one run: `echo` runs in the mesh's own worker process, which pulls from NATS;
`bench.echo` (its messages in `bench/proto`, compiled at run time with grpc_tools.protoc) is
served by ONE Python SDK worker process (`tidemesh worker run bench._userwork_worker:worker`,
capacity 64) attached through Envoy over the worker protocol's bidi stream, the mesh side of its
session running in the gateway. Measured for each: tasks/s one task per call from N callers,
tasks/s with `submit_many` batches, and submit → final event latency at a moderate open-loop
rate; CPU each process spends per task; then py-spy on the gateway under the user-kind load.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.sdk import Client, Worker, unpack
from mesh.supervisor import NO_LIMIT, Supervisor, build_plan
from mesh.v1 import kind_pb2, kind_pb2_grpc, task_pb2

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = Path(__file__).parent / "proto"
PROTO = "benchecho/v1/benchecho.proto"
USER_KIND = "bench.echo"
WORKER_NAME = "bench-userwork"
PYSPY = os.environ.get("PYSPY", shutil.which("py-spy") or "/tmp/pyspy/bin/py-spy")
CONCURRENCY = 64  # the built-in worker's, and the SDK worker's capacity
STEP_TIMEOUT_S = 120.0  # a measurement that takes longer than this is a hang, not a figure


def compile_messages(out: Path) -> None:
    """`bench/proto` → `out/benchecho/v1/benchecho_pb2.py` (nothing generated is checked in)."""
    from grpc_tools import protoc

    code = protoc.main(["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={out}", PROTO])
    if code != 0:
        raise RuntimeError(f"protoc failed on {PROTO} ({code})")


@dataclass(frozen=True)
class Kind:
    """One side of the comparison: what to submit, and how to check its result."""

    label: str
    name: str
    payload: Callable[[str], Any]
    text_of: Callable[[task_pb2.TaskOutput], str]


def _kinds(messages: Any) -> tuple[Kind, Kind]:
    builtin = Kind("built-in `echo`", "echo", lambda text: {"text": text}, lambda output: output.text)
    user = Kind(
        f"user `{USER_KIND}` (1 SDK worker)",
        USER_KIND,
        lambda text: messages.EchoRequest(text=text),
        lambda output: unpack(output, messages.EchoResult).text,  # type: ignore[attr-defined]
    )
    return builtin, user


def _check(kind: Kind, event: task_pb2.TaskEvent, text: str | None = None) -> None:
    if not event.final or event.state != task_pb2.TASK_STATE_SUCCEEDED:
        raise AssertionError(f"{kind.name} task {event.task_id} ended {task_pb2.TaskState.Name(event.state)}")
    if text is not None and kind.text_of(event.output) != text:
        raise AssertionError(f"{kind.name} task {event.task_id} returned {kind.text_of(event.output)!r}, not {text!r}")


async def _one(client: Client, kind: Kind, text: str) -> float:
    """Submit one task and follow it to its final event; seconds taken."""
    started = time.perf_counter()
    submitted = await client.submit(kind.name, kind.payload(text), priority="interactive")
    async for event in client.watch(submitted.task_id):
        if event.final:
            _check(kind, event, text)
            break
    return time.perf_counter() - started


async def per_call(client: Client, kind: Kind, tasks: int, callers: int) -> float:
    """tasks/s, one task per call from `callers` concurrent submitters."""
    gate = asyncio.Semaphore(callers)

    async def bounded(i: int) -> float:
        async with gate:
            return await _one(client, kind, f"call {i}")

    started = time.perf_counter()
    await asyncio.gather(*(bounded(i) for i in range(tasks)))
    return tasks / (time.perf_counter() - started)


async def steady(client: Client, kind: Kind, callers: int, until: float) -> int:
    """`callers` submitters, one task per call each, until `until` (perf_counter); tasks done."""

    async def caller(index: int) -> int:
        done = 0
        while time.perf_counter() < until:
            await _one(client, kind, f"steady {index}.{done}")
            done += 1
        return done

    return sum(await asyncio.gather(*(caller(i) for i in range(callers))))


async def batched(client: Client, kind: Kind, tasks: int, batch: int, parallel: int = 4) -> tuple[float, float]:
    """(tasks/s, median ms of one `submit_many` call): `tasks` submitted in batches of `batch`,
    `parallel` calls at a time, then watched to the end over one stream."""
    specs = [client.spec(kind.name, kind.payload(f"batch {i}")) for i in range(tasks)]
    gate = asyncio.Semaphore(parallel)
    calls: list[float] = []

    async def submit(part: list[task_pb2.TaskSpec]) -> list[str]:
        async with gate:
            called = time.perf_counter()
            replies = await client.submit_many(part)
            calls.append(time.perf_counter() - called)
            return [reply.task_id for reply in replies]

    started = time.perf_counter()
    parts = await asyncio.gather(*(submit(specs[i : i + batch]) for i in range(0, tasks, batch)))
    finals = 0
    async for event in client.watch_many([task_id for part in parts for task_id in part], final_only=True):
        _check(kind, event)
        finals += 1
    elapsed = time.perf_counter() - started
    if finals != tasks:
        raise AssertionError(f"{kind.name}: saw {finals} of {tasks} final events")
    return tasks / elapsed, statistics.median(calls) * 1000


async def paced(client: Client, kind: Kind, tasks: int, rate: float) -> list[float]:
    """Submit → final latencies (s) of `tasks` started open-loop at `rate` per second."""
    started = time.perf_counter()

    async def at(i: int) -> float:
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        return await _one(client, kind, f"paced {i}")

    return list(await asyncio.gather(*(at(i) for i in range(tasks))))


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of `pid` so far (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def sdk_worker(endpoint: str, state: Path, generated: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The user kind's worker as its own process (its own event loop), stopped on leaving."""
    tidemesh = Path(sys.executable).with_name("tidemesh")
    command = [
        str(tidemesh),
        "worker",
        "run",
        "bench._userwork_worker:worker",
        "--endpoint",
        endpoint,
        "--state-dir",
        str(state),
        "--capacity",
        str(CONCURRENCY),
        "--name",
        WORKER_NAME,
    ]
    env = {**os.environ, "TIDEMESH_BENCH_GENERATED": str(generated), "TIDEMESH_LOG_LEVEL": "warning"}
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
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


async def _attached(client: Client, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 60.0) -> None:
    """Wait until the mesh lists the SDK worker as serving the user kind."""
    deadline = time.monotonic() + timeout_s
    stub = kind_pb2_grpc.KindServiceStub(client._channel)  # type: ignore[no-untyped-call]
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the SDK worker exited with {process.returncode}:\n{_tail(log)}")
        reply = await stub.ListKinds(kind_pb2.ListKindsRequest(), timeout=10.0)
        if any(
            w.worker_name == WORKER_NAME for info in reply.kinds if info.kind.name == USER_KIND for w in info.workers
        ):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the SDK worker did not attach within {timeout_s:.0f} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"


def _profile(pid: int, seconds: int, path: Path) -> subprocess.Popen[bytes] | None:
    if not Path(PYSPY).exists():
        return None
    command = [
        PYSPY,
        "record",
        "-p",
        str(pid),
        "-d",
        str(seconds),
        "-r",
        "100",
        "--native",
        "-f",
        "raw",
        "-o",
        str(path),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass(frozen=True)
class Profile:
    """A py-spy raw (collapsed) profile of the gateway, summarised; shares are % of the main thread's samples."""

    samples: int  # every thread's
    main: int  # the event loop thread's
    tasks: list[tuple[str, float]]  # which asyncio task (its outermost coroutine) the loop was running
    leaves: list[tuple[str, float]]  # where the main thread's time was spent itself


def summarise_profile(path: Path, top: int = 10) -> Profile:
    roots: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    samples = main = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_frame(f) for f in stack.split(";")]
        if not any(f.startswith("_run_module_as_main ") for f in frames):
            continue  # another thread (gRPC's pollers): not the event loop
        main += count
        leaves[frames[-1]] += count
        step = "Handle._run (stdlib/asyncio/events.py)"
        inner = [f for f in frames[frames.index(step) + 1 :] if ".py)" in f] if step in frames else []
        if inner:
            roots[inner[0]] += count
        elif any("cygrpc" in f for f in frames):
            roots["(gRPC aio's own Cython tasks: server calls, reads, writes)"] += count
        else:
            roots["(the event loop itself: select, scheduling callbacks)"] += count
    share = 100.0 / max(main, 1)
    return Profile(
        samples,
        main,
        [(frame, n * share) for frame, n in roots.most_common(top)],
        [(frame, n * share) for frame, n in leaves.most_common(top)],
    )


def _frame(frame: str) -> str:
    """`fn (/abs/path/file.py:12)` → `fn (rel/file.py)`, `0x7f.. (lib.so)` → `(lib.so)`: one entry per function."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    if name.startswith("0x"):
        name = "?"
    for prefix in (f"{ROOT}/", sys.prefix + "/lib/python3.11/site-packages/"):
        where = where.removeprefix(prefix)
    if where.startswith("asyncio/") or "/lib/python3.11/" in where:
        where = "stdlib/" + where.split("/lib/python3.11/", 1)[-1]
    return f"{name} ({where})"


@dataclass(frozen=True)
class Shape:
    """How much each measurement does."""

    calls: int = 400
    callers: int = CONCURRENCY
    batch_tasks: int = 1000
    batch: int = 250
    paced_tasks: int = 150
    rate: float = 25.0

    @property
    def tasks(self) -> int:
        return self.calls + self.batch_tasks + self.paced_tasks


@dataclass
class Tally:
    """One kind's figures over the runs, and the CPU each process spent on its tasks."""

    figures: dict[str, list[float]]
    cpu_s: defaultdict[str, float]
    tasks: int = 0


async def _measure(client: Client, kind: Kind, shape: Shape, pids: dict[str, int], tally: Tally) -> None:
    before = {name: _cpu_s(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    found = {"per_call": await asyncio.wait_for(per_call(client, kind, shape.calls, shape.callers), STEP_TIMEOUT_S)}
    # How busy the processes were while one task per call ran: is one of them the bottleneck?
    elapsed, after = time.perf_counter() - started, {name: _cpu_s(pid) for name, pid in pids.items()}
    found["gateway_busy"] = 100 * (after["gateway"] - before["gateway"]) / elapsed
    found["all_busy"] = 100 * sum(after[name] - before[name] for name in pids) / elapsed
    found["batched"], found["submit_many_ms"] = await asyncio.wait_for(
        batched(client, kind, shape.batch_tasks, shape.batch), STEP_TIMEOUT_S
    )
    latencies = await asyncio.wait_for(paced(client, kind, shape.paced_tasks, shape.rate), STEP_TIMEOUT_S)
    found["p50_ms"] = _quantile(latencies, 0.50) * 1000
    found["p99_ms"] = _quantile(latencies, 0.99) * 1000
    for name, pid in pids.items():
        tally.cpu_s[name] += _cpu_s(pid) - before[name]
    tally.tasks += shape.tasks
    for name, value in found.items():
        tally.figures.setdefault(name, []).append(value)


async def _profile_gateway(
    client: Client, kind: Kind, pid: int | None, seconds: int, scratch: Path
) -> tuple[Profile, float] | None:
    """py-spy on the gateway while `kind` runs one task per call from 64 callers: (the profile, tasks/s meanwhile)."""
    if pid is None:
        return None
    path = scratch / "gateway-userwork.txt"
    spy = _profile(pid, seconds, path)
    if spy is None:
        return None
    started = time.perf_counter()
    load = asyncio.ensure_future(steady(client, kind, CONCURRENCY, started + seconds))
    try:
        done = await asyncio.wait_for(load, seconds + STEP_TIMEOUT_S)
        rate = done / (time.perf_counter() - started)
        await asyncio.wait_for(asyncio.to_thread(spy.wait), 30)
    finally:
        load.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await load
        if spy.poll() is None:
            spy.kill()
            spy.wait(10)
    return (summarise_profile(path), rate) if path.exists() else None


async def run(runs: int = 3, shape: Shape | None = None, profile_s: int = 8) -> str:
    shape = shape or Shape()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-userwork-") as directory:
        scratch = Path(directory)
        state, generated, log = scratch / "state", scratch / "generated", scratch / "sdk-worker.log"
        generated.mkdir()
        compile_messages(generated)
        os.environ["TIDEMESH_BENCH_GENERATED"] = str(generated)
        served = importlib.import_module("bench._userwork_worker")  # the handler, and the messages it imports
        builtin, user = _kinds(sys.modules["benchecho.v1.benchecho_pb2"])
        plan = build_plan(state, public_port=0, workers=1, worker_concurrency=CONCURRENCY, tenant_limit=NO_LIMIT)
        endpoint = f"127.0.0.1:{plan.public_port}"
        tallies = {kind.name: Tally({}, defaultdict(float)) for kind in (builtin, user)}
        async with (
            Supervisor(plan) as supervisor,
            Client(endpoint, tenant="bench", ca=plan.ca_path or None) as client,
        ):
            registrar = Worker(endpoint, ca=plan.ca_path or None)
            registrar.definitions = dict(served.worker.definitions)
            await registrar.register()
            with sdk_worker(endpoint, state, generated, log) as process:
                await _attached(client, process, log)
                pids = {name: pid for name, pid in supervisor.pids().items() if pid is not None}
                pids |= {"SDK worker": process.pid, "bench client": os.getpid()}
                for kind in (builtin, user):  # warm-up: connections, streams, caches
                    await asyncio.wait_for(per_call(client, kind, 100, 16), STEP_TIMEOUT_S)
                for round_ in range(runs):
                    # Alternate which kind goes first, so drift on a noisy machine hits both alike.
                    for kind in (builtin, user) if round_ % 2 == 0 else (user, builtin):
                        await _measure(client, kind, shape, pids, tallies[kind.name])
                profile = await _profile_gateway(client, user, pids.get("gateway"), profile_s, scratch)
                if process.poll() is not None:
                    raise RuntimeError(f"the SDK worker exited during the bench:\n{_tail(log)}")
    return _report(tallies[builtin.name], tallies[user.name], builtin, user, runs, shape, profile_s, profile, load)


def _report(
    builtin: Tally,
    user: Tally,
    builtin_kind: Kind,
    user_kind: Kind,
    runs: int,
    shape: Shape,
    profile_s: int,
    profile: tuple[Profile, float] | None,
    load: float,
) -> str:
    def cell(values: list[float], fmt: str) -> str:
        return " / ".join(fmt.format(v) for v in values) + f" → **{fmt.format(statistics.median(values))}**"

    measures = [
        ("per_call", f"tasks/s, one task per call from {shape.callers} callers ({shape.calls} tasks)", "{:.0f}"),
        ("gateway_busy", "gateway CPU while one task per call ran, % of one core", "{:.0f}"),
        ("all_busy", "every process's CPU together then (bench client too), % of one core (2 cores: 200)", "{:.0f}"),
        ("batched", f"tasks/s, {shape.batch_tasks} tasks by `submit_many` in batches of {shape.batch}", "{:.0f}"),
        ("submit_many_ms", f"one `submit_many` call of {shape.batch} tasks (4 in parallel), ms", "{:.0f}"),
        (
            "p50_ms",
            f"latency p50, ms (submit → final event, {shape.paced_tasks} tasks at {shape.rate:.0f}/s)",
            "{:.1f}",
        ),
        ("p99_ms", "latency p99, ms", "{:.1f}"),
    ]
    lines = [
        f"Load average when the suite started: {load:.1f} on 2 cores (other sessions' work shares this machine). "
        f"One mesh (TLS everywhere, fsync always, no submit limit), both kinds side by side, {runs} runs "
        "alternating which goes first; each cell lists the runs → **median**. `echo` runs in the mesh's built-in "
        f"worker process (concurrency {CONCURRENCY}), pulling from NATS. `{USER_KIND}` (messages in "
        f"`bench/{PROTO.join(('proto/', ''))}`, compiled at run time) does the same work in ONE Python SDK worker "
        f"process (`tidemesh worker run bench._userwork_worker:worker`, capacity {CONCURRENCY}) attached through "
        "Envoy over the worker protocol; the gateway checks its credential and relays the stream to worker-1, where "
        "the mesh side of its session (dispatcher, runner, fenced event writes) runs.",
        "",
        f"| measure | {builtin_kind.label} | {user_kind.label} | ratio user / built-in (medians) |",
        "|---|---|---|---|",
    ]
    for name, label, fmt in measures:
        ratio = statistics.median(user.figures[name]) / statistics.median(builtin.figures[name])
        lines.append(
            f"| {label} | {cell(builtin.figures[name], fmt)} | {cell(user.figures[name], fmt)} | {ratio:.2f} |"
        )
    lines += [
        "",
        f"CPU per task, ms, by process (all measured phases, {builtin.tasks} tasks of each kind; the bench client "
        "shares the 2 cores):",
        "",
        f"| process | {builtin_kind.label} | {user_kind.label} | user minus built-in |",
        "|---|---|---|---|",
    ]
    names = sorted(set(builtin.cpu_s) | set(user.cpu_s), key=lambda n: -(user.cpu_s[n] + builtin.cpu_s[n]))
    for name in [*names, "total"]:
        b = (sum(builtin.cpu_s.values()) if name == "total" else builtin.cpu_s[name]) * 1000 / max(builtin.tasks, 1)
        u = (sum(user.cpu_s.values()) if name == "total" else user.cpu_s[name]) * 1000 / max(user.tasks, 1)
        lines.append(f"| {name} | {b:.2f} | {u:.2f} | {u - b:+.2f} |")
    lines.append("")
    if profile is None:
        lines.append("py-spy was not found (set PYSPY): no profile of the gateway.")
        return "\n".join(lines)
    found, rate = profile
    lines += [
        f"py-spy (100 Hz, --native, busy samples only) on the gateway for {profile_s} s under the user-kind load (one "
        f"task per call from {CONCURRENCY} callers, {rate:.0f} tasks/s while sampled: py-spy stops the process to "
        f"take each sample, which slows it): it counted the event loop thread busy in {found.main} of "
        f"{profile_s * 100} samples, and {found.samples - found.main} samples in gRPC's own threads. Shares below "
        "are of the event loop thread's samples.",
        "",
        "| asyncio task the loop was running (outermost coroutine) | % | own time (leaf frame) | % |",
        "|---|---|---|---|",
    ]
    for (task, pct), (leaf, lpct) in zip(found.tasks, found.leaves, strict=False):
        lines.append(f"| `{task}` | {pct:.1f} | `{leaf}` | {lpct:.1f} |")
    lines += ["", *_findings(builtin, user, found)]
    return "\n".join(lines)


def _findings(builtin: Tally, user: Tally, profile: Profile) -> list[str]:
    """What the figures say, in a few lines (derived from this run's numbers)."""

    def per_task(tally: Tally, name: str = "") -> float:
        spent = tally.cpu_s[name] if name else sum(tally.cpu_s.values())
        return spent * 1000 / max(tally.tasks, 1)

    total_b, total_u = per_task(builtin), per_task(user)
    share = dict(profile.tasks) | dict(profile.leaves)
    runner = sum(pct for task, pct in profile.tasks if "services/worker/" in task)
    nats = sum(pct for task, pct in profile.tasks if task.endswith("(nats/aio/client.py)") or "(nats/" in task)
    gateway_b, gateway_u = (statistics.median(t.figures["gateway_busy"]) for t in (builtin, user))
    all_b, all_u = (statistics.median(t.figures["all_busy"]) for t in (builtin, user))
    if gateway_u >= 85:
        verdict = ": for user work it is the bottleneck (one thread, near a full core)"
    elif all_u >= 170:
        verdict = "; no process is at a full core, the two shared cores are the limit"
    else:
        verdict = (
            "; neither it nor the mesh as a whole is at its limit (other work shares these cores), so at a fixed 64 "
            "in flight the per-call rate is bound by each task's latency, and a user task makes more hops in "
            "series (worker-1 → gateway → Envoy → SDK worker and back, with a confirm for its result)"
        )
    lines = [
        "Where the overhead goes:",
        "",
        f"- CPU per task, all processes: {total_b:.1f} ms built-in, {total_u:.1f} ms user "
        f"({100 * (total_u / total_b - 1):+.0f}%). worker-1 runs the session's Dispatcher and Runner instead of "
        f"the step ({per_task(user, 'worker-1') - per_task(builtin, 'worker-1'):+.1f} ms per task), the gateway "
        f"relays the protocol's messages (assignment, reports, acks) between Envoy and worker-1 "
        f"({per_task(user, 'gateway') - per_task(builtin, 'gateway'):+.1f} ms), Envoy carries them "
        f"({per_task(user, 'envoy') - per_task(builtin, 'envoy'):+.1f} ms); the SDK worker adds "
        f"{per_task(user, 'SDK worker'):.1f} ms.",
        f"- While one task per call ran, the gateway used {gateway_b:.0f}% of a core for `echo` and {gateway_u:.0f}% "
        f"for the user kind, and every process together {all_b:.0f}% and {all_u:.0f}% of the 2 cores' 200%: "
        "the gateway serves the client API (submit, watch) and relays every worker session's stream"
        f"{verdict}. In its profile Runner/Dispatcher tasks took "
        f"{runner:.0f}% of the loop's samples, the NATS client's read and flush loops {nats:.0f}%, gRPC's own "
        "machinery (Cython tasks, sendmsg/send) most of the rest.",
        f"- Scheduler and NATS spend {per_task(user, 'scheduler') - per_task(builtin, 'scheduler'):+.1f} ms and "
        f"{per_task(user, 'nats') - per_task(builtin, 'nats'):+.1f} ms more per user task: admission decodes each "
        "user payload against the schema registry; with `schema_version` 0 (the SDK's default) "
        "`SchemaRegistry.resolve` reads the subject's latest-version hint and probes the next version in KV, once "
        "per (type, version) in a `submit_many` batch.",
    ]
    freeze = share.get("gc_get_freeze_count (libpython3.11.so.1.0)", 0.0)
    if freeze:
        lines.append(
            f"- {freeze:.1f}% of the gateway loop's samples were in `gc.get_freeze_count()`, called by "
            "`GcPacer.step` every second (mesh/runtime/_gc.py) even though the growth-triggered reclaim it feeds is "
            "off by default; in CPython 3.11 it walks the whole frozen set (O(frozen objects)), a loop stall "
            "that grows with what the pacer has frozen. Affects every kind, not only user work."
        )
    return lines
