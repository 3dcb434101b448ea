"""The manifest: documents that resolve, documents refused with the path of each problem, secrets
only by reference, presets, explanations, the published schema, and manifest ⇄ plan."""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.edge import EdgeConfig
from mesh.fabric import POOLS
from mesh.fabric._subjects import TOKEN_RE
from mesh.manifest import (
    API_VERSION,
    PRESETS,
    SCHEMA_PATH,
    Manifest,
    ManifestError,
    declared_only,
    diff,
    diff_presets,
    document_of,
    encode,
    explain,
    find_field,
    merge,
    observe,
    parse,
    plan_arguments,
    resolve,
    resolved,
    schema,
    schema_text,
    walk,
)
from mesh.manifest._model import CLASS_NAMES, POOL_NAMES, TOKEN_PATTERN
from mesh.priority import CLASS_NAMES as PRIORITY_CLASSES
from mesh.supervisor import CREDENTIAL_LIMIT, TENANT_LIMIT, build_plan

HEAD = {"apiVersion": API_VERSION, "kind": "Mesh"}
VALIDATOR = jsonschema_rs.validator_for(schema())


def doc(**fields: Any) -> dict[str, Any]:
    return {**HEAD, **fields}


def problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        resolve(document)
    return [str(issue) for issue in caught.value.issues]


# -- valid documents ---------------------------------------------------------------------------------


def test_the_shortest_document_is_a_bare_tidemesh_up() -> None:
    """apiVersion and kind alone resolve to the defaults, the mesh `tidemesh up` runs without flags."""
    assert resolve(HEAD) == Manifest()
    assert Manifest().endpoints.public.port == 8080 and Manifest().endpoints.public.auth.required


def test_a_full_document_in_yaml_and_in_json_resolves_to_the_same_manifest() -> None:
    """Every section given (YAML), the same in JSON: one manifest, each field as written."""
    text = """
apiVersion: tidemesh.dev/v1alpha1
kind: Mesh
metadata: {name: shop}
preset: prod
stateDir: /srv/tidemesh
pools:
  general: {workers: 3, concurrency: 16, caps: {memoryMb: 2048}}
  inference: {workers: 2, concurrency: 4, autoscale: {min: 1, max: 4}, caps: {gpuMemoryMb: 8000}}
classes:
  interactive: {waitBoundSeconds: 0.1, maxDepth: 1000}
  slots: {interactiveReserve: 2}
tenants:
  defaults: {submitsPerSecond: 200, maxQueued: 5000}
  named:
    acme: {weight: 3, maxConcurrency: 8, allowedKinds: [embed, echo]}
kinds:
  acme.resize:
    inputType: acme.v1.ResizeRequest
    outputType: acme.v1.ResizeResult
    steps: [{name: fetch}, {name: resize, timeoutSeconds: 30}]
    labels: {gpu: a100}
endpoints:
  public:
    port: 443
    cors: {allowOrigins: ["https://shop.example"]}
    auth: {jwtSecret: {fromFile: /run/secrets/jwt}}
inference:
  triton: {enabled: true, devices: gpu}
  batching: {maxBatch: 64, maxDelayMs: 2}
  spillAfter: {standardMs: 50}
durability: {fsync: always, cluster: {nodes: 5}}
policies:
  rules: [{name: few-attempts, expression: "item.maxAttempts <= 10", each: "manifest.kinds.*", mode: enforce}]
roles:
  reader: {permissions: [task.read], tenants: [acme]}
"""
    from_yaml = resolve(parse(text))
    from_json = resolve(parse(json.dumps(yaml.safe_load(text))))
    assert from_yaml == from_json
    assert from_yaml.pools.inference.autoscale is not None and from_yaml.pools.inference.autoscale.max == 4
    assert from_yaml.tenants.named["acme"].allowed_kinds == ("embed", "echo")
    assert from_yaml.kinds["acme.resize"].steps[1].timeout_seconds == 30.0
    assert from_yaml.endpoints.public.auth.jwt_secret is not None
    assert from_yaml.endpoints.public.auth.jwt_secret.from_file == "/run/secrets/jwt"
    assert from_yaml.durability.cluster.nodes == 5
    assert from_yaml.endpoints.public.gateways == 2  # from the preset, not overridden
    assert VALIDATOR.is_valid(yaml.safe_load(text))


@pytest.mark.parametrize("preset", [None, *PRESETS])
def test_the_shortest_document_of_a_manifest_resolves_back_to_it(preset: str | None) -> None:
    """`document_of` (what export writes) and its --full form both resolve to the same manifest."""
    manifest = resolve(
        doc(preset=preset, tenants={"named": {"acme": {"weight": 2}}}, pools={"inference": {"workers": 1}})
    )
    short, full = document_of(manifest), document_of(manifest, full=True)
    assert resolve(short) == manifest == resolve(full)
    assert "durability" not in short or preset is None
    assert short["tenants"] == {"named": {"acme": encode(manifest.tenants.named["acme"])}}


# -- refused, with the path ---------------------------------------------------------------------------

REFUSED: list[tuple[dict[str, Any], str, bool]] = [
    # (document, the issue, whether the published schema refuses it too)
    (
        doc(pools={"inference": {"concurency": 4}}),
        "pools.inference.concurency: unknown key; did you mean concurrency?",
        True,
    ),
    (doc(pool={}), "pool: unknown key; did you mean pools?", True),
    (doc(durability={"fsink": "always"}), "durability.fsink: unknown key; did you mean fsync?", True),
    (doc(pools={"inference": {"workers": "two"}}), "pools.inference.workers: expected an integer, got a string", True),
    (doc(pools={"inference": {"workers": 1.5}}), "pools.inference.workers: expected an integer, got a number", True),
    (doc(pools={"general": {"workers": True}}), "pools.general.workers: expected an integer, got a boolean", True),
    (doc(pools={"inference": {"workers": -1}}), "pools.inference.workers: must be ≥ 0, got -1", True),
    (doc(endpoints={"public": {"port": 70000}}), "endpoints.public.port: must be ≤ 65535, got 70000", True),
    (doc(durability={"ackWaitSeconds": 0}), "durability.ackWaitSeconds: must be > 0, got 0", True),
    (doc(durability={"fsync": "sometimes"}), "durability.fsync: expected one of 'always', 'interval'", True),
    (doc(durability={"cluster": {"nodes": 2}}), "durability.cluster.nodes: expected one of 1, 3, 5, got 2", True),
    (doc(durability={"cluster": {"nodes": 3.5}}), "durability.cluster.nodes: expected one of 1, 3, 5", True),
    (doc(pools={"general": None}), "pools.general: must not be null", True),
    (
        doc(endpoints={"public": {"cors": {"allowOrigins": "*"}}}),
        "endpoints.public.cors.allowOrigins: expected a list",
        True,
    ),
    (doc(tenants={"named": {"a c": {}}}), "tenants.named.a c: not a valid name", True),
    (doc(tenants={"named": {"acme": {"weight": 0}}}), "tenants.named.acme.weight: must be > 0, got 0", True),
    (
        doc(tenants={"named": {"acme": {"allowedKinds": ["Bad Kind"]}}}),
        "allowedKinds[0]: 'Bad Kind' does not match",
        True,
    ),
    (
        doc(kinds={"acme.resize": {"inputType": "a.B", "outputType": "a.C"}}),
        'kinds["acme.resize"].steps: is required',
        True,
    ),
    (
        doc(kinds={"acme.x": {"inputType": "a.B", "outputType": "a.C", "steps": [{}]}}),
        "steps[0].name: is required",
        True,
    ),
    (doc(policies={"mode": "block"}), "policies.mode: expected one of 'audit', 'warn', 'enforce'", True),
    (
        doc(roles={"ops": {"permissions": ["task.read", "dlq.replya"]}}),
        "roles.ops.permissions[1]: unknown action 'dlq.replya'; did you mean dlq.replay?",
        False,
    ),
    (doc(roles={"ops": {"permissions": ["Task Read"]}}), "roles.ops.permissions[0]: 'Task Read' does not match", True),
    (doc(roles={"ops": {"permissions": []}}), "roles.ops.permissions: a role grants at least one action", False),
    (doc(roles={"ops": {"tenants": ["acme"]}}), "roles.ops.permissions: is required", True),
    (doc(roles={"viewer": {"permissions": ["task.read"]}}), "roles.viewer: 'viewer' is a built-in role", False),
    (doc(roles={"work": {"permissions": ["task.read"]}}), "roles.work: 'work' is a built-in role", False),
    (
        doc(endpoints={"public": {"tls": {"issuer": "none"}}}),
        "endpoints.public.tls.issuer: expected one of 'mesh-ca'",
        True,
    ),
    (
        doc(pools={"inference": {"autoscale": {"min": 3, "max": 2}}}),
        "pools.inference.autoscale.min: must be ≤ max (2)",
        False,
    ),
    (doc(inference={"triton": {"modelRepositories": ["./models"]}}), "inference.triton.enabled: is false, but", False),
    (doc(inference={"cpu": {"enabled": False}}), "inference.cpu.enabled: is false and Triton is off", False),
    (doc(endpoints={"public": {"cors": {"allowOrigins": []}}}), "endpoints.public.cors.allowOrigins: must name", False),
    ({"kind": "Mesh"}, "apiVersion: is required", True),
    (doc(apiVersion="tidemesh.dev/v2"), "apiVersion: expected one of 'tidemesh.dev/v1alpha1'", True),
    (doc(kind="Pod"), "kind: expected one of 'Mesh'", True),
    (doc(preset="production"), "preset: expected one of 'dev', 'staging', 'prod' or null, got 'production'", True),
]


@pytest.mark.parametrize(("document", "issue", "schema_refuses"), REFUSED, ids=[i for _, i, _ in REFUSED])
def test_a_bad_document_is_refused_naming_the_path(document: dict[str, Any], issue: str, schema_refuses: bool) -> None:
    """Each mistake is one issue that starts with its path; the published schema refuses the same
    document (all but the checks across fields, which a JSON Schema cannot say)."""
    found = problems(document)
    assert any(issue in line for line in found), found
    assert VALIDATOR.is_valid(document) is not schema_refuses


def test_every_problem_of_a_document_is_named_at_once() -> None:
    """Three mistakes in three sections: three issues, each with its path, in one error."""
    document = doc(
        pools={"inference": {"concurency": 1}}, durability={"fsync": 1}, tenants={"defaults": {"maxQueued": 0}}
    )
    with pytest.raises(ManifestError) as caught:
        resolve(document, "mesh.yaml")
    paths = [issue.path for issue in caught.value.issues]
    assert paths == ["pools.inference.concurency", "tenants.defaults.maxQueued", "durability.fsync"]
    assert caught.value.message.startswith("mesh.yaml: 3 problems\n  pools.inference.concurency: unknown key")
    assert caught.value.field == "pools.inference.concurency"  # InvalidArgument's field: exit 2 in the CLI


@pytest.mark.parametrize(
    ("text", "issue"),
    [
        ("apiVersion: tidemesh.dev/v1alpha1\nkind: Mesh\nkind: Mesh\n", "key 'kind' given twice (line 3)"),
        ('{"apiVersion": "tidemesh.dev/v1alpha1", "kind": "Mesh", "preset": "dev", "preset": "prod"}', "given twice"),
        ("- a\n- b\n", "expected a mapping (apiVersion, kind, …) at the top"),
        ("apiVersion: [unclosed\n", "not YAML or JSON"),
    ],
)
def test_text_that_is_no_manifest_is_refused(text: str, issue: str) -> None:
    """A key given twice (YAML or JSON) is an error, never a silent override; so is a list or a syntax error."""
    with pytest.raises(ManifestError, match=issue.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


# -- secrets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "issue"),
    [
        ("hunter2", "an inline secret is refused: give a reference, {fromFile: PATH} or {fromEnv: NAME}"),
        (12345, "an inline secret is refused"),
        ({}, "give exactly one of fromFile or fromEnv"),
        ({"fromFile": "/run/jwt", "fromEnv": "JWT"}, "give exactly one of fromFile or fromEnv"),
        ({"value": "hunter2"}, "jwtSecret.value: unknown key"),
        ({"fromEnv": "not a name"}, "jwtSecret.fromEnv: 'not a name' does not match"),
    ],
)
def test_a_secret_is_only_ever_a_reference(secret: Any, issue: str) -> None:
    """jwtSecret refuses a value in the document (and any shape but one reference), naming the field."""
    found = problems(doc(endpoints={"public": {"auth": {"jwtSecret": secret}}}))
    assert any(line.startswith("endpoints.public.auth.jwtSecret") and issue in line for line in found), found
    assert not VALIDATOR.is_valid(doc(endpoints={"public": {"auth": {"jwtSecret": secret}}}))


@pytest.mark.parametrize("secret", [{"fromFile": "/run/secrets/jwt"}, {"fromEnv": "TIDEMESH_JWT"}])
def test_a_secret_by_reference_is_accepted_and_never_read(secret: dict[str, str]) -> None:
    """A reference resolves as written; nothing reads the file or the variable to validate it."""
    manifest = resolve(doc(endpoints={"public": {"auth": {"jwtSecret": secret}}}))
    assert encode(manifest)["endpoints"]["public"]["auth"]["jwtSecret"] == {"fromFile": None, "fromEnv": None} | secret
    assert VALIDATOR.is_valid(doc(endpoints={"public": {"auth": {"jwtSecret": secret}}}))


# -- presets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_resolves_and_passes_the_published_schema(name: str) -> None:
    """A preset's defaults are a valid manifest; TLS and authentication stay on, and none is insecure."""
    manifest = resolved(name)
    assert VALIDATOR.is_valid(encode(manifest))
    assert manifest.endpoints.public.auth.required and not manifest.experiments.insecure
    assert manifest.endpoints.public.tls.issuer == "mesh-ca"


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_choice_of_a_preset_names_a_field_and_says_why(name: str) -> None:
    """Each choice is a real field (its value is what the preset resolves to there) with a reason."""
    preset = PRESETS[name]
    data = encode(resolved(name))
    for choice in preset.choices:
        assert find_field(Manifest, choice.path) is not None, choice.path
        value: Any = data
        for part in choice.path.split("."):
            value = value[part]
        assert value == choice.value and len(choice.why) > 20, choice
    insecure = [c.path for c in preset.choices if c.path.startswith(("experiments", "endpoints.public.auth.required"))]
    assert insecure == []


def test_the_fields_a_document_gives_override_its_preset() -> None:
    """preset: prod with cluster.nodes 5 and fsync interval: those two from the document, the rest prod's."""
    manifest = resolve(doc(preset="prod", durability={"cluster": {"nodes": 5}, "fsync": "interval"}))
    assert manifest.durability.cluster.nodes == 5 and manifest.durability.fsync == "interval"
    assert manifest.endpoints.public.gateways == 2 and manifest.policies.mode == "enforce"


def test_the_presets_tell_one_laptop_from_production() -> None:
    """dev: one node, fsync interval; staging and prod: an R3 cluster with fsync always."""
    dev, staging, prod = (resolved(name).durability for name in ("dev", "staging", "prod"))
    assert (dev.fsync, dev.cluster.nodes) == ("interval", 1)
    assert (staging.fsync, staging.cluster.nodes) == (prod.fsync, prod.cluster.nodes) == ("always", 3)


def test_explain_gives_the_meaning_default_each_presets_value_and_the_tradeoff() -> None:
    """durability.fsync: its description, default always, dev's interval and why, and the trade-off."""
    found = explain("durability.fsync").to_json()
    assert found["default"] == "always" and "sync_interval" in found["description"]
    assert found["presets"]["dev"]["value"] == "interval" and "crash" in found["presets"]["dev"]["why"]
    assert found["presets"]["prod"]["value"] == "always" and found["presets"]["prod"]["why"]
    assert "Jepsen" in found["tradeoff"]


def test_explain_takes_a_named_entrys_field_and_says_what_is_only_declared() -> None:
    """tenants.named.acme.allowedKinds is the field tenants.named.*.allowedKinds, declared only (it says so)."""
    found = explain("tenants.named.acme.allowedKinds").to_json()
    assert found["field"] == "tenants.named.*.allowedKinds" and found["enforced"] is False
    assert "Declared only: not enforced yet" in found["description"]
    assert {p["value"] for p in found["presets"].values()} == {None}


def test_explain_of_no_such_field_suggests_the_nearest() -> None:
    """A typo in the field's path is an error that names the fields meant."""
    with pytest.raises(ManifestError, match=r"no such manifest field; did you mean pools\.inference\.concurrency"):
        explain("pools.inference.concurency")


def test_diff_presets_lists_each_field_that_differs_with_the_reasons() -> None:
    """dev vs prod: fsync, the node count and the workers differ, each with the presets' reasons."""
    differences = {d.path: d for d in diff_presets("dev", "prod")}
    fsync = differences["durability.fsync"]
    assert (fsync.left, fsync.right) == ("interval", "always") and fsync.left_why and fsync.right_why
    assert (differences["durability.cluster.nodes"].left, differences["durability.cluster.nodes"].right) == (1, 3)
    assert differences["pools.general.workers"].left_why == ""  # dev leaves the default
    assert "preset" not in differences and diff_presets("prod", "prod") == []
    with pytest.raises(ManifestError, match="no preset 'production'"):
        diff_presets("dev", "production")


def test_declared_only_lists_the_unenforced_fields_a_manifest_sets() -> None:
    """Allowed kinds and a kind are declared, not enforced: listed by field; the resource caps
    (memory, CPU, GPU memory) and the policy rules act, and are not."""
    manifest = resolve(
        doc(
            pools={"inference": {"caps": {"cpus": 2, "memoryMb": 512, "gpuMemoryMb": 1024}}},
            tenants={"named": {"acme": {"weight": 2, "allowedKinds": ["echo"]}}},
            kinds={"acme.x": {"inputType": "a.B", "outputType": "a.C", "steps": [{"name": "s"}]}},
            policies={"rules": [{"name": "r", "expression": "true"}]},
        )
    )
    assert declared_only(encode(manifest)) == ["tenants.named.acme.allowedKinds"]


# -- the schema ------------------------------------------------------------------------------------------


def test_the_published_schema_is_the_one_the_model_generates() -> None:
    """docs/manifest.schema.json has no drift (`make schema` rewrites it; `make check` fails on drift)."""
    assert SCHEMA_PATH.read_text() == schema_text()


def test_every_field_is_described_and_every_unenforced_one_says_so() -> None:
    """No field without a description; each declared-only one says it is not enforced yet."""
    for field in walk(Manifest):
        assert len(field.meta.doc) > 8, field.path
        if not field.meta.enforced:
            assert "not enforced yet" in field.meta.description(), field.path


def test_the_defaults_are_the_services_own() -> None:
    """The manifest's defaults and names are the mesh's: pools, classes, limits, lanes, bounds, Envoy."""
    from services.inference._router import MAX_WAIT_S, MAX_WAITING, SPILL_AFTER_S
    from services.scheduler._flow import FlowLimits
    from services.worker._priority import WaitBounds

    m = Manifest()
    assert POOL_NAMES == POOLS and CLASS_NAMES == PRIORITY_CLASSES and TOKEN_PATTERN == TOKEN_RE.pattern
    assert {name: lane.max_depth for name, lane in m.classes.lanes().items()} == FlowLimits().lane_max_depth
    assert m.tenants.defaults.max_queued == FlowLimits().tenant_max_depth
    bounds = WaitBounds()
    assert [lane.wait_bound_seconds for lane in m.classes.lanes().values()] == [
        bounds.interactive_s,
        bounds.standard_s,
        bounds.batch_s,
    ]
    spill = m.inference.spill_after
    assert (spill.interactive_ms / 1000, spill.standard_ms / 1000, spill.batch_ms / 1000) == SPILL_AFTER_S
    assert m.inference.admission.max_wait_ms == MAX_WAIT_S * 1000 and m.inference.admission.max_waiting == MAX_WAITING
    assert (m.tenants.defaults.submits_per_second, m.tenants.defaults.submit_burst) == TENANT_LIMIT
    limits = m.endpoints.public.limits
    assert (limits.credential_submits_per_second, limits.credential_burst) == CREDENTIAL_LIMIT
    edge = EdgeConfig()
    assert m.endpoints.public.cors.allow_origins == edge.cors_allow_origins
    assert limits.request_headers_timeout_seconds == edge.request_headers_timeout_s


# -- manifest ⇄ plan ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tidemesh-manifest-") as scratch:
        yield Path(scratch)


def _agrees(manifest: Manifest, state_dir: Path) -> list[str]:
    """The fields on which the plan built from `manifest` shows something else."""
    plan = build_plan(state_dir, **plan_arguments(manifest))
    full = encode(manifest)
    shown = merge(full, observe(plan).document)
    return [c.path for c in diff(full, shown) if c.path not in ("stateDir", "endpoints.public.port")]


@pytest.mark.parametrize("preset", [None, *PRESETS])
def test_a_plan_shows_every_field_its_manifest_gave_it(preset: str | None, state_dir: Path) -> None:
    """Each preset, with tenants, lanes, autoscale, inference knobs and CORS: the process table
    built from it reads back to the same fields."""
    manifest = resolve(
        doc(
            preset=preset,
            tenants={"named": {"acme": {"weight": 3, "maxConcurrency": 4}}},
            classes={"interactive": {"waitBoundSeconds": 0.5}, "batch": {"maxDepth": 7}, "slots": {"guaranteed": 2}},
            inference={"spillAfter": {"standardMs": 50}, "cpu": {"threads": 2}, "batching": {"maxDelayMs": 2.5}},
            pools={"inference": {"workers": 1, "concurrency": 4, "autoscale": {"min": 1, "max": 3}}},
            endpoints={"public": {"port": 0, "cors": {"allowOrigins": ["https://a.example"]}}},
            roles={"replayer": {"permissions": ["dlq.read", "dlq.replay"], "tenants": ["acme"]}},
        )
    )
    assert _agrees(manifest, state_dir) == []


_fields = st.fixed_dictionaries(
    {},
    optional={
        "pools": st.fixed_dictionaries(
            {},
            optional={
                "general": st.fixed_dictionaries(
                    {},
                    optional={
                        "workers": st.integers(0, 3),
                        "concurrency": st.integers(1, 64),
                        "sessionResumeSeconds": st.floats(0.5, 60),
                        "caps": st.fixed_dictionaries(
                            {"memoryMb": st.none() | st.integers(64, 8192)},
                            optional={
                                "cpus": st.none() | st.floats(0.01, 16),
                                "gpuMemoryMb": st.none() | st.integers(1, 81920),
                            },
                        ),
                    },
                ),
                "ingestion": st.fixed_dictionaries(
                    {"workers": st.integers(0, 2), "concurrency": st.integers(1, 8)},
                    optional={"caps": st.fixed_dictionaries({}, optional={"cpus": st.floats(0.01, 4)})},
                ),
            },
        ),
        "durability": st.fixed_dictionaries(
            {},
            optional={
                "fsync": st.sampled_from(["always", "interval"]),
                "cluster": st.fixed_dictionaries({"nodes": st.sampled_from([1, 3])}),
                "ackWaitSeconds": st.floats(0.5, 120),
            },
        ),
        "tenants": st.fixed_dictionaries(
            {},
            optional={
                "defaults": st.fixed_dictionaries(
                    {},
                    optional={
                        "submitsPerSecond": st.floats(0, 5000),
                        "submitBurst": st.floats(1, 5000),
                        "maxQueued": st.integers(1, 10**6),
                    },
                ),
                "named": st.dictionaries(
                    st.sampled_from(["acme", "globex", "initech"]),
                    st.fixed_dictionaries(
                        {}, optional={"weight": st.floats(0.1, 10), "maxConcurrency": st.integers(1, 50)}
                    ),
                    max_size=2,
                ),
            },
        ),
        "endpoints": st.fixed_dictionaries(
            {
                "public": st.fixed_dictionaries(
                    {"port": st.just(0)},
                    optional={
                        "gateways": st.integers(1, 2),
                        "auth": st.fixed_dictionaries(
                            {"required": st.booleans(), "jwtAudience": st.sampled_from(["a", "b"])},
                            optional={"stepUp": st.sampled_from(["off", "required"])},
                        ),
                    },
                )
            }
        ),
        "egress": st.fixed_dictionaries(
            {"webhookAllow": st.lists(st.sampled_from(["http://a:", "https://b/"]), max_size=2)}
        ),
        "inference": st.fixed_dictionaries(
            {},
            optional={
                "replicas": st.integers(1, 2),
                "memory": st.fixed_dictionaries({"budgetMb": st.floats(0, 4096)}),
                "triton": st.fixed_dictionaries(
                    {"capacity": st.integers(1, 8), "devices": st.sampled_from(["cpu", "gpu"])}
                ),
            },
        ),
        "experiments": st.fixed_dictionaries({"insecure": st.booleans()}),
        "roles": st.dictionaries(
            st.sampled_from(["replayer", "model-ops"]),
            st.fixed_dictionaries(
                {"permissions": st.lists(st.sampled_from(["task.read", "dlq.replay", "model.load"]), min_size=1)},
                optional={"tenants": st.none() | st.lists(st.sampled_from(["acme", "globex"]), min_size=1)},
            ),
            max_size=2,
        ),
    },
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_fields, preset=st.sampled_from([None, *PRESETS]))
def test_any_manifest_reads_back_from_its_plan(document: dict[str, Any], preset: str | None, state_dir: Path) -> None:
    """Generated manifests: `observe(build_plan(plan_arguments(m)))` agrees with `m` on every field it shows."""
    manifest = resolve({**HEAD, "preset": preset, **copy.deepcopy(document)})
    assert _agrees(manifest, state_dir) == []
