"""`tidemesh config render kubernetes`: the objects validate offline against the Kubernetes API,
every workload of the manifest has its controller, probes, PDB and resources, its commands are the
plan's, and no secret ever reaches the rendering."""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import stat
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from clients.cli._main import main
from mesh.errors import InvalidArgument
from mesh.kube import KubeOptions, Rendering, render_kubernetes
from mesh.kube._credentials import issue
from mesh.kube._stage import stage
from mesh.manifest import plan_arguments, resolve
from mesh.supervisor import build_plan
from tests._kube import script_leaves, script_sources

REPO = Path(__file__).resolve().parents[2]
HEADER = {"apiVersion": "tidemesh.dev/v1alpha1", "kind": "Mesh"}
DEV = {**HEADER, "preset": "dev"}
PROD = {
    **HEADER,
    "preset": "prod",
    "metadata": {"name": "tide"},
    "pools": {
        "ingestion": {"workers": 2, "autoscale": {"min": 2, "max": 8}},
        "orchestration": {"autoscale": {"min": 1, "max": 4}},
        "inference": {"workers": 1, "concurrency": 16, "autoscale": {"min": 1, "max": 6}, "caps": {"memoryMb": 2048}},
        "post-processing": {"workers": 1, "caps": {"cpus": 1.5}},
    },
    "classes": {"batch": {"maxDepth": 1000}},
    "tenants": {"named": {"acme": {"weight": 3}}},
    "inference": {"triton": {"enabled": True, "devices": "gpu", "modelRepositories": [str(REPO / "examples/models")]}},
    "endpoints": {"public": {"port": 443, "auth": {"jwtAudience": "tide-api"}}},
    "roles": {"reader": {"permissions": ["task.read"]}},
}
# The oldest Kubernetes minor still commonly run, and the newest kubernetes-validate knows.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
POOLS = ("ingestion", "orchestration", "inference", "post-processing")


def _render(document: dict[str, Any], **options: Any) -> Rendering:
    return render_kubernetes(resolve(document, "test"), KubeOptions(**options))


@pytest.fixture(scope="module")
def dev() -> Rendering:
    return _render(DEV)


@pytest.fixture(scope="module")
def prod() -> Rendering:
    return _render(PROD, namespace="mesh", public_hosts=("mesh.example.com",))


def _by(rendering: Rendering, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendering.all_objects() if o["kind"] == kind}


def _workloads(rendering: Rendering) -> dict[str, dict[str, Any]]:
    return {**_by(rendering, "Deployment"), **_by(rendering, "StatefulSet")}


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("which", ["dev", "prod"])
def test_every_object_validates_against_the_kubernetes_schemas(
    which: str, version: str, request: pytest.FixtureRequest
) -> None:
    """Strict validation (unknown fields refused) of every object, the Secrets' shapes too."""
    rendering: Rendering = request.getfixturevalue(which)
    problems = []
    for obj in rendering.all_objects():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: {list(exc.path)}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_the_validation_catches_a_wrong_object(dev: Rendering) -> None:
    """The check above can fail: a misspelt field in a rendered Deployment is refused."""
    deployment = yaml.safe_load(yaml.safe_dump(_by(dev, "Deployment")["tidemesh-scheduler"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readynessProbe"):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_every_workload_has_its_controller_probes_pdb_service_and_resources(prod: Rendering) -> None:
    """Each service, NATS and each pool's workers: a Deployment or StatefulSet with the manifest's
    replicas, exec probes, requests and limits, a PDB and a Service selecting its pods."""
    workloads = _workloads(prod)
    expected = {
        "tide-nats": 3,
        "tide-triton": 1,
        "tide-scheduler": 1,
        "tide-inference": 2,  # the prod preset
        "tide-worker": 2,
        "tide-worker-ingestion": 2,
        "tide-worker-orchestration": 1,  # autoscaled from 0 dedicated workers: its minimum
        "tide-worker-inference": 1,
        "tide-worker-post-processing": 1,
        "tide-gateway": 2,
        "tide-envoy": 2,  # as many as the gateways behind it
    }
    assert {name: w["spec"]["replicas"] for name, w in workloads.items()} == expected
    pdbs, services = _by(prod, "PodDisruptionBudget"), _by(prod, "Service")
    for name, workload in workloads.items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        container = _container(workload)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = container[probe]["exec"]["command"]
            assert command[:4] == ["python", "-m", "mesh.kube", "probe"], (name, probe)
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], name
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == labels and pdbs[name]["spec"]["maxUnavailable"] == 1
        assert services[name]["spec"]["selector"] == labels
        assert workload["spec"]["selector"]["matchLabels"] == labels


def test_each_autoscaled_pool_has_an_autoscaler_on_its_queue_within_its_bounds(prod: Rendering) -> None:
    """One HPA per pool with autoscale bounds, on the scheduler's recommendation for that pool
    (tidemesh_scale_desired_replicas, one per replica); none for others."""
    autoscalers = _by(prod, "HorizontalPodAutoscaler")
    assert set(autoscalers) == {"tide-worker-ingestion", "tide-worker-orchestration", "tide-worker-inference"}
    inference = autoscalers["tide-worker-inference"]["spec"]
    assert (inference["minReplicas"], inference["maxReplicas"]) == (1, 6)
    assert inference["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tide-worker-inference",
    }
    (metric,) = inference["metrics"]
    assert metric["external"]["metric"] == {
        "name": "tidemesh_scale_desired_replicas",
        "selector": {"matchLabels": {"pool": "inference"}},
    }
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}  # a replica each


def test_resources_come_from_the_manifest_caps(prod: Rendering) -> None:
    """A pool's memory cap is its workers' limit, its CPU cap their request and limit (the general
    workers take the smallest of every pool's, as the plan does); Triton on GPUs asks for one."""
    workloads = _workloads(prod)
    limits = {name: _container(w)["resources"]["limits"] for name, w in workloads.items()}
    assert limits["tide-worker-inference"]["memory"] == "2048Mi"
    assert limits["tide-worker"]["memory"] == "2048Mi"
    assert limits["tide-worker-ingestion"]["memory"] == "4096Mi"  # the prod preset's cap for every worker
    assert limits["tide-worker-post-processing"]["cpu"] == "1500m"
    assert limits["tide-worker"]["cpu"] == "1500m"  # the smallest of the pools' and the prod preset's 2 cores
    assert limits["tide-worker-ingestion"]["cpu"] == "2000m"  # the prod preset's, for every worker
    assert _container(workloads["tide-worker-post-processing"])["resources"]["requests"]["cpu"] == "1500m"
    assert limits["tide-triton"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in limits["tide-inference"]
    triton = workloads["tide-triton"]["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in triton["tolerations"]
    cpu_only = _workloads(_render({**DEV, "inference": {"triton": {"enabled": True, "devices": "cpu"}}}))
    assert "nvidia.com/gpu" not in _container(cpu_only["tidemesh-triton"])["resources"]["limits"]


def test_the_commands_are_the_plans_with_in_cluster_addresses(prod: Rendering, tmp_path: Path) -> None:
    """Every flag the plan gives a service reaches its pod; only addresses and state paths change."""
    plan = build_plan(tmp_path / "state", **plan_arguments(resolve(PROD, "test")))
    workloads = _workloads(prod)
    pairs = {"scheduler": "tide-scheduler", "gateway-1": "tide-gateway", "worker-1": "tide-worker"}
    pairs |= {"inference": "tide-inference", "worker-inference-1": "tide-worker-inference"}
    for process, workload in pairs.items():
        local = plan.by_name(process).command
        pod = _container(workloads[workload])["command"]
        assert pod[0] == "python" and pod[1:3] == local[1:3]
        flags = [arg for arg in local if arg.startswith("--")]
        extra = ["--advertise"] if process == "inference" else []
        assert [arg for arg in pod if arg.startswith("--")] == flags + extra, process
        assert not any(str(tmp_path) in arg or "127.0.0.1" in arg for arg in pod), pod
    scheduler = _container(workloads["tide-scheduler"])["command"]
    assert scheduler[scheduler.index("--lane-max-depth") + 1] == "batch=1000"
    gateway = _container(workloads["tide-gateway"])["command"]
    assert gateway[gateway.index("--jwt-audience") + 1] == "tide-api"
    sessions = gateway[gateway.index("--session-hosts") + 1].split(",")
    assert sessions == [f"tide-worker-{i}.tide-worker.mesh.svc.cluster.local:50051" for i in (0, 1)]
    nats = gateway[gateway.index("--nats") + 1].split(",")
    assert nats == [f"tls://tide-nats-{i}.tide-nats.mesh.svc.cluster.local:4222" for i in range(3)]
    worker = _container(workloads["tide-worker-ingestion"])["command"]
    assert worker[worker.index("--tenant-weights") + 1] == "acme=3"
    inference = _container(workloads["tide-inference"])["command"]
    assert inference[inference.index("--model-repository") + 1] == "/models/models"
    assert inference[-1] == "$(POD_NAME).tide-inference.mesh.svc.cluster.local:50051"
    triton = _container(workloads["tide-triton"])["command"]
    assert triton[:4] == ["python", "-m", "mesh.kube", "triton"] and "--config-name" in triton
    roles = _by(prod, "ConfigMap")["tide-gateway-config"]["data"]["auth.roles.json"]
    assert "task.read" in roles


def test_nats_is_a_three_node_jetstream_statefulset_with_tls_routes(prod: Rendering) -> None:
    """Routes between the pods' stable names, TLS on clients and routes, users from the Secret, the
    store on a claim template, nodes on different hosts, lame duck on stop."""
    nats = _workloads(prod)["tide-nats"]
    assert nats["kind"] == "StatefulSet" and nats["spec"]["serviceName"] == "tide-nats"
    config = _by(prod, "ConfigMap")["tide-nats-config"]["data"]["nats.conf"]
    routes = re.search(r"routes: \[(.*)\]", config)
    assert routes is not None
    assert routes.group(1).split(", ") == [
        f"nats-route://tide-nats-{i}.tide-nats.mesh.svc.cluster.local:6222" for i in range(3)
    ]
    assert config.count("tls {") == 2 and "verify: true" in config and 'include "authorization.conf"' in config
    assert "sync_interval: always" in config and "password" not in config
    (claim,) = nats["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    pod = nats["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"
    assert "ldm=" in _container(nats)["lifecycle"]["preStop"]["exec"]["command"][-1]
    assert _by(prod, "Service")["tide-nats"]["spec"]["clusterIP"] == "None"


def test_envoy_sends_to_the_gateways_by_name_and_faces_the_network_as_the_manifest_says(prod: Rendering) -> None:
    """Its bootstrap (mesh.edge) names the headless gateway service, STRICT_DNS, TLS via SDS files."""
    bootstrap = yaml.safe_load(_by(prod, "ConfigMap")["tide-envoy-config"]["data"]["envoy.yaml"])
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    for name in ("gateway_grpc", "gateway_http"):
        assert clusters[name]["type"] == "STRICT_DNS"
        (endpoint,) = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert endpoint["endpoint"]["address"]["socket_address"]["address"] == "tide-gateway.mesh.svc.cluster.local"
    service = _by(prod, "Service")["tide-envoy"]["spec"]
    assert service["type"] == "LoadBalancer" and service["ports"][0]["port"] == 443
    assert _by(prod, "Service")["tide-gateway"]["spec"]["clusterIP"] == "None"  # every gateway pod, for the ring hash
    assert _by(_render(DEV), "Service")["tidemesh-envoy"]["spec"]["type"] == "ClusterIP"  # dev: 127.0.0.1


def test_secrets_are_placeholders_and_every_key_a_pod_mounts_is_filled_by_the_script(prod: Rendering) -> None:
    """The Secrets hold empty values; each key a pod's projected volume names is one the script
    creates, from $OUT (the cluster's leaves) or $STATE_DIR."""
    secrets = _by(prod, "Secret")
    assert secrets and all(set(s["data"].values()) == {""} for s in secrets.values())
    filled = script_sources(prod.script)
    for name, workload in _workloads(prod).items():
        (source,) = [v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == "source"]
        for entry in source["projected"]["sources"]:
            if "secret" in entry:
                for item in entry["secret"]["items"]:
                    assert (entry["secret"]["name"], item["key"]) in filled, (name, item)
                    assert item["key"] in secrets[entry["secret"]["name"]]["data"]
    assert set(filled) == {(name, key) for name, s in secrets.items() for key in s["data"]}


def _secret_values(folder: Path) -> list[bytes]:
    """Every secret under `folder`: private keys, NATS passwords, the gateway's keys, SDS files."""
    values: list[bytes] = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".json" and path.parent.name == "nats":
            values.append(yaml.safe_load(path.read_text())["password"].encode())
        elif path.suffix == ".key" or (path.parent.name == "auth" and path.name != "roles.json"):
            values.append(path.read_bytes().strip())
    for config in folder.rglob("authorization.conf"):
        values += [p.encode() for p in re.findall(r'password: "([^"]+)"', config.read_text())]
    return values


def _needles(value: bytes) -> list[bytes]:
    """A value as it could show: whole, base64'd, or any line of a PEM body."""
    lines = [line.strip() for line in value.splitlines() if len(line.strip()) >= 16 and b"-----" not in line]
    return [value, base64.b64encode(value), *lines]


def test_no_rendered_object_holds_a_secret_of_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a filled state dir (its root adopted by the rendering's own plan) and the throwaway
    plan kept, no key, password or token of either shows in any output: objects, shapes, script."""
    state = tmp_path / "state"
    first = _render(PROD, namespace="mesh")
    issue(state, state / "kubernetes" / "mesh", script_leaves(first.script), dt.timedelta(days=30))
    monkeypatch.setenv("TIDEMESH_CA_DIR", str(state / "pki"))  # the plan then issues from this state's root
    scratch = tmp_path / "scratch"
    rendering = render_kubernetes(resolve(PROD, "test"), KubeOptions(namespace="mesh"), scratch=scratch)
    code = _cli(["config", "render", "kubernetes", "-o", str(tmp_path / "out")], monkeypatch, state)
    assert code == 0
    texts = [rendering.documents(rendering.all_objects()), rendering.script]
    texts += [p.read_text() for p in (tmp_path / "out").iterdir()]
    texts += [yaml.safe_dump(o) for o in rendering.all_objects()]
    values = _secret_values(state) + _secret_values(scratch)
    assert len(values) > 20  # leaves, users, the gateway's keys: the check has something to find
    output = "\n".join(texts).encode()
    leaked = [needle[:12] for value in values for needle in _needles(value) if needle in output]
    assert not leaked, f"secret material in the rendering: {leaked}"
    capsys.readouterr()


def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch, cwd: Path) -> int:
    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return int(exited.value.code or 0)


def test_the_credentials_step_issues_leaves_for_the_in_cluster_names(prod: Rendering, tmp_path: Path) -> None:
    """Leaves answer to every name their pods are reached by (clients check them; Envoy's also to
    the public names asked for) and live the days asked; the NATS users' block holds each
    component's user; every file is owner-only."""
    from cryptography import x509

    assert "--leaf-days 30" in prod.script
    out = tmp_path / "state" / "kubernetes" / "mesh"
    issue(tmp_path / "state", out, script_leaves(prod.script), dt.timedelta(days=10))
    cert = x509.load_pem_x509_certificate((out / "pki" / "inference.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "*.tide-inference.mesh.svc.cluster.local" in names and "tide-inference.mesh.svc" in names
    envoy = x509.load_pem_x509_certificate((out / "pki" / "envoy.crt").read_bytes())
    envoy_names = envoy.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mesh.example.com" in envoy_names.get_values_for_type(x509.DNSName)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=9) < lifetime < dt.timedelta(days=11)
    block = (out / "authorization.conf").read_text()
    assert all(f'user: "{user}"' in block for user in ("scheduler", "worker", "gateway", "inference"))
    for path in [out / "authorization.conf", *(out / "pki").glob("*.key")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(out.stat().st_mode) == 0o700


def test_stage_copies_a_projected_volume_owner_only_and_skips_kubernetes_bookkeeping(tmp_path: Path) -> None:
    """The layout the kubelet writes (..data links to a timestamped folder) comes out as plain
    files, mode 600 in folders of mode 700, once each."""
    source = tmp_path / "source"
    data = source / "..2026_12_01_00_00_00.1"
    (data / "pki").mkdir(parents=True)
    (data / "nats").mkdir()
    (data / "pki" / "ca.crt").write_text("root")
    (data / "nats" / "worker.json").write_text('{"user": "worker", "password": "p"}')
    os.chmod(data / "nats" / "worker.json", 0o440)
    (source / "..data").symlink_to(data.name)
    (source / "pki").symlink_to("..data/pki")
    (source / "nats").symlink_to("..data/nats")
    target = tmp_path / "state"
    assert sorted(stage(source, target)) == ["nats/worker.json", "pki/ca.crt"]
    assert (target / "nats" / "worker.json").read_text() == '{"user": "worker", "password": "p"}'
    for path in (target / "nats" / "worker.json", target / "pki" / "ca.crt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and not path.is_symlink()
    assert stat.S_IMODE((target / "nats").stat().st_mode) == 0o700
    assert sorted(p.name for p in target.iterdir()) == ["nats", "pki"]


@pytest.mark.parametrize(
    ("document", "options", "field"),
    [
        ({**HEADER, "metadata": {"name": "Tide_Mesh"}}, {}, "metadata.name"),
        ({**HEADER, "experiments": {"insecure": True}}, {}, "experiments.insecure"),
        (HEADER, {"namespace": "My Space"}, "--namespace"),
        (HEADER, {"leaf_days": 0}, "--leaf-days"),
        (HEADER, {"image": ""}, "--image"),
    ],
)
def test_what_cannot_be_rendered_is_refused_naming_the_field(
    document: dict[str, Any], options: dict[str, Any], field: str
) -> None:
    """A clear InvalidArgument naming the manifest field or the option, before anything is built."""
    with pytest.raises(InvalidArgument) as refused:
        _render(document, **options)
    assert refused.value.field == field


def test_two_model_repositories_of_one_name_are_refused(tmp_path: Path) -> None:
    """On Kubernetes each repository is /models/<its folder's name>: two of one name would collide."""
    for parent in ("a", "b"):
        (tmp_path / parent / "models").mkdir(parents=True)
    repositories = [str(tmp_path / "a" / "models"), str(tmp_path / "b" / "models")]
    document = {**HEADER, "inference": {"triton": {"enabled": True, "modelRepositories": repositories}}}
    with pytest.raises(InvalidArgument) as refused:
        render_kubernetes(resolve(document, "test"))
    assert refused.value.field == "inference.triton.modelRepositories"


def test_the_cli_writes_a_folder_or_the_objects_without_secrets_to_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o DIR: mesh.yaml, secrets.yaml (shapes) and an executable create-secrets.sh, notes on
    stderr; -o - (the default): YAML on stdout with no Secret in it (applying one would empty it)."""
    file = tmp_path / "tidemesh.yaml"
    file.write_text(yaml.safe_dump(DEV))
    assert _cli(["config", "render", "kubernetes", "-f", str(file), "-o", "k8s"], monkeypatch, tmp_path) == 0
    out, err = capsys.readouterr()
    assert out == "" and "create-secrets.sh" in err
    assert os.access(tmp_path / "k8s" / "create-secrets.sh", os.X_OK)
    kinds = {d["kind"] for d in yaml.safe_load_all((tmp_path / "k8s" / "mesh.yaml").read_text())}
    assert "Secret" not in kinds and {"StatefulSet", "Deployment", "PodDisruptionBudget"} <= kinds
    shapes = list(yaml.safe_load_all((tmp_path / "k8s" / "secrets.yaml").read_text()))
    assert shapes and {d["kind"] for d in shapes} == {"Secret"}
    assert _cli(["config", "render", "kubernetes", "-f", str(file)], monkeypatch, tmp_path) == 0
    out, err = capsys.readouterr()
    documents = list(yaml.safe_load_all(out))
    assert documents and all(d["kind"] != "Secret" for d in documents)
    assert "Secrets are not in this stream" in err
    assert _cli(["config", "render", "kubernetes", "--namespace", "Bad"], monkeypatch, tmp_path) == 2
    assert "--namespace" in capsys.readouterr().err


def test_pools_without_workloads_are_said(dev: Rendering) -> None:
    """A pool with neither dedicated workers nor autoscale gets no Deployment; the notes say the
    general workers serve it."""
    assert not any(name.startswith("tidemesh-worker-") for name in _workloads(dev))
    assert all(any(note.startswith(f"pools.{pool}:") for note in dev.notes) for pool in POOLS)
