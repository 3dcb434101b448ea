"""Least privilege: the actions a call may need, roles as sets of them, and decisions that say why.

    ACTIONS ── one declaration of what a guarded call does (task.submit, dlq.purge, audit.export, …)
    Role ───── a set of actions, for one tenant or for every tenant (built-in, or the manifest's own)
    RoleCatalog.decide(credential's tenant, its roles, action, tenant) ──► Decision (allowed by which
               role, or refused and why)

The gateway holds every call to one action (``services.gateway._routes``); `tidemesh auth can-i`
asks it for the caller's own decision. Pure: no I/O but the roles file (`read_roles`).
"""

from mesh.access._actions import ACTION_NAMES, ACTIONS, BY_NAME, Action, Scope, action_named, unknown_action
from mesh.access._file import ROLES_FILE, read_roles, roles_section, write_roles
from mesh.access._roles import (
    ALIASES,
    ANY_TENANT,
    BUILTIN_NAMES,
    BUILTIN_ROLES,
    Decision,
    Role,
    RoleCatalog,
    RoleError,
    custom_role,
)

__all__ = [
    "ACTIONS",
    "ACTION_NAMES",
    "ALIASES",
    "ANY_TENANT",
    "BUILTIN_NAMES",
    "BUILTIN_ROLES",
    "BY_NAME",
    "ROLES_FILE",
    "Action",
    "Decision",
    "Role",
    "RoleCatalog",
    "RoleError",
    "Scope",
    "action_named",
    "custom_role",
    "read_roles",
    "roles_section",
    "unknown_action",
    "write_roles",
]
