"""The textpipe example's README, run as a newcomer types it.

Every ```sh block of `examples/textpipe/README.md` is marked `<!-- test: NAME -->` (or
`<!-- test: NAME background -->` for a command the README runs in a terminal of its own). The test
runs them in the README's order with bash from the repository root, each after the `env` block (as
every terminal starts), against the mesh of the README's `tidemesh up` with `--port 0` and a state
dir of its own. It changes no command: it only sets the two variables the README itself reads,
TIDEMESH_STATE_DIR and TIDEMESH_ENDPOINT (and TMPDIR, so `mktemp` stays inside the test's folder).
A background block runs in its own process group and is stopped as Ctrl-C stops it: SIGINT to the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.node_env import ensure_node_worker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "examples" / "textpipe" / "README.md"
MARKED_BLOCK = re.compile(
    r"<!-- test: (?P<name>[\w-]+)(?P<background> background)? -->\n```sh\n(?P<script>.*?)```", re.S
)
# The README's steps in its order; a block added to it without a place here fails the test.
STEPS = [
    "env",
    "mesh",
    "register",
    "worker-key",
    "python-worker",
    "node-install",
    "node-worker",
    "kinds",
    "submit-cli",
    "submit-curl",
    "submit-node",
    "schema-check",
]
BACKGROUND = {"mesh", "python-worker", "node-worker"}
STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class Block:
    name: str
    script: str
    background: bool


def readme_blocks() -> dict[str, Block]:
    """The README's marked shell blocks by name; every ```sh block must be marked."""
    text = README.read_text()
    blocks = [Block(m["name"], m["script"], bool(m["background"])) for m in MARKED_BLOCK.finditer(text)]
    assert len(blocks) == text.count("```sh"), "every ```sh block of the README is marked <!-- test: NAME -->"
    assert [b.name for b in blocks] == STEPS, "the README's steps changed: update STEPS and the test"
    assert {b.name for b in blocks if b.background} == BACKGROUND
    return {b.name: b for b in blocks}


def without_comments(script: str) -> str:
    return "\n".join(line.split("  #")[0].strip() for line in script.strip().splitlines())


class Terminal:
    """A README block running in a terminal of its own: its own process group, output in a file."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: Path) -> None:
        self.name, self.process, self.log = name, process, log

    @classmethod
    async def open(cls, name: str, script: str, env: dict[str, str], folder: Path) -> Terminal:
        log = folder / f"{name}.out"
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                "bash", "-c", script, cwd=ROOT, env=env, stdout=sink, stderr=sink, start_new_session=True
            )
        return cls(name, process, log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for(self, pattern: str, timeout_s: float = 60.0) -> re.Match[str]:
        """The first match of `pattern` in the output; fails at once if the process ended first."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        delay = 0.01
        while not (match := re.search(pattern, self.output())):
            if self.process.returncode is not None:
                raise AssertionError(f"{self.name} exited ({self.process.returncode}):\n{self.output()}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.name}: no {pattern!r} within {timeout_s}s:\n{self.output()}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        return match

    async def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the process group; its exit code (SIGKILL and a failure past the grace)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
        try:
            return await asyncio.wait_for(self.process.wait(), STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
            raise AssertionError(
                f"{self.name} did not stop on Ctrl-C within {STOP_GRACE_S}s:\n{self.output()}"
            ) from None


@contextlib.asynccontextmanager
async def terminals() -> AsyncIterator[list[Terminal]]:
    """Background terminals, each stopped (last opened first) when the block ends, however it ends."""
    opened: list[Terminal] = []
    try:
        yield opened
    finally:
        for terminal in reversed(opened):
            with contextlib.suppress(AssertionError):
                await terminal.interrupt()


async def run_block(script: str, env: dict[str, str], timeout_s: float = 60.0) -> tuple[int, str]:
    """A foreground README block in bash: (exit code, stdout and stderr together)."""
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise AssertionError(f"a README block ran past {timeout_s}s:\n{script}") from None
    return process.returncode or 0, out.decode(errors="replace")


async def test_the_textpipe_readme_runs_as_written(tmp_path: Path) -> None:
    """The textpipe README's commands, run in order against `tidemesh up`, give the results it shows."""
    blocks = readme_blocks()
    has_node = shutil.which("node") is not None
    if has_node:
        await asyncio.to_thread(ensure_node_worker)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEMESH_")}
    env |= {"TIDEMESH_STATE_DIR": str(tmp_path / "state"), "TMPDIR": str(tmp_path)}

    def terminal_script(name: str, extra: str = "") -> str:
        return f"set -eo pipefail\n{blocks['env'].script}\n{blocks[name].script.rstrip()}{extra}\n"

    async def step(name: str, timeout_s: float = 60.0) -> tuple[int, str]:
        return await run_block(terminal_script(name), env, timeout_s)

    async with terminals() as opened:
        assert blocks["mesh"].script.strip() == "tidemesh up"
        mesh = await Terminal.open("mesh", terminal_script("mesh", " --port 0"), env, tmp_path)
        opened.append(mesh)
        await mesh.wait_for(r"Ctrl-C to stop\.")
        env["TIDEMESH_ENDPOINT"] = (await mesh.wait_for(r"public endpoint .*: (\S+)"))[1]

        code, out = await step("register")
        assert code == 0, out
        assert "textpipe.v1.CountRequest version 1" in out and "textpipe.v1.CountResult version 1" in out, out
        assert "kind textpipe.count: registered" in out, out

        code, out = await step("worker-key")
        assert code == 0, out
        assert (Path(env["TIDEMESH_STATE_DIR"]) / "worker.key").read_text().startswith("tmk_"), out

        python_worker = await Terminal.open("python-worker", terminal_script("python-worker"), env, tmp_path)
        opened.append(python_worker)
        await python_worker.wait_for(r"attached as textpipe-python")

        assert without_comments(blocks["node-install"].script) == "(cd clients/node && npm ci)"
        if has_node:  # ensure_node_worker() did the README's `npm ci`, once per lock file for every test
            node_worker = await Terminal.open("node-worker", terminal_script("node-worker"), env, tmp_path)
            opened.append(node_worker)
            await node_worker.wait_for(r'"msg":"attached"')

        expected = ["worker textpipe-python ("] + (["worker textpipe-node-"] if has_node else [])
        deadline = asyncio.get_running_loop().time() + 30.0
        while True:  # the listing follows the attached sessions mesh-wide: poll until both show
            code, kinds = await step("kinds")
            if code == 0 and all(line in kinds for line in expected):
                break
            assert asyncio.get_running_loop().time() < deadline, f"`tidemesh kinds` never listed {expected}:\n{kinds}"
        assert re.search(r"textpipe\.count +user +textpipe\.v1\.CountRequest → textpipe\.v1\.CountResult", kinds), kinds

        code, out = await step("submit-cli")
        assert code == 0, out
        for partial in ('{"lines":1,"words":3,"top":[]}', '{"lines":2,"words":6,"top":[]}'):
            assert partial in out, out
        final = out.strip().splitlines()[-1]
        assert "SUCCEEDED" in final and "(final)" in final, out
        assert '{"lines":3,"words":8,"top":[{"word":"the","count":3},{"word":"sat","count":2}]}' in final, out

        code, out = await step("submit-curl")
        assert code == 0, out
        events = [json.loads(line[len("data: ") :]) for line in out.splitlines() if line.startswith("data: {")]
        task_events = [e for e in events if "state" in e]
        partials = [e["output"]["custom"]["lines"] for e in task_events[:-1] if "output" in e]
        assert partials == [1, 2], out
        assert task_events[-1]["state"] == "TASK_STATE_SUCCEEDED" and task_events[-1]["final"], out
        assert task_events[-1]["output"]["custom"] == {
            "@type": "type.googleapis.com/textpipe.v1.CountResult",
            "lines": 2,
            "words": 8,
            "top": [{"word": "fish", "count": 4}],
        }, out
        assert task_events[0]["spec"]["tenant"] == "demo", out

        assert await python_worker.interrupt() == 0, python_worker.output()

        if has_node:
            code, out = await step("submit-node")
            assert code == 0, out
            result = json.loads(out.strip().splitlines()[-1])
            assert result["state"] == "TASK_STATE_SUCCEEDED" and result["workerId"].startswith("textpipe-node-"), out
            assert result["output"]["custom"]["top"] == [
                {"word": "counts", "count": 1},
                {"word": "node", "count": 1},
                {"word": "too", "count": 1},
            ], out

        code, out = await step("schema-check")
        assert code == 1, out
        assert "textpipe.v1.CountRequest: compatible (backward)" in out, out
        assert "textpipe.v1.CountRequest: NOT backward-compatible (1 violations):" in out, out
        assert re.search(r"FIELD_SAME_TYPE textpipe\.v1\.CountRequest\.top: field 2 is uint32 .*, string", out), out

        for terminal in reversed(opened):
            assert await terminal.interrupt() == 0, terminal.output()
        assert "stopped: no child process left." in mesh.output(), mesh.output()
    if not has_node:
        pytest.skip("node is not installed: the README's Node worker steps did not run (the Python ones passed)")
