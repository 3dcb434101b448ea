"""Manifest ⇄ process plan: the `build_plan` arguments a manifest means, and the manifest fields a
running plan shows (read back from its process table, Envoy's config and the NATS configs).

`plan_arguments` passes a service a flag only where the manifest moves it off the service's own
default, so a default manifest starts the mesh a bare ``tidemesh up`` starts. `observe` is its
inverse on every field that reaches a process: ``observe(build(m))`` agrees with `m` on each
field it returns (a unit test holds it so for every preset and many generated manifests).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mesh.access import roles_section
from mesh.manifest._fields import encode, merge
from mesh.manifest._model import CLASS_NAMES, POOL_NAMES, Autoscale, Manifest

_DEFAULT = Manifest()


def number(value: float) -> str:
    """A number as a flag's value: whole numbers without a fraction, others exactly (repr)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _pairs(values: Mapping[str, Any]) -> str:
    return ",".join(f"{key}={value}" for key, value in values.items())


def _scheduler_args(m: Manifest) -> tuple[str, ...]:
    args: list[str] = []
    scale = {name: p.autoscale for name, p in m.pools.by_name().items() if p.autoscale is not None}
    if scale:
        args += ["--scale", _pairs({name: f"{a.min}:{a.max}" for name, a in scale.items()})]
    depths = {name: lane.max_depth for name, lane in m.classes.lanes().items()}
    defaults = {name: lane.max_depth for name, lane in _DEFAULT.classes.lanes().items()}
    if depths != defaults:
        args += ["--lane-max-depth", _pairs({k: v for k, v in depths.items() if v != defaults[k]})]
    if m.tenants.defaults.max_queued != _DEFAULT.tenants.defaults.max_queued:
        args += ["--tenant-max-depth", str(m.tenants.defaults.max_queued)]
    return tuple(args)


def _worker_args(m: Manifest) -> tuple[str, ...]:
    args: list[str] = []
    weights = {name: number(t.weight) for name, t in m.tenants.named.items() if t.weight != 1.0}
    if weights:
        args += ["--tenant-weights", _pairs(weights)]
    caps = {name: t.max_concurrency for name, t in m.tenants.named.items() if t.max_concurrency is not None}
    if caps:
        args += ["--tenant-concurrency", _pairs(caps)]
    bounds = {name: lane.wait_bound_seconds for name, lane in m.classes.lanes().items()}
    default_bounds = {name: lane.wait_bound_seconds for name, lane in _DEFAULT.classes.lanes().items()}
    if bounds != default_bounds:
        args += ["--wait-bounds", _pairs({k: number(v) for k, v in bounds.items() if v != default_bounds[k]})]
    if m.classes.slots.interactive_reserve is not None:
        args += ["--reserve", str(m.classes.slots.interactive_reserve)]
    if m.classes.slots.guaranteed is not None:
        args += ["--guaranteed-slots", str(m.classes.slots.guaranteed)]
    if m.pools.general.session_resume_seconds != _DEFAULT.pools.general.session_resume_seconds:
        args += ["--resume-window", number(m.pools.general.session_resume_seconds)]
    if m.egress.webhook_allow != _DEFAULT.egress.webhook_allow:
        args += ["--webhook-allow", ",".join(m.egress.webhook_allow)]
    return tuple(args)


def _gateway_args(m: Manifest) -> tuple[str, ...]:
    audience = m.endpoints.public.auth.jwt_audience
    return ("--jwt-audience", audience) if audience != _DEFAULT.endpoints.public.auth.jwt_audience else ()


# Inference flags by their manifest value: (flag, getter); each passed when off its default.
_INFERENCE_FLAGS: tuple[tuple[str, Any], ...] = (
    ("--default-model", lambda i: i.default_model),
    ("--triton-capacity", lambda i: i.triton.capacity),
    ("--triton-devices", lambda i: i.triton.devices),
    ("--threads", lambda i: i.cpu.threads),
    ("--cpu-mode", lambda i: i.cpu.mode),
    ("--max-batch", lambda i: i.batching.max_batch),
    ("--max-delay-ms", lambda i: i.batching.max_delay_ms),
    ("--model-memory-budget-mb", lambda i: i.memory.budget_mb),
    ("--default-model-memory-mb", lambda i: i.memory.default_model_mb),
    ("--max-wait-ms", lambda i: i.admission.max_wait_ms),
    ("--max-waiting", lambda i: i.admission.max_waiting),
)


def _spill(inference: Any) -> dict[str, float]:
    s = inference.spill_after
    return {"interactive": s.interactive_ms, "standard": s.standard_ms, "batch": s.batch_ms}


def _inference_args(m: Manifest) -> tuple[str, ...]:
    args: list[str] = []
    for flag, get in _INFERENCE_FLAGS:
        value = get(m.inference)
        if value != get(_DEFAULT.inference):
            args += [flag, number(value) if isinstance(value, float) else str(value)]
    spill, default_spill = _spill(m.inference), _spill(_DEFAULT.inference)
    if spill != default_spill:
        args += ["--spill-after-ms", _pairs({k: number(v) for k, v in spill.items() if v != default_spill[k]})]
    if not m.inference.cpu.enabled:
        args.append("--no-cpu")
    return tuple(args)


def plan_arguments(m: Manifest) -> dict[str, Any]:
    """`build_plan`'s keyword arguments (all but the state dir) for `m`."""
    public = m.endpoints.public
    pools = m.pools.by_name()
    return {
        "public_port": public.port,
        "listen_host": public.host,
        "workers": m.pools.general.workers,
        "worker_concurrency": m.pools.general.concurrency,
        "ack_wait_s": m.durability.ack_wait_seconds,
        "scheduler_args": _scheduler_args(m),
        "worker_args": _worker_args(m),
        "gateway_args": _gateway_args(m),
        "inference_args": _inference_args(m),
        "pool_workers": {name: p.workers for name, p in pools.items() if p.workers},
        "pool_concurrency": {name: p.concurrency for name, p in pools.items() if p.workers},
        "cluster": m.durability.cluster.nodes,
        "fsync": m.durability.fsync,
        "gateways": public.gateways,
        "auth": public.auth.required,
        "triton": m.inference.triton.enabled,
        "model_repositories": [Path(d) for d in m.inference.triton.model_repositories],
        "inference_replicas": m.inference.replicas,
        "insecure": m.experiments.insecure,
        "tenant_limit": (m.tenants.defaults.submits_per_second, m.tenants.defaults.submit_burst),
        "credential_limit": (public.limits.credential_submits_per_second, public.limits.credential_burst),
        "cors_allow_origins": public.cors.allow_origins,
        "request_headers_timeout_s": public.limits.request_headers_timeout_seconds,
        "memory_caps_mb": _caps(m, "memory_mb"),
        "cpu_caps": _caps(m, "cpus"),
        "gpu_memory_caps_mb": _caps(m, "gpu_memory_mb"),
        "otlp_endpoint": m.observability.tracing.otlp_endpoint,
        "otlp_protocol": m.observability.tracing.otlp_protocol,
        "trace_sampling_ratio": m.observability.tracing.sampling_ratio,
        "roles": {name: encode(role) for name, role in m.roles.items()},
        "step_up": public.auth.step_up == "required",
        "hosts": m.durability.cluster.hosts,
        "host": m.durability.cluster.host or "",
    }


def _caps(m: Manifest, which: str) -> dict[str, Any]:
    """One kind of cap (a `Caps` field) by pool, the general workers' as ``*`` (build_plan's form)."""
    caps = {name: getattr(p.caps, which) for name, p in m.pools.by_name().items()}
    caps["*"] = getattr(m.pools.general.caps, which)
    return {name: cap for name, cap in caps.items() if cap is not None}


def autoscale_bounds(m: Manifest) -> dict[str, tuple[int, int]]:
    """What `tidemesh up`'s local autoscaler keeps each pool within: its bounds, else 1:1."""
    return {
        name: (p.autoscale.min, p.autoscale.max) if p.autoscale is not None else (1, 1)
        for name, p in m.pools.by_name().items()
    }


# -- reading a running plan back ---------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """What a plan shows: a partial document (only the fields it reveals) and the settings in its
    process table that no manifest field holds."""

    document: dict[str, Any]
    unheld: tuple[str, ...]


def _flags(command: Sequence[str]) -> dict[str, list[str]]:
    """A command's ``--flag value`` pairs, every occurrence (a bare flag's value is "")."""
    found: dict[str, list[str]] = {}
    words = list(command)
    for index, word in enumerate(words):
        if not word.startswith("--"):
            continue
        following = words[index + 1] if index + 1 < len(words) else "--"
        found.setdefault(word, []).append("" if following.startswith("--") else following)
    return found


def _last(flags: Mapping[str, list[str]], flag: str) -> str | None:
    values = flags.get(flag)
    return values[-1] if values else None


def _entries(text: str | None) -> dict[str, str]:
    out = {}
    for entry in filter(None, (text or "").split(",")):
        key, _, value = entry.partition("=")
        out[key] = value
    return out


def _nested(path: str, value: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    nested: dict[str, Any] = {leaf: value}
    for parent in reversed(parents):
        nested = {parent: nested}
    return nested


# Flags the plan itself sets on every service (addresses, identities, paths): no field holds them.
_INFRASTRUCTURE = {
    "--nats", "--grpc", "--http", "--replicas", "--pki", "--nats-user", "--scheduler", "--inference",
    "--session-hosts", "--sessions", "--pools", "--concurrency", "--auth-dir", "--triton", "--model-repository",
    "--ack-wait", "--grace", "--ready-file", "--advertise", "--worker-id", "--audit-dir",
    "--tenant-rate", "--tenant-burst", "--credential-rate", "--credential-burst", "--nats-in-order",
}  # fmt: skip
_HELD = {
    "scheduler": {"--scale", "--lane-max-depth", "--tenant-max-depth"},
    "worker": {
        "--tenant-weights", "--tenant-concurrency", "--wait-bounds", "--reserve", "--guaranteed-slots",
        "--resume-window", "--webhook-allow",
    },
    "gateway": {"--jwt-audience", "--roles-file", "--step-up"},
    "inference": {flag for flag, _ in _INFERENCE_FLAGS} | {"--spill-after-ms", "--no-cpu"},
}  # fmt: skip


def _role(name: str) -> str:
    for role in ("scheduler", "worker", "gateway", "inference", "triton", "envoy"):
        if name == role or name.startswith(f"{role}-"):
            return role
    return "nats" if name == "nats" or name.startswith("nats-") else name


def _find(tree: Any, key: str) -> Any:
    """The first value under `key` anywhere in a parsed YAML tree (depth first)."""
    if isinstance(tree, Mapping):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find(value, key)
            if found is not None:
                return found
    elif isinstance(tree, list):
        for value in tree:
            found = _find(value, key)
            if found is not None:
                return found
    return None


def observe(plan: Any) -> Observed:
    """The manifest fields `plan` (a `mesh.supervisor.Plan`) shows, from its processes' commands,
    Envoy's rendered config and the NATS nodes' configs in its state dir."""
    by_role: dict[str, list[Any]] = {}
    for spec in plan.processes:
        by_role.setdefault(_role(spec.name), []).append(spec)
    doc: dict[str, Any] = {"stateDir": plan.state_dir}
    unheld: list[str] = []

    def put(path: str, value: Any) -> None:
        nonlocal doc
        doc = merge(doc, _nested(path, value))

    def command_flags(role: str) -> dict[str, list[str]]:
        specs = by_role.get(role, [])
        flags = _flags(specs[0].command) if specs else {}
        for flag in sorted(set(flags) - _INFRASTRUCTURE - _HELD.get(role, set())):
            unheld.append(f"{role} {flag}")
        return flags

    put("experiments.insecure", not plan.secure)
    put("endpoints.public.port", plan.public_port)
    env = getattr(plan, "env", {})
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        put("observability.tracing.otlpEndpoint", env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        put("observability.tracing.otlpProtocol", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"))
        put("observability.tracing.samplingRatio", float(env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")))
    envoy = by_role.get("envoy", [])
    if envoy:
        put("endpoints.public.host", envoy[0].address.rpartition(":")[0])
        _observe_envoy(Path(plan.state_dir) / "envoy.yaml", put)
    nats = by_role.get("nats", [])
    hosts = list(getattr(plan, "hosts", []))
    put("durability.cluster.nodes", len(hosts) or len(nats))  # on one host of several: one node each
    if hosts:
        put("durability.cluster.hosts", hosts)
    if getattr(plan, "host", ""):
        put("durability.cluster.host", plan.host)
    if nats:
        config = Path(nats[0].command[nats[0].command.index("-c") + 1])
        # The config holds the NATS users' passwords: only its sync_interval line is looked at.
        always = any(line.strip() == "sync_interval: always" for line in config.read_text().splitlines())
        put("durability.fsync", "always" if always else "interval")

    scheduler = command_flags("scheduler")
    if (ack := _last(scheduler, "--ack-wait")) is not None:
        put("durability.ackWaitSeconds", float(ack))
    for name, span in _entries(_last(scheduler, "--scale")).items():
        low, _, high = span.partition(":")
        put(f"pools.{name}.autoscale", encode(Autoscale(int(low), int(high))))
    for name, lane_depth in _entries(_last(scheduler, "--lane-max-depth")).items():
        put(f"classes.{name}.maxDepth", int(lane_depth))
    if (quota := _last(scheduler, "--tenant-max-depth")) is not None:
        put("tenants.defaults.maxQueued", int(quota))

    worker = _flags(plan.worker_command)
    command_flags("worker")
    workers = [spec.name for spec in by_role.get("worker", [])]
    put("pools.general.workers", sum(1 for name in workers if re.fullmatch(r"worker-\d+", name)))
    if (concurrency := _last(_flags(plan.worker_command), "--concurrency")) is not None:
        put("pools.general.concurrency", int(concurrency))
    for pool in POOL_NAMES:
        dedicated = [s for s in by_role.get("worker", []) if re.fullmatch(rf"worker-{re.escape(pool)}-\d+", s.name)]
        put(f"pools.{pool}.workers", len(dedicated))
        if dedicated and (concurrency := _last(_flags(dedicated[0].command), "--concurrency")) is not None:
            put(f"pools.{pool}.concurrency", int(concurrency))
    for pool, cap in getattr(plan, "memory_caps_mb", {}).items():
        put(f"pools.{'general' if pool == '*' else pool}.caps.memoryMb", int(cap))
    for pool, cores in getattr(plan, "cpu_caps", {}).items():
        put(f"pools.{'general' if pool == '*' else pool}.caps.cpus", float(cores))
    for pool, cap in getattr(plan, "gpu_memory_caps_mb", {}).items():
        put(f"pools.{'general' if pool == '*' else pool}.caps.gpuMemoryMb", int(cap))
    for name, weight in _entries(_last(worker, "--tenant-weights")).items():
        put(f"tenants.named.{name}.weight", float(weight))
    for name, cap in _entries(_last(worker, "--tenant-concurrency")).items():
        put(f"tenants.named.{name}.maxConcurrency", int(cap))
    for name, seconds in _entries(_last(worker, "--wait-bounds")).items():
        put(f"classes.{name}.waitBoundSeconds", float(seconds))
    if (reserve := _last(worker, "--reserve")) is not None:
        put("classes.slots.interactiveReserve", int(reserve))
    if (guaranteed := _last(worker, "--guaranteed-slots")) is not None:
        put("classes.slots.guaranteed", int(guaranteed))
    if (window := _last(worker, "--resume-window")) is not None:
        put("pools.general.sessionResumeSeconds", float(window))
    if (allow := _last(worker, "--webhook-allow")) is not None:
        put("egress.webhookAllow", [prefix for prefix in allow.split(",") if prefix])

    gateway = command_flags("gateway")
    put("endpoints.public.gateways", len(by_role.get("gateway", [])))
    put("endpoints.public.auth.required", "--auth-dir" in gateway)
    put("endpoints.public.auth.stepUp", "required" if "--step-up" in gateway else "off")
    if (audience := _last(gateway, "--jwt-audience")) is not None:
        put("endpoints.public.auth.jwtAudience", audience)
    if (roles_file := _last(gateway, "--roles-file")) is not None:
        put("roles", roles_section(Path(roles_file)))
    for flag, path in (
        ("--tenant-rate", "tenants.defaults.submitsPerSecond"),
        ("--tenant-burst", "tenants.defaults.submitBurst"),
        ("--credential-rate", "endpoints.public.limits.credentialSubmitsPerSecond"),
        ("--credential-burst", "endpoints.public.limits.credentialBurst"),
    ):
        if (value := _last(gateway, flag)) is not None:
            put(path, float(value))

    inference = command_flags("inference")
    put("inference.replicas", len(by_role.get("inference", [])))
    put("inference.triton.enabled", bool(by_role.get("triton")))
    put("inference.triton.modelRepositories", inference.get("--model-repository", []))
    _observe_inference(inference, put)
    return Observed(doc, tuple(unheld))


_INFERENCE_PATHS = {
    "--default-model": ("inference.defaultModel", str),
    "--triton-capacity": ("inference.triton.capacity", int),
    "--triton-devices": ("inference.triton.devices", str),
    "--threads": ("inference.cpu.threads", int),
    "--cpu-mode": ("inference.cpu.mode", str),
    "--max-batch": ("inference.batching.maxBatch", int),
    "--max-delay-ms": ("inference.batching.maxDelayMs", float),
    "--model-memory-budget-mb": ("inference.memory.budgetMb", float),
    "--default-model-memory-mb": ("inference.memory.defaultModelMb", float),
    "--max-wait-ms": ("inference.admission.maxWaitMs", float),
    "--max-waiting": ("inference.admission.maxWaiting", int),
}


def _observe_inference(flags: Mapping[str, list[str]], put: Any) -> None:
    for flag, (path, cast) in _INFERENCE_PATHS.items():
        if (value := _last(flags, flag)) is not None:
            put(path, cast(value))
    for name, ms in _entries(_last(flags, "--spill-after-ms")).items():
        if name in CLASS_NAMES:
            put(f"inference.spillAfter.{name}Ms", float(ms))
    put("inference.cpu.enabled", "--no-cpu" not in flags)


def _observe_envoy(config: Path, put: Any) -> None:
    try:
        tree = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError):
        return
    origins = _find(tree, "allow_origin_string_match")
    if isinstance(origins, list):
        put("endpoints.public.cors.allowOrigins", [o.get("exact") for o in origins if isinstance(o, Mapping)])
    timeout = _find(tree, "request_headers_timeout")
    if isinstance(timeout, str) and timeout.endswith("s"):
        put("endpoints.public.limits.requestHeadersTimeoutSeconds", float(timeout[:-1]))
