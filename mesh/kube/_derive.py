"""The processes of a Kubernetes rendering, derived from the local plan (`build_plan`).

Nothing here writes a service's command line: the plan of the manifest is built in a throwaway
state dir, and each of its commands is translated — its listen addresses become the pod's
(``0.0.0.0`` on fixed ports), each address of another process becomes that process's in-cluster
name, each path into the state dir becomes the same path under `POD_STATE` (where `_stage` puts
the pod's secrets and configuration), and each state file a command reads is recorded, so the
rendering knows which Secret key or ConfigMap entry every pod needs. Processes of one workload
(``worker-1``, ``worker-2``) must translate to the same command; a path or address the
translation does not know stops the rendering, naming it, rather than render a pod that fails.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mesh.kube._names import (
    GRPC_PORT,
    NATS_CLIENT_PORT,
    NATS_CLUSTER_PORT,
    NATS_MONITOR_PORT,
    OPS_PORT,
    POD_STATE,
    RUN_DIR,
    TRITON_GRPC_PORT,
    Names,
)
from mesh.supervisor import Plan, ProcessSpec
from mesh.supervisor._nats import nats_command
from mesh.supervisor._plan import pool_worker_spec

# Roles whose members are reached one by one, by a stable name covered by their leaf: each
# inference replica registers its own endpoint (workers call the one holding a model), and each
# general worker is a session host the gateways address by position. The rest sit behind a Service.
STATEFUL = frozenset({"nats", "inference", "worker"})
PYTHON = "python"
ENVOY_ADMIN_SOCKET = f"{RUN_DIR}/envoy-admin.sock"

_LOOPBACK = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)?127\.0\.0\.1:(?P<port>\d+)$")


@dataclass(frozen=True)
class StateFile:
    """A file a process reads from its state dir, by its path there (``pki/ca.crt``). A secret
    comes from the component's Secret (filled by `create-secrets.sh`), never from the rendering;
    configuration comes with its `content` in a ConfigMap."""

    path: str
    secret: bool
    content: str = ""

    @property
    def key(self) -> str:
        """Its key in a Secret or ConfigMap (keys hold no '/')."""
        return self.path.replace("/", ".")


@dataclass(frozen=True)
class Workload:
    """One Deployment or StatefulSet: the processes of the plan that run the same command."""

    role: str  # nats, triton, scheduler, inference, worker, gateway, envoy
    key: str  # scheduler, worker, worker-inference, …: the object name without the prefix
    component: str  # its identity: the leaf and NATS user it holds
    replicas: int
    command: tuple[str, ...]
    probe: tuple[str, ...]
    files: tuple[StateFile, ...]
    pools: tuple[str, ...] = ()
    memory_cap_mb: int = 0
    cpus: float = 0.0  # the plan's CPU cap (the smallest of its pools', else every worker's)
    stop_grace_s: float = 0.0
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def stateful(self) -> bool:
        return self.role in STATEFUL and (self.role != "worker" or self.key == "worker")


def _group(name: str) -> tuple[str, str, int]:
    """(role, workload key, ordinal) of a plan's process name."""
    if name in ("nats", "triton", "scheduler", "inference", "gateway", "envoy"):
        return name, name, 0
    role, _, rest = name.partition("-")
    if role in ("nats", "inference", "gateway") and rest.isdigit():
        return role, role, int(rest) - 1
    if role == "worker":
        pool, _, index = rest.rpartition("-")
        if not pool and index.isdigit():
            return "worker", "worker", int(index) - 1
        if pool and index.isdigit():
            return "worker", f"worker-{pool}", int(index) - 1
    raise ValueError(f"a process {name!r} that mesh.kube does not know how to place")


def _pod_port(role: str, port_name: str, public_port: int) -> int | None:
    if role == "nats":
        return {"client": NATS_CLIENT_PORT, "cluster": NATS_CLUSTER_PORT}.get(port_name)
    if role == "triton":
        return TRITON_GRPC_PORT if port_name == "grpc" else None
    if role == "envoy":
        return public_port if port_name == "public" else None
    return {"grpc": GRPC_PORT, "http": OPS_PORT}.get(port_name)


@dataclass
class _Translator:
    plan: Plan
    names: Names
    public_port: int
    repositories: Mapping[str, str]  # a model repository's path here → its path in the pod
    addresses: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for spec in self.plan.processes:
            role, key, ordinal = _group(spec.name)
            obj = self.names.of(key)
            host = self.names.member_host(obj, ordinal) if role in STATEFUL else self.names.service_host(obj)
            for port_name, port in spec.ports.items():
                pod_port = _pod_port(role, port_name, self.public_port)
                if pod_port is not None:
                    self.addresses[f"127.0.0.1:{port}"] = f"{host}:{pod_port}"

    @property
    def state(self) -> str:
        return self.plan.state_dir

    def _part(self, spec: ProcessSpec, flag: str, part: str, files: dict[str, str]) -> str:
        if part == self.state or part.startswith(f"{self.state}/"):
            relative = part[len(self.state) :].lstrip("/")
            files.setdefault(relative, flag)
            return f"{POD_STATE}/{relative}" if relative else POD_STATE
        if part in self.repositories:
            return self.repositories[part]
        loopback = _LOOPBACK.match(part)
        if loopback:
            bare = f"127.0.0.1:{loopback['port']}"
            if bare not in self.addresses:
                raise ValueError(f"{spec.name}: {flag} {part}: no process of the plan listens there")
            return f"{loopback['scheme'] or ''}{self.addresses[bare]}"
        return part

    def command(self, spec: ProcessSpec) -> tuple[list[str], dict[str, str]]:
        """The command in the pod, and the state paths it names (path → the flag naming it)."""
        role, _, _ = _group(spec.name)
        executable, *args = spec.command
        out = [PYTHON if executable == self.plan.worker_command[0] else Path(executable).name]
        files: dict[str, str] = {}
        flag = ""
        for index, arg in enumerate(args):
            if index and args[index - 1] in ("--grpc", "--http"):
                out.append(f"0.0.0.0:{GRPC_PORT if args[index - 1] == '--grpc' else OPS_PORT}")
            else:
                out.append(",".join(self._part(spec, flag, part, files) for part in arg.split(",")))
            flag = arg if arg.startswith("-") else flag
        if role == "inference":  # workers call each replica at the endpoint it registers
            obj = self.names.of("inference")
            out += ["--advertise", f"$(POD_NAME).{self.names.service_host(obj)}:{GRPC_PORT}"]
        return out, files


def _state_files(
    component: str, named: Mapping[str, str], state: Path, configs: Mapping[str, str], spec: str
) -> list[StateFile]:
    """What a process reads from the state paths its command names (see `StateFile`)."""
    found: list[StateFile] = []
    for relative, flag in named.items():
        if flag == "--pki":
            found += _leaf(component)
        elif flag in ("--nats-user",):
            found.append(StateFile(relative, secret=True))
        elif flag in ("--auth-dir", "--audit-dir"):
            skip = {path for path, f in named.items() if f == "--roles-file"}
            for entry in sorted((state / relative).iterdir()):
                path = f"{relative}/{entry.name}"
                if entry.is_file() and not entry.name.startswith(".") and path not in skip:
                    found.append(StateFile(path, secret=True))
        elif flag in ("--roles-file", "-c") and relative in configs:
            found.append(StateFile(relative, secret=False, content=configs[relative]))
        elif flag == "--roles-file":
            found.append(StateFile(relative, secret=False, content=(state / relative).read_text()))
        else:
            raise ValueError(f"{spec}: {flag} names {relative!r} in the state dir, which mesh.kube cannot provide")
    return found


def _leaf(component: str) -> list[StateFile]:
    return [StateFile(f"pki/{name}", secret=True) for name in ("ca.crt", f"{component}.crt", f"{component}.key")]


def _probe(spec: ProcessSpec, role: str, component: str) -> tuple[str, ...]:
    """The pod's own check of what the supervisor checks (`Health`), run in its container."""
    pki = ("--pki", f"{POD_STATE}/pki", "--component", component)
    probe = (PYTHON, "-m", "mesh.kube", "probe")
    kind = spec.health.kind
    if kind == "http":
        scheme = spec.health.url.partition(":")[0]
        return (*probe, f"{scheme}://127.0.0.1:{OPS_PORT}{spec.health.path}", *(pki if scheme == "https" else ()))
    if kind == "nats":  # the pod's loopback monitoring port: no user, no one outside the pod
        return (*probe, f"http://127.0.0.1:{NATS_MONITOR_PORT}/healthz?js-enabled-only=true")
    if kind == "unix":
        return (*probe, f"http://localhost{spec.health.path}", "--socket", ENVOY_ADMIN_SOCKET)
    if kind == "grpc":
        port = TRITON_GRPC_PORT if role == "triton" else GRPC_PORT
        return (*probe, f"grpc://127.0.0.1:{port}", *pki)
    raise ValueError(f"{spec.name}: a health check of kind {kind!r} mesh.kube cannot run in a pod")


def derive(
    plan: Plan,
    names: Names,
    public_port: int,
    configs: Mapping[str, str],
    repositories: Mapping[str, str],
    autoscaled: Mapping[str, tuple[int, int]],
    pool_concurrency: Mapping[str, int],
    triton_args: Sequence[str] = (),
) -> list[Workload]:
    """The workloads of `plan`, in its order. `configs` are configuration files of the pods by
    state path (``envoy.yaml``, ``nats.conf``: rendered for the cluster); `repositories` maps the
    user's model repositories to their paths in the pod; `autoscaled` pools (min, max) get a
    workload even with no dedicated worker yet, started from the plan's scale-out command (with
    the pool's `pool_concurrency`)."""
    specs = list(plan.processes)
    dedicated = {_group(s.name)[1] for s in specs}
    after = max(i for i, s in enumerate(specs) if _group(s.name)[0] == "worker") + 1
    for pool in autoscaled:
        if f"worker-{pool}" not in dedicated:  # the command the local autoscaler starts a worker with
            extra = pool_worker_spec(plan, pool, 1, pool_concurrency.get(pool))
            specs.insert(after, replace(extra, name=f"worker-{pool}-1"))
            after += 1
    translator = _Translator(replace(plan, processes=specs), names, public_port, repositories)
    state = Path(plan.state_dir)
    grouped: dict[str, list[tuple[ProcessSpec, list[str], dict[str, str]]]] = {}
    for spec in specs:
        role, key, _ = _group(spec.name)
        if role == "nats":
            command = [Path(spec.command[0]).name, *nats_command(Path(POD_STATE) / "nats.conf")[1:]]
            named: dict[str, str] = {}
        elif role == "triton":
            command = [PYTHON, "-m", "mesh.kube", "triton", "--state-dir", POD_STATE, *triton_args]
            named = {"pki": "--pki"}  # its pair, from the state dir's pki like the plan's tritonserver
        else:
            command, named = translator.command(spec)
            if role == "envoy":
                named["pki"] = "--pki"  # its pair reaches Envoy through the SDS files `_stage` writes
        grouped.setdefault(key, []).append((spec, command, named))
    workloads = []
    for key, members in grouped.items():
        spec, command, named = members[0]
        role = _group(spec.name)[0]
        for other, other_command, _ in members[1:]:
            if other_command != command:
                raise ValueError(
                    f"{spec.name} and {other.name} differ beyond their addresses: {command} / {other_command}"
                )
        component = role  # a pool's workers are workers: one leaf, one NATS user
        files = _nats_files(configs) if role == "nats" else _state_files(component, named, state, configs, spec.name)
        pool = key.removeprefix("worker-") if key.startswith("worker-") else ""
        replicas = len(members)
        if pool in autoscaled:  # an autoscaler acts on a running workload only: at least one
            replicas = max(replicas, autoscaled[pool][0], 1)
        workloads.append(
            Workload(
                role=role,
                key=key,
                component=component,
                replicas=replicas,
                command=tuple(command),
                probe=_probe(spec, role, component),
                files=tuple(dict.fromkeys(files)),
                pools=tuple(spec.pools),
                memory_cap_mb=spec.memory_cap_mb,
                cpus=spec.cpus,
                stop_grace_s=spec.stop_grace_s,
                env={**plan.env, **{k: v for k, v in spec.env.items() if role != "triton"}},
            )
        )
    return workloads


def _nats_files(configs: Mapping[str, str]) -> list[StateFile]:
    """A node's config (rendered for the cluster), its users' block (secret) and its pair."""
    return [
        StateFile("nats.conf", secret=False, content=configs["nats.conf"]),
        StateFile("authorization.conf", secret=True),
        *_leaf("nats"),
    ]
