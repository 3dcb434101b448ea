"""Changing a running mesh (issue 18): `tidemesh config plan` against the live revision, `apply`
behind the health gate, a bad change rolled back by itself, a stale plan refused, Ctrl-C rolling
back, `history`, `rollback` — on a mesh `tidemesh up -f` started, secure and with auth on."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from clients.sdk import Client
from mesh.supervisor import admin_key

pytestmark = pytest.mark.integration

TIDEMESH = str(Path(sys.executable).parent / "tidemesh")


async def _cli(*args: str, timeout_s: float = 120) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        TIDEMESH, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    return process.returncode or 0, out.decode(), err.decode()


async def _read_until(stream: asyncio.StreamReader, marker: str, timeout_s: float = 90) -> str:
    lines: list[str] = []
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"ended before {marker!r}:\n" + "".join(lines))
            lines.append(raw.decode())
            if marker in lines[-1]:
                return "".join(lines)


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _manifest(path: Path, state: Path, **general: object) -> Path:
    document = {
        "apiVersion": "tidemesh.dev/v1alpha1",
        "kind": "Mesh",
        "stateDir": str(state),
        "endpoints": {"public": {"port": 0}},
        "pools": {"general": {"concurrency": 8, **general}},
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


async def test_plan_apply_gate_rollback_history_on_a_running_mesh(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = _manifest(tmp_path / "tidemesh.yaml", state)
    process = await asyncio.create_subprocess_exec(
        TIDEMESH, "up", "-f", str(first), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    try:
        booted = await _read_until(process.stdout, "Ctrl-C to stop.")
        assert "TLS: on" in booted and "auth: on" in booted, booted
        endpoint = next(line.rsplit(" ", 1)[1] for line in booted.splitlines() if "public endpoint" in line)
        at = ("--endpoint", endpoint, "--state-dir", str(state))

        def plan_file(name: str) -> str:
            return str(tmp_path / name)

        # The live revision is what `up` started from; planning it again changes nothing (exit 0).
        code, out, err = await _cli("config", "history", *at, "-o", "json")
        assert code == 0, err
        assert [(r["revision"], r["state"], r["source"]) for r in json.loads(out)] == [(1, "applied", "up")]
        code, out, err = await _cli("config", "plan", "-f", str(first), *at, "--out", plan_file("same.json"))
        assert code == 0 and "no change" in out, (out, err)

        # Some load the mesh measures, for the plan's simulation.
        credential, ca = admin_key(state), str(state / "pki" / "ca.crt")
        async with Client(endpoint, tenant="acme", credential=credential, ca=ca) as client:

            async def one(index: int) -> None:
                async for _ in client.run("echo", {"text": f"t{index}"}):
                    pass

            await asyncio.gather(*(one(i) for i in range(12)))

        # A change: exit 2, the diff and the step with its cost, simulated now and after; applied
        # behind the gate.
        good = _manifest(tmp_path / "good.yaml", state, concurrency=4)
        code, out, err = await _cli("config", "plan", "-f", str(good), *at, "--out", plan_file("good.json"))
        assert code == 2, (out, err)
        assert "pools.general.concurrency: 8 → 4" in out and "restart  worker-1" in out, out
        assert "simulation (queue wait p50 / p95" in out and "ingestion/standard at" in out, out
        plan = _json(tmp_path / "good.json")
        (row,) = plan["simulation"]
        assert row["pool"] == "ingestion" and (row["now"]["slots"], row["after"]["slots"]) == (8, 4)
        assert plan["base"]["revision"] == 1 and [s["component"] for s in plan["steps"]] == ["worker-1"]
        code, out, err = await _cli("config", "apply", plan_file("good.json"), "--bake", "2", *at)
        assert code == 0 and "applied      revision 2 is live" in out, (out, err)
        running = _json(state / "plan.json")
        worker = next(p for p in running["processes"] if p["name"] == "worker-1")
        assert worker["command"][worker["command"].index("--concurrency") + 1] == "4"
        code, out, err = await _cli("config", "export", "--state-dir", str(state))
        assert code == 0 and yaml.safe_load(out)["pools"]["general"]["concurrency"] == 4, (out, err)

        # The same plan again: the mesh moved on since it was made — refused, nothing touched.
        code, out, err = await _cli("config", "apply", plan_file("good.json"), "--bake", "2", *at)
        assert code == 1 and "plan again" in err, (out, err)

        # A bad change trips the health gate (the worker cannot live under 64 MiB) and rolls back.
        bad = _manifest(tmp_path / "bad.yaml", state, concurrency=4, caps={"memoryMb": 64})
        code, out, err = await _cli("config", "plan", "-f", str(bad), *at, "--out", plan_file("bad.json"))
        assert code == 2, (out, err)
        code, out, err = await _cli("config", "apply", plan_file("bad.json"), "--bake", "20", *at)
        assert code == 1 and "rolled-back" in out and "worker-1" in out, (out, err)
        running = _json(state / "plan.json")
        assert next(p for p in running["processes"] if p["name"] == "worker-1")["memory_cap_mb"] == 0

        # An enforced policy of the manifest's own blocks a change at plan and at apply.
        rule = {"name": "small-workers", "expression": "manifest.pools.general.concurrency <= 6", "mode": "enforce"}
        blocked = _manifest(tmp_path / "blocked.yaml", state, concurrency=7)
        document = yaml.safe_load(blocked.read_text())
        blocked.write_text(yaml.safe_dump({**document, "policies": {"rules": [rule]}}))
        code, out, err = await _cli("config", "plan", "-f", str(blocked), *at, "--out", plan_file("blocked.json"))
        assert code == 1 and "policy small-workers (enforce" in out and "blocked:" in out, (out, err)
        code, out, err = await _cli("config", "apply", plan_file("blocked.json"), "--bake", "2", *at)
        assert code == 1 and "enforced policies block this change: small-workers" in err, (out, err)
        code, out, err = await _cli("config", "history", *at, "-o", "json")
        assert json.loads(out)[0]["revision"] == 3, out  # refused before any revision was made

        # Ctrl-C during the bake rolls the change back too.
        slow = _manifest(tmp_path / "slow.yaml", state, concurrency=6)
        code, out, err = await _cli("config", "plan", "-f", str(slow), *at, "--out", plan_file("slow.json"))
        assert code == 2, (out, err)
        applying = await asyncio.create_subprocess_exec(
            TIDEMESH, "config", "apply", plan_file("slow.json"), "--bake", "60", *at,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert applying.stdout is not None
        await _read_until(applying.stdout, "bake")
        applying.send_signal(signal.SIGINT)
        await asyncio.wait_for(applying.wait(), 30)

        async def settled() -> list[dict[str, object]]:
            while True:
                code, out, err = await _cli("config", "history", *at, "-o", "json")
                assert code == 0, err
                found = json.loads(out)
                if found[0]["state"] != "applying":
                    return list(found)
                await asyncio.sleep(0.2)

        history = await asyncio.wait_for(settled(), 60)
        assert [(r["revision"], r["state"]) for r in history] == [
            (4, "rolled-back"),
            (3, "rolled-back"),
            (2, "applied"),
            (1, "superseded"),
        ]
        assert "interrupted" in str(history[0]["reason"]) and "health: worker-1" in str(history[1]["reason"])

        # Roll back to what `up` started from: planned and gated like any change.
        code, out, err = await _cli("config", "rollback", "1", "--bake", "2", *at)
        assert code == 0 and "concurrency: 4 → 8" in out and "revision 5 is live" in out, (out, err)
        code, out, err = await _cli("config", "history", *at, "-o", "json")
        assert [(r["revision"], r["state"], r["source"]) for r in json.loads(out)][:2] == [
            (5, "applied", "rollback"),
            (4, "rolled-back", "apply"),
        ]
        # Every apply is in the audit, with its outcome.
        code, out, err = await _cli("audit", "list", "--action", "config.apply", *at, "-o", "json")
        assert code == 0, err
        records = json.loads(out)
        outcomes = [r["outcome"] for r in records]
        # failed: the stale plan (refused by the supervisor), the bad change and the interrupted one (rolled back)
        assert outcomes.count("succeeded") == 2 and outcomes.count("failed") == 3, outcomes
        refused = [r for r in records if r["outcome"] == "refused"]
        assert [r["policy_ids"] for r in refused] == [["small-workers"]], refused
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
