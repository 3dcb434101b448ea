"""The manifest from the terminal: ``tidemesh up|plan -f tidemesh.yaml`` and ``tidemesh config
validate|export|presets|explain|diff-presets|schema|render``.

Every flag of ``up`` (and ``plan``) is a manifest field (`FLAGS`; a test walks the parser so none
is left out). Without ``-f`` the flags alone make the manifest; with it, the file (over its
preset) does, the flags given on the command line override it (``-v`` says which), and a flag's
environment default (``TIDEMESH_STATE_DIR``, ``TIDEMESH_TRITON``) applies only where the file and
its preset leave the field alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients.cli._exit import EXIT_OK
from clients.cli._output import Output
from clients.cli._plan import add_change_commands
from mesh.errors import InvalidArgument, Unavailable
from mesh.fabric import POOLS
from mesh.manifest import (
    API_VERSION,
    BASE,
    KIND,
    PRESETS,
    Issue,
    Manifest,
    ManifestError,
    base_of,
    declared_only,
    diff,
    diff_presets,
    document_of,
    encode,
    explain,
    exported,
    matches,
    merge,
    plan_arguments,
    read,
    resolve,
    schema,
)
from mesh.supervisor import GpuMemory, HostError, build_plan, check_model_repositories, probe_cpu_limiter

__all__ = [
    "FLAGS",
    "PRESENTATION",
    "Resolved",
    "add_config_commands",
    "add_file_arg",
    "config_command",
    "explicit_options",
    "plan_for",
    "resolve_args",
]

HEADER = {"apiVersion": API_VERSION, "kind": KIND}


def _nested(path: str, value: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    nested: dict[str, Any] = {leaf: value}
    for parent in reversed(parents):
        nested = {parent: nested}
    return nested


def _entries(flag: str, text: str, shape: str, names: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """``NAME=VALUE,…`` entries of a flag; InvalidArgument naming the flag for a bad one."""
    allowed = list(names) if names is not None else None
    entries = []
    for entry in filter(None, text.split(",")):
        name, sep, value = entry.partition("=")
        if not sep or not name or not value or (allowed is not None and name not in allowed):
            within = f" with NAME in {', '.join(allowed)}" if allowed is not None else ""
            raise InvalidArgument(flag, f"expected {shape}{within}, got {entry!r}")
        entries.append((name, value))
    return entries


def _cast(flag: str, entry: str, value: str, cast: Callable[[str], Any]) -> Any:
    try:
        return cast(value)
    except ValueError:
        raise InvalidArgument(flag, f"{entry}: {value!r} is not a number") from None


@dataclass(frozen=True)
class Flag:
    """One flag of `up`: the manifest fields it sets (patterns; ``*`` a pool or tenant name) and how."""

    option: str
    paths: tuple[str, ...]
    layer: Callable[[Any], dict[str, Any]]


def _one(option: str, path: str, convert: Callable[[Any], Any] = lambda v: v) -> Flag:
    return Flag(option, (path,), lambda value: _nested(path, convert(value)))


def _per_pool(option: str, leaf: str) -> Flag:
    def layer(text: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for pool, value in _entries(option, text, "POOL=N", POOLS):
            if not value.isdigit():
                raise InvalidArgument(option, f"expected POOL=N, got {pool}={value}")
            out = merge(out, _nested(f"pools.{pool}.{leaf}", int(value)))
        return out

    return Flag(option, (f"pools.*.{leaf}",), layer)


def _per_tenant(option: str, leaf: str, cast: Callable[[str], Any]) -> Flag:
    def layer(text: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for tenant, value in _entries(option, text, "TENANT=N"):
            out = merge(out, _nested(f"tenants.named.{tenant}.{leaf}", _cast(option, tenant, value, cast)))
        return out

    return Flag(option, (f"tenants.named.*.{leaf}",), layer)


def _autoscale(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pool, span in _entries("--autoscale", text, "POOL=MIN:MAX", POOLS):
        low, _, high = span.partition(":")
        if not (low.isdigit() and high.isdigit()):
            raise InvalidArgument("--autoscale", f"expected POOL=MIN:MAX, got {pool}={span}")
        out = merge(out, _nested(f"pools.{pool}.autoscale", {"min": int(low), "max": int(high)}))
    return out


def _join(text: str) -> dict[str, Any]:
    """``--join a,b,c``: the mesh's hosts, and one NATS node on each."""
    hosts = [host.strip() for host in text.split(",") if host.strip()]
    if not hosts:
        return {}
    nodes = {"nodes": len(hosts)} if len(hosts) in (3, 5) else {}  # else the hosts' own check says why
    return {"durability": {"cluster": {"hosts": hosts, **nodes}}}


def _repositories(given: Sequence[str]) -> dict[str, Any]:
    # --model-repository implies --triton
    triton: dict[str, Any] = {"modelRepositories": list(given)}
    if given:
        triton["enabled"] = True
    return {"inference": {"triton": triton}}


# Each flag of `up` (by its argparse dest) → the manifest fields it sets.
FLAGS: dict[str, Flag] = {
    "state_dir": _one("--state-dir", "stateDir"),
    "port": _one("--port", "endpoints.public.port"),
    "workers": _one("--workers", "pools.general.workers"),
    "pool_workers": _per_pool("--pool-workers", "workers"),
    "pool_concurrency": _per_pool("--pool-concurrency", "concurrency"),
    "cluster": _one("--cluster", "durability.cluster.nodes"),
    "join": Flag("--join", ("durability.cluster.hosts", "durability.cluster.nodes"), _join),
    "host": _one("--host", "durability.cluster.host", lambda host: host or None),
    "gateways": _one("--gateways", "endpoints.public.gateways"),
    "fsync": _one("--fsync", "durability.fsync"),
    "ack_wait": _one("--ack-wait", "durability.ackWaitSeconds"),
    "tenant_weights": _per_tenant("--tenant-weights", "weight", float),
    "tenant_concurrency": _per_tenant("--tenant-concurrency", "maxConcurrency", int),
    "no_auth": _one("--no-auth", "endpoints.public.auth.required", lambda off: not off),
    "insecure": _one("--insecure", "experiments.insecure"),
    "tenant_rate": _one("--tenant-rate", "tenants.defaults.submitsPerSecond"),
    "tenant_burst": _one("--tenant-burst", "tenants.defaults.submitBurst"),
    "credential_rate": _one("--credential-rate", "endpoints.public.limits.credentialSubmitsPerSecond"),
    "credential_burst": _one("--credential-burst", "endpoints.public.limits.credentialBurst"),
    "triton": _one("--triton", "inference.triton.enabled"),
    "inference_replicas": _one("--inference", "inference.replicas"),
    "model_repositories": Flag(
        "--model-repository", ("inference.triton.modelRepositories", "inference.triton.enabled"), _repositories
    ),
    "demo": _one("--demo", "demo"),
    "autoscale": Flag("--autoscale", ("pools.*.autoscale",), _autoscale),
    "otlp": _one("--otlp", "observability.tracing.otlpEndpoint"),
    "otlp_protocol": _one("--otlp-protocol", "observability.tracing.otlpProtocol"),
    "trace_sampling": _one("--trace-sampling", "observability.tracing.samplingRatio"),
}

# Options of `up` that say how it speaks, not what mesh it runs (and -f, the manifest itself).
PRESENTATION = frozenset({"help", "quiet", "verbose", "accessible", "output", "file"})
# Flags whose default comes from the environment, with their built-in default.
_ENVIRONMENT = {"state_dir": "state", "triton": False}  # $TIDEMESH_STATE_DIR, $TIDEMESH_TRITON


def add_file_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-f",
        "--file",
        default=None,
        metavar="MANIFEST",
        help="the mesh's manifest (tidemesh.yaml, or JSON); flags given here override its fields",
    )


class _Unset(list):  # type: ignore[type-arg]
    """Stands in for a flag's value until argparse sets it (so a flag left out shows). A list, so
    that an ``append`` flag (``--model-repository``) given once appends to a copy of it."""


def explicit_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The dests of `FLAGS` given on the command line `argv` (``[command, *options]``)."""
    from clients.cli._help import commands

    if not argv:
        return set()
    sub = dict(commands(parser)).get(argv[0])
    if sub is None:
        return set()
    markers = {dest: _Unset() for dest in FLAGS}
    namespace = argparse.Namespace(**markers)
    sub.parse_known_args(list(argv[1:]), namespace)
    return {dest for dest, marker in markers.items() if getattr(namespace, dest, marker) is not marker}


@dataclass(frozen=True)
class Resolved:
    manifest: Manifest
    source: str
    overrides: tuple[str, ...] = ()  # "-v" lines: which flag overrode which field of the file
    declared: tuple[str, ...] = field(default=())  # declared-only fields set: not acted on yet


def _flag_of(path: str) -> str:
    for flag in FLAGS.values():
        if any(matches(pattern, path) for pattern in flag.paths):
            return flag.option
    return ""


def _on_the_command_line(exc: ManifestError) -> ManifestError:
    """A manifest error from flags alone, each issue naming its flag beside the field."""
    named = [Issue(f"{_flag_of(i.path)} ({i.path})" if _flag_of(i.path) else i.path, i.message) for i in exc.issues]
    return ManifestError("the command line", named)


def resolve_args(args: argparse.Namespace) -> Resolved:
    """The manifest `args` (of `up` or `plan`) describe; ManifestError/InvalidArgument naming the
    field or flag when they describe none."""
    explicit: set[str] | None = getattr(args, "explicit", None)
    file = getattr(args, "file", None)
    present = [dest for dest in FLAGS if hasattr(args, dest)]
    if not file:
        layers = [FLAGS[dest].layer(getattr(args, dest)) for dest in present]
        try:
            manifest = resolve(HEADER, "the command line", after=layers)
        except ManifestError as exc:
            raise _on_the_command_line(exc) from None
        return _checked(Resolved(manifest, "the command line"))
    if explicit is None:  # called without main(): a flag counts as given where it is off its default
        from clients.cli._main import _parser

        defaults = vars(_parser().parse_args([args.command]))
        explicit = {dest for dest in present if getattr(args, dest) != defaults.get(dest)}
    document = read(file)
    environment = [
        FLAGS[dest].layer(getattr(args, dest))
        for dest, builtin in _ENVIRONMENT.items()
        if dest in present and dest not in explicit and getattr(args, dest) != builtin
    ]
    flags = [FLAGS[dest].layer(getattr(args, dest)) for dest in present if dest in explicit]
    from_file = resolve(document, file, before=environment)
    manifest = resolve(document, file, before=environment, after=flags)
    overrides = tuple(
        f"{_flag_of(c.path) or 'a flag'} overrides {c.path}: {c.before!r} in {file} → {c.after!r}"
        for c in diff(encode(from_file), encode(manifest))
    )
    return _checked(Resolved(manifest, file, overrides))


def _checked(resolved: Resolved) -> Resolved:
    """Paths resolved (the mesh runs where they point, whatever the caller's directory later), model
    repositories checked, and the declared-only fields it sets listed."""
    m = resolved.manifest
    try:
        repositories = [
            str(p) for p in check_model_repositories([Path(d) for d in m.inference.triton.model_repositories])
        ]
    except ValueError as exc:
        raise InvalidArgument("inference.triton.modelRepositories", str(exc)) from None
    absolute = {
        "stateDir": str(Path(m.state_dir).expanduser().resolve()),
        "inference": {"triton": {"modelRepositories": repositories}},
    }
    manifest = resolve(merge(encode(m), absolute), resolved.source)
    return Resolved(
        manifest, resolved.source, resolved.overrides, tuple(declared_only(encode(manifest), base_of(manifest)))
    )


def plan_for(manifest: Manifest):  # type: ignore[no-untyped-def]  # a mesh.supervisor.Plan
    """The process table `manifest` describes (`build_plan`), renders Envoy's config for it too."""
    try:
        return build_plan(Path(manifest.state_dir), **plan_arguments(manifest))
    except HostError as exc:  # which host this is: known only where the plan is built
        raise InvalidArgument(exc.field, str(exc)) from None


def say_resolved(resolved: Resolved, out: Output) -> None:
    """What `up`/`plan` tell about the manifest: each override at -v, each declared-only field always."""
    out.detail(
        f"manifest: {resolved.source}" + (f" (preset {resolved.manifest.preset})" if resolved.manifest.preset else "")
    )
    for line in resolved.overrides:
        out.detail(f"  {line}")
    for path in resolved.declared:
        out.note(f"note: {path} is declared in the manifest but not enforced yet (`tidemesh config explain {path}`)")


# -- tidemesh config … --------------------------------------------------------------------------


def add_config_commands(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    output_args: Callable[..., None],
    state_dir_default: str,
    client_args: Callable[..., None],
) -> None:
    """``tidemesh config ...``; `output_args` adds -o, -q, -v and the rest, `client_args` the
    endpoint and credential of the changes to a running mesh (`_plan`)."""
    p_config = subparsers.add_parser(
        "config", help="the manifest: validate, explain, export; plan, apply and roll back changes to a running mesh"
    )
    actions = p_config.add_subparsers(dest="config_action", required=True)
    p_validate = actions.add_parser("validate", help="check a manifest against the schema, naming each bad field")
    p_validate.add_argument("-f", "--file", required=True, metavar="MANIFEST", help="tidemesh.yaml (or JSON)")
    p_export = actions.add_parser("export", help="the running mesh's manifest (what `up -f` takes back)")
    p_export.add_argument("--state-dir", default=state_dir_default)
    p_export.add_argument("--full", action="store_true", help="every field, not only what differs from the preset")
    p_presets = actions.add_parser("presets", help="the presets (dev, staging, prod) and each choice they make")
    p_explain = actions.add_parser("explain", help="what a field means, its default, each preset's value and why")
    p_explain.add_argument("field", help="a field's path, e.g. durability.fsync or tenants.named.acme.weight")
    p_diff = actions.add_parser("diff-presets", help="the fields on which two presets differ, and why")
    p_diff.add_argument("left", help=f"a preset: {', '.join([BASE, *PRESETS])}")
    p_diff.add_argument("right", help="another preset")
    p_schema = actions.add_parser("schema", help="print the manifest's JSON Schema (docs/manifest.schema.json)")
    for p in (p_validate, p_export, p_presets, p_explain, p_diff, p_schema):
        output_args(p)
    from clients.cli._policy import add_policy_command  # `config policy`: the policy engine's verdicts

    add_policy_command(actions, output_args, state_dir_default)
    _add_render(actions, output_args)
    add_change_commands(actions, client_args)


def _add_render(actions: argparse._SubParsersAction, output_args: Callable[..., None]) -> None:  # type: ignore[type-arg]
    from mesh.kube import KubeOptions

    defaults = KubeOptions()
    p = actions.add_parser("render", help="the manifest as what a platform applies: kubernetes (docs/deploy.md)")
    p.add_argument("target", choices=["kubernetes"], help="the platform")
    p.add_argument("-f", "--file", default=None, metavar="MANIFEST", help="tidemesh.yaml (default: every default)")
    p.add_argument(
        "-o",
        "--out",
        default="-",
        metavar="DIR|-",
        help="a folder for mesh.yaml, secrets.yaml (the Secrets' shape) and create-secrets.sh; "
        "- (the default): the objects on stdout, without the Secrets",
    )
    p.add_argument("--namespace", default=defaults.namespace, help="where the mesh runs")
    p.add_argument("--image", default=defaults.image, help="the tidemesh image every pod runs")
    p.add_argument("--cluster-domain", default=defaults.cluster_domain, help="the cluster's DNS domain")
    p.add_argument("--nats-storage", default=defaults.nats_storage, help="each NATS node's JetStream volume")
    p.add_argument("--storage-class", default=defaults.storage_class, help="for the volumes (default: the cluster's)")
    p.add_argument(
        "--public-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name clients reach the front door by (its certificate answers to it); repeat for several",
    )
    p.add_argument("--leaf-days", type=int, default=defaults.leaf_days, help="how long the leaves in the Secrets live")
    output_args(p, formats=False)


async def config_command(args: argparse.Namespace, out: Output) -> int:
    action = args.config_action
    if action == "validate":
        return _validate(args, out)
    if action == "export":
        return await _export(args, out)
    if action == "presets":
        return _presets(out)
    if action == "explain":
        return _explain(args.field, out)
    if action == "diff-presets":
        return _diff_presets(args.left, args.right, out)
    if action == "render":
        return _render(args, out)
    if action == "policy":
        from clients.cli._policy import policy_command

        return await policy_command(args, out)
    out.data(schema(), table=lambda: out.line(json.dumps(schema(), indent=2, ensure_ascii=False)))
    return EXIT_OK


def host_caps(manifest: Manifest) -> list[dict[str, Any]]:
    """How the manifest's CPU and GPU-memory caps would act on this host: per kind of cap it sets,
    whether exactly (a cgroup, NVML) and how — found without changing anything."""
    caps = [manifest.pools.general.caps, *(p.caps for p in manifest.pools.by_name().values())]
    found = []
    if any(c.cpus is not None for c in caps):
        kind, exact, note = probe_cpu_limiter()
        found.append({"cap": "cpus", "how": kind, "exact": exact, "note": note})
    if any(c.gpu_memory_mb is not None for c in caps):
        gpu = GpuMemory()
        found.append({"cap": "gpuMemoryMb", "how": "nvml", "exact": gpu.available, "note": gpu.note})
        gpu.close()
    return found


def _validate(args: argparse.Namespace, out: Output) -> int:
    document = read(args.file)
    manifest = resolve(document, args.file)
    declared = declared_only(encode(manifest), base_of(manifest))
    here = host_caps(manifest)
    report: dict[str, Any] = {"file": args.file, "valid": True, "preset": manifest.preset, "declaredOnly": declared}
    if here:  # how the CPU and GPU-memory caps it sets would act on this host
        report["caps"] = here

    def table() -> None:
        preset = f" (preset {manifest.preset})" if manifest.preset else ""
        out.line(f"{args.file}: valid{preset}")
        for path in declared:
            out.line(f"  {path}: declared, not enforced yet")
        for cap in here:
            out.line(f"  caps.{cap['cap']} on this host: {cap['note']}")

    out.data(report, table=table)
    return EXIT_OK


async def _export(args: argparse.Namespace, out: Output) -> int:
    from mesh.supervisor import Plan, Probe

    state = Path(args.state_dir)
    plan_file = state / "plan.json"
    if not plan_file.exists():
        raise Unavailable(f"no mesh has run from {state} (no plan.json there)")
    plan = Plan.from_json(json.loads(plan_file.read_text()))

    async def healthy(spec: Any) -> bool:
        async with Probe(spec.health, state) as probe:
            return bool(await probe.check())

    answers = await asyncio.gather(*(healthy(spec) for spec in plan.processes))
    if not any(answers):
        raise Unavailable(f"the mesh of {state} is not running: none of its {len(answers)} processes answers")
    for spec, ok in zip(plan.processes, answers, strict=True):
        if not ok:
            out.note(f"note: {spec.name} is not healthy now; its settings are read from the plan")
    found = exported(plan)
    for note in found.notes:
        out.note(f"note: {note}")
    out.data(document_of(found.manifest, full=args.full))  # YAML unless -o json
    return EXIT_OK


def _presets(out: Output) -> int:
    data = [
        {
            "name": p.name,
            "summary": p.summary,
            "choices": [{"field": c.path, "value": c.value, "why": c.why} for c in p.choices],
        }
        for p in PRESETS.values()
    ]

    def table() -> None:
        for index, preset in enumerate(PRESETS.values()):
            if index:
                out.line("")
            out.line(f"{preset.name}: {preset.summary}")
            for c in preset.choices:
                out.line(f"  {c.path} = {json.dumps(c.value)}")
                out.line(f"      {c.why}")
        out.line("")
        out.line("No preset turns TLS or authentication off. `tidemesh config explain FIELD` tells more.")

    out.data(data, table=table)
    return EXIT_OK


def _explain(path: str, out: Output) -> int:
    found = explain(path).to_json()

    def table() -> None:
        out.line(f"{found['field']} ({found['type']})")
        out.line(f"  {found['description']}")
        out.line(f"  default: {json.dumps(found['default'])}")
        for name, preset in found["presets"].items():
            why = f" — {preset['why']}" if preset["why"] else " (the default)"
            out.line(f"  {name}: {json.dumps(preset['value'])}{why}")
        if found["tradeoff"]:
            out.line(f"  trade-off: {found['tradeoff']}")

    out.data(found, table=table)
    return EXIT_OK


def _diff_presets(left: str, right: str, out: Output) -> int:
    differences = diff_presets(left, right)
    data = [
        {"field": d.path, left: d.left, right: d.right, f"{left}Why": d.left_why, f"{right}Why": d.right_why}
        for d in differences
    ]

    def table() -> None:
        if not differences:
            out.line(f"{left} and {right} set every field alike")
            return
        width = max(len(d.path) for d in differences)
        out.line(f"{'field':<{width}}  {left:<12} {right}")
        for d in differences:
            out.line(f"{d.path:<{width}}  {json.dumps(d.left):<12} {json.dumps(d.right)}")
            for name, why in ((left, d.left_why), (right, d.right_why)):
                if why:
                    out.line(f"{'':<{width}}    {name}: {why}")

    out.data(data, table=table)
    return EXIT_OK


def _render(args: argparse.Namespace, out: Output) -> int:
    from mesh.kube import KubeOptions, render_kubernetes

    source = args.file or "the defaults"
    manifest = resolve(read(args.file), args.file) if args.file else resolve(HEADER, "the defaults")
    options = KubeOptions(
        namespace=args.namespace,
        image=args.image,
        cluster_domain=args.cluster_domain,
        nats_storage=args.nats_storage,
        storage_class=args.storage_class,
        public_hosts=tuple(args.public_host),
        leaf_days=args.leaf_days,
    )
    rendering = render_kubernetes(manifest, options, source)
    for note in rendering.notes:
        out.note(f"note: {note}")
    if args.out == "-":
        out.line(rendering.documents().rstrip("\n"))
        out.note(
            f"note: the {len(rendering.secrets)} Secrets are not in this stream (applying empty ones would erase "
            "filled ones): render with -o DIR for create-secrets.sh, which makes them"
        )
        return EXIT_OK
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mesh.yaml").write_text(rendering.documents())
    (folder / "secrets.yaml").write_text(
        "# The Secrets' shape only (empty values): create-secrets.sh makes and fills them.\n"
        "# Do not apply this file: it would empty the filled ones.\n" + rendering.documents(rendering.secrets)
    )
    script = folder / "create-secrets.sh"
    script.write_text(rendering.script)
    script.chmod(0o755)
    out.note(f"wrote {folder / 'mesh.yaml'} ({len(rendering.objects)} objects), {folder / 'secrets.yaml'}, {script}")
    out.note(
        f"next: {script} STATE_DIR (the Secrets, from that state dir), then kubectl apply -f {folder / 'mesh.yaml'}"
    )
    return EXIT_OK
