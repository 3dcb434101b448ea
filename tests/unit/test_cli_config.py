"""`tidemesh up|plan -f` and `tidemesh config …`: every flag of `up` is a manifest field, flags
override the file, and each config command's output and errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from clients.cli._config import FLAGS, PRESENTATION, explicit_options, resolve_args
from clients.cli._help import commands
from clients.cli._main import _parser, main
from mesh.manifest import SCHEMA_PATH, Manifest, diff, encode, find_field, matches, split_path, walk

PARSER = _parser()
UP = dict(commands(PARSER))["up"]
PLAN = dict(commands(PARSER))["plan"]

# A value for each flag of `up` that moves its field off the default.
EXAMPLES: dict[str, list[str]] = {
    "state_dir": ["--state-dir", "elsewhere"],
    "port": ["--port", "9443"],
    "workers": ["--workers", "3"],
    "pool_workers": ["--pool-workers", "inference=2,ingestion=1"],
    "pool_concurrency": ["--pool-concurrency", "inference=4"],
    "cluster": ["--cluster", "3"],
    "join": ["--join", "10.0.0.1,10.0.0.2,10.0.0.3"],
    "host": ["--host", "mesh.example.com"],
    "gateways": ["--gateways", "2"],
    "fsync": ["--fsync", "interval"],
    "ack_wait": ["--ack-wait", "5"],
    "tenant_weights": ["--tenant-weights", "acme=3,globex=0.5"],
    "tenant_concurrency": ["--tenant-concurrency", "acme=4"],
    "no_auth": ["--no-auth"],
    "insecure": ["--insecure"],
    "tenant_rate": ["--tenant-rate", "0"],
    "tenant_burst": ["--tenant-burst", "50"],
    "credential_rate": ["--credential-rate", "5"],
    "credential_burst": ["--credential-burst", "7"],
    "triton": ["--triton"],
    "inference_replicas": ["--inference", "2"],
    "model_repositories": ["--model-repository", "examples/models"],
    "demo": ["--demo"],
    "autoscale": ["--autoscale", "inference=1:4"],
    "otlp": ["--otlp", "http://localhost:4317"],
    "otlp_protocol": ["--otlp-protocol", "http/protobuf"],
    "trace_sampling": ["--trace-sampling", "0.25"],
}
REPO = Path(__file__).resolve().parents[2]


def _default(path: str) -> Any:
    field = find_field(Manifest, path)
    return field.default if field is not None else object()


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.dest not in PRESENTATION]


def test_every_option_of_up_maps_to_a_manifest_field() -> None:
    """Walk `up`'s (and `plan`'s) options: each one is in FLAGS, and every field it names exists."""
    unmapped = [a.option_strings[0] for a in _options(UP) + _options(PLAN) if a.dest not in FLAGS]
    assert unmapped == [], f"flags of `tidemesh up` with no manifest field: {unmapped} (add them to FLAGS)"
    for dest, flag in FLAGS.items():
        assert flag.option in UP._option_string_actions, dest
        for path in flag.paths:
            fields = [f.path for f in walk(Manifest) if len(split_path(f.path)) == len(split_path(path))]
            assert any(matches(path, f) for f in fields), f"{flag.option} names no field {path}"


@pytest.mark.parametrize("dest", sorted(FLAGS))
def test_each_flag_sets_exactly_its_fields(dest: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`up FLAG VALUE` alone changes the resolved manifest at the flag's fields and nowhere else."""
    monkeypatch.chdir(REPO)  # --model-repository examples/models, relative as a user gives it
    args = PARSER.parse_args(["up", "--state-dir", str(tmp_path), *EXAMPLES[dest]])
    before = encode(resolve_args(PARSER.parse_args(["up", "--state-dir", str(tmp_path)])).manifest)
    after = encode(resolve_args(args).manifest)
    # a tenant the flag names comes with its other fields at their defaults
    new_defaults = [c for c in diff(before, after) if c.before is None and c.after == _default(c.path)]
    changed = [c.path for c in diff(before, after) if c not in new_defaults]
    assert changed, f"{FLAGS[dest].option} changed nothing"
    for path in changed:
        assert any(matches(p, path) for p in FLAGS[dest].paths), (FLAGS[dest].option, path)


def test_flags_given_override_the_file_and_verbose_says_which(tmp_path: Path) -> None:
    """The file says 2 workers and 3 gateways; `--workers 4` wins, the gateways stay the file's."""
    manifest = tmp_path / "tidemesh.yaml"
    manifest.write_text(
        "apiVersion: tidemesh.dev/v1alpha1\nkind: Mesh\npreset: prod\n"
        f"stateDir: {tmp_path / 'state'}\npools: {{general: {{workers: 2}}}}\nendpoints: {{public: {{gateways: 3}}}}\n"
    )
    argv = ["up", "-f", str(manifest), "--workers", "4", "--fsync", "always"]
    args = PARSER.parse_args(argv)
    args.explicit = explicit_options(PARSER, argv)
    assert args.explicit == {"workers", "fsync"}
    resolved = resolve_args(args)
    assert resolved.manifest.pools.general.workers == 4 and resolved.manifest.endpoints.public.gateways == 3
    assert resolved.manifest.durability.cluster.nodes == 3  # prod's, neither file nor flag
    assert resolved.overrides == (f"--workers overrides pools.general.workers: 2 in {manifest} → 4",)


def test_an_environment_default_yields_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$TIDEMESH_STATE_DIR fills stateDir when the file leaves it out, never over the file's own."""
    monkeypatch.setenv("TIDEMESH_STATE_DIR", str(tmp_path / "from-env"))
    parser = _parser()  # reads the environment's default
    plain = tmp_path / "plain.yaml"
    plain.write_text("apiVersion: tidemesh.dev/v1alpha1\nkind: Mesh\n")
    own = tmp_path / "own.yaml"
    own.write_text(f"apiVersion: tidemesh.dev/v1alpha1\nkind: Mesh\nstateDir: {tmp_path / 'from-file'}\n")
    for file, expected in ((plain, "from-env"), (own, "from-file")):
        argv = ["plan", "-f", str(file)]
        args = parser.parse_args(argv)
        args.explicit = explicit_options(parser, argv)
        assert resolve_args(args).manifest.state_dir == str(tmp_path / expected)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_validate_accepts_a_good_manifest_and_lists_what_is_only_declared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0; -o json says valid, the preset, and the declared-only fields the file sets."""
    file = tmp_path / "tidemesh.yaml"
    file.write_text(
        "apiVersion: tidemesh.dev/v1alpha1\nkind: Mesh\npreset: staging\n"
        "tenants: {named: {acme: {weight: 2, allowedKinds: [echo]}}}\n"
    )
    code, out, _ = _run(["config", "validate", "-f", str(file), "-o", "json"], capsys)
    assert code == 0
    assert json.loads(out) == {
        "file": str(file),
        "valid": True,
        "preset": "staging",
        "declaredOnly": ["tenants.named.acme.allowedKinds"],
    }


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "apiVersion: tidemesh.dev/v1alpha1\nkind: Mesh\npools: {inference: {concurency: 4}}\n",
            "pools.inference.concurency: unknown key; did you mean concurrency?",
        ),
        (
            "apiVersion: tidemesh.dev/v1alpha1\nkind: Mesh\nendpoints: {public: {auth: {jwtSecret: hunter2}}}\n",
            "endpoints.public.auth.jwtSecret: an inline secret is refused",
        ),
        ("kind: Mesh\n", "apiVersion: is required"),
    ],
)
def test_validate_refuses_a_bad_manifest_with_exit_2_naming_the_path(
    text: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input: exit 2, the file and the field's path on stderr, and never the secret itself."""
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    code, out, err = _run(["config", "validate", "-f", str(file)], capsys)
    assert code == 2 and out == ""
    assert f"tidemesh: invalid argument: {file}: {said}" in err
    assert "hunter2" not in err


def test_up_refuses_a_bad_manifest_or_flag_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`up -f` with a typo, `up --pool-workers` with a bad entry: exit 2 naming the field or flag; no state dir."""
    file = tmp_path / "bad.yaml"
    file.write_text(
        f"apiVersion: tidemesh.dev/v1alpha1\nkind: Mesh\nstateDir: {tmp_path / 's'}\ndurability: {{fsink: 1}}\n"
    )
    code, _, err = _run(["up", "-f", str(file)], capsys)
    assert code == 2 and "durability.fsink: unknown key; did you mean fsync?" in err
    code, _, err = _run(["up", "--state-dir", str(tmp_path / "s"), "--pool-workers", "gpu=2"], capsys)
    assert code == 2 and "--pool-workers: expected POOL=N with NAME in ingestion" in err
    code, _, err = _run(["up", "--state-dir", str(tmp_path / "s"), "--autoscale", "inference=3:2"], capsys)
    assert code == 2 and "--autoscale (pools.inference.autoscale.min): must be ≤ max (2), got 3" in err
    assert not (tmp_path / "s").exists()


def test_plan_f_prints_the_process_table_of_the_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`plan -f` with prod: three NATS nodes, two gateways, two general workers, two inference replicas."""
    file = tmp_path / "prod.yaml"
    file.write_text(f"apiVersion: tidemesh.dev/v1alpha1\nkind: Mesh\npreset: prod\nstateDir: {tmp_path / 's'}\n")
    code, out, err = _run(["plan", "-f", str(file), "--port", "0", "-o", "json", "-v"], capsys)
    assert code == 0, err
    names = [p["name"] for p in json.loads(out)["processes"]]
    assert names == [
        "nats-1", "nats-2", "nats-3", "scheduler", "inference", "inference-2", "worker-1", "worker-2",
        "gateway-1", "gateway-2", "envoy",
    ]  # fmt: skip
    assert f"manifest: {file} (preset prod)" in err and "--port overrides endpoints.public.port: 8080" in err


def test_presets_explain_and_diff_presets_speak_json(capsys: pytest.CaptureFixture[str]) -> None:
    """-o json of each: the presets with every choice, one field's explanation, the fields two presets differ on."""
    code, out, _ = _run(["config", "presets", "-o", "json"], capsys)
    presets = {p["name"]: p for p in json.loads(out)}
    assert code == 0 and list(presets) == ["dev", "staging", "prod"]
    assert {"field": "durability.fsync", "value": "interval"}.items() <= presets["dev"]["choices"][0].items()
    code, out, _ = _run(["config", "explain", "durability.cluster.nodes", "-o", "json"], capsys)
    nodes = json.loads(out)
    assert code == 0 and nodes["default"] == 1 and nodes["presets"]["prod"]["value"] == 3
    code, out, _ = _run(["config", "diff-presets", "dev", "prod", "-o", "json"], capsys)
    fields = {d["field"]: d for d in json.loads(out)}
    assert (
        code == 0 and fields["durability.fsync"]["dev"] == "interval" and fields["durability.fsync"]["prod"] == "always"
    )
    code, out, _ = _run(["config", "schema", "-o", "json"], capsys)
    assert code == 0 and json.loads(out) == json.loads(SCHEMA_PATH.read_text())


def test_explain_table_and_a_field_that_does_not_exist(capsys: pytest.CaptureFixture[str]) -> None:
    """The table names the field, its default, each preset's value and why; a typo is exit 2 with suggestions."""
    code, out, _ = _run(["config", "explain", "durability.fsync"], capsys)
    assert code == 0
    assert out.startswith("durability.fsync (one of 'always', 'interval')\n")
    assert '  dev: "interval" — a crash on a laptop' in out and "  trade-off: always loses no acknowledged" in out
    code, _, err = _run(["config", "explain", "durabilty.fsync"], capsys)
    assert code == 2 and "durabilty.fsync: no such manifest field; did you mean durability.fsync or" in err


def test_export_of_a_state_dir_where_no_mesh_ran_is_unavailable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 4 and what to do: there is no plan.json, so no mesh to read."""
    code, out, err = _run(["config", "export", "--state-dir", str(tmp_path)], capsys)
    assert code == 4 and out == ""
    assert f"no mesh has run from {tmp_path}" in err and "tidemesh up" in err


def test_the_yaml_examples_in_the_readme_validate() -> None:
    """Every ```yaml block of the README that is a manifest (apiVersion tidemesh.dev/…) resolves."""
    text = (REPO / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    manifests: list[Any] = [yaml.safe_load(b) for b in blocks if "apiVersion: tidemesh.dev/" in b]
    assert manifests, "the README shows no manifest"
    from mesh.manifest import resolve

    for document in manifests:
        resolve(document, "README.md")


def test_an_append_flag_given_once_is_explicit() -> None:
    """`up --model-repository DIR` (an append action) is seen as given, not crashed on."""
    from clients.cli._config import explicit_options

    assert explicit_options(PARSER, ["up", "--model-repository", "examples/models"]) == {"model_repositories"}
    assert explicit_options(PARSER, ["up", "--model-repository", "a", "--model-repository", "b", "--workers", "2"]) == {
        "model_repositories",
        "workers",
    }
