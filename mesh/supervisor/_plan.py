"""The process table of a local mesh — what `tidemesh up` starts and Tilt runs.

One source of truth: `tidemesh up` supervises exactly these processes, `tidemesh
plan --json` prints them, and the Tiltfile turns them into local_resources.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mesh.access import ROLES_FILE, write_roles
from mesh.audit import ensure_signing_key
from mesh.edge import EdgeConfig, EdgeTls, render_yaml, write_sds
from mesh.fabric import POOLS
from mesh.model_repository import MODEL_REPOSITORY
from mesh.security import LeafFiles
from mesh.security._ca import host_name, write_private
from mesh.security._nats import route_url
from mesh.supervisor._binaries import find_binary
from mesh.supervisor._credentials import ensure_credentials
from mesh.supervisor._hosts import check_hosts, host_port, this_host
from mesh.supervisor._nats import nats_command, nats_config
from mesh.supervisor._security import MeshSecurity, nats_cluster_security, nats_security
from mesh.supervisor._triton import triton_launch

# Submit rate limits of every gateway, per tenant and per credential (submits/s, burst): on by
# default; a rate of 0 turns one off. The gateway's own defaults are the same (`_ratelimit`).
TENANT_LIMIT = (1000.0, 2000.0)
CREDENTIAL_LIMIT = (500.0, 1000.0)
NO_LIMIT = (0.0, 1.0)  # benchmarks that measure capacity (they submit thousands at once)
# A worker drains its steps for this long on SIGTERM (its --grace); the supervisor waits that
# plus the margin (handing the rest back, leaving NATS) before SIGKILL.
WORKER_GRACE_S = 10.0
STOP_MARGIN_S = 5.0
# What a memory cap must leave a worker at the least: one at rest holds about 90 MiB (measured by
# tests/integration/test_cpu_caps.py, which holds it below this), its steps' buffers come on top;
# a cap below restarts it for nothing. No preset caps a worker below it (tests/unit/test_caps.py).
WORKER_AT_REST_MB = 256
# A mesh over several hosts: each node pings its clients and routes this often and gives one up
# after this many unanswered pings, so a host that vanishes without closing its connections (a
# power cut, a cable) is noticed in seconds rather than the server default's minutes.
HOST_PING = ('ping_interval: "2s"', "ping_max: 3")


@dataclass(frozen=True)
class Health:
    """How the supervisor tells the process is ready (see `_probe`): an HTTP(S) GET that answers
    200 (``kind="http"``), a GET over a unix socket (``"unix"``), or NATS JetStream (``"nats"``)."""

    url: str
    host: str
    port: int
    path: str
    kind: str = "http"
    socket: str = ""


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    command: list[str]
    ports: dict[str, int]
    health: Health
    depends_on: list[str] = field(default_factory=list)
    # Address a user connects to, for the `up` summary.
    address: str = ""
    # Worker pools this process serves (workers only).
    pools: list[str] = field(default_factory=list)
    # Environment on top of the supervisor's own (Triton's library and Python paths).
    env: dict[str, str] = field(default_factory=dict)
    # Resident memory (the process and what it started) above which the supervisor kills it for a
    # restart, in MiB; 0: no cap (see `Child.watch`).
    memory_cap_mb: int = 0
    # CPU cores the process (and what it started) may use, held by a cgroup (`_cpu`); 0: no cap.
    cpus: float = 0.0
    # GPU memory (the process and what it started, from NVML) above which the supervisor kills it
    # for a restart, in MiB; 0: no cap.
    gpu_memory_cap_mb: int = 0
    # How long the supervisor waits after SIGTERM before SIGKILL, when longer than its own grace:
    # a worker drains its steps for its `--grace`, then hands the rest back and disconnects.
    stop_grace_s: float = 0.0
    # A digest of the files the process reads only at start (its config, roles), so that two
    # specs differ when those do — a change to them restarts it (`mesh.revisions`).
    files_digest: str = ""


@dataclass(frozen=True)
class Plan:
    state_dir: str
    public_port: int
    processes: list[ProcessSpec]
    # A worker's command without its listen addresses: extra workers (autoscaling) start from it.
    worker_command: list[str] = field(default_factory=list)
    # TLS on every hop, authenticated NATS (the default); False only for `--insecure`.
    secure: bool = False
    # Workers' memory caps in MiB by pool ("*": every worker), for the workers scaling adds.
    memory_caps_mb: dict[str, int] = field(default_factory=dict)
    # Workers' CPU caps (cores) and GPU-memory caps (MiB) by pool ("*": every worker), likewise.
    cpu_caps: dict[str, float] = field(default_factory=dict)
    gpu_memory_caps_mb: dict[str, int] = field(default_factory=dict)
    # Environment every process of the mesh starts with, scaled-out ones too (the OTLP exporter's).
    env: dict[str, str] = field(default_factory=dict)
    # A mesh over several hosts (`tidemesh up --join`): every host, in the mesh's order, and this
    # one; empty on one host.
    hosts: list[str] = field(default_factory=list)
    host: str = ""

    @property
    def security(self) -> MeshSecurity | None:
        """Where the mesh keeps its CA and NATS users (None: it runs --insecure); this host's
        leaves also answer to its name when the mesh spans hosts."""
        return MeshSecurity(Path(self.state_dir), (self.host,) if self.host else ()) if self.secure else None

    @property
    def ca_path(self) -> str:
        """The root a client trusts ("" when the mesh runs --insecure)."""
        return str(self.security.root) if self.security else ""

    @property
    def nats_servers(self) -> str:
        """Every NATS node of this plan's client address, comma-separated (a client reconnects to
        any); on one host of several, this host's node."""
        return ",".join(p.address for p in self.processes if p.name == "nats" or p.name.startswith("nats-"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Plan:
        return Plan(
            state_dir=data["state_dir"],
            public_port=data["public_port"],
            processes=[ProcessSpec(**{**p, "health": Health(**p["health"])}) for p in data["processes"]],
            worker_command=data.get("worker_command", []),
            secure=data.get("secure", False),
            memory_caps_mb=data.get("memory_caps_mb", {}),
            cpu_caps=data.get("cpu_caps", {}),
            gpu_memory_caps_mb=data.get("gpu_memory_caps_mb", {}),
            env=data.get("env", {}),
            hosts=data.get("hosts", []),
            host=data.get("host", ""),
        )

    def by_name(self, name: str) -> ProcessSpec:
        return next(p for p in self.processes if p.name == name)

    def ports(self) -> dict[str, dict[str, int]]:
        """Every process's ports by role: what `build_plan(reuse_ports=...)` keeps."""
        return {p.name: dict(p.ports) for p in self.processes}


# Listening ports for `--port 0` come from below the kernel's ephemeral range (32768+ on
# Linux): a port the kernel hands out for binding port 0 can be taken by any outgoing
# connection's local end before our child binds it, and the child then fails with "address
# already in use". Below that range only listeners compete, and each candidate is checked.
_PICK_FROM, _PICK_TO = 20_000, 32_000
_handed_out: set[int] = set()


def free_port() -> int:
    """A free listening port on 127.0.0.1, chosen to avoid outgoing connections' ports."""
    for _ in range(200):
        port = random.randint(_PICK_FROM, _PICK_TO)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # that range is crowded: let the kernel choose
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Ports:
    """Deterministic ports from the public one, or free ones when it is 0. With `reuse` (a running
    plan's ports by process name and role), a process of that name keeps its ports and any other
    takes free ones (so a change applied to a running mesh moves no port of what it keeps)."""

    def __init__(self, public_port: int, reuse: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self._next = public_port + 1 if public_port and reuse is None else 0
        self._reuse = reuse or {}

    def take(self, name: str = "", role: str = "") -> int:
        kept = self._reuse.get(name, {}).get(role)
        if kept:
            return kept
        if not self._next:
            return free_port()
        port = self._next
        self._next += 1
        return port


def _digest(*texts: str) -> str:
    """A spec's `files_digest`: what the files it reads at start hold."""
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]


def _http_health(port: int, path: str, secure: bool = False) -> Health:
    scheme = "https" if secure else "http"
    return Health(url=f"{scheme}://127.0.0.1:{port}{path}", host="127.0.0.1", port=port, path=path)


def _service(
    name: str,
    base: list[str],
    grpc_port: int,
    http_port: int,
    depends_on: list[str],
    pools: list[str] | None = None,
    secure: bool = False,
    grpc_host: str = "127.0.0.1",
) -> ProcessSpec:
    """A service; its gRPC port on `grpc_host` (where other hosts call it), its ops port on loopback."""
    return ProcessSpec(
        name=name,
        command=[*base, "--grpc", host_port(grpc_host, grpc_port), "--http", f"127.0.0.1:{http_port}"],
        ports={"grpc": grpc_port, "http": http_port},
        health=_http_health(http_port, "/healthz", secure),
        depends_on=depends_on,
        address=host_port(grpc_host, grpc_port),
        pools=pools or [],
    )


def triton_spec(
    state_dir: Path,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    config_name: str | None = None,
    tls: LeafFiles | None = None,
    model_repositories: Sequence[Path] = (),
    model_repository: Path = MODEL_REPOSITORY,
    traces_url: str = "",
    trace_ratio: float = 1.0,
) -> ProcessSpec:
    """tritonserver on the project's model repository and `model_repositories` (see
    `_triton.triton_launch`); with `tls`, gRPC only, mutual TLS, and its health is the standard
    gRPC health check over it."""
    launch = triton_launch(
        state_dir,
        grpc_port,
        http_port,
        metrics_port,
        config_name=config_name,
        tls=tls,
        model_repository=model_repository,
        model_repositories=model_repositories,
        traces_url=traces_url,
        trace_ratio=trace_ratio,
    )
    return ProcessSpec(
        name="triton",
        command=launch.command,
        ports={"grpc": grpc_port} if tls else {"grpc": grpc_port, "http": http_port, "metrics": metrics_port},
        health=(
            Health(url=f"127.0.0.1:{grpc_port}", host="127.0.0.1", port=grpc_port, path="", kind="grpc")
            if tls
            else _http_health(http_port, "/v2/health/ready")
        ),
        address=f"127.0.0.1:{grpc_port}",
        env=launch.env,
    )


def pool_worker_spec(plan: Plan, pool: str, index: int, concurrency: int | None = None) -> ProcessSpec:
    """An extra worker serving only `pool`, on free ports (started when scaling a pool out)."""
    extra = ["--concurrency", str(concurrency)] if concurrency else []
    spec = _service(
        f"worker-{pool}-auto-{index}",
        [*plan.worker_command, "--pools", pool, *extra],
        free_port(),
        free_port(),
        ["scheduler"],
        [pool],
        plan.secure,
    )
    return replace(
        spec,
        memory_cap_mb=memory_cap_for([pool], plan.memory_caps_mb),
        cpus=cap_for([pool], plan.cpu_caps),
        gpu_memory_cap_mb=memory_cap_for([pool], plan.gpu_memory_caps_mb),
        stop_grace_s=_grace_in(plan.worker_command),
    )


def _grace_in(command: Sequence[str]) -> float:
    """The stop grace a worker started with `command` needs: its last ``--grace`` plus the margin."""
    graces = [float(command[i + 1]) for i, arg in enumerate(command[:-1]) if arg == "--grace"]
    return (graces[-1] if graces else WORKER_GRACE_S) + STOP_MARGIN_S


def otlp_url(endpoint: str) -> str:
    """`endpoint` as a URL: a bare HOST:PORT is a plaintext collector (``http://HOST:PORT``), as
    `tidemesh up --otlp localhost:4317` means; https:// asks for TLS."""
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"otlp endpoint: expected HOST:PORT, http://HOST:PORT or https://HOST:PORT, got {endpoint!r}")
    return endpoint


def otlp_env(endpoint: str, protocol: str = "grpc", ratio: float = 1.0) -> dict[str, str]:
    """The standard OpenTelemetry variables that send every process's spans to `endpoint` (none
    when it is empty); a bad value raises ValueError naming it."""
    if not endpoint:
        return {}
    endpoint = otlp_url(endpoint)
    if protocol not in ("grpc", "http/protobuf"):
        raise ValueError(f"otlp protocol: expected grpc or http/protobuf, got {protocol!r}")
    if not 0 <= ratio <= 1:
        raise ValueError(f"trace sampling ratio: expected 0 to 1, got {ratio!r}")
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": f"{ratio}",
    }


def _http_traces_url(endpoint: str, protocol: str) -> str:
    """Where Triton sends its spans: the collector's OTLP/HTTP traces path, when the mesh speaks
    http/protobuf to a plain http:// collector (""; Triton records none, otherwise)."""
    if not endpoint or protocol != "http/protobuf":
        return ""
    url = otlp_url(endpoint)
    return f"{url.rstrip('/')}/v1/traces" if url.startswith("http://") else ""


def _collector(endpoint: str, protocol: str) -> tuple[str, int, str] | None:
    """Where Envoy sends its spans: the collector of `endpoint` when it is plain http:// (Envoy's
    TLS to a collector needs roots of its own: with https:// the front door records no span)."""
    url = urlsplit(endpoint)
    if url.scheme != "http" or not url.hostname:
        return None
    return (url.hostname, url.port or (4317 if protocol == "grpc" else 4318), protocol)


def cap_for(pools: Sequence[str], caps: Mapping[str, float]) -> float:
    """A worker's cap: the smallest of the caps of the pools it serves, else the cap for every
    worker (``*``); 0 when none applies."""
    given = [caps[pool] for pool in pools if caps.get(pool)]
    return min(given) if given else caps.get("*", 0)


def memory_cap_for(pools: Sequence[str], caps_mb: Mapping[str, int]) -> int:
    """A worker's memory (or GPU-memory) cap in MiB, as `cap_for` chooses it."""
    return int(cap_for(pools, caps_mb))


def _check_pool(what: str, pool: str) -> None:
    if pool != "*" and pool not in POOLS:
        raise ValueError(f"{what} cap for {pool!r}: expected one of {', '.join(POOLS)} or '*'")


def check_memory_caps(caps_mb: Mapping[str, int], what: str = "memory", least: int = 64) -> dict[str, int]:
    """Caps by pool name or ``*``, each a whole number of MiB, at least `least`; a bad one raises
    ValueError naming it."""
    for pool, cap in caps_mb.items():
        _check_pool(what, pool)
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < least:
            raise ValueError(f"{what} cap for {pool!r}: expected a whole number of MiB, at least {least}, got {cap!r}")
    return dict(caps_mb)


def check_cpu_caps(caps: Mapping[str, float]) -> dict[str, float]:
    """CPU caps by pool name or ``*``, each at least 0.01 cores (the kernel's smallest quota is a
    hundredth of its period); a bad one raises ValueError naming it."""
    for pool, cores in caps.items():
        _check_pool("CPU", pool)
        if not isinstance(cores, (int, float)) or isinstance(cores, bool) or not cores >= 0.01:
            raise ValueError(f"CPU cap for {pool!r}: expected a number of cores, at least 0.01, got {cores!r}")
    return {pool: float(cores) for pool, cores in caps.items()}


def _limit_args(what: str, rate: float, burst: float) -> tuple[str, ...]:
    if rate < 0 or (rate > 0 and burst < 1):
        raise ValueError(
            f"{what} limit: the rate must be ≥ 0 (0: off) and the burst ≥ 1, got {rate:g}/s burst {burst:g}"
        )
    return (f"--{what}-rate", _number(rate), f"--{what}-burst", _number(max(burst, 1)))


def _number(value: float) -> str:
    """A number as a flag's value, exactly (``:g`` would round 1000.125 to 1000.12)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def build_plan(
    state_dir: Path,
    public_port: int = 8080,
    workers: int = 1,
    worker_concurrency: int = 32,
    worker_grace_s: float = WORKER_GRACE_S,
    ack_wait_s: float = 30.0,
    listen_host: str = "127.0.0.1",
    scheduler_args: tuple[str, ...] = (),
    worker_args: tuple[str, ...] = (),
    pool_workers: dict[str, int] | None = None,
    pool_concurrency: dict[str, int] | None = None,
    cluster: int = 1,
    fsync: str = "always",
    gateways: int = 1,
    gateway_args: tuple[str, ...] = (),
    inference_args: tuple[str, ...] = (),
    auth: bool = False,
    triton: bool = False,
    model_repositories: Sequence[Path] = (),
    inference_replicas: int = 1,
    tenant_limit: tuple[float, float] = TENANT_LIMIT,
    credential_limit: tuple[float, float] = CREDENTIAL_LIMIT,
    insecure: bool = False,
    cors_allow_origins: Sequence[str] = ("*",),
    request_headers_timeout_s: float = 10.0,
    memory_caps_mb: Mapping[str, int] | None = None,
    cpu_caps: Mapping[str, float] | None = None,
    gpu_memory_caps_mb: Mapping[str, int] | None = None,
    otlp_endpoint: str = "",
    otlp_protocol: str = "grpc",
    trace_sampling_ratio: float = 1.0,
    roles: Mapping[str, Mapping[str, Any]] | None = None,
    step_up: bool = False,
    reuse_ports: Mapping[str, Mapping[str, int]] | None = None,
    hosts: Sequence[str] = (),
    host: str = "",
) -> Plan:
    """The process table; also renders ``<state_dir>/envoy.yaml`` for it.

    `workers` serve every pool; `pool_workers` adds dedicated workers per pool, each with the
    pool's own concurrency from `pool_concurrency` (default `worker_concurrency`). With `auth`,
    the gateways require credentials (see `_credentials`). With `triton`, a tritonserver serves
    the project's model repository (and the user's `model_repositories`, which imply it) and the
    inference service routes to it, falling back to its embedded CPU model; `inference_replicas`
    inference services run side by side, workers placing each call by residency and load. Every gateway
    rate-limits submits per tenant and per credential
    (`tenant_limit`, `credential_limit`: submits/s and burst; a rate of 0 is no limit);
    `gateway_args` come after, so they override. `memory_caps_mb` caps each worker's resident
    memory (by pool, ``*`` for every worker; a worker serving several pools gets the smallest): the
    supervisor kills a worker over its cap and restarts it, its tasks retried; `gpu_memory_caps_mb`
    does the same for the GPU memory NVML attributes to it, and `cpu_caps` (cores) holds it to a
    share of the CPU (a cgroup per worker where one is writable, else pinned cores: `_cpu`). With
    `otlp_endpoint` every process sends its spans there (`mesh.telemetry._tracing`; `otlp_protocol`
    grpc or http/protobuf, head sampling at `trace_sampling_ratio`). Every hop is TLS
    (mutual between components), NATS takes only its own users, and internal ports want a leaf of
    the mesh's root, unless `insecure` (plaintext, for experiments; see `_security`).

    `inference_args` go to every inference service; `cors_allow_origins` and
    `request_headers_timeout_s` are Envoy's (see `EdgeConfig`). `roles`, custom roles as the
    manifest's ``roles`` section holds them (`mesh.access`), are written to
    ``<state_dir>/auth/roles.json`` for every gateway (``--roles-file``). With `step_up`, sensitive
    actions want a fresh second factor (``--step-up``; see `services.gateway._stepup`). With
    `reuse_ports` (`Plan.ports()` of a running mesh) every process it names keeps its ports.

    With `hosts` (3 or 5: every host of the mesh, the same list in the same order on each) the plan
    is this host's share of a mesh over several hosts — `host`, or the one of them whose address
    this machine has: one NATS node of the cluster (`cluster` must be the number of hosts; its
    client and route ports on the host's address and advertised there, routes to the same ports
    on the other hosts, every connection checking the peer's name), and the whole set of services,
    each connecting to every host's node, its own first. The inference services listen on the
    host's address and register it (workers of every host call them); the rest stay on loopback,
    but Envoy, on `listen_host`. Every host uses the same ports, derived from `public_port` (which
    must be given). Leaves also answer to the host's name; the root and the users must be the
    mesh's (`mesh.supervisor.import_identity`), or each host would make its own. Without `hosts`,
    `host` is a name a single host faces the network by: its leaves answer to it too."""
    state_dir = state_dir.resolve()
    if hosts:
        hosts = check_hosts(hosts)
        if cluster != len(hosts):
            raise ValueError(f"cluster: a mesh over {len(hosts)} hosts runs {len(hosts)} nodes, got {cluster}")
        if insecure:
            raise ValueError("insecure: a mesh over several hosts runs secure only (TLS and NATS users across hosts)")
        if not public_port:
            raise ValueError("public_port: every host of a mesh uses the same ports; 0 (free ports) cannot be known")
        host = this_host(hosts, host)
    elif host:
        host_name("host", host)  # one host, facing the network by this name
    caps = check_memory_caps(memory_caps_mb or {})
    cpus = check_cpu_caps(cpu_caps or {})
    gpu_caps = check_memory_caps(gpu_memory_caps_mb or {}, "GPU-memory", least=1)
    env = otlp_env(otlp_endpoint, otlp_protocol, trace_sampling_ratio)
    state_dir.mkdir(parents=True, exist_ok=True)
    security = None if insecure else MeshSecurity.prepare(state_dir, hosts=(host,) if host else ())
    secure = security is not None
    gateway_args = (*_limit_args("tenant", *tenant_limit), *_limit_args("credential", *credential_limit), *gateway_args)
    if auth:
        gateway_args = (*gateway_args, "--auth-dir", str(ensure_credentials(state_dir / "auth")))
    if step_up:
        gateway_args = (*gateway_args, "--step-up")
    if roles:  # checked as it is written: a bad role (an unknown action) is a ValueError naming its path
        gateway_args = (*gateway_args, "--roles-file", str(write_roles(state_dir / "auth" / ROLES_FILE, roles)))
    # Every mesh keeps an audit of its administrative actions, checkpoints signed with its own key.
    gateway_args = ("--audit-dir", str(ensure_signing_key(state_dir / "audit")), *gateway_args)
    ports = _Ports(public_port, reuse_ports)
    public_port = ports.take("envoy", "public") if reuse_ports else public_port or free_port()
    envoy_admin = ports.take("envoy", "admin")
    if cluster not in (1, 3, 5):
        raise ValueError("cluster must be 1, 3 or 5 nodes (JetStream needs a quorum)")
    # One node per host of several; else every node on this host's loopback.
    node_names = ["nats"] if cluster == 1 or hosts else [f"nats-{i}" for i in range(1, cluster + 1)]
    node_ports = [
        (ports.take(n, "client"), ports.take(n, "monitor"), ports.take(n, "cluster") if cluster > 1 else 0)
        for n in node_names
    ]
    nats_host = host if hosts else "127.0.0.1"
    nats_specs = []
    for index, (client_port, monitor_port, cluster_port) in enumerate(node_ports, start=1):
        name = node_names[index - 1]
        store = state_dir / ("jetstream" if len(node_names) == 1 else f"jetstream-{index}")
        config = state_dir / f"{name}.conf"
        routes: tuple[int | str, ...] = (
            tuple(route_url(cluster_port, host=other) for other in hosts if other != host)
            if hosts
            else tuple(p for _, _, p in node_ports if p != cluster_port)
        )
        text = nats_config(
            f"tidemesh-{hosts.index(host) if hosts else index - 1}",
            store,
            client_port,
            monitor_port,
            fsync,
            cluster_port,
            routes,
            security=nats_security(security) if security else "",
            cluster_security=nats_cluster_security(security) if security and cluster_port else "",
            listen_host=nats_host,
            extra=HOST_PING if hosts else (),
            advertise_host=host if hosts else "",
        )
        write_private(config, text.encode())  # it holds the users' passwords
        address = f"{'tls' if secure else 'nats'}://{host_port(nats_host, client_port)}"
        nats_specs.append(
            ProcessSpec(
                name=name,
                command=nats_command(config),
                ports={
                    "client": client_port,
                    **({} if secure else {"monitor": monitor_port}),
                    **({"cluster": cluster_port} if cluster_port else {}),
                },
                health=(
                    Health(url=address, host=nats_host, port=client_port, path="", kind="nats")
                    if secure
                    else _http_health(monitor_port, "/healthz?js-enabled-only=true")
                ),
                address=address,
                files_digest=_digest(text),
            )
        )
    nats_names = [spec.name for spec in nats_specs]
    nats_url = ",".join(spec.address for spec in nats_specs)
    if hosts:  # every host's node, this host's first (the others' ports are this one's)
        client_port = nats_specs[0].ports["client"]
        others = [f"tls://{host_port(other, client_port)}" for other in hosts if other != host]
        nats_url = ",".join([nats_specs[0].address, *others])
    py = sys.executable
    common = ["--nats", nats_url, "--ack-wait", str(ack_wait_s), "--replicas", str(min(cluster, 3))]
    if hosts:  # its own host's node while it is up: the other hosts' only when it is not
        common.append("--nats-in-order")

    def service(
        name: str, module: str, extra: list[str], depends_on: list[str], grpc_host: str = "127.0.0.1"
    ) -> ProcessSpec:
        grpc_port, http_port = ports.take(name, "grpc"), ports.take(name, "http")
        own = security.service_args(module.removeprefix("services.")) if security else []
        if grpc_host != "127.0.0.1":  # called from other hosts: it registers where they reach it
            extra = [*extra, "--advertise", host_port(grpc_host, grpc_port)]
        return _service(
            name,
            [py, "-m", module, *common, *own, *extra],
            grpc_port,
            http_port,
            depends_on,
            secure=secure,
            grpc_host=grpc_host,
        )

    scheduler = service("scheduler", "services.scheduler", list(scheduler_args), nats_names)
    triton_specs = (
        [
            triton_spec(
                state_dir,
                ports.take("triton", "grpc"),
                ports.take("triton", "http"),
                ports.take("triton", "metrics"),
                tls=security.leaf("triton") if security else None,
                model_repositories=model_repositories,
                # Triton's exporter speaks OTLP/HTTP only: it traces when the mesh's collector does.
                traces_url=_http_traces_url(otlp_endpoint, otlp_protocol),
                trace_ratio=trace_sampling_ratio,
            )
        ]
        if triton or model_repositories
        else []
    )
    # Replicas: "inference", then "inference-2", …; each registers its endpoint and residency in
    # NATS, where workers find them all (they start from the addresses given here).
    inference_specs = [
        service(
            "inference" if index == 1 else f"inference-{index}",
            "services.inference",
            [
                *(arg for spec in triton_specs for arg in ("--triton", spec.address)),
                # Triton's repositories, read for what a model needs before it loads
                *(arg for repository in model_repositories for arg in ("--model-repository", str(repository))),
                *inference_args,
            ],
            nats_names,  # it registers its backends in NATS
            grpc_host=host if hosts else "127.0.0.1",  # workers of every host call it
        )
        for index in range(1, max(inference_replicas, 1) + 1)
    ]
    worker_extra = [
        "--scheduler",
        scheduler.address,
        "--inference",
        ",".join(spec.address for spec in inference_specs),
        "--concurrency",
        str(worker_concurrency),
        "--grace",
        f"{worker_grace_s:g}",
        *worker_args,
    ]
    # The general workers also host worker-protocol sessions; the gateways relay workers to them.
    worker_specs = [
        replace(
            service(f"worker-{index}", "services.worker", [*worker_extra, "--sessions"], ["scheduler"]),
            pools=list(POOLS),
        )
        for index in range(1, workers + 1)
    ]
    session_hosts = ",".join(spec.address for spec in worker_specs)
    for pool, count in (pool_workers or {}).items():
        concurrency = (pool_concurrency or {}).get(pool, worker_concurrency)
        for index in range(1, count + 1):
            dedicated = service(
                f"worker-{pool}-{index}",
                "services.worker",
                [*worker_extra, "--pools", pool, "--concurrency", str(concurrency)],
                ["scheduler"],
            )
            worker_specs.append(replace(dedicated, pools=[pool]))
    worker_specs = [
        replace(
            spec,
            memory_cap_mb=memory_cap_for(spec.pools, caps),
            cpus=cap_for(spec.pools, cpus),
            gpu_memory_cap_mb=memory_cap_for(spec.pools, gpu_caps),
            stop_grace_s=_grace_in(worker_extra),
        )
        for spec in worker_specs
    ]
    gateway_specs = [
        service(
            name,
            "services.gateway",
            [
                "--scheduler",
                scheduler.address,
                "--inference",
                ",".join(spec.address for spec in inference_specs),
                *(["--session-hosts", session_hosts] if session_hosts else []),
                *gateway_args,
            ],
            ["scheduler"],  # not inference: its relay's channel connects when first used
        )
        for name in (["gateway"] if gateways == 1 else [f"gateway-{i}" for i in range(1, gateways + 1)])
    ]
    if roles:  # read from --roles-file at start
        roles_digest = _digest(json.dumps(roles, sort_keys=True, default=str))
        gateway_specs = [replace(spec, files_digest=roles_digest) for spec in gateway_specs]
    envoy_config = state_dir / "envoy.yaml"
    admin_socket = str(state_dir / "envoy-admin.sock") if secure else ""
    edge = EdgeConfig(
        listen_host=listen_host,
        listen_port=public_port,
        admin_port=envoy_admin,
        # Envoy hashes x-tidemesh-session over the replicas: a session sticks to one gateway.
        grpc_upstreams=tuple(("127.0.0.1", g.ports["grpc"]) for g in gateway_specs),
        http_upstreams=tuple(("127.0.0.1", g.ports["http"]) for g in gateway_specs),
        # Secure: TLS for callers, mutual TLS to the gateways, admin on an owner-only unix socket.
        tls=EdgeTls(str(security.pki_dir / "envoy-sds")) if security else None,
        admin_socket=admin_socket,
        cors_allow_origins=tuple(cors_allow_origins),
        request_headers_timeout_s=request_headers_timeout_s,
        otlp_collector=_collector(otlp_url(otlp_endpoint), otlp_protocol) if otlp_endpoint else None,
        trace_sampling=trace_sampling_ratio,
    )
    if security:
        write_sds(security.pki_dir / "envoy-sds", security.leaf("envoy"))
    envoy_text = render_yaml(edge)
    envoy_config.write_text(envoy_text)
    envoy = ProcessSpec(
        name="envoy",
        command=[find_binary("envoy"), "-c", str(envoy_config), "--base-id", str(public_port), "--log-level", "warn"],
        ports={"public": public_port, **({} if secure else {"admin": envoy_admin})},
        health=(
            Health(url=f"unix:{admin_socket}", host="", port=0, path="/ready", kind="unix", socket=admin_socket)
            if secure
            else _http_health(envoy_admin, "/ready")
        ),
        depends_on=[g.name for g in gateway_specs],
        address=f"{listen_host}:{public_port}",
        files_digest=_digest(envoy_text),
    )
    return Plan(
        state_dir=str(state_dir),
        public_port=public_port,
        processes=[*nats_specs, *triton_specs, scheduler, *inference_specs, *worker_specs, *gateway_specs, envoy],
        worker_command=[
            py,
            "-m",
            "services.worker",
            *common,
            *(security.service_args("worker") if security else []),
            *worker_extra,
        ],
        secure=secure,
        memory_caps_mb=caps,
        cpu_caps=cpus,
        gpu_memory_caps_mb=gpu_caps,
        env=env,
        hosts=list(hosts),
        host=host,
    )
