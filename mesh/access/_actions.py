"""The actions a credential may be allowed: one declaration, read by the gateway, the manifest and the CLI.

An action is what one guarded call does (``services.gateway._routes`` maps every RPC, REST route
and WebSocket op to its action). Its scope says what it is checked against:

- ``tenant``: one tenant's tasks, dead letters, figures or keys — allowed only in the tenants a
  credential's roles reach (a call for every tenant, such as attaching a worker, needs a role for
  every tenant);
- ``mesh``: what every tenant shares (models, kinds, schemas, the audit, the configuration) — no
  tenant to check; allowed to any role that holds it.

A ``reserved`` action is declared for a role to hold before any call is guarded by it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from mesh.errors import InvalidArgument

Scope = Literal["tenant", "mesh"]


@dataclass(frozen=True)
class Action:
    name: str
    summary: str
    scope: Scope
    reserved: bool = False  # no call is guarded by it yet


ACTIONS: tuple[Action, ...] = (
    Action("task.submit", "submit tasks (and run a model through a task)", "tenant"),
    Action("task.read", "read, list and watch tasks", "tenant"),
    Action("task.cancel", "cancel tasks", "tenant"),
    Action("dlq.read", "list and read dead letters", "tenant"),
    Action("dlq.replay", "run a dead-lettered task again", "tenant"),
    Action("dlq.purge", "delete dead letters", "tenant"),
    Action("status.read", "queue and worker figures (a tenant's own; every tenant's for a role for all)", "tenant"),
    Action("auth.key.create", "create API keys (never with more than the maker holds)", "tenant"),
    Action("auth.revoke", "revoke API keys (a tenant's own) and tokens (by jti: every tenant)", "tenant"),
    Action("worker.attach", "attach a worker in any language (it serves every tenant's work)", "tenant"),
    Action("model.read", "list models, their signatures and readiness", "mesh"),
    Action("model.infer", "run a model directly (Infer, ModelInfer and their streams)", "mesh"),
    Action("model.load", "load a model onto a backend", "mesh"),
    Action("model.unload", "unload a model from a backend", "mesh"),
    Action("kind.read", "list task kinds and their workers", "mesh"),
    Action("kind.register", "declare a task kind", "mesh"),
    Action("schema.read", "read, list and check schemas", "mesh"),
    Action("schema.register", "register a schema version", "mesh"),
    Action("audit.read", "list and show audit records", "mesh"),
    Action("audit.export", "export the audit with its signed checkpoints", "mesh"),
    Action("config.plan", "read the configuration's revisions and plan a change", "mesh"),
    Action("config.apply", "apply a configuration change (or roll one back)", "mesh"),
    Action("policy.override", "go ahead with a change an enforced policy blocks", "mesh"),
)

BY_NAME: dict[str, Action] = {action.name: action for action in ACTIONS}
ACTION_NAMES: tuple[str, ...] = tuple(BY_NAME)


def unknown_action(name: str) -> str:
    """What to say of a name that is no action: the nearest one, else where the list is."""
    close = difflib.get_close_matches(name, ACTION_NAMES, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "`tidemesh auth roles` lists the actions"
    return f"unknown action {name!r}; {hint}"


def action_named(name: str, field: str = "action") -> Action:
    """The action `name`; InvalidArgument naming `field` if there is none."""
    found = BY_NAME.get(name)
    if found is None:
        raise InvalidArgument(field, unknown_action(name))
    return found
