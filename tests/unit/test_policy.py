"""The policy engine: each built-in rule held and violated, the modes per environment and their
overrides, rules of the manifest's own (checked when it is read), live figures, the verdicts'
shape, the continuous watch over a fake link, and `tidemesh config policy`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from clients.cli._main import main
from mesh.manifest import PRESETS, Manifest, ManifestError, merge, resolve
from mesh.policy import BUILTIN, BUILTIN_BY_NAME, PolicyWatch, WatchState, alert_subject, evaluate, rules_of
from mesh.policy._live import worker_memory
from mesh.security._nats import _matches_any, permissions
from mesh.telemetry import Metrics

HEADER = {"apiVersion": "tidemesh.dev/v1alpha1", "kind": "Mesh"}
KIND = {"inputType": "acme.v1.In", "outputType": "acme.v1.Out", "steps": [{"name": "s1"}, {"name": "s2"}]}


def manifest(preset: str | None = "prod", **sections: Any) -> Manifest:
    document: dict[str, Any] = {**HEADER, **sections}
    if preset is not None:
        document["preset"] = preset
    return resolve(document)


def violated(m: Manifest, live: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """rule → the paths where it is violated."""
    found: dict[str, list[str]] = {}
    for v in evaluate(m, live=live).violations:
        found.setdefault(v.rule, []).append(v.path)
    return found


# -- the built-in rules: each held, and violated at its path -----------------------------------------

BUILTIN_CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[str], str]] = [
    (
        "max-retries",
        {"kinds": {"acme.resize": {**KIND, "maxAttempts": 11, "steps": [{"name": "s1", "maxAttempts": 11}]}}},
        {"kinds": {"acme.resize": {**KIND, "maxAttempts": 12}, "acme.ok": KIND}},
        ['kinds["acme.resize"]'],
        "kind acme.resize retries each step up to 11 times",
    ),
    (
        "max-retries",
        {},
        {"kinds": {"acme.resize": {**KIND, "steps": [{"name": "s1"}, {"name": "s2", "maxAttempts": 30}]}}},
        ['kinds["acme.resize"]'],
        "has a step retried up to 29 times",
    ),
    (
        "tls-outside-dev",
        {"experiments": {"insecure": False}},
        {"experiments": {"insecure": True}},
        ["experiments.insecure"],
        "experiments.insecure is true",
    ),
    (
        "tenant-quota",
        {"tenants": {"named": {"a": {"maxQueued": 10}, "b": {"maxConcurrency": 2}, "c": {"submitsPerSecond": 5}}}},
        {"tenants": {"named": {"a": {"maxQueued": 10}, "acme": {"weight": 3}}}},
        ["tenants.named.acme"],
        "tenant acme has no quota or limit of its own",
    ),
    (
        "allowed-kinds-known",
        {"tenants": {"named": {"a": {"maxQueued": 9, "allowedKinds": ["echo", "acme.resize"]}}}, "kinds": {}},
        {"tenants": {"named": {"a": {"maxQueued": 9, "allowedKinds": ["echo", "ecoh"]}}}},
        ["tenants.named.a"],
        "tenant a is allowed a kind the mesh does not run: ecoh",
    ),
    (
        "kind-pool-bindings",
        {"kinds": {"acme.resize": KIND}, "pools": {"general": {"workers": 1}}},
        {"kinds": {"acme.resize": KIND}, "pools": {"general": {"workers": 0}}},
        ['kinds["acme.resize"]'],
        "only general workers host, and pools.general.workers is 0",
    ),
    (
        "gpu-caps",
        {
            "inference": {"triton": {"enabled": True, "devices": "gpu"}},
            "pools": {"inference": {"caps": {"gpuMemoryMb": 4096}}},
        },
        {"inference": {"triton": {"enabled": True, "devices": "auto"}}},
        ["pools.inference"],
        "pool inference uses a GPU and no GPU-memory cap applies",
    ),
    (
        "gpu-caps",
        {
            "kinds": {"acme.gpu": {**KIND, "labels": {"gpu": "a100"}}},
            "pools": {"general": {"caps": {"gpuMemoryMb": 8000}}},
        },
        {"kinds": {"acme.gpu": {**KIND, "labels": {"gpu": "a100"}}}},
        ["pools.general"],
        "pool general uses a GPU",
    ),
    (
        "durability-replicas",
        {"durability": {"cluster": {"nodes": 3}}},
        {"durability": {"cluster": {"nodes": 1}}},
        ["durability.cluster.nodes"],
        "durability.cluster.nodes is 1",
    ),
]


@pytest.mark.parametrize(("rule", "holds", "breaks", "paths", "said"), BUILTIN_CASES)
def test_each_built_in_rule_holds_and_is_violated_at_its_path(
    rule: str, holds: dict[str, Any], breaks: dict[str, Any], paths: list[str], said: str
) -> None:
    """In prod (where every built-in rule is on): the holding manifest leaves the rule silent, the
    breaking one is violated exactly where, with its message, remediation and runbook section."""
    if rule == "allowed-kinds-known":
        holds = merge(holds, {"kinds": {"acme.resize": KIND}})
    assert rule not in violated(manifest(**holds))
    verdicts = evaluate(manifest(**breaks))
    found = [v for v in verdicts.violations if v.rule == rule]
    assert [v.path for v in found] == paths
    assert said in found[0].message
    assert found[0].remediation and found[0].runbook == f"docs/runbooks/policies.md#{rule}"
    assert found[0].mode == "enforce" and found[0].severity == BUILTIN_BY_NAME[rule].severity


def test_every_built_in_rule_has_a_case_a_runbook_section_and_a_summary() -> None:
    runbook = (Path(__file__).resolve().parents[2] / "docs" / "runbooks" / "policies.md").read_text()
    assert {case[0] for case in BUILTIN_CASES} == set(BUILTIN_BY_NAME)
    for rule in BUILTIN:
        assert f"\n## {rule.name}\n" in runbook, rule.name
        assert rule.summary and rule.remediation


@pytest.mark.parametrize("preset", [None, *PRESETS])
def test_every_preset_passes_every_built_in_rule(preset: str | None) -> None:
    """The presets' own choices are within the rules (no named tenant, no kind: nothing to check there)."""
    assert evaluate(manifest(preset)).violations == ()


# -- modes ----------------------------------------------------------------------------------------


def test_environment_defaults_and_the_policies_mode_ceiling() -> None:
    """No preset is dev; dev leaves TLS and replicas off and audits the rest; staging warns (its
    policies.mode), prod enforces; a built-in never runs above policies.mode."""
    modes = {env: dict((r.name, m) for r, m in rules_of(manifest(env))) for env in (None, "dev", "staging", "prod")}
    assert modes[None] == modes["dev"]
    assert "tls-outside-dev" not in modes["dev"] and "durability-replicas" not in modes["dev"]
    assert set(modes["dev"].values()) == {"audit"}
    assert modes["staging"]["tls-outside-dev"] == "warn" and modes["staging"]["durability-replicas"] == "audit"
    assert set(modes["prod"].values()) == {"enforce"}
    warned = dict((r.name, m) for r, m in rules_of(manifest("prod", policies={"mode": "warn"})))
    assert set(warned.values()) == {"warn"}
    insecure = {"experiments": {"insecure": True}}
    assert "tls-outside-dev" not in violated(manifest("dev", **insecure))
    assert violated(manifest("staging", **insecure))["tls-outside-dev"] == ["experiments.insecure"]


def test_overrides_set_a_built_in_rules_mode_or_turn_it_off() -> None:
    on_in_dev = manifest(
        "dev",
        durability={"cluster": {"nodes": 1}},
        policies={"overrides": {"durability-replicas": {"mode": "enforce"}}},
    )
    (v,) = [v for v in evaluate(on_in_dev).violations if v.rule == "durability-replicas"]
    assert v.mode == "enforce"  # an override names the mode: neither the default nor policies.mode caps it
    off = manifest(
        "prod", experiments={"insecure": True}, policies={"overrides": {"tls-outside-dev": {"enabled": False}}}
    )
    assert "tls-outside-dev" not in violated(off)
    assert "tls-outside-dev" not in dict((r.name, m) for r, m in rules_of(off))


@pytest.mark.parametrize("mode", ["audit", "warn", "enforce"])
def test_each_mode_is_recorded_said_or_blocking(mode: str) -> None:
    """audit: recorded (a violation, not blocking); warn: a warning; enforce: blocking."""
    m = manifest("prod", tenants={"named": {"acme": {}}}, policies={"overrides": {"tenant-quota": {"mode": mode}}})
    verdicts = evaluate(m)
    (v,) = verdicts.violations
    assert v.mode == mode
    assert verdicts.audited == ((v,) if mode == "audit" else ())
    assert verdicts.warnings == ((v,) if mode == "warn" else ())
    assert verdicts.blocking == ((v,) if mode == "enforce" else ())
    assert verdicts.to_json()["blocking"] is (mode == "enforce")


# -- rules of the manifest's own ---------------------------------------------------------------------


def test_a_rule_of_your_own_in_its_mode_with_each_and_a_message() -> None:
    rules = [
        {"name": "small-batches", "expression": "manifest.inference.batching.maxBatch <= 16", "severity": "low"},
        {
            "name": "heavy-tenants",
            "expression": "item.weight <= 4.0",
            "each": "manifest.tenants.named.*",
            "message": '"tenant " + key + " weighs " + string(item.weight)',
            "mode": "warn",
            "remediation": "lower its weight",
            "runbook": "https://wiki.example/heavy",
        },
    ]
    m = manifest(
        "prod",
        tenants={"named": {"a": {"weight": 5, "maxQueued": 9}, "b": {"weight": 1, "maxQueued": 9}}},
        inference={"batching": {"maxBatch": 64}},
        policies={"rules": rules},
    )
    small, heavy = evaluate(m).violations
    assert (small.rule, small.path, small.mode, small.severity) == ("small-batches", "", "enforce", "low")
    assert small.message == "small-batches does not hold" and small.runbook == "docs/runbooks/policies.md"
    assert (heavy.path, heavy.mode, heavy.message) == ("tenants.named.a", "warn", "tenant a weighs 5")
    assert (heavy.remediation, heavy.runbook) == ("lower its weight", "https://wiki.example/heavy")


@pytest.mark.parametrize(
    ("rule", "said"),
    [
        (
            {"expression": "manifest.durability.cluster.nodes >= "},
            "policies.rules[1].expression: is not CEL: line 1, column 38",
        ),
        (
            {"expression": "item.weight > 1"},
            "policies.rules[1].expression: reads item, which only a rule with `each` has",
        ),
        (
            {"expression": "manifest.durabilty.fsync == 'always'"},
            "policies.rules[1].expression: cannot be evaluated on this manifest: no such key or field 'durabilty'",
        ),
        ({"expression": "manifest.pools.general.workers"}, "policies.rules[1].expression: gives 1, not true or false"),
        ({"expression": "true", "each": "tenants.named.*"}, "policies.rules[1].each: 'tenants.named.*' does not match"),
        ({"expression": "false", "message": '"a" +'}, "policies.rules[1].message: is not CEL"),
        ({"name": "max-retries", "expression": "true"}, "policies.rules[1].name: 'max-retries' is a built-in rule"),
        ({"name": "ok", "expression": "true"}, "policies.rules[1].name: 'ok' is given twice"),
    ],
)
def test_a_bad_rule_is_refused_when_the_manifest_is_read_naming_its_path(rule: dict[str, Any], said: str) -> None:
    rules = [{"name": "ok", "expression": "true"}, {"name": "second", **rule}]
    with pytest.raises(ManifestError) as refused:
        manifest("dev", policies={"rules": rules})
    assert said in refused.value.message
    assert refused.value.field == said.split(":")[0]


def test_an_override_of_no_built_in_rule_is_refused() -> None:
    with pytest.raises(ManifestError, match=r"policies.overrides.my-rule: no built-in rule is called 'my-rule'"):
        manifest("dev", policies={"overrides": {"my-rule": {"mode": "warn"}}})


def test_a_rule_that_errors_on_live_figures_is_a_violation_saying_so() -> None:
    """Live rules are not tried at load time (no live figures then); one that cannot be evaluated
    on the figures it gets fails closed: an enforce-mode one blocks."""
    m = manifest("prod", policies={"rules": [{"name": "depth", "expression": "live.pools.nowhere.depth < 5"}]})
    (v,) = evaluate(m, live={"pools": {"inference": {"depth": 1}}}).violations
    assert v.message == "depth could not be evaluated: no such key or field 'nowhere'" and v.mode == "enforce"


# -- live figures ---------------------------------------------------------------------------------------


def test_rules_that_read_live_figures_are_skipped_without_them_and_evaluated_with_them() -> None:
    rules = [
        {"name": "few-dead", "expression": "live.deadLetters < 10"},
        {"name": "lean-workers", "expression": "item.rssMb < 512.0", "each": "live.workers.*"},
    ]
    m = manifest("dev", policies={"rules": rules})
    plan_time = evaluate(m)
    assert plan_time.violations == () and plan_time.skipped == ("few-dead", "lean-workers")
    live = {"deadLetters": 12, "workers": {"worker-1": {"rssMb": 700.0, "pools": []}, "worker-2": {"rssMb": 90.0}}}
    found = evaluate(m, live=live)
    assert [(v.rule, v.path) for v in found.violations] == [("few-dead", ""), ("lean-workers", "live.workers.worker-1")]
    assert found.skipped == ()


def test_worker_memory_is_read_from_proc_for_running_workers() -> None:
    import os

    figures = worker_memory({"worker-1": (os.getpid(), ("inference",)), "worker-2": (None, ())})
    assert list(figures) == ["worker-1"] and figures["worker-1"]["pools"] == ["inference"]
    assert figures["worker-1"]["rssMb"] > 10


def test_routes_name_every_kind_and_the_pool_each_step_runs_in() -> None:
    from mesh.policy import routes_of

    routes = routes_of(manifest("dev", kinds={"acme.resize": KIND}))
    assert routes["embed"] == {"embed": "inference"}
    assert routes["doc_embed"] == {"chunk": "ingestion", "embed-chunks": "inference", "aggregate": "post-processing"}
    assert routes["acme.resize"] == {"s1": "general", "s2": "general"}


def test_verdicts_are_deterministic_and_json() -> None:
    m = manifest("prod", tenants={"named": {"b": {}, "a": {}}}, experiments={"insecure": True})
    first, second = evaluate(m), evaluate(m)
    assert first == second
    data = first.to_json()
    assert data["environment"] == "prod" and data["counts"] == {"audit": 0, "warn": 0, "enforce": 3}
    assert [(v["rule"], v["path"]) for v in data["violations"]] == [
        ("tls-outside-dev", "experiments.insecure"),
        ("tenant-quota", "tenants.named.b"),
        ("tenant-quota", "tenants.named.a"),
    ]
    assert set(data["violations"][0]) == {"rule", "path", "severity", "mode", "message", "remediation", "runbook"}
    json.dumps(data)


def test_an_evaluation_is_fast_once_rules_are_compiled() -> None:
    import time

    m = manifest("prod", tenants={"named": {f"t{i}": {"maxQueued": 5} for i in range(50)}})
    evaluate(m)
    started = time.perf_counter()
    for _ in range(5):
        evaluate(m)
    assert (time.perf_counter() - started) / 5 < 0.1


# -- the continuous watch ---------------------------------------------------------------------------------


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.figures: dict[str, Any] | None = {"deadLetters": 0}
        self.live_error: Exception | None = None
        self.publish_error: Exception | None = None
        self.opened = self.closed = 0

    async def open(self) -> None:
        self.opened += 1

    async def publish(self, subject: str, data: bytes) -> None:
        if self.publish_error is not None:
            raise self.publish_error
        self.sent.append((subject, json.loads(data)))

    async def live(self) -> Mapping[str, Any] | None:
        if self.live_error is not None:
            raise self.live_error
        return self.figures

    async def close(self) -> None:
        self.closed += 1


def _count(metrics: Metrics, rule: str, severity: str, mode: str) -> float:
    value = metrics.registry.get_sample_value(
        "tidemesh_policy_violations_total", {"rule": rule, "severity": severity, "mode": mode}
    )
    return value or 0.0


async def test_the_watch_announces_each_new_violation_once_and_its_clearing(caplog: pytest.LogCaptureFixture) -> None:
    state = {"doc": {"tenants": {"named": {"acme": {}}}}}
    rules = [{"name": "few-dead", "expression": "live.deadLetters < 3", "severity": "high"}]

    def current() -> Manifest:
        return manifest("prod", policies={"rules": rules}, **state["doc"])

    link, metrics = FakeLink(), Metrics()
    watch = PolicyWatch(current, link, interval_s=3600, metrics=metrics, clock=lambda: 1234.5)
    await watch.evaluate_once()
    ((subject, alert),) = link.sent
    assert subject == alert_subject("tenant-quota") == "tm.alert.policy.tenant-quota"
    assert alert == {
        "rule": "tenant-quota",
        "state": "violated",
        "path": "tenants.named.acme",
        "severity": "medium",
        "mode": "enforce",
        "message": "tenant acme has no quota or limit of its own",
        "remediation": BUILTIN_BY_NAME["tenant-quota"].remediation,
        "runbook": "docs/runbooks/policies.md#tenant-quota",
        "environment": "prod",
        "mesh": "tidemesh",
        "at": 1234.5,
    }
    assert _count(metrics, "tenant-quota", "medium", "enforce") == 1
    await watch.evaluate_once()  # the same violation: nothing new
    assert len(link.sent) == 1 and _count(metrics, "tenant-quota", "medium", "enforce") == 1

    link.figures = {"deadLetters": 5}  # a live rule breaks
    await watch.evaluate_once()
    assert [(s, a["state"]) for s, a in link.sent[1:]] == [("tm.alert.policy.few-dead", "violated")]
    link.live_error = OSError("no JetStream")  # live figures unreadable: the live violation is kept
    await watch.evaluate_once()
    assert len(link.sent) == 2 and {v.rule for v in watch.active} == {"tenant-quota", "few-dead"}
    link.live_error = None
    link.figures = {"deadLetters": 0}
    state["doc"] = {"tenants": {"named": {"acme": {"maxQueued": 10}}}}  # both fixed
    with caplog.at_level("INFO", logger="mesh.policy._watch"):
        await watch.evaluate_once()
    assert sorted((s, a["state"]) for s, a in link.sent[2:]) == [
        ("tm.alert.policy.few-dead", "cleared"),
        ("tm.alert.policy.tenant-quota", "cleared"),
    ]
    assert watch.active == () and _count(metrics, "few-dead", "high", "enforce") == 1
    assert [r.getMessage() for r in caplog.records].count("policy violation cleared") == 2


async def test_an_alert_that_cannot_be_published_is_sent_and_counted_next_time() -> None:
    link, metrics = FakeLink(), Metrics()
    watch = PolicyWatch(lambda: manifest("prod", tenants={"named": {"a": {}}}), link, interval_s=3600, metrics=metrics)
    link.publish_error = OSError("disconnected")
    await watch.evaluate_once()
    assert link.sent == [] and watch.active == () and _count(metrics, "tenant-quota", "medium", "enforce") == 0
    link.publish_error = None
    await watch.evaluate_once()
    assert [a["state"] for _, a in link.sent] == ["violated"] and _count(
        metrics, "tenant-quota", "medium", "enforce"
    ) == 1


async def test_the_watch_runs_in_the_background_and_cannot_be_reopened() -> None:
    link = FakeLink()
    evaluated = asyncio.Event()

    def current() -> Manifest:
        evaluated.set()
        return manifest("dev")

    watch = PolicyWatch(current, link, interval_s=3600, metrics=Metrics())
    async with watch:
        assert watch.state is WatchState.RUNNING and link.opened == 1
        await asyncio.wait_for(evaluated.wait(), 5)
    assert watch.state is WatchState.CLOSED and link.closed == 1
    with pytest.raises(RuntimeError, match="closed"):
        await watch.__aenter__()
    never = PolicyWatch(current, FakeLink(), metrics=Metrics())
    await never.close()  # closing one never opened touches nothing
    assert never.state is WatchState.CLOSED


def test_the_supervisor_user_may_publish_policy_alerts_and_read_stream_state() -> None:
    grant = permissions("supervisor")
    for subject in ("tm.alert.policy.tenant-quota", "$JS.API.STREAM.INFO.TM_WORK", "$JS.API.STREAM.INFO.TM_DLQ"):
        assert _matches_any(grant.publish, subject) and not _matches_any(grant.publish_deny, subject), subject
    for subject in ("$JS.API.STREAM.MSG.GET.TM_WORK", "$JS.API.CONSUMER.MSG.NEXT.TM_WORK.x", "tm.alert.restart"):
        assert not _matches_any(grant.publish, subject), subject


# -- tidemesh config policy -------------------------------------------------------------------------------


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_config_policy_exit_codes_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """0 when nothing blocks (a warn is printed), 1 when an enforce rule is violated, 2 for a bad
    manifest naming the field; -o json is the verdicts."""
    file = tmp_path / "tidemesh.yaml"
    file.write_text(yaml.safe_dump({**HEADER, "preset": "staging", "tenants": {"named": {"acme": {"weight": 2}}}}))
    code, out, _ = _run(["config", "policy", "-f", str(file)], capsys)
    assert code == 0 and "▲ warn" in out and "tenant-quota  tenants.named.acme" in out and "none blocking" in out

    file.write_text(yaml.safe_dump({**HEADER, "preset": "prod", "experiments": {"insecure": True}}))
    code, out, _ = _run(["config", "policy", "-f", str(file), "-o", "json"], capsys)
    data = json.loads(out)
    assert code == 1 and data["blocking"] is True and data["source"] == str(file)
    assert [v["rule"] for v in data["violations"]] == ["tls-outside-dev"]

    code, out, _ = _run(["config", "policy", "-f", str(file), "--rules", "-o", "json"], capsys)
    assert {r["name"] for r in json.loads(out)["rules"]} == set(BUILTIN_BY_NAME)

    file.write_text(yaml.safe_dump({**HEADER, "policies": {"rules": [{"name": "x", "expression": "1 +"}]}}))
    code, out, err = _run(["config", "policy", "-f", str(file)], capsys)
    assert code == 2 and out == "" and "policies.rules[0].expression: is not CEL" in err


def test_config_policy_without_a_file_wants_a_running_mesh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["config", "policy", "--state-dir", str(tmp_path)], capsys)
    assert code == 4 and "no plan.json there" in err
