"""The policy engine: rules as code over the manifest and the live mesh, each in audit, warn or
enforce mode per environment.

    Manifest (+ live figures) ──evaluate──► Verdicts: violations (rule, path, severity, mode,
                                            message, remediation, runbook); .blocking: enforce's
    PolicyWatch (in `tidemesh up`) ── every policies.watchSeconds ──► tm.alert.policy.<rule> per new
                                            violation and per clearing; tidemesh_policy_violations_total

Rules are CEL (`common-expression-language`, the Rust implementation; why, in `_engine`). The
built-in rules are `BUILTIN`; the manifest's own are ``policies.rules``, checked when it is read.
docs/policies.md is the guide, docs/runbooks/policies.md the page each violation links to.
"""

from mesh.policy._checks import manifest_problems, policies_problems, rule_problems
from mesh.policy._engine import VARIABLES, compiled
from mesh.policy._evaluate import Verdicts, Violation, environment_of, evaluate, inputs_of, routes_of, rules_of
from mesh.policy._live import LiveFigures
from mesh.policy._rules import BUILTIN, BUILTIN_BY_NAME, ENVIRONMENTS, MODES, RUNBOOK, SEVERITIES, Rule, mode_of
from mesh.policy._watch import ALERT_PREFIX, AlertCounter, PolicyWatch, WatchState, alert_subject

__all__ = [
    "ALERT_PREFIX",
    "BUILTIN",
    "BUILTIN_BY_NAME",
    "ENVIRONMENTS",
    "MODES",
    "RUNBOOK",
    "SEVERITIES",
    "VARIABLES",
    "AlertCounter",
    "LiveFigures",
    "PolicyWatch",
    "Rule",
    "Verdicts",
    "Violation",
    "WatchState",
    "alert_subject",
    "compiled",
    "environment_of",
    "evaluate",
    "inputs_of",
    "manifest_problems",
    "mode_of",
    "policies_problems",
    "routes_of",
    "rule_problems",
    "rules_of",
]
