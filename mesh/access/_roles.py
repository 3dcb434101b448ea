"""Roles as sets of actions, where a credential's roles reach, and decisions that say why.

Built-in roles (the ``one tenant`` ones act in their credential's tenant only; the ``every tenant``
ones are held on a credential for every tenant, ``*``):

    viewer        one tenant     read tasks, dead letters, the tenant's figures; models, kinds, schemas
    submitter     one tenant     submit, cancel, replay dead letters, run models (no reads: add viewer)
    operator      one tenant     viewer + submitter + purge dead letters
    tenant-admin  one tenant     operator + create and revoke the tenant's own API keys
    policy-admin  every tenant   every tenant's figures, plan configuration, override policies
    auditor       every tenant   read and export the audit, nothing else
    worker        every tenant   attach workers (they serve every tenant's work), nothing else
    admin         every tenant   every action

The words of earlier releases stay valid, as aliases, so API keys and JWTs minted with them keep
working with exactly the actions they had: ``read`` is viewer, ``submit`` submitter, ``work``
worker (worker.attach only) and ``admin`` admin. A credential names its roles by either word; a
principal's roles are the canonical names.

Custom roles (the manifest's ``roles``): a name, the actions it grants and, optionally, the
tenants it is limited to. On a credential for one tenant a custom role acts in that tenant (if
its limit includes it); on a credential for every tenant it acts in the tenants it lists — and a
custom role that lists none, but holds actions on tenants, may not be held for every tenant.

Where a role reaches (`reach`): a credential for tenant T reaches T; one for ``*`` reaches every
tenant with roles made for that, and nothing with a role for one tenant. (A built-in role for
every tenant on a credential for one tenant — an ``admin`` key for ``acme`` minted before roles
had scopes — reaches that tenant only, and the mesh's shared actions.)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mesh.access._actions import ACTION_NAMES, BY_NAME, unknown_action
from mesh.errors import InvalidArgument

ANY_TENANT = "*"
_READS = ("task.read", "dlq.read", "status.read", "model.read", "kind.read", "schema.read")
_SUBMITS = ("task.submit", "task.cancel", "dlq.replay", "model.infer")


@dataclass(frozen=True)
class Role:
    name: str
    actions: frozenset[str]
    summary: str = ""
    builtin: bool = False
    every_tenant: bool = False  # built-in: made for credentials for every tenant ('*')
    tenants: frozenset[str] | None = None  # custom: only in these tenants (None: no limit)

    @property
    def tenant_actions(self) -> frozenset[str]:
        return frozenset(a for a in self.actions if BY_NAME[a].scope == "tenant")

    @property
    def for_every_tenant(self) -> bool:
        """Whether a credential for every tenant (``*``) may hold it."""
        if self.builtin:
            return self.every_tenant
        return self.tenants is not None or not self.tenant_actions

    @property
    def for_one_tenant(self) -> bool:
        """Whether a new credential for one tenant may hold it."""
        return not (self.builtin and self.every_tenant)

    def reach(self, credential_tenant: str) -> frozenset[str] | None:
        """The tenants this role acts in on a credential for `credential_tenant` (None: every tenant)."""
        if credential_tenant == ANY_TENANT:
            if not self.for_every_tenant:
                return frozenset()
            return self.tenants
        if self.tenants is not None and credential_tenant not in self.tenants:
            return frozenset()
        return frozenset({credential_tenant})


BUILTIN_ROLES: tuple[Role, ...] = (
    Role("viewer", frozenset(_READS), "read a tenant's tasks, dead letters and figures; models, kinds, schemas", True),
    Role("submitter", frozenset(_SUBMITS), "submit, cancel and replay a tenant's tasks; run models", True),
    Role("operator", frozenset({*_READS, *_SUBMITS, "dlq.purge"}), "viewer, submitter, and purge dead letters", True),
    Role(
        "tenant-admin",
        frozenset({*_READS, *_SUBMITS, "dlq.purge", "auth.key.create", "auth.revoke"}),
        "operator, and create and revoke the tenant's own API keys",
        True,
    ),
    Role(
        "policy-admin",
        frozenset({"status.read", "model.read", "kind.read", "schema.read", "config.plan", "policy.override"}),
        "every tenant's figures; plan configuration changes and override policies",
        True,
        every_tenant=True,
    ),
    Role("auditor", frozenset({"audit.read", "audit.export"}), "read and export the audit, nothing else", True, True),
    Role("worker", frozenset({"worker.attach"}), "attach workers, which serve every tenant's work", True, True),
    Role("admin", frozenset(ACTION_NAMES), "every action, in every tenant", True, True),
)
ALIASES: dict[str, str] = {"read": "viewer", "submit": "submitter", "work": "worker", "admin": "admin"}
BUILTIN_NAMES: tuple[str, ...] = tuple(role.name for role in BUILTIN_ROLES)


@dataclass(frozen=True)
class Decision:
    """Whether a credential may take `action` on `tenant` (None: in some tenant, or a mesh action),
    and why: the role that allows it, or what is missing."""

    allowed: bool
    action: str
    tenant: str | None
    role: str = ""
    reason: str = ""


class RoleError(ValueError):
    """A custom role that cannot be: `path` names where (``roles.ops.permissions[1]``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def custom_role(name: str, permissions: Iterable[str], tenants: Iterable[str] | None = None) -> Role:
    """A role of one's own; RoleError naming the path of the first thing wrong."""
    where = f"roles.{name}"
    if name in BUILTIN_NAMES or name in ALIASES:
        raise RoleError(where, f"{name!r} is a built-in role (or its alias): choose another name")
    listed = list(permissions)
    if not listed:
        raise RoleError(f"{where}.permissions", "a role grants at least one action")
    for index, action in enumerate(listed):
        if action not in BY_NAME:
            raise RoleError(f"{where}.permissions[{index}]", unknown_action(action))
    limit = None if tenants is None else frozenset(tenants)
    if limit is not None and (not limit or ANY_TENANT in limit):
        raise RoleError(f"{where}.tenants", "list one or more tenants (null: no limit), never '*'")
    return Role(name, frozenset(listed), "your own role", tenants=limit)


class RoleCatalog:
    """The roles a gateway knows: the built-in ones, and the custom ones it was started with."""

    def __init__(self, custom: Iterable[Role] = ()) -> None:
        self._roles: dict[str, Role] = {role.name: role for role in BUILTIN_ROLES}
        for role in custom:
            if role.name in self._roles or role.name in ALIASES or role.builtin:
                raise RoleError(f"roles.{role.name}", f"{role.name!r} is a built-in role (or its alias)")
            self._roles[role.name] = role

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RoleCatalog:
        """Custom roles as the manifest's ``roles`` section holds them: name → permissions, tenants."""
        roles = []
        for name, spec in data.items():
            if not isinstance(spec, Mapping) or not isinstance(spec.get("permissions"), list):
                raise RoleError(f"roles.{name}", "expected {permissions: [ACTION, ...], tenants: [TENANT, ...]}")
            roles.append(custom_role(name, spec["permissions"], spec.get("tenants")))
        return cls(roles)

    @property
    def roles(self) -> tuple[Role, ...]:
        return tuple(self._roles.values())

    @property
    def custom(self) -> tuple[Role, ...]:
        return tuple(role for role in self._roles.values() if not role.builtin)

    def role(self, name: str) -> Role | None:
        return self._roles.get(ALIASES.get(name, name))

    def canonical(self, names: Iterable[str]) -> frozenset[str]:
        """Role names with aliases resolved (read → viewer); a name it does not know stays as it is
        (it grants nothing: a custom role the mesh no longer has)."""
        return frozenset(ALIASES.get(name, name) for name in names)

    def check_names(self, names: Iterable[str], field: str = "roles") -> frozenset[str]:
        """`names` as canonical role names; InvalidArgument naming `field` if one is unknown, or none given."""
        chosen = [name for name in names]
        if not chosen:
            raise InvalidArgument(field, f"name one or more roles: {', '.join(self._roles)}")
        for name in chosen:
            if self.role(name) is None:
                close = difflib.get_close_matches(name, [*self._roles, *ALIASES], n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}? " if close else ""
                raise InvalidArgument(field, f"unknown role {name!r}; {hint}the roles: {', '.join(self._roles)}")
        return self.canonical(chosen)

    def check_credential(self, tenant: str, names: Iterable[str]) -> frozenset[str]:
        """The canonical roles of a new credential for `tenant`; InvalidArgument naming ``tenant`` or
        ``roles`` when a role cannot be held there (see the module docstring)."""
        roles = self.check_names(names)
        for name in sorted(roles):
            role = self._roles[name]
            if tenant == ANY_TENANT and not role.for_every_tenant:
                wide = ", ".join(r.name for r in self.roles if r.for_every_tenant)
                raise InvalidArgument(
                    "tenant",
                    f"'*' (every tenant) is only for roles made for every tenant ({wide}); "
                    f"{name} is for one tenant: name it",
                )
            if tenant != ANY_TENANT and not role.for_one_tenant:
                raise InvalidArgument("tenant", f"{name} is a role for every tenant: give tenant '*'")
            if tenant != ANY_TENANT and role.tenants is not None and tenant not in role.tenants:
                limit = ", ".join(sorted(role.tenants))
                raise InvalidArgument("roles", f"{name} is limited to tenants {limit}, not {tenant!r}")
        return roles

    def held(self, names: Iterable[str]) -> list[Role]:
        """The roles of `names` this catalog knows, in its order."""
        wanted = self.canonical(names)
        return [role for role in self._roles.values() if role.name in wanted]

    def reach(self, credential_tenant: str, names: Iterable[str], action: str) -> frozenset[str] | None:
        """The tenants in which the roles `names` allow `action` (None: every tenant)."""
        reached: set[str] = set()
        for role in self.held(names):
            if action in role.actions:
                where = role.reach(credential_tenant)
                if where is None:
                    return None
                reached |= where
        return frozenset(reached)

    def decide(self, credential_tenant: str, names: Iterable[str], action: str, tenant: str | None = None) -> Decision:
        """May a credential for `credential_tenant` holding the roles `names` take `action` on
        `tenant` — a tenant, ``*`` for every tenant, or None for "in some tenant" (the check made
        before a call learns whose task it touches)? A mesh action ignores `tenant`."""
        if action not in BY_NAME:
            raise ValueError(unknown_action(action))
        if BY_NAME[action].scope == "mesh":
            tenant = None
        roles = self.held(names)
        granting = [role for role in roles if action in role.actions]
        if not granting:
            shown = ", ".join(sorted(self.canonical(names))) or "none"
            able = ", ".join(r.name for r in self.roles if action in r.actions)
            return Decision(
                False, action, tenant, "", f"no role of it grants {action} (its roles: {shown}; roles that do: {able})"
            )
        if BY_NAME[action].scope == "mesh":
            return Decision(True, action, None, granting[0].name, f"{granting[0].name} grants {action}")
        reaches = [(role, role.reach(credential_tenant)) for role in granting]
        for role, where in reaches:
            if where is None:
                return Decision(True, action, tenant, role.name, f"{role.name} grants {action} in every tenant")
        for role, where in reaches:
            assert where is not None
            if (tenant is None and where) or (tenant is not None and tenant in where):
                inside = tenant or sorted(where)[0]
                return Decision(True, action, tenant, role.name, f"{role.name} grants {action} in tenant {inside!r}")
        reached = sorted(set().union(*(where or frozenset() for _, where in reaches)))
        if not reached:
            role = granting[0]
            why = (
                f"{role.name} is a role for one tenant, and the credential names every tenant ('*')"
                if credential_tenant == ANY_TENANT
                else f"{role.name} does not reach tenant {credential_tenant!r}"
            )
            return Decision(False, action, tenant, "", f"its roles grant {action} in no tenant: {why}")
        inside = ", ".join(repr(t) for t in reached)
        if tenant == ANY_TENANT:
            return Decision(
                False,
                action,
                tenant,
                "",
                f"{action} for every tenant needs a role for every tenant on a credential for '*'; "
                f"its roles grant it in tenant {inside} only",
            )
        why = f"its roles grant {action} in tenant {inside}, not in tenant {tenant!r}"
        return Decision(False, action, tenant, "", why)

    def beyond(self, maker_tenant: str, maker_roles: Iterable[str], tenant: str, roles: Iterable[str]) -> str:
        """What a new credential for `tenant` with `roles` would hold that its maker does not ("" if
        nothing): a key never holds more than the credential that mints it."""
        maker = list(maker_roles)
        for role in self.held(roles):
            where = role.reach(tenant)
            targets: list[str | None] = [ANY_TENANT] if where is None else list(sorted(where))
            for action in sorted(role.actions):
                if BY_NAME[action].scope == "mesh":
                    targets_here: list[str | None] = [None]
                else:
                    targets_here = targets
                for target in targets_here:
                    decision = self.decide(maker_tenant, maker, action, target)
                    if not decision.allowed:
                        place = "" if target is None else f" in {'every tenant' if target == ANY_TENANT else target}"
                        return f"{role.name} grants {action}{place}, which the maker's credential does not hold"
        return ""
