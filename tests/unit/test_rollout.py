"""Applying a change (mesh.supervisor._rollout, _gate; clients.cli._plan): the steps two process
tables take, what cannot change in place, the health gate's findings, masked secrets in a plan."""

from __future__ import annotations

from pathlib import Path

from clients.cli._plan import MASK, masked_changes
from mesh.manifest import API_VERSION, KIND, resolve
from mesh.supervisor import build_plan
from mesh.supervisor._gate import GateLimits, Sample, judge, parse
from mesh.supervisor._rollout import rollout


def test_a_rebuilt_plan_with_the_running_ports_changes_nothing(tmp_path: Path) -> None:
    running = build_plan(tmp_path, public_port=0, gateways=2)
    again = build_plan(tmp_path, public_port=0, gateways=2, reuse_ports=running.ports())
    assert again.processes == running.processes
    assert rollout(running, again).steps == () and rollout(running, again).refused == ()


def test_steps_restart_what_changed_start_what_is_new_stop_what_went_and_envoy_goes_last(tmp_path: Path) -> None:
    running = build_plan(tmp_path, public_port=0, workers=2)
    changed = build_plan(
        tmp_path, public_port=0, workers=1, worker_concurrency=8, cors_allow_origins=("https://a.example",),
        pool_workers={"inference": 1}, reuse_ports=running.ports(),
    )  # fmt: skip
    steps = [(s.action, s.name) for s in rollout(running, changed).steps]
    # the gateway relays to the session hosts (worker-2 leaves); Envoy's CORS is in its config file
    assert steps == [
        ("restart", "worker-1"),
        ("start", "worker-inference-1"),
        ("restart", "gateway"),
        ("restart", "envoy"),
        ("stop", "worker-2"),
    ]
    assert "drain" in rollout(running, changed).steps[0].cost


def test_the_broker_and_security_cannot_change_in_place(tmp_path: Path) -> None:
    running = build_plan(tmp_path, public_port=0)
    fsync = build_plan(tmp_path, public_port=0, fsync="interval", reuse_ports=running.ports())
    found = rollout(running, fsync)
    assert found.refused and "broker (nats" in found.refused[0] and "tidemesh up" in found.refused[0]
    assert rollout(running, fsync).digest != rollout(running, running).digest


def sample(pid: int, attempts: float, failures: float, waits: dict[str, dict[float, float]] | None = None) -> Sample:
    return Sample(pid, attempts, failures, waits or {})


def test_the_gate_trips_on_an_error_rate_the_mesh_did_not_have() -> None:
    limits = GateLimits()
    baseline = {"worker-1": sample(1, 100, 1)}
    start = {"worker-1": sample(2, 0, 0)}  # restarted by the rollout: its counters start again
    assert judge(baseline, start, {"worker-1": sample(2, 50, 3)}, limits) is None  # 3 < min_failures
    finding = judge(baseline, start, {"worker-1": sample(2, 20, 10)}, limits)
    assert finding is not None and "10 of 20 step attempts failed" in finding
    noisy = {"worker-1": sample(1, 100, 60)}  # it was failing this much before: not the change's doing
    assert judge(noisy, start, {"worker-1": sample(2, 20, 10)}, limits) is None


def test_the_gate_trips_on_a_queue_wait_past_its_bound() -> None:
    limits = GateLimits(min_waits=10)
    inf = float("inf")
    fast = {0.1: 100.0, 1.0: 100.0, 10.0: 100.0, inf: 100.0}
    slow = {0.1: 10.0, 1.0: 20.0, 10.0: 100.0, inf: 100.0}
    baseline = {"w": sample(1, 0, 0, {"standard": fast})}
    start = {"w": sample(1, 0, 0, {"standard": fast})}
    now = {"w": sample(1, 0, 0, {"standard": {le: fast[le] + slow[le] for le in fast}})}
    finding = judge(baseline, start, now, limits)
    assert finding is not None and "standard p95 ≤ 10 s" in finding


def test_metrics_text_is_read_into_a_sample() -> None:
    text = (
        'tidemesh_step_duration_seconds_count{kind="echo",step="echo",pool="ingestion"} 7\n'
        'tidemesh_step_errors_total{kind="echo",step="echo",pool="ingestion",error_class="x"} 2\n'
        'tidemesh_queue_wait_seconds_bucket{pool="ingestion",priority_class="batch",le="0.5"} 3\n'
        'tidemesh_queue_wait_seconds_bucket{pool="ingestion",priority_class="batch",le="+Inf"} 4\n'
    )
    found = parse(text, 9)
    assert (found.attempts, found.failures) == (7, 2) and found.waits == {"batch": {0.5: 3, float("inf"): 4}}


def test_a_plan_masks_secret_references() -> None:
    head = {"apiVersion": API_VERSION, "kind": KIND}
    before = resolve(head, "t")
    after = resolve({**head, "endpoints": {"public": {"auth": {"jwtSecret": {"fromFile": "/run/s/jwt"}}}}}, "t")
    (change,) = masked_changes(before, after)
    assert change["path"].startswith("endpoints.public.auth.jwtSecret") and change["masked"]
    assert change["after"] == MASK and "/run/s/jwt" not in str(change)
