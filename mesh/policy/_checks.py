"""The manifest's policies checked when it is read: each problem named by its path (a
`ManifestError`), so a rule that cannot run never reaches a plan."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mesh.policy._engine import Scope, explain_error, problem
from mesh.policy._evaluate import inputs_of, outcomes
from mesh.policy._rules import BUILTIN_BY_NAME, each_problem, from_manifest

Issues = Iterator[tuple[str, str]]


def rule_problems(rule: Any) -> Issues:
    """A `PolicyRule`'s: its expression, message and each, as paths below it."""
    each = rule.each is not None
    if each:
        wrong = each_problem(rule.each)
        if wrong:
            yield "each", wrong
    for field in ("expression", "message"):
        text = getattr(rule, field)
        if text is not None:
            wrong = problem(text, each=each)
            if wrong:
                yield field, wrong


def policies_problems(policies: Any) -> Issues:
    """The `Policies` section's: names given twice or taken by a built-in rule, overrides of no
    built-in rule."""
    seen: set[str] = set()
    for index, rule in enumerate(policies.rules):
        if rule.name in BUILTIN_BY_NAME:
            yield f"rules[{index}].name", f"{rule.name!r} is a built-in rule: override it under policies.overrides"
        elif rule.name in seen:
            yield f"rules[{index}].name", f"{rule.name!r} is given twice"
        seen.add(rule.name)
    for name in policies.overrides:
        if name not in BUILTIN_BY_NAME:
            yield (
                f"overrides.{name}",
                f"no built-in rule is called {name!r} (built in: {', '.join(BUILTIN_BY_NAME)}); "
                "a rule of your own takes its mode in policies.rules",
            )


def manifest_problems(manifest: Any) -> Issues:
    """The manifest's own rules that read no live figure, tried on it: one that cannot be evaluated
    there (a misspelt field, a type CEL does not compare) is refused now, not at every evaluation.
    That a rule does not hold is no problem of the document's: it is a violation."""
    inputs = inputs_of(manifest)
    scope = Scope(inputs)
    for rule in from_manifest(manifest.policies):
        if rule.needs_live:
            continue
        for outcome in outcomes(rule, scope, inputs):
            where = f" at {outcome.path}" if outcome.path else ""
            if outcome.error is not None:
                yield (
                    f"{rule.where}.expression",
                    f"cannot be evaluated on this manifest{where}: {explain_error(outcome.error)}",
                )
                break
            if not isinstance(outcome.held, bool):
                yield f"{rule.where}.expression", f"gives {outcome.held!r}{where}, not true or false"
                break
            if outcome.held is False and rule.message:
                try:
                    scope.run(rule.message, outcome.item, outcome.key, each=rule.each is not None)
                except Exception as exc:  # said now: later it would fall back to the rule's name silently
                    yield f"{rule.where}.message", f"cannot be evaluated on this manifest{where}: {explain_error(exc)}"
                    break
