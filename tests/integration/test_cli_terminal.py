"""The CLI as people and scripts meet it, on a live mesh: with a terminal (a pty) destructive
commands show what they would touch and ask, default no; without one they refuse unless --yes.
Progress redraws on a terminal and is append-only, timestamped lines in accessible mode. Data
keeps to stdout in every format, notes to stderr, and a failure says what to do next."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from clients.sdk import Client
from mesh.v1 import task_pb2
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

TIDEMESH = str(Path(sys.executable).parent / "tidemesh")
CURSOR_MOTION = re.compile(r"\x1b\[(\?25[lh]|\d*[ABCDGHJK])")  # hide/show, moves, erases: what a redraw uses


def _args(mesh: Mesh) -> list[str]:
    return ["--endpoint", mesh.endpoint, "--state-dir", str(mesh.plan.state_dir)]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "ACCESSIBLE", "TIDEMESH_ACCESSIBLE")}
    return {**env, "TERM": "xterm-256color", "COLUMNS": "120", **extra}


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`tidemesh ARGS` from a script: no terminal anywhere (stdin closed, output piped)."""
    process = await asyncio.create_subprocess_exec(
        TIDEMESH,
        *args,
        stdin=subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or _env(),
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, out.decode(), err.decode()


def _terminal(argv: list[str], answer: str | None, env: dict[str, str], timeout_s: float = 30) -> tuple[int, str]:
    """`tidemesh ARGV` on a pty (stdin, stdout and stderr), typing `answer` at the prompt; the
    exit code and everything the terminal showed."""
    master, slave = pty.openpty()
    process = subprocess.Popen([TIDEMESH, *argv], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    shown, answered, deadline = b"", False, time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            if answer is not None and not answered and b"Proceed? [y/N]" in shown:
                os.write(master, answer.encode())
                answered = True
            if not ready and process.poll() is not None:
                break
        return process.wait(timeout=max(deadline - time.monotonic(), 1)), shown.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


async def _dead_letters(mesh: Mesh, tenant: str, count: int) -> list[str]:
    """`count` dead letters of `tenant`: embed tasks naming a model nobody has fail fatally."""
    async with Client(mesh.endpoint, tenant=tenant) as client:
        ids = []
        for _ in range(count):
            submitted = await client.submit("embed", {"text": "x", "model": "no-such-model"})
            [event async for event in client.watch(submitted.task_id)]
            ids.append(submitted.task_id)
    return ids


async def _letters(mesh: Mesh, tenant: str) -> dict[str, list[str]]:
    async with Client(mesh.endpoint, tenant=tenant) as client:
        return {letter.task_id: list(letter.replayed_as) for letter in await client.dead_letters(tenant)}


async def test_destructive_commands_ask_on_a_terminal_and_refuse_without_one(mesh: Mesh) -> None:
    tenant = f"tty-{os.getpid()}"
    ids = await _dead_letters(mesh, tenant, 3)
    code, out, err = await _cli("dlq", "purge", "--tenant", tenant, *_args(mesh))
    assert code == 2 and "pass --yes" in err and out == "", (code, out, err)
    assert sorted(await _letters(mesh, tenant)) == sorted(ids)  # nothing purged

    replay = ["dlq", "replay", "--tenant", tenant, *_args(mesh)]
    code, shown = await asyncio.to_thread(_terminal, replay, "n\n", _env())
    assert code == 2 and f"This will replay 3 dead letters of tenant {tenant}: 3 in all." in shown, shown
    assert all(task_id in shown for task_id in ids) and "not confirmed" in shown
    assert all(not replays for replays in (await _letters(mesh, tenant)).values())  # nothing replayed

    code, shown = await asyncio.to_thread(_terminal, replay, "y\n", _env())
    assert code == 0 and f"replayed 3 dead letters of tenant {tenant}" in shown, shown
    assert CURSOR_MOTION.search(shown), "on a terminal the progress bar redraws in place"
    async with Client(mesh.endpoint, tenant=tenant) as client:  # the replays fail the same way, as dead letters
        for task_id in ids:
            [event async for event in client.watch(f"{task_id}-r")]
    letters = await _letters(mesh, tenant)
    assert {task_id: letters[task_id] for task_id in ids} == {task_id: [f"{task_id}-r"] for task_id in ids}

    code, out, err = await _cli("dlq", "purge", "--tenant", tenant, "--yes", "-o", "json", *_args(mesh))
    assert code == 0 and json.loads(out) == {"purged": len(letters) == 6 and 6}, (out, err)
    assert await _letters(mesh, tenant) == {}


async def test_accessible_mode_appends_timestamped_lines_and_never_moves_the_cursor(mesh: Mesh) -> None:
    """--accessible, or ACCESSIBLE=1 in the environment: the same work, told in lines, on a terminal."""
    tenants = {"flag": f"a11y-flag-{os.getpid()}", "env": f"a11y-env-{os.getpid()}"}
    letters = {how: (await _dead_letters(mesh, tenant, 1))[0] for how, tenant in tenants.items()}
    flag = ["dlq", "replay", "--tenant", tenants["flag"], "--yes", "--accessible", *_args(mesh)]
    by_env = ["dlq", "replay", "--tenant", tenants["env"], "--yes", *_args(mesh)]
    shown = dict(
        zip(
            tenants,
            await asyncio.gather(
                asyncio.to_thread(_terminal, flag, None, _env()),
                asyncio.to_thread(_terminal, by_env, None, _env(ACCESSIBLE="1")),
            ),
            strict=True,
        )
    )
    for how, (code, text) in shown.items():
        assert code == 0 and not CURSOR_MOTION.search(text), (how, text)
        stamped = re.compile(rf"^\d\d:\d\d:\d\d\.\d{{3}}  replaying dead letters of {tenants[how]}", re.M)
        assert len(stamped.findall(text)) == 2, (how, text)  # started, then 1/1 done
        assert f"{letters[how]} → {letters[how]}-r (1/1)" in text, (how, text)


async def test_formats_clocks_and_verbosity(mesh: Mesh) -> None:
    args = _args(mesh)
    (c1, jsonl, err1), (c2, table, _), (c3, none, _) = await asyncio.gather(
        _cli("submit", "echo", "--text", "hi", "-o", "jsonl", "-vv", *args),
        _cli("submit", "echo", "--text", "hi", "--timestamps", "utc", *args),
        _cli("submit", "echo", "--text", "hi", "--timestamps", "none", *args),
    )
    c4, listed, quiet = await _cli("list", "-o", "yaml", "-q", "--limit", "2", *args)
    events = [json.loads(line) for line in jsonl.splitlines()]
    assert c1 == 0 and events[-1]["state"] == "TASK_STATE_SUCCEEDED" and events[-1]["final"], jsonl
    assert re.search(r"^task \w+$", err1, re.M) and "endpoint: " + mesh.endpoint in err1
    assert re.search(r" call /mesh\.v1\.GatewayService/SubmitTask → OK in [\d.]+ ms$", err1, re.M), err1
    task_id = re.search(r"^task (\w+)$", err1, re.M).group(1)  # type: ignore[union-attr]
    assert f"follow it in the web console: https://{mesh.endpoint}/console/tasks/{task_id}" in err1, err1
    assert "transport: TLS, verified against " + str(mesh.security.root) in err1, err1
    assert re.search(r"^credential: .*" + re.escape(str(mesh.plan.state_dir)) + r"/auth/admin.key", err1, re.M)
    assert c2 == 0 and all(re.match(r"\d\d:\d\d:\d\d\.\d{3}Z  #\d", line) for line in table.splitlines()), table
    assert c3 == 0 and all(line.startswith("#") for line in none.splitlines()), none
    assert c4 == 0 and len(yaml.safe_load(listed)["tasks"]) == 2 and quiet == "", (listed, quiet)


async def test_failures_say_what_to_do_next(mesh: Mesh) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{s.getsockname()[1]}"
    state = ["--state-dir", str(mesh.plan.state_dir)]
    (c1, _, unknown), (c2, _, down) = await asyncio.gather(
        _cli("submit", "embd", "--text", "hi", *_args(mesh)),
        _cli("status", "--endpoint", nobody, *state),
    )
    assert c1 == 2 and "embd" in unknown and "embed" in unknown and "`tidemesh kinds`" in unknown, unknown
    assert c2 == 4 and f"mesh unavailable at {nobody}" in down and "`tidemesh up`" in down, down
    # A refused credential names where it came from: test_up (a mesh with auth) and test_cli_errors.


async def test_a_fan_out_shows_a_bar_of_its_children_on_a_terminal(mesh: Mesh) -> None:
    payload = json.dumps({"child_kind": "echo", "texts": ["a", "b", "c"]})
    argv = ["submit", "fan_out", "--payload", payload, *_args(mesh)]
    code, shown = await asyncio.to_thread(_terminal, argv, None, _env())
    assert code == 0 and "3 child tasks of " in shown and CURSOR_MOTION.search(shown), repr(shown)
    lines = [line for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown).splitlines() if "#" in line]
    assert "SUCCEEDED" in lines[-1] and "(final)" in lines[-1], lines  # the data lines survive the redraws
    code, plain, err = await _cli(*argv)
    assert code == 0 and "child tasks" not in plain + err and "\x1b" not in plain, (plain, err)


async def test_cancelling_many_asks_and_cancels_each(mesh: Mesh) -> None:
    tenant = f"cancel-{os.getpid()}"
    slow = {"text": "a b c d", "chunks": 4, "chunk_delay_ms": 10_000}
    async with Client(mesh.endpoint, tenant=tenant) as client:
        ids = sorted([(await client.submit("stream", slow)).task_id for _ in range(3)])
    cancel = ["cancel", "--tenant", tenant, "-o", "json", *_args(mesh)]
    code, out, err = await _cli(*cancel)
    assert code == 2 and "refusing to cancel 3 tasks" in err and "pass --yes" in err and out == "", (out, err)
    code, out, err = await _cli(*cancel, "--yes")
    assert code == 0, err
    assert sorted(item["task_id"] for item in json.loads(out)) == ids
    async with Client(mesh.endpoint, tenant=tenant) as client:
        for task_id in ids:
            assert [e async for e in client.watch(task_id)][-1].state == task_pb2.TASK_STATE_CANCELLED


async def test_list_filters_on_the_mesh_and_names_the_flag_at_fault(mesh: Mesh) -> None:
    """`tidemesh list --kind --state --since --until` lists only the matching tasks; a bad value names its flag."""
    tenant = f"list-cli-{os.getpid()}"
    async with Client(mesh.endpoint, tenant=tenant) as client:
        echo = await client.submit("echo", {"text": "hi"})
        stream = await client.submit("stream", {"text": "a b", "chunks": 2})
        for task in (echo, stream):
            [e async for e in client.watch(task.task_id)]
    args = ["--tenant", tenant, "-o", "json", *_args(mesh)]
    (c1, echoes, _), (c2, streams, _), (c3, later, _), (c4, both, _), *refusals = await asyncio.gather(
        _cli("list", "--kind", "echo", "--state", "succeeded", "--since", "1h", *args),
        _cli("list", "--state", "FAILED", "--state", "succeeded,dead-lettered", "--kind", "stream", *args),
        _cli("list", "--since", "2020-01-01T00:00:00+00:00", "--until", "2999-01-01T00:00:00Z", *args),
        _cli("list", "--since", "2000-01-01T00:00", "--until", "1w", *args),
        _cli("list", "--state", "done", *args),
        _cli("list", "--since", "last tuesday", *args),
        _cli("list", "--since", "1h", "--until", "2h", *args),
        _cli("list", "--kind", "Echo", *args),
    )
    assert c1 == 0 and [t["spec"]["taskId"] for t in json.loads(echoes)["tasks"]] == [echo.task_id], echoes
    assert c2 == 0 and [t["spec"]["taskId"] for t in json.loads(streams)["tasks"]] == [stream.task_id], streams
    assert c3 == 0 and [t["spec"]["taskId"] for t in json.loads(later)["tasks"]] == [stream.task_id, echo.task_id]
    assert c4 == 0 and json.loads(both)["tasks"] == [], both  # created in the last week: none before it
    for (code, _, err), flag in zip(refusals, ["--state", "--since", "--until", "--kind"], strict=True):
        assert code == 2 and f"invalid argument: {flag}: " in err, (flag, err)
