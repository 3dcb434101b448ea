"""`tidemesh init`: answers (from a file, stdin or a terminal) → a manifest the loader takes back,
each derived field explained, the equivalent commands, the plan and a capacity preview; bad
answers named by key (and field), nothing written on a refusal or an abort. No mesh needed; here
with the serial tests because its terminal sessions time prompts and Ctrl-C on a pty, which a
second test process on the same cores made miss (`make test` runs tests/unit in two)."""

from __future__ import annotations

import contextlib
import io
import os
import pty
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from clients.cli._init import Aborted, ask, flags_for
from clients.cli._main import main
from clients.cli._wizard import AnswerError, slots_needed
from mesh.capacity import MMc
from mesh.manifest import API_VERSION, KIND, Manifest, read, resolve

TIDEMESH = str(Path(sys.executable).parent / "tidemesh")

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    manifest_path: Path


def run_init(folder: Path, answers: dict[str, Any] | None, *extra: str) -> Run:
    """`tidemesh init --answers FOLDER/answers.yaml -o FOLDER/tidemesh.yaml EXTRA…`, in process."""
    path = folder / "tidemesh.yaml"
    argv = ["init", "-o", str(path), *extra]
    if answers is not None:
        (folder / "answers.yaml").write_text(yaml.safe_dump(answers))
        argv += ["--answers", str(folder / "answers.yaml")]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main(argv)
    return Run(int(exited.value.code or 0), out.getvalue(), err.getvalue(), path)


def loaded(run: Run) -> Manifest:
    return resolve(read(run.manifest_path), str(run.manifest_path))


SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "interactive-dev": (
        {"environment": "dev", "workload": "interactive", "rate": 20},
        {"preset": "dev", "fsync": "interval", "nodes": 1, "pool": "ingestion", "pool_workers": 0, "gpu": False},
    ),
    "inference-prod-gpu": (
        {"environment": "prod", "workload": "inference", "rate": 800, "latency_p95": 0.5, "gpu": True},
        {"preset": "prod", "fsync": "always", "nodes": 3, "pool": "inference", "gpu": True},
    ),
    "batch-staging-crash": (
        {"environment": "staging", "workload": "batch", "rate": 5, "durability": "crash"},
        {"preset": "staging", "fsync": "always", "nodes": 1, "pool": "ingestion", "pool_workers": 0, "gpu": False},
    ),
    "streaming-advanced": (
        {
            "environment": "dev",
            "workload": "streaming",
            "rate": 50,
            "durability": "host",
            "advanced": True,
            "pool_workers": 2,
            "pool_concurrency": 8,
            "autoscale": "1:4",
            "memory_mb": 2048,
            "tenants": {"acme": 3, "globex": 0.5},
            "port": 9443,
            "cors_origins": ["https://app.example.com"],
            "jwt_secret": {"fromFile": "/run/secrets/jwt"},
            "otlp_endpoint": "http://localhost:4317",
            "trace_sampling": 0.25,
            "wait_bounds": {"interactive": 0.5},
        },
        {"preset": "dev", "fsync": "always", "nodes": 3, "pool": "post-processing", "pool_workers": 2, "gpu": False},
    ),
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Each shape's session, run once for the tests below."""
    return {name: run_init(tmp_path_factory.mktemp(name), answers) for name, (answers, _) in SHAPES.items()}


@pytest.mark.parametrize("shape", SHAPES)
def test_an_answers_file_gives_a_manifest_the_loader_takes_back(
    shapes: dict[str, Run], shape: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each shape's fields, the written file valid for `config validate`, and the report's parts in order."""
    answers, expected = SHAPES[shape]
    run = shapes[shape]
    assert run.code == 0, run.err
    m = loaded(run)
    pool = m.pools.by_name()[expected["pool"]]
    assert m.preset == expected["preset"]
    assert (m.durability.fsync, m.durability.cluster.nodes) == (expected["fsync"], expected["nodes"])
    assert m.inference.triton.enabled is expected["gpu"]
    assert m.inference.triton.devices == ("gpu" if expected["gpu"] else "auto")
    if "pool_workers" in expected:
        assert pool.workers == expected["pool_workers"]
    # Enough slots for the load: the general workers' and the pool's own.
    slots = m.pools.general.workers * m.pools.general.concurrency + pool.workers * pool.concurrency
    assert slots * 0.75 >= answers["rate"] * answers.get("service_time", 0.05), (slots, run.out)
    parts = ["derived from your answers:", "# ", "equivalent commands:", "plan: ", "capacity preview: ", "next: "]
    positions = [run.out.index(part) for part in parts]
    assert positions == sorted(positions), run.out
    assert run.out.rstrip().endswith(f"next: tidemesh config plan -f {run.manifest_path}")
    assert f"tidemesh up -f {run.manifest_path}" in run.out and "target met" in run.out, run.out
    assert not (run.manifest_path.parent / "state").exists()  # the plan was built elsewhere
    with pytest.raises(SystemExit) as validated:
        main(["config", "validate", "-f", str(run.manifest_path)])
    assert validated.value.code == 0 and ": valid (preset" in capsys.readouterr().out


def test_inference_at_a_high_rate_gets_dedicated_workers_and_raised_limits(shapes: dict[str, Run]) -> None:
    run = shapes["inference-prod-gpu"]
    m = loaded(run)
    needed = slots_needed(800, 0.1093, 0.2, 0.5)
    assert needed > 64 and m.pools.inference.workers * 32 + 64 >= needed and m.pools.inference.workers >= 2
    assert m.tenants.defaults.submits_per_second == 1200
    assert m.endpoints.public.limits.credential_submits_per_second == 1200
    assert m.classes.standard.wait_bound_seconds == pytest.approx(0.3)  # 0.5 s target less a 0.2 s step
    assert m.classes.interactive.wait_bound_seconds == 0.25  # already tighter: left alone
    assert "pools.inference.workers = " in run.out and "slots meet the p95" in run.out
    assert "past about 200/s" in run.out  # the mesh's own CPU, said


def test_the_advanced_answers_reach_their_fields(shapes: dict[str, Run]) -> None:
    m = loaded(shapes["streaming-advanced"])
    pool = m.pools.post_processing
    assert (pool.workers, pool.concurrency, pool.caps.memory_mb) == (2, 8, 2048)
    assert pool.autoscale is not None and (pool.autoscale.min, pool.autoscale.max) == (1, 4)
    assert {name: t.weight for name, t in m.tenants.named.items()} == {"acme": 3, "globex": 0.5}
    assert m.endpoints.public.port == 9443 and m.endpoints.public.cors.allow_origins == ("https://app.example.com",)
    secret = m.endpoints.public.auth.jwt_secret
    assert secret is not None and secret.from_file == "/run/secrets/jwt"
    assert m.observability.tracing.otlp_endpoint == "http://localhost:4317"
    assert m.observability.tracing.sampling_ratio == 0.25
    assert m.classes.interactive.wait_bound_seconds == 0.5


@pytest.mark.parametrize(
    ("answers", "said"),
    [
        ({"rate": "fast"}, "rate: expected a number, got 'fast'"),
        ({"rate": -3}, "rate: must be > 0"),
        ({"workload": "video"}, "workload: expected one of interactive, streaming, batch, inference, got 'video'"),
        ({"ratee": 3}, "ratee: unknown answer; did you mean rate?"),
        ({"port": 70000}, "port (endpoints.public.port): must be ≤ 65535, got 70000"),
        ({"host": "localhost"}, "host (endpoints.public.host): 'localhost' does not match"),
        ({"tenants": {"a b": 2}}, "tenants (tenants.named.a b): not a valid name"),
        ({"service_time": 0.2, "latency_p95": 0.3}, "latency_p95: must be above one step's own p95 (0.4 s)"),
        ({"advanced": False, "port": 9000}, "port is given but not asked (advanced is no)"),
        ({"gpu_memory_mb": 4096}, "gpu_memory_mb is given but not asked (it does not apply)"),
    ],
)
def test_a_bad_answer_is_named_and_nothing_is_written(tmp_path: Path, answers: dict[str, Any], said: str) -> None:
    run = run_init(tmp_path, answers)
    assert run.code == 2 and said in run.err and run.out == "", run
    assert not run.manifest_path.exists()


def test_a_secret_is_taken_only_by_reference_and_never_repeated(tmp_path: Path) -> None:
    run = run_init(tmp_path, {"jwt_secret": "hunter2-not-a-reference"})
    assert run.code == 2 and "jwt_secret: give a reference, file:PATH or env:NAME" in run.err
    assert "hunter2" not in run.err + run.out


def test_an_existing_manifest_is_kept_without_force(tmp_path: Path) -> None:
    (tmp_path / "tidemesh.yaml").write_text("mine\n")
    run = run_init(tmp_path, {})
    assert run.code == 2 and "exists: pass --force to overwrite it" in run.err
    assert run.manifest_path.read_text() == "mine\n"


def test_printed_answers_reproduce_the_session_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing answers take their defaults, said; --print-answers FILE holds them all, and
    --answers - (stdin) with --force over the first manifest gives the same file again, while
    --print-answers - leaves stdout to the answers alone (the report goes to stderr)."""
    answers = {"environment": "staging", "workload": "inference", "rate": 30, "advanced": True, "port": 9000}
    first = run_init(tmp_path, answers, "--print-answers", str(tmp_path / "again.yaml"))
    assert first.code == 0, first.err
    assert "answers not given take their defaults: service_time=0.1, latency_p95=1, durability=host" in first.err
    written = first.manifest_path.read_text()
    again = yaml.safe_load((tmp_path / "again.yaml").read_text())
    assert {k: again[k] for k in answers} == answers
    assert again["service_time"] == 0.1 and again["general_workers"] == 1 and again["pool_workers"] == 0
    first.manifest_path.write_text("to be replaced\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO((tmp_path / "again.yaml").read_text()))
    second = run_init(tmp_path, None, "--answers", "-", "--force", "--print-answers", "-")
    assert second.code == 0 and "take their defaults" not in second.err, second.err
    assert second.manifest_path.read_text() == written
    assert yaml.safe_load(second.out) == again and "next: tidemesh config plan" in second.err


def test_without_a_terminal_or_answers_it_says_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    run = run_init(tmp_path, None)
    assert run.code == 2 and "no terminal to ask on: pass --answers FILE" in run.err


def test_a_target_the_slots_cannot_meet_is_said_to_be_missed(tmp_path: Path) -> None:
    """Fewer slots than the load (the advanced answers override the sizing): the preview says so."""
    answers = {"rate": 200, "service_time": 0.2, "latency_p95": 1.0, "advanced": True, "pool_workers": 0}
    run = run_init(tmp_path, answers)
    assert run.code == 0, run.err
    assert "UNSTABLE" in run.out and "target MISSED" in run.out, run.out


def test_flags_alone_are_offered_only_where_they_run_the_same_mesh() -> None:
    header = {"apiVersion": API_VERSION, "kind": KIND}
    plain = resolve(
        {
            **header,
            "pools": {"general": {"workers": 3}, "inference": {"workers": 2, "autoscale": {"min": 1, "max": 4}}},
            "durability": {"fsync": "interval"},
            "tenants": {"named": {"acme": {"weight": 3}}},
            "inference": {"triton": {"enabled": True}},
        }
    )
    argv, unflagged = flags_for(plain)
    assert argv is not None and unflagged == []
    assert {"--workers", "3", "--fsync", "interval", "--tenant-weights", "acme=3", "--triton"} <= set(argv)
    assert "--pool-workers" in argv and "inference=2" in argv and "inference=1:4" in argv
    argv, unflagged = flags_for(resolve({**header, "preset": "dev"}))
    assert argv is None and "durability.retention.eventsHours" in unflagged


def test_sizing_meets_the_target_with_the_fewest_slots() -> None:
    slots = slots_needed(100, 0.1, 0.2, 0.5)
    assert 100 * 0.1 / slots <= 0.75
    assert MMc(100, 0.1, slots).wait_quantile_s(0.95) + 0.2 <= 0.5
    assert MMc(100, 0.1, slots - 1).wait_quantile_s(0.95) + 0.2 > 0.5 or 100 * 0.1 / (slots - 1) > 0.75


def test_prompts_re_ask_a_refused_answer_and_stop_at_end_of_input() -> None:
    typed = iter(["prod\n", "9\n", "2\n", "x\n", "15\n", "\n", "\n"])
    shown: list[str] = []
    answers: dict[str, Any] = {}
    with pytest.raises(Aborted, match="end of input"):
        ask(answers, lambda text, end="\n": shown.append(text + end), lambda: next(typed, ""))
    screen = "".join(shown)
    assert "not accepted: workload: expected one of" in screen and "not accepted: rate: expected a number" in screen
    assert answers == {"environment": "prod", "workload": "streaming", "rate": 15.0}
    assert "service_time [0.2]: " in screen  # the streaming shape's default, shown
    assert isinstance(AnswerError("k", "m"), ValueError)


# -- on a terminal ------------------------------------------------------------------------------


# Runs ARGV with the pty on fd 0 as the session's controlling terminal (so Ctrl-C is a SIGINT).
_WITH_A_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execv(sys.argv[1], sys.argv[1:])"
)


def _on_a_terminal(
    argv: list[str], script: list[tuple[str, bytes]], cwd: Path, timeout_s: float = 30
) -> tuple[int, str]:
    """`tidemesh ARGV` on a pty, its controlling terminal. For each (text, keys) of `script` in
    turn: once `text` shows, type `keys`; any other prompt (a line ending in "]: ") gets Enter,
    its default. The exit code and everything the terminal showed."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "TIDEMESH_THEME": "dark", "NO_COLOR": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", _WITH_A_TERMINAL, TIDEMESH, *argv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    shown, seen, steps = b"", 0, iter(script)
    step = next(steps, None)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if step is not None and step[0].encode() in shown[seen:]:
                seen = shown.index(step[0].encode(), seen) + len(step[0].encode())
                os.write(master, step[1])
                step = next(steps, None)
                continue
            if shown[seen:].endswith(b"]: "):
                seen = len(shown)
                os.write(master, b"\n")
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif process.poll() is not None:
                break
        assert step is None, f"never saw {step[0]!r}:\n{shown.decode(errors='replace')}"
        return process.wait(timeout=max(deadline - time.monotonic(), 1)), shown.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


def test_on_a_terminal_it_asks_re_asks_and_takes_the_advanced_branch(tmp_path: Path) -> None:
    """Choices by name and number, a refused answer asked again naming its key and field, the
    advanced branch, a secret refused unless a reference; every other question takes Enter."""
    script = [
        ("environment [dev]: ", b"prod\n"),
        ("workload [interactive]: ", b"4\n"),  # a choice by its number: inference
        ("rate [10]: ", b"lots\n"),
        ("not accepted: rate: expected a number, got 'lots'", b""),
        ("rate [10]: ", b"40\n"),
        ("latency_p95 [1]: ", b"0.8\n"),
        ("gpu [no]: ", b"yes\n"),
        ("advanced [y/N]: ", b"y\n"),
        ("port [8080]: ", b"70000\n"),
        ("not accepted: port (endpoints.public.port): must be ≤ 65535, got 70000", b""),
        ("port [8080]: ", b"9443\n"),
        ("jwt_secret [none]: ", b"swordfish\n"),
        ("not accepted: jwt_secret: give a reference", b""),
        ("jwt_secret [none]: ", b"env:MESH_JWT\n"),
    ]
    code, shown = _on_a_terminal(["init", "--print-answers", "answers.yaml"], script, tmp_path)
    assert code == 0, shown
    assert "TLS is always on" in shown and "next: tidemesh config plan -f tidemesh.yaml" in shown
    m = resolve(read(tmp_path / "tidemesh.yaml"))
    secret = m.endpoints.public.auth.jwt_secret
    assert (m.preset, m.inference.triton.devices, m.endpoints.public.port) == ("prod", "gpu", 9443)
    assert secret is not None and secret.from_env == "MESH_JWT"
    refused = next(line for line in shown.splitlines() if "not accepted: jwt_secret" in line)
    assert "swordfish" not in refused
    answers = yaml.safe_load((tmp_path / "answers.yaml").read_text())
    assert answers["rate"] == 40 and answers["workload"] == "inference" and answers["advanced"] is True
    assert "swordfish" not in (tmp_path / "answers.yaml").read_text() + (tmp_path / "tidemesh.yaml").read_text()


def test_ctrl_c_at_a_prompt_stops_and_writes_nothing(tmp_path: Path) -> None:
    code, shown = _on_a_terminal(
        ["init"], [("environment [dev]: ", b"staging\n"), ("workload [interactive]: ", b"\x03")], tmp_path
    )
    assert code == 130 and "aborted: nothing written" in shown, shown
    assert list(tmp_path.iterdir()) == []
