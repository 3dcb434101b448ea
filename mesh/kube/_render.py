"""A manifest as the Kubernetes objects a platform team applies (`tidemesh config render kubernetes`).

    Manifest ──build_plan (throwaway state dir)──► Plan ──_derive──► workloads ──► objects
                                                                              └──► create-secrets.sh

What it renders, and why this shape:

- **NATS: our own StatefulSet, not the official Helm chart's values.** Its config is the one
  `tidemesh up` runs (`mesh.supervisor._nats.nats_config` with `mesh.security._nats`'s TLS blocks:
  TLS-only clients, mutual TLS on the routes between the pods' stable names), so the cluster runs
  what the tests run; the chart would re-express the users and their permissions in its own values,
  which cannot be checked offline without the chart. One node per manifest node (1, 3 or 5), the
  JetStream store on a volumeClaimTemplate, spread over hosts (a node per host: losing one keeps the
  R3 quorum), lame-duck mode on stop.
- **Every other command comes from the plan** (`_derive`): the flags a manifest turns into are
  written once, in `build_plan`.
- **StatefulSets where members are addressed one by one**: inference replicas (each registers its own
  endpoint: `--advertise $(POD_NAME).…`) and the general workers (the gateways' session hosts, by
  position); Deployments for the scheduler, each pool's workers, the gateways, Triton and Envoy.
- **Secrets by reference only.** Every pod mounts one Secret of its component; the rendering holds
  their shape with empty values, and `create-secrets.sh` fills them from a state dir (issuing leaves
  for the in-cluster names from that state's root, reusing its NATS users and the gateway's keys):
  no secret is ever part of the rendering. An init container copies them owner-only into a memory
  folder laid out like a state dir (`_stage`), because the services refuse key files others can read.
- **Probes run in the pod** (`python -m mesh.kube probe`, standard library only): the ops ports want a
  client certificate of the mesh's root, which the kubelet has not.
- **An autoscaler per autoscaled pool: a HorizontalPodAutoscaler on the external metric
  `tidemesh_scale_desired_replicas{pool}`** (the scheduler's scale recommendation — depth, the oldest
  item's age, the measured drain rate — as a gauge, targeted at one per replica; served to the HPA by
  prometheus-adapter or KEDA's metrics server). An HPA validates offline against the built-in API; a
  KEDA ScaledObject is a CRD no offline schema covers, and needs KEDA installed.
"""

from __future__ import annotations

import importlib.metadata
import math
import shlex
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from mesh.edge import EdgeConfig, EdgeTls, render_yaml
from mesh.errors import InvalidArgument
from mesh.kube._derive import ENVOY_ADMIN_SOCKET, PYTHON, StateFile, Workload, derive
from mesh.kube._names import (
    GRPC_PORT,
    MODELS_DIR,
    NATS_CLIENT_PORT,
    NATS_CLUSTER_PORT,
    NATS_MONITOR_PORT,
    NATS_STORE,
    OPS_PORT,
    POD_STATE,
    PUBLIC_PORT_IF_ZERO,
    RUN_DIR,
    SOURCE_DIR,
    TRITON_GRPC_PORT,
    Names,
)
from mesh.manifest import Manifest, base_of, declared_only, encode, plan_arguments
from mesh.security import CertificateAuthority
from mesh.security._nats import cluster_tls_block, tls_block
from mesh.supervisor import build_plan
from mesh.supervisor._nats import nats_config
from mesh.supervisor._plan import _collector, otlp_url

APP = "tidemesh"
USER_ID = 10001
METRIC = "tidemesh_scale_desired_replicas"  # the scheduler's ScaleRecommendation, per pool
NATS_PID = f"{POD_STATE}/nats.pid"

# Requests and limits where the manifest sets no cap: (cpu request, memory request MiB, memory limit MiB).
# Envoy's overload manager budgets a 1 GiB heap (mesh.edge): its limit leaves room above it.
_RESOURCES = {
    "nats": ("500m", 512, 2048),
    "scheduler": ("250m", 256, 1024),
    "inference": ("1", 1024, 4096),
    "triton": ("1", 2048, 8192),
    "worker": ("250m", 256, 2048),
    "gateway": ("250m", 256, 1024),
    "envoy": ("250m", 256, 1536),
}


def _version() -> str:
    try:
        return importlib.metadata.version("tidemesh")
    except importlib.metadata.PackageNotFoundError:
        return "latest"


@dataclass(frozen=True)
class KubeOptions:
    """How to render beyond what the manifest says: where, with which image and storage."""

    namespace: str = "tidemesh"
    image: str = field(default_factory=lambda: f"tidemesh:{_version()}")
    cluster_domain: str = "cluster.local"
    nats_storage: str = "10Gi"
    storage_class: str = ""  # "": the cluster's default
    models_storage: str = "20Gi"
    public_hosts: tuple[str, ...] = ()  # names clients reach Envoy by: its leaf answers to them
    leaf_days: int = 30

    def check(self) -> None:
        if not self.image or any(c.isspace() for c in self.image):
            raise InvalidArgument("--image", f"expected an image reference, got {self.image!r}")
        if not 1 <= self.leaf_days <= 397:
            raise InvalidArgument("--leaf-days", f"expected 1 to 397 days, got {self.leaf_days}")


@dataclass(frozen=True)
class Rendering:
    """The objects to apply, the Secrets' shapes, the script that fills them, and what the
    rendering could not carry over from the manifest (`notes`)."""

    objects: list[dict[str, Any]]
    secrets: list[dict[str, Any]]
    script: str
    notes: list[str]

    def documents(self, objects: Iterable[dict[str, Any]] | None = None) -> str:
        """YAML documents, headed by the notes as comments."""
        header = "".join(f"# note: {note}\n" for note in self.notes)
        body = str(
            yaml.safe_dump_all(
                list(self.objects if objects is None else objects), sort_keys=False, default_flow_style=False, width=120
            )
        )
        return "# Generated by `tidemesh config render kubernetes`; re-render rather than edit.\n" + header + body

    def all_objects(self) -> list[dict[str, Any]]:
        return [*self.secrets, *self.objects]


def _labels(names: Names, key: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": names.prefix,
        "app.kubernetes.io/component": key,
    }


def _meta(names: Names, name: str, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": names.namespace,
        "labels": {**_labels(names, key), "app.kubernetes.io/managed-by": APP},
        **extra,
    }


def _mib(value: int) -> str:
    return f"{value}Mi"


def _resources(w: Workload, gpu: bool) -> dict[str, Any]:
    """Requests and limits: the manifest's caps where it sets them (a worker's caps are the
    plan's: the smallest of its pools', else every worker's), else `_RESOURCES`."""
    cpu, memory_request, memory_limit = _RESOURCES[w.role]
    if w.role == "worker" and w.memory_cap_mb:
        memory_limit = w.memory_cap_mb
        memory_request = min(memory_request, memory_limit)
    requests: dict[str, Any] = {"cpu": cpu, "memory": _mib(memory_request)}
    limits: dict[str, Any] = {"memory": _mib(memory_limit)}
    if w.role == "worker" and w.cpus:
        requests["cpu"] = limits["cpu"] = f"{math.ceil(w.cpus * 1000)}m"
    if gpu:
        limits["nvidia.com/gpu"] = 1
    return {"requests": requests, "limits": limits}


def _probes(command: Sequence[str]) -> dict[str, Any]:
    action = {"exec": {"command": list(command)}}
    return {
        # Loading the embedded model or joining the cluster may take minutes; nothing else is
        # checked until it answers once.
        "startupProbe": {**action, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {**action, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**action, "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 3},
    }


def _security_context(read_only: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only,
        "capabilities": {"drop": ["ALL"]},
    }


def _ports(w: Workload, public_port: int) -> list[dict[str, Any]]:
    if w.role == "nats":
        return [
            {"name": "client", "containerPort": NATS_CLIENT_PORT},
            {"name": "cluster", "containerPort": NATS_CLUSTER_PORT},
        ]
    if w.role == "triton":
        return [{"name": "grpc", "containerPort": TRITON_GRPC_PORT}]
    if w.role == "envoy":
        return [{"name": "public", "containerPort": public_port}]
    return [{"name": "grpc", "containerPort": GRPC_PORT}, {"name": "ops", "containerPort": OPS_PORT}]


def secret_name(names: Names, component: str) -> str:
    return names.of(f"{component}-credentials")


def _source_volume(names: Names, w: Workload) -> dict[str, Any]:
    """The pod's Secret and ConfigMap, as one read-only tree laid out like a state dir."""
    secrets = [f for f in w.files if f.secret]
    configs = [f for f in w.files if not f.secret]
    sources: list[dict[str, Any]] = [
        {
            "secret": {
                "name": secret_name(names, w.component),
                "items": [{"key": f.key, "path": f.path} for f in secrets],
            }
        }
    ]
    if configs:
        sources.append(
            {
                "configMap": {
                    "name": names.of(f"{w.key}-config"),
                    "items": [{"key": f.key, "path": f.path} for f in configs],
                }
            }
        )
    return {"name": "source", "projected": {"defaultMode": 0o440, "sources": sources}}


def _pod_template(
    w: Workload, names: Names, manifest: Manifest, options: KubeOptions, public_port: int, gpu: bool, models: str
) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        _source_volume(names, w),
        # Secrets end up here: memory, never the node's disk.
        {"name": "state", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "state", "mountPath": POD_STATE},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if w.role == "envoy":
        volumes.append({"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
        mounts.append({"name": "run", "mountPath": RUN_DIR})
    if w.role == "nats":
        mounts.append({"name": "jetstream", "mountPath": NATS_STORE.rsplit("/", 1)[0]})
    if w.role == "triton":
        # The Python backend's stubs exchange tensors through shared memory.
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}})
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    if models and w.role in ("triton", "inference"):
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": models, "readOnly": True}})
        mounts.append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *({"name": key, "value": value} for key, value in sorted(w.env.items())),
    ]
    stage = [PYTHON, "-m", "mesh.kube", "stage", SOURCE_DIR, POD_STATE, *(["--envoy-sds"] if w.role == "envoy" else [])]
    container: dict[str, Any] = {
        "name": w.role,
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(w.command),
        "ports": _ports(w, public_port),
        "env": env,
        "resources": _resources(w, gpu),
        **_probes(w.probe),
        "volumeMounts": mounts,
        # tritonserver writes beside its binary (its backends' caches): its root stays writable.
        "securityContext": _security_context(read_only=w.role != "triton"),
    }
    if w.role == "nats":
        # Lame-duck mode: clients move to the other nodes before this one stops.
        container["lifecycle"] = {"preStop": {"exec": {"command": [w.command[0], "--signal", f"ldm={NATS_PID}"]}}}
    grace = max(30, math.ceil(w.stop_grace_s) + 5) if w.role != "nats" else 60
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "fsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": grace,
        "initContainers": [
            {
                "name": "stage",
                "image": options.image,
                "imagePullPolicy": "IfNotPresent",
                "command": stage,
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                "volumeMounts": [
                    {"name": "source", "mountPath": SOURCE_DIR, "readOnly": True},
                    {"name": "state", "mountPath": POD_STATE},
                ],
                "securityContext": _security_context(),
            }
        ],
        "containers": [container],
        "volumes": volumes,
    }
    if w.replicas > 1 or w.role == "nats":
        # A host's loss takes one member: NATS must keep its quorum (refuse to stack nodes), others should.
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule" if w.role == "nats" else "ScheduleAnyway",
                "labelSelector": {"matchLabels": _labels(names, w.key)},
            }
        ]
    if gpu:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"labels": _labels(names, w.key)}, "spec": spec}


def _workload_object(
    w: Workload, names: Names, manifest: Manifest, options: KubeOptions, public_port: int, models: str
) -> dict[str, Any]:
    gpu = w.role == "triton" and manifest.inference.triton.devices != "cpu"
    name = names.of(w.key)
    spec: dict[str, Any] = {
        "replicas": w.replicas,
        "selector": {"matchLabels": _labels(names, w.key)},
        "template": _pod_template(w, names, manifest, options, public_port, gpu, models),
    }
    if w.stateful:
        spec["serviceName"] = name
        spec["podManagementPolicy"] = "Parallel"  # NATS nodes find each other; no member waits for another
        if w.role == "nats":
            claim: dict[str, Any] = {
                "metadata": {"name": "jetstream"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": options.nats_storage}},
                },
            }
            if options.storage_class:
                claim["spec"]["storageClassName"] = options.storage_class
            spec["volumeClaimTemplates"] = [claim]
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(names, name, w.key), "spec": spec}
    if w.role in ("scheduler", "triton"):
        spec["strategy"] = {"type": "Recreate"}  # one at a time: the plan runs one of each
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(names, name, w.key), "spec": spec}


def _service(w: Workload, names: Names, manifest: Manifest, public_port: int) -> dict[str, Any]:
    name = names.of(w.key)
    ports = [{"name": p["name"], "port": p["containerPort"], "targetPort": p["name"]} for p in _ports(w, public_port)]
    spec: dict[str, Any] = {"selector": _labels(names, w.key), "ports": ports}
    if w.role == "envoy":
        facing = manifest.endpoints.public.host not in ("127.0.0.1", "::1")
        spec["type"] = "LoadBalancer" if facing else "ClusterIP"
        spec["ports"] = [{"name": "public", "port": manifest.endpoints.public.port or 443, "targetPort": "public"}]
    elif w.stateful or w.role == "gateway" or w.role == "worker":
        # Headless: members get their own names (StatefulSets), and Envoy's STRICT_DNS cluster sees every
        # gateway pod, so its ring hash keeps a session on one gateway.
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = w.role == "nats"  # routes form before JetStream is ready
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(names, name, w.key), "spec": spec}


def _pdb(w: Workload, names: Names) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(names, names.of(w.key), w.key),
        # One member at a time: NATS keeps its quorum; a singleton may still be drained (a short gap).
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _labels(names, w.key)}},
    }


def _autoscaler(w: Workload, names: Names, manifest: Manifest, bounds: tuple[int, int]) -> dict[str, Any]:
    pool = w.pools[0]
    low, high = bounds
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(names, names.of(w.key), w.key),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": names.of(w.key)},
            "minReplicas": max(low, 1),
            "maxReplicas": max(high, 1),
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": METRIC, "selector": {"matchLabels": {"pool": pool}}},
                        # The scheduler's recommendation is a replica count: one per replica.
                        "target": {"type": "AverageValue", "averageValue": "1"},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def _config_map(w: Workload, names: Names) -> dict[str, Any] | None:
    configs = {f.key: f.content for f in w.files if not f.secret}
    if not configs:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(names, names.of(f"{w.key}-config"), w.key),
        "data": configs,
    }


def _nats_config(manifest: Manifest, names: Names) -> str:
    nodes = manifest.durability.cluster.nodes
    obj = names.of("nats")
    leaf = CertificateAuthority(Path(POD_STATE) / "pki").files("nats")
    routes = tuple(f"nats-route://{names.member_host(obj, i)}:{NATS_CLUSTER_PORT}" for i in range(nodes))
    return nats_config(
        "$POD_NAME",
        Path(NATS_STORE),
        NATS_CLIENT_PORT,
        NATS_MONITOR_PORT,
        manifest.durability.fsync,
        NATS_CLUSTER_PORT if nodes > 1 else 0,
        routes if nodes > 1 else (),
        # The users and their passwords come from the Secret, beside this file.
        security=tls_block(leaf) + 'include "authorization.conf"\n',
        cluster_security=cluster_tls_block(leaf) if nodes > 1 else "",
        listen_host="0.0.0.0",
        extra=(
            f"http: 127.0.0.1:{NATS_MONITOR_PORT}",  # the pod's own probe only
            f"pid_file: {NATS_PID}",
            "lame_duck_duration: 30s",
            "lame_duck_grace_period: 10s",
        ),
    )


def _edge_config(manifest: Manifest, names: Names, public_port: int) -> str:
    """Envoy's bootstrap for the cluster: the gateways by their (headless) service name, STRICT_DNS."""
    public = manifest.endpoints.public
    tracing = manifest.observability.tracing
    gateway = names.service_host(names.of("gateway"))
    edge = EdgeConfig(
        listen_host="0.0.0.0",
        listen_port=public_port,
        grpc_upstreams=((gateway, GRPC_PORT),),
        http_upstreams=((gateway, OPS_PORT),),
        tls=EdgeTls(f"{POD_STATE}/pki/envoy-sds"),
        admin_socket=ENVOY_ADMIN_SOCKET,
        cors_allow_origins=public.cors.allow_origins,
        request_headers_timeout_s=public.limits.request_headers_timeout_seconds,
        otlp_collector=(
            _collector(otlp_url(tracing.otlp_endpoint), tracing.otlp_protocol) if tracing.otlp_endpoint else None
        ),
        trace_sampling=tracing.sampling_ratio,
    )
    return render_yaml(edge)


def _repositories(manifest: Manifest) -> dict[str, str]:
    found: dict[str, str] = {}
    for given in manifest.inference.triton.model_repositories:
        path = str(Path(given).expanduser().resolve())
        pod_path = f"{MODELS_DIR}/{Path(path).name}"
        if pod_path in found.values():
            raise InvalidArgument(
                "inference.triton.modelRepositories",
                f"two repositories are named {Path(path).name!r}: on Kubernetes each is "
                f"{MODELS_DIR}/<its folder's name>",
            )
        found[path] = pod_path
    return found


def _triton_args(plan_triton: Sequence[str], manifest: Manifest, repositories: Mapping[str, str]) -> list[str]:
    """The in-pod launcher's arguments: the plan's choices (trace settings), the devices the
    manifest asks for (gpu: each model's ``configs/gpu.pbtxt``), the user's repositories."""
    args = ["--grpc-port", str(TRITON_GRPC_PORT)]
    if manifest.inference.triton.devices != "cpu":
        args += ["--config-name", "gpu"]
    for pod_path in repositories.values():
        args += ["--model-repository", pod_path]
    traces = [
        arg for i, arg in enumerate(plan_triton) if arg == "--trace-config" or plan_triton[i - 1] == "--trace-config"
    ]
    return [*args, *(["--", *traces] if traces else [])]


def _leaf_hosts(names: Names, components: Iterable[str], options: KubeOptions) -> dict[str, list[str]]:
    hosts = {}
    for component in components:
        service = names.of(component)
        hosts[component] = names.hosts(service) + (list(options.public_hosts) if component == "envoy" else [])
    return hosts


def _script(
    names: Names,
    secrets: Mapping[str, list[StateFile]],
    leaves: Mapping[str, list[str]],
    options: KubeOptions,
    source: str,
) -> str:
    q = shlex.quote
    leaf_args = "".join(f" \\\n  --leaf {q(component + '=' + ','.join(hosts))}" for component, hosts in leaves.items())
    lines = [
        "#!/bin/sh",
        f"# Generated by `tidemesh config render kubernetes` from {source}: fills the mesh's Secrets.",
        "# It holds no secret. It issues (or reuses) them in STATE_DIR — the root, leaves for the in-cluster",
        "# names, the NATS users, the gateway's keys — and hands kubectl the files. STATE_DIR then holds the",
        "# mesh's root key and every credential: keep it as safe as the cluster's secrets (or offline).",
        f"# Leaves live {options.leaf_days} days: run this again before then, then `kubectl -n {names.namespace} "
        "rollout restart deploy,statefulset`.",
        "set -eu",
        'STATE_DIR="${1:-state}"',
        'PYTHON="${PYTHON:-python3}"',
        f"NAMESPACE={q(names.namespace)}",
        'OUT="$STATE_DIR/kubernetes/$NAMESPACE"',
        f'"$PYTHON" -m mesh.kube credentials --state-dir "$STATE_DIR" --out "$OUT" --leaf-days {options.leaf_days}'
        + leaf_args,
        'kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$NAMESPACE"',
    ]
    for name, files in secrets.items():
        sources = "".join(f' \\\n  --from-file={f.key}="{_source_of(f)}"' for f in files)
        lines.append(
            f'kubectl -n "$NAMESPACE" create secret generic {name}{sources} \\\n'
            f'  --dry-run=client -o yaml | kubectl -n "$NAMESPACE" apply -f -'
        )
    return "\n".join(lines) + "\n"


def _source_of(f: StateFile) -> str:
    """Where the script finds a Secret's file: what `credentials` made for the cluster (its leaves,
    the NATS users' block) under $OUT, the rest in the state dir as `tidemesh up` keeps it."""
    if f.path.startswith("pki/") or f.path == "authorization.conf":
        return f"$OUT/{f.path}"
    return f"$STATE_DIR/{f.path}"


def _notes(manifest: Manifest, workloads: Sequence[Workload], autoscaled: Mapping[str, tuple[int, int]]) -> list[str]:
    notes = []
    served = {w.pools[0] for w in workloads if w.role == "worker" and w.key != "worker"}
    for pool in manifest.pools.by_name():
        if pool not in served:
            notes.append(f"pools.{pool}: no dedicated workers and no autoscale: the general workers serve it")
    for pool, (low, _) in autoscaled.items():
        if low == 0:
            notes.append(f"pools.{pool}.autoscale.min is 0: a HorizontalPodAutoscaler keeps at least 1 replica")
    caps = {"general": manifest.pools.general.caps, **{n: p.caps for n, p in manifest.pools.by_name().items()}}
    for name, cap in caps.items():
        if cap.gpu_memory_mb is not None:
            # `tidemesh up`'s supervisor reads NVML beside each worker; a pod has no supervisor.
            notes.append(f"pools.{name}.caps.gpuMemoryMb: no Kubernetes resource holds it; not enforced in pods")
    if manifest.durability.cluster.hosts:
        notes.append("durability.cluster.hosts: for hosts without Kubernetes; here the NATS pods spread over nodes")
    for path in declared_only(encode(manifest), base_of(manifest)):
        notes.append(f"{path} is declared in the manifest but not enforced yet")
    return notes


def render_kubernetes(
    manifest: Manifest, options: KubeOptions | None = None, source: str = "the manifest", scratch: Path | None = None
) -> Rendering:
    """The objects that run `manifest` on Kubernetes (see the module's doc); InvalidArgument
    naming the field or option when it cannot be rendered. The throwaway plan is built in
    `scratch` (default: a temporary folder, removed after; a test keeps it to look inside)."""
    options = options or KubeOptions()
    options.check()
    if manifest.experiments.insecure:
        raise InvalidArgument(
            "experiments.insecure", "a plaintext mesh is an experiment on one host; the Kubernetes rendering needs TLS"
        )
    names = Names(manifest.metadata.name, options.namespace, options.cluster_domain)
    public_port = manifest.endpoints.public.port or PUBLIC_PORT_IF_ZERO
    repositories = _repositories(manifest)
    autoscaled = {
        name: (p.autoscale.min, p.autoscale.max) for name, p in manifest.pools.by_name().items() if p.autoscale
    }
    configs = {"envoy.yaml": _edge_config(manifest, names, public_port), "nats.conf": _nats_config(manifest, names)}
    with tempfile.TemporaryDirectory(prefix="tidemesh-kube-") as temporary:
        # A throwaway plan: its commands are translated, its secrets die with the folder.
        # Kubernetes places the pods itself: durability.cluster.hosts (hosts without it) is not read.
        arguments = {**plan_arguments(manifest), "hosts": (), "host": ""}
        plan = build_plan((scratch or Path(temporary)) / "state", **arguments)
        triton = [p.command for p in plan.processes if p.name == "triton"]
        workloads = derive(
            plan,
            names,
            public_port,
            configs,
            repositories,
            autoscaled,
            {name: pool.concurrency for name, pool in manifest.pools.by_name().items()},
            _triton_args(triton[0] if triton else [], manifest, repositories),
        )
    models = names.of("models") if repositories else ""
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": names.namespace, "labels": {"app.kubernetes.io/name": APP}},
        }
    ]
    if models:
        claim: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(names, models, "models"),
            "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": options.models_storage}}},
        }
        if options.storage_class:
            claim["spec"]["storageClassName"] = options.storage_class
        objects.append(claim)
    # The plan runs one Envoy on its host; in a cluster the front door gets as many replicas as the
    # gateways behind it, so it stays open while one restarts.
    gateways = manifest.endpoints.public.gateways
    workloads = [replace(w, replicas=gateways) if w.role == "envoy" else w for w in workloads]
    secret_files: dict[str, list[StateFile]] = {}
    for w in workloads:
        files = secret_files.setdefault(secret_name(names, w.component), [])
        files += [f for f in w.files if f.secret and f not in files]
        config_map = _config_map(w, names)
        objects += [
            *([config_map] if config_map else []),
            _service(w, names, manifest, public_port),
            _workload_object(w, names, manifest, options, public_port, models),
            _pdb(w, names),
        ]
        pool = w.pools[0] if w.role == "worker" and w.key != "worker" else ""
        if pool in autoscaled:
            objects.append(_autoscaler(w, names, manifest, autoscaled[pool]))
    # Prometheus scrapes the ops ports, which want a client certificate of the mesh's root.
    secret_files[names.of("prometheus-client")] = [
        StateFile(path, secret=True) for path in ("pki/ca.crt", "pki/prometheus.crt", "pki/prometheus.key")
    ]
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(names, name, "credentials", annotations={"tidemesh.dev/filled-by": "create-secrets.sh"}),
            "type": "Opaque",
            "data": {f.key: "" for f in files},  # placeholders: create-secrets.sh fills them
        }
        for name, files in secret_files.items()
    ]
    components = [*dict.fromkeys(w.component for w in workloads), "prometheus"]
    leaves = _leaf_hosts(names, components, options)
    leaves["prometheus"] = []
    script = _script(names, secret_files, leaves, options, source)
    return Rendering(objects, secrets, script, _notes(manifest, workloads, autoscaled))
