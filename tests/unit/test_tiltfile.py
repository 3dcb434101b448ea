"""The Tiltfile, evaluated with a shim of the Tilt builtins it uses (Tilt is not installable here).

The shim rejects Python constructs Starlark lacks, then execs the Tiltfile with fakes for
exactly the Tilt builtins it may call. ``local`` really runs its command (the real
``tidemesh plan --json``, with its state dir under tmp_path); ``local_resource`` only records,
so no mesh process is ever started.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mesh.supervisor import find_binary

REPO = Path(__file__).resolve().parents[2]
TILTFILE = REPO / "Tiltfile"
TEST_PORT = "28080"

# Python syntax with no Starlark counterpart (or none that Tilt enables).
_FORBIDDEN: tuple[type[ast.AST], ...] = (
    ast.Import,
    ast.ImportFrom,
    ast.ClassDef,
    ast.While,
    ast.Try,
    ast.TryStar,
    ast.With,
    ast.AsyncWith,
    ast.AsyncFor,
    ast.AsyncFunctionDef,
    ast.JoinedStr,
    ast.Global,
    ast.Nonlocal,
    ast.Yield,
    ast.YieldFrom,
    ast.Await,
    ast.Raise,
    ast.Assert,
    ast.Delete,
    ast.NamedExpr,
    ast.Set,
    ast.SetComp,
    ast.Match,
)

# The Starlark universe the Tiltfile may lean on besides the Tilt builtins below.
_STARLARK_UNIVERSE: dict[str, Any] = {
    name: getattr(builtins, name)
    for name in (
        "str",
        "int",
        "bool",
        "len",
        "list",
        "dict",
        "range",
        "enumerate",
        "sorted",
        "reversed",
        "zip",
        "min",
        "max",
        "any",
        "all",
        "print",
        "hasattr",
        "getattr",
        "type",
        "repr",
    )
}


class StarlarkError(Exception):
    """The Tiltfile uses Python that Starlark (as Tilt runs it) does not accept."""


def check_starlark(source: str, filename: str = "Tiltfile") -> None:
    """Raise StarlarkError on syntax Starlark lacks."""
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, _FORBIDDEN):
            raise StarlarkError(f"{where}: {type(node).__name__} is not Starlark")
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            raise StarlarkError(f"{where}: decorators are not Starlark")
        if isinstance(node, ast.Compare) and (
            len(node.ops) > 1 or any(isinstance(op, ast.Is | ast.IsNot) for op in node.ops)
        ):
            raise StarlarkError(f"{where}: chained comparisons and `is` are not Starlark")


class TiltShim:
    """Fakes for the Tilt builtins the Tiltfile uses; paths resolve against the Tiltfile's directory."""

    def __init__(self, tiltfile: Path) -> None:
        self.root = tiltfile.parent
        self.local_calls: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []

    def _path(self, path: str) -> str:
        return str(self.root / path)

    def local(
        self,
        command: str | list[str],
        quiet: bool = False,
        command_bat: str = "",
        echo_off: bool = False,
        env: dict[str, str] | None = None,
        dir: str = "",
        stdin: str | None = None,
    ) -> str:
        self.local_calls.append({"command": command, "quiet": quiet, "env": env, "dir": dir})
        run_env = {**os.environ, **(env or {})}
        done = subprocess.run(
            command,
            shell=isinstance(command, str),
            cwd=self._path(dir or "."),
            env=run_env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"local({command!r}) failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def local_resource(
        self,
        name: str,
        cmd: str | list[str] = "",
        deps: Any = None,
        trigger_mode: Any = None,
        resource_deps: list[str] | None = None,
        ignore: Any = None,
        auto_init: bool = True,
        serve_cmd: str | list[str] = "",
        cmd_bat: str = "",
        serve_cmd_bat: str = "",
        allow_parallel: bool = False,
        links: list[Any] | None = None,
        tags: Any = None,
        env: Any = None,
        serve_env: Any = None,
        readiness_probe: dict[str, Any] | None = None,
        dir: str = "",
        serve_dir: str = "",
        labels: list[str] | None = None,
    ) -> None:
        self.resources.append(
            {
                "name": name,
                "cmd": cmd,
                "serve_cmd": serve_cmd,
                "resource_deps": resource_deps or [],
                "readiness_probe": readiness_probe,
                "labels": labels or [],
                "links": links or [],
            }
        )

    @staticmethod
    def probe(
        initial_delay_secs: int = 0,
        timeout_secs: int = 1,
        period_secs: int = 10,
        success_threshold: int = 1,
        failure_threshold: int = 3,
        exec: Any = None,
        http_get: dict[str, Any] | None = None,
        tcp_socket: Any = None,
    ) -> dict[str, Any]:
        return {
            "period_secs": period_secs,
            "timeout_secs": timeout_secs,
            "http_get": http_get,
            "exec": exec,
            "tcp_socket": tcp_socket,
        }

    @staticmethod
    def http_get_action(port: int, host: str = "", scheme: str = "", path: str = "") -> dict[str, Any]:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"http_get_action: bad port {port!r}")
        return {"port": port, "host": host, "scheme": scheme, "path": path}

    @staticmethod
    def exec_action(command: list[str]) -> dict[str, Any]:
        # Tilt execs the argv directly (no shell): it must be a non-empty list of strings.
        if not isinstance(command, list) or not command or not all(isinstance(arg, str) for arg in command):
            raise ValueError(f"exec_action: command must be a non-empty list of strings, got {command!r}")
        return {"command": command}

    def namespace(self) -> dict[str, Any]:
        tilt_os = SimpleNamespace(
            getenv=lambda key, default=None: os.environ.get(key, default),
            path=SimpleNamespace(
                exists=lambda p: Path(self._path(p)).exists(), abspath=lambda p: os.path.normpath(self._path(p))
            ),
        )
        return {
            "__builtins__": dict(_STARLARK_UNIVERSE),
            "local": self.local,
            "decode_json": lambda text: json.loads(str(text)),
            "local_resource": self.local_resource,
            "probe": self.probe,
            "http_get_action": self.http_get_action,
            "exec_action": self.exec_action,
            "os": tilt_os,
        }

    def run(self, source: str) -> None:
        check_starlark(source, str(TILTFILE))
        exec(compile(source, str(TILTFILE), "exec"), self.namespace())


def _tidemesh() -> str:
    """The installed `tidemesh` (a missing one fails the test: `make test` installs it)."""
    return find_binary("tidemesh")


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "state"
    monkeypatch.setenv("TIDEMESH_PORT", TEST_PORT)
    monkeypatch.setenv("TIDEMESH_STATE_DIR", str(state))
    monkeypatch.delenv("TIDEMESH_WORKERS", raising=False)
    return state


def _plan(state: Path) -> dict[str, Any]:
    done = subprocess.run(
        [_tidemesh(), "plan", "--json", "--state-dir", str(state), "--port", TEST_PORT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    plan: dict[str, Any] = json.loads(done.stdout)
    return plan


def _evaluate() -> TiltShim:
    shim = TiltShim(TILTFILE)
    shim.run(TILTFILE.read_text(encoding="utf-8"))
    return shim


def test_resources_match_the_plan(state_dir: Path) -> None:
    """Each plan process becomes a local_resource with its command, deps and `tidemesh probe` readiness, in order."""
    shim = _evaluate()
    assert (state_dir / "envoy.yaml").exists()  # the Tiltfile's plan run rendered into tmp_path
    plan = _plan(state_dir)
    assert plan["state_dir"] == str(state_dir.resolve())
    assert plan["secure"] is True  # the default: health endpoints Tilt's http_get cannot reach

    assert [r["name"] for r in shim.resources] == [p["name"] for p in plan["processes"]]
    for resource, process in zip(shim.resources, plan["processes"], strict=True):
        assert resource["serve_cmd"] == process["command"]
        assert resource["cmd"] == ""
        assert resource["resource_deps"] == process["depends_on"]
        readiness = resource["readiness_probe"]
        assert readiness["http_get"] is None and readiness["tcp_socket"] is None
        command = readiness["exec"]["command"]
        assert Path(command[0]).name == "tidemesh"
        assert command[1:] == ["probe", process["name"], "--state-dir", plan["state_dir"]]
        role = {"nats": "broker", "envoy": "edge"}.get(process["name"], "services")
        assert resource["labels"] == [role]
    envoy = next(r for r in shim.resources if r["name"] == "envoy")
    assert envoy["links"] == [f"https://127.0.0.1:{TEST_PORT}"]


def test_readiness_command_runs_and_fails_while_nothing_is_up(state_dir: Path) -> None:
    """Each readiness argv is a valid `tidemesh probe` call: it exits 1 (not a usage error) when nothing runs."""
    shim = _evaluate()
    probes: dict[str, subprocess.Popen[str]] = {}
    try:
        for resource in shim.resources:  # all at once: each is a start of the CLI
            command = resource["readiness_probe"]["exec"]["command"]
            probes[resource["name"]] = subprocess.Popen(
                command, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        for name, probe in probes.items():
            _, stderr = probe.communicate(timeout=30)
            assert probe.returncode == 1, (name, probe.returncode, stderr)
    finally:
        for probe in probes.values():
            if probe.poll() is None:
                probe.kill()
                probe.wait()


@pytest.mark.parametrize(
    "snippet",
    [
        "import os\n",
        "from json import loads\n",
        "x = f'{1}'\n",
        "while True:\n    pass\n",
        "class Foo:\n    pass\n",
    ],
)
def test_shim_rejects_non_starlark(snippet: str) -> None:
    """A Tiltfile with an import (or other non-Starlark syntax) fails before anything runs."""
    shim = TiltShim(TILTFILE)
    with pytest.raises(StarlarkError):
        shim.run(snippet + TILTFILE.read_text(encoding="utf-8"))
    assert shim.local_calls == []
    assert shim.resources == []


def test_tiltfile_calls_local_once(state_dir: Path) -> None:
    """The Tiltfile runs `tidemesh plan --json` exactly once, quietly, and nothing else."""
    shim = _evaluate()
    assert len(shim.local_calls) == 1
    call = shim.local_calls[0]
    assert call["quiet"] is True
    command = call["command"]
    assert isinstance(command, list)
    assert Path(command[0]).name == "tidemesh"
    assert command[1:3] == ["plan", "--json"]
    assert command[command.index("--state-dir") + 1] == str(state_dir)
    assert command[command.index("--port") + 1] == TEST_PORT
