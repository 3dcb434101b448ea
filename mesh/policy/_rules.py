"""Rules: the built-in ones, the manifest's own, and the mode each runs in.

A rule is a CEL expression that is true when the rule holds. With `each` (a path whose ``*``
stands for every key of a mapping or index of a list, e.g. ``manifest.tenants.named.*``) it is
evaluated once per entry, `item` the entry and `key` its name, and each entry that fails is a
violation at its own path; without, once, a violation at the rule's `path`.

Modes, from least to most: audit (recorded: `tidemesh config policy`, the alert on
``tm.alert.policy.<rule>``, the metric), warn (said by plan and apply as well), enforce (apply
refuses the change). The environment is the manifest's preset (none: dev). A built-in rule runs
in the lesser of its default for the environment (which may be off: a rule that does not apply
there) and ``policies.mode`` — unless
``policies.overrides.<rule>.mode`` names its mode, or ``enabled: false`` turns it off. A rule of
the manifest's own runs in its ``mode``, else ``policies.mode``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from mesh.manifest._fields import join, split_path
from mesh.policy._engine import INPUTS, reads

MODES = ("audit", "warn", "enforce")
SEVERITIES = ("low", "medium", "high", "critical")
ENVIRONMENTS = ("dev", "staging", "prod")
RUNBOOK = "docs/runbooks/policies.md"


def _modes(dev: str | None, staging: str | None, prod: str | None) -> Mapping[str, str | None]:
    """A built-in rule's default mode per environment; None: off there (a rule that does not
    apply, e.g. three replicas on a laptop), unless an override names a mode."""
    return MappingProxyType({"dev": dev, "staging": staging, "prod": prod})


EVERYWHERE = _modes("enforce", "enforce", "enforce")  # as far as policies.mode lets it


@dataclass(frozen=True)
class Rule:
    """One rule, built in or the manifest's (`from_manifest`)."""

    name: str
    expression: str
    severity: str = "medium"
    each: str | None = None
    path: str = ""  # where a violation of a rule without `each` is (a manifest path; "" the whole)
    message: str | None = None  # a CEL expression giving the violation's text
    remediation: str = ""
    runbook: str = RUNBOOK
    summary: str = ""  # what the rule asks, in a line (listings, docs)
    builtin: bool = False
    modes: Mapping[str, str | None] = field(default_factory=lambda: EVERYWHERE)  # a built-in's default per environment
    mode: str | None = None  # a manifest rule's own mode (None: policies.mode)
    where: str = ""  # a manifest rule's place: policies.rules[i]

    @property
    def needs_live(self) -> bool:
        """Whether the rule reads the live mesh (so it is skipped where there is none, e.g. a plan
        of a file)."""
        texts = [self.expression, *([self.message] if self.message else [])]
        return (self.each or "").startswith("live") or any("live" in reads(text) for text in texts)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expression": self.expression,
            "each": self.each,
            "severity": self.severity,
            "summary": self.summary,
            "remediation": self.remediation,
            "runbook": self.runbook,
            "builtin": self.builtin,
        }


def _runbook(name: str) -> str:
    return f"{RUNBOOK}#{name}"


BUILTIN: tuple[Rule, ...] = (
    Rule(
        "max-retries",
        "item.maxAttempts - 1 <= 10 && item.steps.all(s, s.maxAttempts == null || s.maxAttempts - 1 <= 10)",
        each="manifest.kinds.*",
        severity="medium",
        message='item.maxAttempts - 1 > 10 ? "kind " + key + " retries each step up to "'
        ' + string(item.maxAttempts - 1) + " times" : "kind " + key + " has a step retried up to "'
        " + string(item.steps.filter(s, s.maxAttempts != null && s.maxAttempts - 1 > 10)[0].maxAttempts - 1)"
        ' + " times (its own maxAttempts)"',
        remediation="Lower the kind's maxAttempts (and its steps' own) to 11 or fewer: a step that keeps failing "
        "belongs in the dead letters, where `tidemesh dlq` shows why, not in a retry loop.",
        summary="a kind's steps are retried at most 10 times (maxAttempts ≤ 11, the kind's and each step's own)",
    ),
    Rule(
        "tls-outside-dev",
        "!manifest.experiments.insecure",
        path="experiments.insecure",
        severity="critical",
        modes=_modes(None, "enforce", "enforce"),
        message='"experiments.insecure is true: plaintext on every hop, NATS without users"',
        remediation="Set experiments.insecure to false (drop --insecure): TLS and authentication stay on in "
        "every preset; plaintext is for packet captures on a laptop.",
        summary="TLS (and NATS users) on every hop: experiments.insecure is false outside dev",
    ),
    Rule(
        "tenant-quota",
        "item.maxQueued != null || item.maxConcurrency != null || item.submitsPerSecond != null",
        each="manifest.tenants.named.*",
        severity="medium",
        modes=_modes("audit", "warn", "enforce"),
        message='"tenant " + key + " has no quota or limit of its own"',
        remediation="Give the tenant a maxQueued (its quota), a maxConcurrency or a submitsPerSecond of its own: "
        "a tenant named for its weight alone lives on tenants.defaults, shared by every tenant nobody named.",
        summary="every named tenant has a quota or limit of its own (maxQueued, maxConcurrency or submitsPerSecond)",
    ),
    Rule(
        "allowed-kinds-known",
        "item.allowedKinds == null || item.allowedKinds.all(k, k in routes)",
        each="manifest.tenants.named.*",
        severity="medium",
        message='"tenant " + key + " is allowed a kind the mesh does not run: "'
        " + item.allowedKinds.filter(k, !(k in routes))[0]",
        remediation="Name only built-in kinds (`tidemesh kinds`) or kinds declared under `kinds` in allowedKinds; "
        "a misspelt kind there silently refuses the tenant's submits.",
        summary="a tenant's allowedKinds are kinds the mesh runs (built in, or declared under kinds)",
    ),
    Rule(
        "kind-pool-bindings",
        "routes[key].all(step, routes[key][step] != 'general' || manifest.pools.general.workers > 0)",
        each="manifest.kinds.*",
        severity="high",
        message='"kind " + key + " runs on worker sessions, which only general workers host, and '
        'pools.general.workers is 0"',
        remediation="Keep pools.general.workers at 1 or more: a kind of your own is served by workers attached "
        "over the worker protocol, whose sessions the general worker processes host.",
        summary="every kind's steps route to a pool that has workers to serve them",
    ),
    Rule(
        "gpu-caps",
        "key == 'inference' ? (!manifest.inference.triton.enabled || manifest.inference.triton.devices == 'cpu'"
        " || item.caps.gpuMemoryMb != null || manifest.pools.general.caps.gpuMemoryMb != null)"
        " : key == 'general' ? (!manifest.kinds.exists(k, 'gpu' in manifest.kinds[k].labels)"
        " || item.caps.gpuMemoryMb != null) : true",
        each="manifest.pools.*",
        severity="medium",
        modes=_modes("audit", "warn", "enforce"),
        message='"pool " + key + " uses a GPU and no GPU-memory cap applies to its workers"',
        remediation="Set pools.<pool>.caps.gpuMemoryMb (or pools.general.caps.gpuMemoryMb for every worker): "
        "a step past its cap is restarted and retried instead of taking the GPU other workers share.",
        summary="a pool that uses a GPU (inference with Triton on gpu/auto; general when a kind asks for a gpu "
        "label) has a GPU-memory cap",
    ),
    Rule(
        "durability-replicas",
        "manifest.durability.cluster.nodes >= 3",
        path="durability.cluster.nodes",
        severity="high",
        modes=_modes(None, "audit", "enforce"),
        message='"durability.cluster.nodes is " + string(manifest.durability.cluster.nodes)'
        ' + ": every stream has fewer than 3 replicas"',
        remediation="Run 3 (or 5) JetStream nodes (durability.cluster.nodes: 3, `--cluster 3`): with one, "
        "losing its disk loses every acknowledged task.",
        summary="JetStream runs 3 or more replicas (durability.cluster.nodes ≥ 3)",
    ),
)
# Every built-in's runbook is its section of docs/runbooks/policies.md.
BUILTIN = tuple(replace(rule, builtin=True, runbook=_runbook(rule.name)) for rule in BUILTIN)
BUILTIN_BY_NAME: Mapping[str, Rule] = MappingProxyType({rule.name: rule for rule in BUILTIN})


def entries(pattern: str, inputs: Mapping[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(path, item, key) of every entry `pattern` (``manifest.kinds.*``) names in `inputs`; a
    manifest entry's path is the manifest's own (``kinds["acme.resize"]``)."""
    parts = split_path(pattern)
    root, rest = parts[0], parts[1:]
    start = "" if root == "manifest" else root
    yield from _walk(inputs.get(root), rest, start, None)


def _walk(value: Any, parts: list[str], path: str, key: Any) -> Iterator[tuple[str, Any, Any]]:
    if not parts:
        yield path, value, key
        return
    head, rest = parts[0], parts[1:]
    if isinstance(value, Mapping):
        keys = list(value) if head == "*" else [head] if head in value else []
        for name in keys:
            yield from _walk(value[name], rest, join(path, str(name)), name)
    elif isinstance(value, list):
        indices = range(len(value)) if head == "*" else [int(head)] if head.isdigit() and int(head) < len(value) else []
        for index in indices:
            yield from _walk(value[index], rest, join(path, index), index)


def each_problem(pattern: str) -> str:
    """What is wrong with `pattern` as a rule's `each` (empty: nothing)."""
    parts = split_path(pattern)
    if not parts or parts[0] not in INPUTS:
        return f"must start with one of {', '.join(INPUTS)}, e.g. manifest.tenants.named.*"
    if len(parts) < 2:
        return "names the entries to iterate, e.g. manifest.tenants.named.*"
    return ""


def mode_of(rule: Rule, policies: Any, environment: str) -> str | None:
    """The mode `rule` runs in under `policies` (the manifest's section) in `environment`; None:
    turned off."""
    if rule.builtin:
        override = policies.overrides.get(rule.name)
        if override is not None and not override.enabled:
            return None
        if override is not None and override.mode is not None:
            return str(override.mode)
        default = rule.modes[environment]
        return None if default is None else min(default, str(policies.mode), key=MODES.index)
    return str(rule.mode or policies.mode)


def from_manifest(policies: Any) -> tuple[Rule, ...]:
    """The manifest's own rules (`policies.rules`) as `Rule`s."""
    return tuple(
        Rule(
            name=r.name,
            expression=r.expression,
            severity=r.severity,
            each=r.each,
            message=r.message,
            remediation=r.remediation,
            runbook=r.runbook or RUNBOOK,
            mode=r.mode,
            where=f"policies.rules[{index}]",
        )
        for index, r in enumerate(policies.rules)
    )
