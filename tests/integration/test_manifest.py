"""The manifest on real meshes: `tidemesh config export` reads what the shared mesh runs, and
export → `tidemesh up -f` → export gives the same document back."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
import yaml

from mesh.manifest import merge
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

TIDEMESH = str(Path(sys.executable).parent / "tidemesh")


async def _cli(*args: str) -> tuple[int, str, str]:
    """`tidemesh ARGS` as a user runs it: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        TIDEMESH, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, out.decode(), err.decode()


async def _read_until(stream: asyncio.StreamReader, marker: str, timeout_s: float = 60) -> str:
    lines: list[str] = []
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError("tidemesh up exited early:\n" + "".join(lines))
            lines.append(raw.decode())
            if marker in lines[-1]:
                return "".join(lines)


async def test_export_up_f_export_round_trips_on_real_meshes(mesh: Mesh, tmp_path: Path) -> None:
    """Export the shared mesh (read from its process table: it was not started by `up`), boot the
    same manifest elsewhere with `up -f`, export that one: the very document that was applied."""
    code, out, err = await _cli("config", "export", "--state-dir", mesh.plan.state_dir)
    assert code == 0, err
    exported = yaml.safe_load(out)
    assert "no manifest was recorded for this mesh" in err
    # the shared fixture's own settings, as its processes run them
    assert exported["pools"]["general"]["sessionResumeSeconds"] == 4.0
    assert exported["durability"]["ackWaitSeconds"] == 5.0
    assert exported["endpoints"]["public"]["auth"]["required"] is False
    assert exported["endpoints"]["public"]["port"] == mesh.plan.public_port
    assert exported["stateDir"] == mesh.plan.state_dir

    # The same mesh in a state dir of its own, on free ports (the shared one holds its port).
    state = tmp_path / "state"
    document = merge(exported, {"stateDir": str(state), "endpoints": {"public": {"port": 0}}})
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    file = tmp_path / "tidemesh.yaml"
    file.write_text(text)
    code, out, err = await _cli("config", "validate", "-f", str(file))
    assert code == 0 and out.startswith(f"{file}: valid"), err
    process = await asyncio.create_subprocess_exec(
        TIDEMESH, "up", "-f", str(file), "-v", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    try:
        booted = await _read_until(process.stdout, "Ctrl-C to stop.")
        assert f"manifest: {file}" in booted and "auth: OFF" in booted, booted
        code, again, err = await _cli("config", "export", "--state-dir", str(state))
        assert code == 0, err
        assert again == text  # identical, byte for byte
        assert "the mesh runs" not in err and "no manifest was recorded" not in err, err
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    code, out, err = await _cli("config", "export", "--state-dir", str(state))
    assert code == 4 and out == "" and "is not running" in err, err
