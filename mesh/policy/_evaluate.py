"""Evaluating a manifest's policies: every rule in its mode, every violation with where and why.

The input of every rule (documented in docs/policies.md; keep it small — each figure is read on
every evaluation of the live mesh):

    manifest   the manifest, encoded as written (camelCase keys, every field, defaults filled in)
    routes     {kind: {step: pool}} for every kind the mesh runs: the built-in kinds' pools, and
               "general" for each step of a kind of your own (worker sessions, hosted by the
               general workers, run them)
    live       {} where there is no running mesh (a plan of a file); else, what `LiveFigures` reads:
                 pools:       {pool: {depth}}            items stored per pool (queued + in flight)
                 tenants:     {tenant: {depth}}          the same per tenant, across pools
                 deadLetters: int                        dead-letter records held
                 workers:     {process: {rssMb, pools}}  each worker's resident memory (MiB, with
                                                         its children) and the pools it serves

A rule that reads `live` is skipped (listed in `Verdicts.skipped`) when `live` is None. A rule
that cannot be evaluated — a key that is not there, a type CEL does not compare — is a violation
saying so: an enforce-mode rule nobody can check blocks, as a failing one does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mesh.manifest._fields import encode
from mesh.manifest._model import Manifest
from mesh.policy._engine import Scope, explain_error
from mesh.policy._rules import BUILTIN, MODES, Rule, entries, from_manifest, mode_of
from mesh.tasks.builtin import BUILTIN_KINDS

SESSIONS_POOL = "general"  # where a step of a kind of your own runs, in `routes`


@dataclass(frozen=True)
class Violation:
    """One rule that does not hold, at one place."""

    rule: str
    path: str  # a manifest path (``tenants.named.acme``), a live one (``live.workers.worker-1``), or "" (all)
    severity: str
    mode: str
    message: str
    remediation: str
    runbook: str

    @property
    def key(self) -> tuple[str, str]:
        """What identifies it across evaluations (the continuous watch's new/cleared)."""
        return self.rule, self.path

    def to_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Verdicts:
    """The outcome of one evaluation."""

    environment: str
    violations: tuple[Violation, ...]
    rules: tuple[tuple[Rule, str], ...]  # every rule evaluated, with its mode
    skipped: tuple[str, ...] = ()  # rules that read the live mesh, where there was none

    @property
    def blocking(self) -> tuple[Violation, ...]:
        """The enforce-mode violations: what stops `config apply`."""
        return tuple(v for v in self.violations if v.mode == "enforce")

    @property
    def warnings(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.mode == "warn")

    @property
    def audited(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.mode == "audit")

    def to_json(self) -> dict[str, Any]:
        counts = {mode: sum(v.mode == mode for v in self.violations) for mode in MODES}
        return {
            "environment": self.environment,
            "blocking": bool(self.blocking),
            "counts": counts,
            "violations": [v.to_json() for v in self.violations],
            "rules": [{"name": rule.name, "mode": mode, "builtin": rule.builtin} for rule, mode in self.rules],
            "skipped": list(self.skipped),
        }


def environment_of(manifest: Manifest) -> str:
    return manifest.preset or "dev"


def routes_of(manifest: Manifest) -> dict[str, dict[str, str]]:
    """Every kind the mesh runs → its steps → the pool each runs in (see the module's doc)."""
    routes = {kind.name: {step.name: step.pool for step in kind.steps} for kind in BUILTIN_KINDS}
    for name, spec in manifest.kinds.items():
        routes[name] = {step.name: SESSIONS_POOL for step in spec.steps}
    return routes


def rules_of(manifest: Manifest) -> tuple[tuple[Rule, str], ...]:
    """Every rule of `manifest` that is on, with its mode: the built-in ones, then its own."""
    environment = environment_of(manifest)
    found = []
    for rule in (*BUILTIN, *from_manifest(manifest.policies)):
        mode = mode_of(rule, manifest.policies, environment)
        if mode is not None:
            found.append((rule, mode))
    return tuple(found)


def inputs_of(manifest: Manifest, live: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a rule reads (see the module's doc)."""
    return {"manifest": encode(manifest), "routes": routes_of(manifest), "live": dict(live or {})}


def evaluate(manifest: Manifest, *, live: Mapping[str, Any] | None = None) -> Verdicts:
    """Every rule of `manifest` over it (and `live`, the running mesh's figures), in the mode its
    environment (``manifest.preset``; none: dev) gives it."""
    inputs = inputs_of(manifest, live)
    scope = Scope(inputs)
    violations: list[Violation] = []
    skipped: list[str] = []
    evaluated = rules_of(manifest)
    for rule, mode in evaluated:
        if live is None and rule.needs_live:
            skipped.append(rule.name)
            continue
        violations.extend(check(rule, mode, scope, inputs))
    return Verdicts(environment_of(manifest), tuple(violations), evaluated, tuple(skipped))


@dataclass(frozen=True)
class Outcome:
    """One evaluation of a rule at one place: `held` (True, False, or what else the expression
    gave) or the `error` it raised."""

    path: str
    item: Any
    key: Any
    held: Any = None
    error: BaseException | None = None


def outcomes(rule: Rule, scope: Scope, inputs: Mapping[str, Any]) -> Iterator[Outcome]:
    """The rule evaluated at each of its places (each entry of `each`, else its `path`)."""
    each = rule.each is not None
    places = entries(rule.each, inputs) if rule.each is not None else [(rule.path, None, None)]
    for path, item, key in places:
        try:
            held = scope.run(rule.expression, item, key, each=each)
        except Exception as exc:  # CEL raises KeyError, TypeError, ValueError, RuntimeError, ZeroDivisionError…
            yield Outcome(path, item, key, error=exc)
        else:
            yield Outcome(path, item, key, held)


def check(rule: Rule, mode: str, scope: Scope, inputs: Mapping[str, Any]) -> list[Violation]:
    """The violations of one rule."""
    found = []
    for outcome in outcomes(rule, scope, inputs):
        if outcome.error is not None:
            message = f"{rule.name} could not be evaluated: {explain_error(outcome.error)}"
        elif outcome.held is True:
            continue
        elif outcome.held is False:
            message = message_of(rule, scope, outcome)
        else:
            message = f"{rule.name} gave {outcome.held!r}, not true or false"
        found.append(Violation(rule.name, outcome.path, rule.severity, mode, message, rule.remediation, rule.runbook))
    return found


def message_of(rule: Rule, scope: Scope, outcome: Outcome) -> str:
    """What a violation says: the rule's message, else (or when the message fails) its name."""
    each = rule.each is not None
    fallback = f"{rule.name} does not hold" + (f" for {outcome.key}" if each else "")
    if not rule.message:
        return fallback
    try:
        text = scope.run(rule.message, outcome.item, outcome.key, each=each)
    except Exception:  # the rule's verdict stands; only its wording failed
        return fallback
    return text if isinstance(text, str) and text else fallback
