"""`tidemesh up` as a user runs it, and the supervisor's recovery from crashes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clients.sdk import Client
from mesh.supervisor import Supervisor, admin_key, build_plan
from mesh.v1 import task_pb2
from tests.conftest import eventually

pytestmark = pytest.mark.integration

TIDEMESH = str(Path(sys.executable).parent / "tidemesh")
USER_MODELS = Path(__file__).resolve().parents[2] / "examples" / "models"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


async def _read_until(stream: asyncio.StreamReader, marker: str, timeout_s: float = 60) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError("tidemesh up exited early:\n" + "".join(lines))
            lines.append(raw.decode())
            if marker in lines[-1]:
                return lines


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `tidemesh ARGS` as a user would; (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        TIDEMESH, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, out.decode(), err.decode()


async def _start_up(tmp_path: Path, *extra: str) -> asyncio.subprocess.Process:
    """`tidemesh up --port 0` as a user starts it, its output piped for the test to read."""
    return await asyncio.create_subprocess_exec(
        TIDEMESH,
        "up",
        "--state-dir",
        str(tmp_path / "state"),
        "--port",
        "0",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_up_boots_serves_and_leaves_no_process(tmp_path: Path) -> None:
    """`tidemesh up --port 0` boots every component healthy, TLS on, runs a task via the CLI; SIGTERM stops all."""
    process = await _start_up(tmp_path)
    assert process.stdout is not None
    try:
        lines = await _read_until(process.stdout, "Ctrl-C to stop.")
        output = "".join(lines)
        pids = [int(p) for p in re.findall(r"pid (\d+)", output)]
        assert len(pids) == 6 and all(_alive(p) for p in pids), output
        # no terminal: the boot's progress as timestamped lines, one per process as it turns healthy
        healthy = re.findall(r"^\d\d:\d\d:\d\d\.\d{3}  starting 6 processes: ([\w-]+) healthy after", output, re.M)
        assert sorted(healthy) == sorted(["nats", "scheduler", "inference", "worker-1", "gateway", "envoy"]), output
        endpoint = re.search(r"public endpoint .*: (\S+)", output).group(1)  # type: ignore[union-attr]
        assert "auth: on" in output
        assert "INSECURE" not in output, output
        root = re.search(r"TLS: on .* clients trust (\S+)", output)
        assert root is not None, output
        assert Path(root.group(1)) == (tmp_path / "state" / "pki" / "ca.crt").resolve()
        state_dir = str(tmp_path / "state")
        state = ("--endpoint", endpoint, "--state-dir", state_dir)
        elsewhere = ("--endpoint", endpoint, "--state-dir", str(tmp_path / "elsewhere"))
        names = ("nats", "scheduler", "inference", "worker-1", "gateway", "envoy")
        # The commands that do not depend on one another run at once (each CLI start costs most of
        # a second): the CA path, an anonymous and a bad submit, the dead letters, the status, the
        # submit the key checks below list, and the Tiltfile's readiness probe for each component
        # (`tidemesh probe NAME` exits 0 when healthy: https with a client certificate, Envoy's
        # admin socket, NATS over TLS), all at once as Tilt runs them.
        ca, anonymous, submit, bad, dlq, status, *probes = await asyncio.gather(
            _cli("ca", "--state-dir", state_dir),
            _cli("submit", "echo", *elsewhere),
            _cli("submit", "echo", "--text", "from the cli", *state, "--json"),
            _cli("submit", "teleport", *state),
            _cli("dlq", "list", *state, "--json"),
            _cli("status", *state, "--json"),
            *(_cli("probe", name, "--state-dir", state_dir) for name in names),
        )
        code, out, err = ca
        assert code == 0 and out.strip() == root.group(1), err
        code, _, err = anonymous
        assert code != 0 and "unauthenticated" in err, err
        code, out, err = submit
        assert code == 0, err
        events = [json.loads(line) for line in out.splitlines()]
        assert events[-1]["state"] == "TASK_STATE_SUCCEEDED" and events[-1]["output"]["text"] == "from the cli"
        code, _, err = bad
        assert code == 2 and "kind" in err, err
        code, out, err = dlq
        assert code == 0 and json.loads(out) == [], err
        report = json.loads(status[1])
        assert report["secure"] is True
        assert {c["name"] for c in report["components"] if c["healthy"]} == set(names)
        for name, (code, _, err) in zip(names, probes, strict=True):
            assert code == 0, (name, err)
        (code, out, _), (token_code, token, _) = await asyncio.gather(
            _cli("auth", "key", "--tenant", "default", "--roles", "read", *state),
            _cli("auth", "token", "--tenant", "default", "--roles", "read", *state),
        )
        assert code == 0 and token_code == 0
        key_id, key = out.split()[2], out.split()[3]
        (code, out, _), (token_code, _, _) = await asyncio.gather(
            _cli("list", "--api-key", key, "--json", *elsewhere), _cli("list", "--api-key", token.strip(), *elsewhere)
        )
        assert code == 0 and events[0]["taskId"] in [t["spec"]["taskId"] for t in json.loads(out)["tasks"]]
        assert token_code == 0
        assert (await _cli("auth", "revoke", key_id, "--reason", "rotated", "--yes", *state))[0] == 0
        code, _, err = await _cli("list", "--api-key", key, *elsewhere)
        assert code != 0 and "revoked: rotated" in err and "from --api-key" in err, err
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
        assert [p for p in pids if _alive(p)] == []
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_insecure_up_says_so_at_start_and_in_status(tmp_path: Path) -> None:
    """`tidemesh up --insecure` prints its banner before booting, `status` says INSECURE, and there is no CA."""
    process = await _start_up(tmp_path, "--insecure")
    assert process.stdout is not None
    try:
        lines = await _read_until(process.stdout, "Ctrl-C to stop.")
        output = "".join(lines)
        up_at = next(i for i, line in enumerate(lines) if "tidemesh is up" in line)
        assert any("INSECURE MESH (--insecure)" in line for line in lines[:up_at]), output  # at start, not only after
        assert "TLS: on" not in output
        endpoint = re.search(r"public endpoint .*: (\S+)", output).group(1)  # type: ignore[union-attr]
        state = ("--endpoint", endpoint, "--state-dir", str(tmp_path / "state"))
        # A user of an --insecure mesh, who has no root exported (TIDEMESH_CA would ask the CLI for TLS).
        plain = {k: v for k, v in os.environ.items() if k != "TIDEMESH_CA"}
        (code, table, err), (json_code, out, _), ca = await asyncio.gather(
            _cli("status", *state, env=plain),
            _cli("status", "--json", *state, env=plain),
            _cli("ca", "--state-dir", str(tmp_path / "state")),
        )
        # a state is a word and a symbol (▲, or ! where the output is not UTF-8), never colour alone
        assert code == 0 and re.match(r"[▲!] INSECURE MESH \(--insecure\)", table), table + err
        assert "\x1b[" not in table  # a pipe gets no colour
        assert json_code == 0 and json.loads(out)["secure"] is False
        code, out, err = ca
        assert code != 0 and out == "" and "no local CA" in err
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_up_with_triton_embeds_through_the_mesh_and_shows_backends(tmp_path: Path) -> None:
    """`tidemesh up --model-repository examples/models`: tritonserver runs as one more supervised
    child, serving the user's models beside the project's; `status` shows both inference backends
    with the model resident; `submit embed` returns the MiniLM vector; the user's models answer
    through Envoy (see `_user_models_through_the_front_door`); and nothing is left running after
    SIGTERM (Triton's Python-backend stubs included)."""
    from services.inference._minilm import MiniLM

    process = await _start_up(tmp_path, "--model-repository", str(USER_MODELS))
    assert process.stdout is not None
    try:
        output = "".join(await _read_until(process.stdout, "Ctrl-C to stop."))
        pids = [int(p) for p in re.findall(r"pid (\d+)", output)]
        assert "triton" in output and len(pids) == 7, output
        endpoint = re.search(r"public endpoint .*: (\S+)", output).group(1)  # type: ignore[union-attr]
        state = ("--endpoint", endpoint, "--state-dir", str(tmp_path / "state"))

        async def both_registered() -> dict[str, dict[str, object]] | None:
            code, out, _ = await _cli("status", "--json", *state)
            backends = {b["backend"]: b for b in json.loads(out)["inference_backends"]} if code == 0 else {}
            triton = backends.get("triton", {})
            return (
                backends if "cpu" in backends and triton.get("models") and triton.get("circuit") == "closed" else None
            )

        backends = await eventually(both_registered, timeout_s=30, what="cpu and triton registered, model resident")
        assert backends["triton"]["models"] == [
            "all-minilm-l6-v2",
            "all-minilm-l6-v2-chunks",
            "scaler",
            "streamer",
            "typed",
        ]
        assert backends["triton"]["streamingModels"] == ["all-minilm-l6-v2"]
        assert backends["cpu"]["models"] == ["all-minilm-l6-v2"]
        # the host's devices come with every entry: its GPUs through NVML, else its CPU, saying why
        [device] = backends["cpu"]["devices"] if "no GPU" in backends["cpu"]["devicesNote"] else [{"kind": "cpu"}]
        assert device["kind"] == "cpu" and int(device["memoryTotalBytes"]) > 0, backends["cpu"]
        # the table read before the embed runs: the reading the JSON above waited for, not one mid-call
        code, table, _ = await _cli("status", *state)
        closed = r"triton 127\.0\.0\.1:\d+\s+[✔+] closed .* all-minilm-l6-v2 \(streams\)"  # word and symbol
        assert code == 0 and re.search(closed, table), table
        embed_code, out, err = await _cli("submit", "embed", "--text", "tide pools at dawn", "--json", *state)
        assert embed_code == 0, err
        final = json.loads(out.splitlines()[-1])
        vector = final["output"]["embedding"]["values"]
        expected = MiniLM.load().encode(["tide pools at dawn"])[0]
        assert len(vector) == 384 and float(sum(a * b for a, b in zip(vector, expected, strict=True))) > 0.9999

        # Triton's own counters (its statistics over mutual TLS: its metrics port is off) in the
        # registry and the table; what it can load on demand (the FP16 variant), fitting its devices.
        async def counted() -> dict[str, object] | None:
            code, out, _ = await _cli("status", "--json", *state)
            if code != 0:
                return None
            triton = {b["backend"]: b for b in json.loads(out)["inference_backends"]}.get("triton", {})
            stats = {m["model"]: m for m in triton.get("modelStatistics", [])}  # type: ignore[attr-defined]
            minilm = stats.get("all-minilm-l6-v2", {})
            return triton if int(minilm.get("successCount", 0)) >= 1 else None

        triton = await eventually(counted, timeout_s=15, what="Triton's statistics for the embed in the registry")
        assert "cpu" in triton["deviceKinds"] and triton["loadableModels"] == ["all-minilm-l6-v2-fp16"], triton
        code, table, _ = await _cli("status", *state)
        assert re.search(r"all-minilm-l6-v2: \d+ inferences in \d+ executions, 0 failed", table), table
        assert "loads on demand: all-minilm-l6-v2-fp16" in table, table

        await _user_models_through_the_front_door(tmp_path / "state", state)

        # Cancelling a doc_embed task mid-stream reaches Triton: its chunk model stops early.
        # 4000 chunks of 2 words: Triton is still at it when the cancel arrives, even on a busy machine
        # (it computes ahead of the worker, whose events lag behind).
        document = " ".join(f"w{i}" for i in range(8000))
        payload = json.dumps({"text": document, "chunk_words": 2})
        code, out, err = await _cli("submit", "doc_embed", "--payload", payload, "--no-wait", *state)
        assert code == 0, err
        task_id = out.strip()
        async with Client(endpoint, credential=admin_key(tmp_path / "state")) as client:
            partials = 0
            async for event in client.watch(task_id):
                partials += event.output.HasField("embedding") and not event.final
                if partials == 3:
                    break
        assert (await _cli("cancel", task_id, *state))[0] == 0
        triton_log = tmp_path / "state" / "logs" / "triton.log"

        async def stopped_early() -> re.Match[str] | None:
            return re.search(r"cancelled after (\d+) of 4000 chunks", triton_log.read_text(errors="replace"))

        found = await eventually(stopped_early, timeout_s=30, what="Triton logged the task's cancellation")
        assert 3 <= int(found.group(1)) < 4000

        # Triton killed (-9) while embed tasks run: no task fails — the CPU model answers the rest.
        triton_pid = int(re.search(r"triton\s+pid (\d+)", output).group(1))  # type: ignore[union-attr]
        stubs = [int(p) for p in (await _cli_out("pgrep", "-f", "triton_python_backend_stub")).split()]
        async with Client(endpoint, credential=admin_key(tmp_path / "state")) as client:
            specs = [client.spec("embed", {"text": f"tide report number {i}"}) for i in range(300)]
            ids = [r.task_id for r in await client.submit_many(specs)]
            finals: list[task_pb2.TaskEvent] = []
            async for event in client.watch_many(ids):
                finals.append(event)
                if len(finals) == 1:
                    os.kill(triton_pid, signal.SIGKILL)
        assert len(finals) == 300 and {e.state for e in finals} == {task_pb2.TASK_STATE_SUCCEEDED}
        code, out, _ = await _cli("status", "--json", *state)
        after = {b["backend"]: b for b in json.loads(out)["inference_backends"]}
        assert int(after["triton"].get("failures", 0)) >= 1 and int(after["cpu"].get("textsServed", 0)) > 0, after

        async def old_stubs_gone() -> bool:
            return not any(_alive(p) for p in stubs)

        await eventually(old_stubs_gone, timeout_s=10, what="the killed Triton's stubs reaped by the supervisor")

        async def restarted() -> list[int] | None:
            found = (await _cli_out("pgrep", "-f", "triton_python_backend_stub|bin/tritonserver")).split()
            return [int(p) for p in found] if len(found) >= 3 else None  # the server and its two stubs

        children = await eventually(restarted, timeout_s=60, what="the supervisor restarted Triton")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 90) == 0
        assert [p for p in pids + children if _alive(p)] == []
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _user_models_through_the_front_door(state_dir: Path, state: tuple[str, ...]) -> None:
    """The user's models through Envoy and the gateway's relay, as the README shows: listed,
    described, run (a decoupled one streamed), unloaded and loaded again; bad tensors named; and
    the roles checked (running a model takes `submit`, loading one `admin`)."""
    # The reads that do not depend on one another at once (each CLI start costs most of a second).
    model_list, model_status, scaled, streamed, misshaped = await asyncio.gather(
        _cli("model", "list", "--json", *state),
        _cli("model", "status", "scaler", *state),
        _cli("infer", "scaler", "--input", "X=[[1.5],[2.0]]", *state),
        _cli("infer", "streamer", "--input", "COUNT=[3]", "--stream", "-o", "jsonl", *state),
        _cli("infer", "scaler", "--input", "X=[[1.0, 2.0]]", *state),
    )
    code, out, err = model_list
    assert code == 0, err
    listed = {(m["name"], m["backend"]): m["state"] for m in json.loads(out)}
    assert {listed[(n, "triton")] for n in ("scaler", "streamer", "typed")} == {"READY"}
    assert listed[("all-minilm-l6-v2", "cpu")] == "READY"
    code, out, err = model_status
    assert code == 0 and "scaler: READY on triton" in out and "in  X FP32[-1, 1]" in out, (out, err)
    code, out, err = scaled
    assert code == 0 and json.loads(out) == {"Y": [[4.5], [6.0]]}, (out, err)
    code, out, err = streamed
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [{"INDEX": [i], "TEXT": [f"part {i}"]} for i in range(3)]
    code, out, err = misshaped
    assert code == 2 and "inputs[0].shape[1]" in err and "expects 1" in err, (code, out, err)
    # unloaded, then loaded on demand by the next request
    code, out, err = await _cli("model", "unload", "scaler", *state)
    assert code == 0 and "scaler unloaded from triton" in out, (out, err)
    code, out, _ = await _cli("model", "list", "--json", *state)
    assert {m["name"]: m["state"] for m in json.loads(out) if m["backend"] == "triton"}["scaler"] == "UNAVAILABLE"
    code, out, err = await _cli("infer", "scaler", "--input", "X=[[2.0]]", *state)
    assert code == 0 and json.loads(out) == {"Y": [[6.0]]}, (out, err)
    # the `infer` task kind: durable work on the same models, checked against the model at submit
    scaler_task = {
        "model": "scaler",
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1], "contents": {"fp32_contents": [7.0]}}],
    }
    stream_task = {
        "model": "streamer",
        "inputs": [{"name": "COUNT", "datatype": "INT32", "shape": [1], "contents": {"int_contents": [4]}}],
    }
    wrong = {
        "model": "scaler",
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "contents": {"fp32_contents": [1.0, 2.0]}}],
    }
    scaled_task, streamed_task, misshaped_task, unknown_task = await asyncio.gather(
        _cli("submit", "infer", "--payload", json.dumps(scaler_task), "--json", *state),
        _cli("submit", "infer", "--payload", json.dumps(stream_task), "--json", *state),
        _cli("submit", "infer", "--payload", json.dumps(wrong), *state),
        _cli("submit", "infer", "--payload", json.dumps({**scaler_task, "model": "nope"}), *state),
    )
    code, out, err = scaled_task
    assert code == 0, err
    final = json.loads(out.splitlines()[-1])
    assert final["state"] == "TASK_STATE_SUCCEEDED", final
    assert final["output"]["tensors"]["outputs"][0]["contents"]["fp32Contents"] == [21.0]
    code, out, err = streamed_task
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    partials = [e for e in events if e["state"] == "TASK_STATE_RUNNING" and "output" in e]
    assert [p["output"]["tensors"]["outputs"][0]["contents"]["intContents"] for p in partials] == [[0], [1], [2], [3]]
    code, _, err = misshaped_task
    assert code == 2 and "spec.payload.infer.inputs[0].shape[1]" in err, (code, err)
    code, _, err = unknown_task
    assert code == 2 and "spec.payload.infer.model" in err and "unknown model" in err, (code, err)
    # roles: a submit+read key runs models but may not load them; a read-only key may not run them
    async with Client(state[1], credential=admin_key(state_dir)) as admin:
        runner = (await admin.create_api_key("acme", ["submit", "read"], "runner")).api_key
        reader = (await admin.create_api_key("acme", ["read"], "reader")).api_key
    ran, load, read_only = await asyncio.gather(
        _cli("infer", "scaler", "--input", "X=[[1.0]]", "--api-key", runner, *state),
        _cli("model", "load", "typed", "--api-key", runner, *state),
        _cli("infer", "scaler", "--input", "X=[[1.0]]", "--api-key", reader, *state),
    )
    code, _, err = ran
    assert code == 0, err
    code, _, err = load
    assert code != 0 and "admin" in err, err
    code, _, err = read_only
    assert code != 0 and "submit" in err, err


async def _cli_out(*command: str) -> str:
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    return out.decode()


@pytest.fixture(scope="module")
async def healing_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Supervisor]:
    """One mesh (one worker, 2 s ack-wait, liveness checked every 0.5 s, 3 misses) for the
    recovery tests that fault one child and see it come back: each starts from a healthy mesh,
    counts restarts and kills from what it found, and leaves the mesh healthy again. (The default
    liveness of 1 s and 5 misses would only make the frozen-child test wait ~10 s for the same kill.)"""
    plan = build_plan(tmp_path_factory.mktemp("healing"), public_port=0, workers=1, ack_wait_s=2.0)
    async with Supervisor(plan, health_timeout_s=60, liveness=(0.5, 3)) as supervisor:
        yield supervisor


async def _all_healthy(supervisor: Supervisor) -> None:
    for child in supervisor.children.values():
        await child.wait_healthy(30)


async def test_killed_worker_task_is_redelivered_and_completes(healing_mesh: Supervisor) -> None:
    """kill -9 of the worker mid-task: the supervisor restarts it, JetStream redelivers the step,
    and the task completes with every chunk streamed exactly once."""
    supervisor = healing_mesh
    await _all_healthy(supervisor)
    endpoint = f"127.0.0.1:{supervisor.plan.public_port}"
    worker = supervisor.children["worker-1"]
    old_pid, restarts = worker.pid, worker.restarts
    assert old_pid is not None
    words = [f"w{i}" for i in range(12)]
    async with Client(endpoint, tenant="chaos") as client:
        submitted = await client.submit("stream", {"text": " ".join(words), "chunks": 12, "chunk_delay_ms": 150})
        events: list[task_pb2.TaskEvent] = []
        killed = False
        async for event in client.watch(submitted.task_id):
            events.append(event)
            if not killed and sum(e.HasField("output") for e in events) == 3:
                os.kill(old_pid, signal.SIGKILL)
                killed = True
    assert worker.restarts > restarts and worker.pid != old_pid
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    partials = [e.output.text for e in events if e.HasField("output") and not e.final]
    assert partials == words
    assert max(e.attempt for e in events) >= 2  # the emit step ran again, resuming after chunk 3


async def test_crashed_child_is_restarted_with_backoff(healing_mesh: Supervisor) -> None:
    """A child killed outside the supervisor comes back healthy."""
    supervisor = healing_mesh
    await _all_healthy(supervisor)
    gateway = supervisor.children["gateway"]
    old_pid, restarts = gateway.pid, gateway.restarts
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)

    async def restarted() -> bool:
        return gateway.restarts > restarts and gateway.pid != old_pid

    await eventually(restarted, what="gateway restarted")
    await gateway.wait_healthy(30)
    async with Client(f"127.0.0.1:{supervisor.plan.public_port}") as client:
        submitted = await client.submit("echo", {"text": "after restart"})
        events = [e async for e in client.watch(submitted.task_id)]
    assert events[-1].output.text == "after restart"


async def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    """kill -9 of `tidemesh up` itself leaves no orphan: the kernel kills every child (PDEATHSIG)."""
    process = await _start_up(tmp_path)
    assert process.stdout is not None
    try:
        output = "".join(await _read_until(process.stdout, "Ctrl-C to stop."))
        pids = [int(p) for p in re.findall(r"pid (\d+)", output)]
        assert len(pids) == 6
    finally:
        process.kill()
        await process.wait()

    async def all_gone() -> bool:
        return not any(_alive(p) for p in pids)

    await eventually(all_gone, timeout_s=10, what="children of a killed supervisor exit")


async def test_paused_worker_is_declared_dead_and_its_task_moves(tmp_path: Path) -> None:
    """SIGSTOP the worker running a task: the scheduler declares it dead from missed heartbeats and
    naks its items, so another worker finishes the task long before the 60 s ack-wait; when the
    paused worker wakes, fencing keeps it from writing into the task's stream."""
    plan = build_plan(
        tmp_path / "mesh",
        public_port=0,
        workers=2,
        ack_wait_s=60.0,
        scheduler_args=("--heartbeat-interval", "0.5"),
    )
    async with Supervisor(plan, health_timeout_s=60) as supervisor:
        pids = {name: child.pid for name, child in supervisor.children.items() if name.startswith("worker")}
        words = [f"v{i}" for i in range(10)]
        paused: int | None = None
        async with Client(f"127.0.0.1:{plan.public_port}", tenant="pause") as client:
            submitted = await client.submit("stream", {"text": " ".join(words), "chunks": 10, "chunk_delay_ms": 200})
            events: list[task_pb2.TaskEvent] = []
            try:
                async with asyncio.timeout(30):
                    async for event in client.watch(submitted.task_id):
                        events.append(event)
                        # After 5 chunks (1 s) the worker has heartbeated at least once with the item.
                        if paused is None and sum(e.HasField("output") for e in events) == 5:
                            paused = int(event.worker_id.split("-")[-2])
                            assert paused in pids.values()
                            os.kill(paused, signal.SIGSTOP)
            finally:
                if paused is not None:
                    os.kill(paused, signal.SIGCONT)
        assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
        assert len({e.worker_id for e in events if e.worker_id}) == 2  # the task moved to the other worker
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert [e.output.text for e in events if e.HasField("output") and not e.final] == words


async def test_unresponsive_child_is_killed_and_restarted(healing_mesh: Supervisor) -> None:
    """Auto-healing: a worker that is alive but stops answering (SIGSTOP) is killed by the
    supervisor's liveness check and replaced; the replacement runs tasks."""
    supervisor = healing_mesh
    await _all_healthy(supervisor)
    worker = supervisor.children["worker-1"]
    frozen, kills = worker.pid, worker.unresponsive_kills
    assert frozen is not None
    os.kill(frozen, signal.SIGSTOP)

    async def replaced() -> bool:
        return worker.unresponsive_kills > kills and worker.pid != frozen

    await eventually(replaced, timeout_s=20, what="the frozen worker replaced")
    await worker.wait_healthy(30)
    assert not _alive(frozen)
    async with Client(f"127.0.0.1:{supervisor.plan.public_port}") as client:
        submitted = await client.submit("echo", {"text": "healed"})
        events = [e async for e in client.watch(submitted.task_id)]
    assert events[-1].output.text == "healed"


async def test_jetstream_state_and_a_running_task_survive_a_restart_of_the_whole_mesh(tmp_path: Path) -> None:
    """A task finished before the mesh stops is still readable after it restarts on the same state
    dir. Checkpointing: stop the whole mesh in the middle of a streaming task, start it again on the
    same state dir, re-attach from the last sequence seen: the task finishes with every chunk once.
    (One restart for both: each needs a mesh stopped and started again on its state.)"""
    state = tmp_path / "state"
    words = [f"c{i}" for i in range(16)]
    seen: list[task_pb2.TaskEvent] = []
    plan = build_plan(state, public_port=0, ack_wait_s=5.0)
    async with Supervisor(plan) as _, Client(f"127.0.0.1:{plan.public_port}", tenant="durable") as durable:
        kept = await durable.submit("echo", {"text": "kept"})
        [e async for e in durable.watch(kept.task_id)]
        async with Client(f"127.0.0.1:{plan.public_port}", tenant="restart") as client:
            submitted = await client.submit("stream", {"text": " ".join(words), "chunks": 16, "chunk_delay_ms": 150})
            async for event in client.watch(submitted.task_id):
                seen.append(event)
                if sum(e.HasField("output") for e in seen) == 4:
                    break
    plan = build_plan(state, public_port=0, ack_wait_s=5.0)
    async with Supervisor(plan) as _, Client(f"127.0.0.1:{plan.public_port}", tenant="durable") as durable:
        info = await durable.get(kept.task_id)
        async with Client(f"127.0.0.1:{plan.public_port}", tenant="restart") as client:
            seen += [e async for e in client.watch(submitted.task_id, after_sequence=seen[-1].sequence)]
    assert info.state == task_pb2.TASK_STATE_SUCCEEDED and info.result.text == "kept"
    assert seen[-1].state == task_pb2.TASK_STATE_SUCCEEDED
    assert [e.sequence for e in seen] == list(range(1, len(seen) + 1))
    assert [e.output.text for e in seen if e.HasField("output") and not e.final] == words


# The last two share one mesh. A module fixture lives until the module ends, so it comes after every
# other test here: it never idles beside their meshes.
POOLS = {"ingestion": 1, "orchestration": 1, "inference": 1, "post-processing": 1}


@pytest.fixture(scope="module")
async def pools_and_replicas(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Supervisor]:
    """Two gateway replicas and one dedicated worker per pool (no all-pool worker; inference's with
    2 slots)."""
    plan = build_plan(
        tmp_path_factory.mktemp("pools"),
        public_port=0,
        workers=0,
        pool_workers=POOLS,
        pool_concurrency={"inference": 2},
        gateways=2,
    )
    async with Supervisor(plan) as supervisor:
        yield supervisor


async def test_dedicated_pool_workers_run_a_multi_pool_pipeline(pools_and_replicas: Supervisor) -> None:
    """With one dedicated worker per pool (no all-pool worker), a stream task crosses from the
    ingestion worker to the post-processing worker, and each worker reports only its pool."""
    pools = POOLS
    async with Client(f"127.0.0.1:{pools_and_replicas.plan.public_port}", tenant="pools") as client:
        submitted = await client.submit("stream", {"text": "a b", "chunks": 2})
        events = [e async for e in client.watch(submitted.task_id)]
        assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
        workers_by_step = {e.step: e.worker_id for e in events if e.worker_id}
        assert workers_by_step["plan"] != workers_by_step["emit"]
        status = await client.status()
        assert sorted(tuple(w.pools) for w in status.workers) == sorted((pool,) for pool in pools)
        assert {w.pools[0]: w.concurrency for w in status.workers}["inference"] == 2


async def test_sessions_stick_to_one_of_two_gateway_replicas(pools_and_replicas: Supervisor) -> None:
    """`--gateways 2`: Envoy hashes x-tidemesh-session, so one session always reaches the same
    gateway replica while different sessions spread over both."""
    import aiohttp

    plan = pools_and_replicas.plan
    assert [p.name for p in plan.processes if p.name.startswith("gateway")] == ["gateway-1", "gateway-2"]
    async with Client(f"127.0.0.1:{plan.public_port}", tenant="sticky") as client:
        submitted = await client.submit("echo", {"text": "sticky"})
        url = f"https://127.0.0.1:{plan.public_port}/v1/tasks/{submitted.task_id}"
        async with aiohttp.ClientSession() as session:

            async def replica(session_id: str) -> str:
                async with session.get(url, headers={"x-tidemesh-session": session_id}) as response:
                    assert response.status == 200
                    return response.headers["x-tidemesh-replica"]

            same = {await replica("user-42") for _ in range(20)}
            spread = {await replica(f"user-{i}") for i in range(40)}
    assert len(same) == 1
    assert len(spread) == 2
