"""Least privilege (mesh.access): every built-in role by every action, in its own tenant, another
tenant and every tenant; the old role words as aliases with exactly their old actions; where a
role may be held; a key never minted with more than its maker holds; custom roles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.access import (
    ACTION_NAMES,
    ACTIONS,
    ANY_TENANT,
    BUILTIN_NAMES,
    BY_NAME,
    RoleCatalog,
    RoleError,
    action_named,
    read_roles,
    roles_section,
    write_roles,
)
from mesh.errors import InvalidArgument

ROLES = RoleCatalog()
READS = {"task.read", "dlq.read", "status.read", "model.read", "kind.read", "schema.read"}
SUBMITS = {"task.submit", "task.cancel", "dlq.replay", "model.infer"}
# What each built-in role may do, written out here rather than read from mesh.access.
EXPECTED: dict[str, set[str]] = {
    "viewer": READS,
    "submitter": SUBMITS,
    "operator": READS | SUBMITS | {"dlq.purge"},
    "tenant-admin": READS | SUBMITS | {"dlq.purge", "auth.key.create", "auth.revoke"},
    "policy-admin": {"status.read", "model.read", "kind.read", "schema.read", "config.plan", "policy.override"},
    "auditor": {"audit.read", "audit.export"},
    "worker": {"worker.attach"},
    "admin": set(ACTION_NAMES),
}
EVERY_TENANT = {"policy-admin", "auditor", "worker", "admin"}  # held on credentials for '*'
OWN, OTHER = "acme", "globex"
MATRIX = [(role, action) for role in EXPECTED for action in ACTION_NAMES]


def test_the_built_in_roles_are_the_ones_expected() -> None:
    """Eight built-in roles, in this order; every action declared once with a scope and a summary."""
    assert BUILTIN_NAMES == tuple(EXPECTED)
    assert len(set(ACTION_NAMES)) == len(ACTIONS) and all(a.summary and a.scope in ("tenant", "mesh") for a in ACTIONS)


@pytest.mark.parametrize(("role", "action"), MATRIX)
def test_every_role_and_action_in_its_own_tenant_another_and_every_tenant(role: str, action: str) -> None:
    """A role for one tenant on a key for acme; a role for every tenant on a key for '*'. Mesh
    actions have no tenant; tenant actions are allowed in acme, and in globex and '*' only by a
    role for every tenant — refusals say which of the two was missing."""
    holder = ANY_TENANT if role in EVERY_TENANT else OWN
    granted = action in EXPECTED[role]
    if BY_NAME[action].scope == "mesh":
        decision = ROLES.decide(holder, [role], action, OTHER)  # a tenant given to a mesh action is no matter
        assert decision.allowed is granted and decision.tenant is None
        if not granted:
            assert f"no role of it grants {action}" in decision.reason
        return
    for tenant, expected in (
        (OWN, granted),
        (OTHER, granted and role in EVERY_TENANT),
        (ANY_TENANT, expected_wide(role, action)),
    ):
        decision = ROLES.decide(holder, [role], action, tenant)
        assert decision.allowed is expected, (role, action, tenant, decision)
        assert (decision.role == role) is expected
        if not granted:
            assert f"no role of it grants {action}" in decision.reason
        elif not expected:
            assert action in decision.reason and "acme" in decision.reason  # where it does reach
    assert ROLES.decide(holder, [role], action).allowed is granted  # "in some tenant"


def expected_wide(role: str, action: str) -> bool:
    return action in EXPECTED[role] and role in EVERY_TENANT


def test_a_wrong_tenant_and_a_missing_action_are_told_apart() -> None:
    """The operator of acme: purging in globex names the tenant; minting keys names the action."""
    wrong = ROLES.decide(OWN, ["operator"], "dlq.purge", OTHER)
    assert not wrong.allowed and wrong.reason == "its roles grant dlq.purge in tenant 'acme', not in tenant 'globex'"
    missing = ROLES.decide(OWN, ["operator"], "auth.key.create", OWN)
    assert missing.reason.startswith("no role of it grants auth.key.create (its roles: operator; roles that do:")
    assert "tenant-admin" in missing.reason and "admin" in missing.reason
    allowed = ROLES.decide(OWN, ["operator", "viewer"], "dlq.purge", OWN)
    assert (
        allowed.allowed
        and allowed.role == "operator"
        and allowed.reason == "operator grants dlq.purge in tenant 'acme'"
    )


@pytest.mark.parametrize(
    ("alias", "actions"),
    [
        ("read", READS),
        ("submit", SUBMITS),
        ("work", {"worker.attach"}),
        ("admin", set(ACTION_NAMES)),
    ],
)
def test_the_old_role_words_keep_exactly_their_old_actions(alias: str, actions: set[str]) -> None:
    """read, submit, work and admin — on keys and tokens minted before roles — allow what they did, no more."""
    holder = ANY_TENANT if alias in ("work", "admin") else OWN
    allowed = {a for a in ACTION_NAMES if ROLES.decide(holder, [alias], a, OWN if holder == OWN else None).allowed}
    assert allowed == actions
    assert ROLES.canonical([alias]) <= set(BUILTIN_NAMES)


def test_a_worker_key_for_one_tenant_attaches_nothing() -> None:
    """worker.attach is checked for every tenant: a work token for acme is refused, one for '*' is not."""
    assert ROLES.decide(ANY_TENANT, ["work"], "worker.attach", ANY_TENANT).allowed
    refused = ROLES.decide(OWN, ["work"], "worker.attach", ANY_TENANT)
    assert not refused.allowed and "worker.attach for every tenant needs a role for every tenant" in refused.reason


def test_an_admin_key_for_one_tenant_administers_that_tenant_and_the_shared_parts() -> None:
    """A legacy admin key minted for acme: acme and the mesh's shared actions, never globex."""
    assert ROLES.decide(OWN, ["admin"], "dlq.purge", OWN).allowed
    assert ROLES.decide(OWN, ["admin"], "model.load").allowed
    assert not ROLES.decide(OWN, ["admin"], "dlq.purge", OTHER).allowed


def test_a_role_for_one_tenant_on_a_credential_for_every_tenant_grants_nothing() -> None:
    """An old '*' key holding admin and read: admin acts everywhere; read alone would act nowhere."""
    assert ROLES.decide(ANY_TENANT, ["admin", "read"], "task.read", OTHER).allowed
    alone = ROLES.decide(ANY_TENANT, ["read"], "task.read")
    assert (
        not alone.allowed and "viewer is a role for one tenant, and the credential names every tenant" in alone.reason
    )


@pytest.mark.parametrize(
    ("tenant", "roles", "field", "words"),
    [
        ("*", ["viewer"], "tenant", "'*' (every tenant) is only for roles made for every tenant"),
        ("*", ["read", "admin"], "tenant", "viewer is for one tenant"),
        ("acme", ["admin"], "tenant", "admin is a role for every tenant: give tenant '*'"),
        ("acme", ["auditor"], "tenant", "auditor is a role for every tenant"),
        ("acme", ["opertor"], "roles", "unknown role 'opertor'; did you mean operator?"),
        ("acme", [], "roles", "name one or more roles"),
    ],
)
def test_where_a_role_may_be_held_is_checked_naming_the_field(
    tenant: str, roles: list[str], field: str, words: str
) -> None:
    """A new key or token: roles for one tenant on one tenant, roles for every tenant on '*'."""
    with pytest.raises(InvalidArgument) as refused:
        ROLES.check_credential(tenant, roles)
    assert refused.value.field == field and words in refused.value.reason


def test_new_credentials_take_the_new_names_and_the_aliases() -> None:
    assert ROLES.check_credential("acme", ["submit", "read"]) == {"submitter", "viewer"}
    assert ROLES.check_credential("acme", ["tenant-admin"]) == {"tenant-admin"}
    assert ROLES.check_credential("*", ["auditor", "worker"]) == {"auditor", "worker"}


def test_a_key_never_holds_more_than_its_maker() -> None:
    """A tenant-admin mints its tenant's keys up to its own roles; never a role for every tenant,
    never a custom role with an action it lacks; an admin mints anything."""
    catalog = RoleCatalog.from_data({"model-ops": {"permissions": ["model.read", "model.load"]}})
    maker = (OWN, ["tenant-admin"])
    assert catalog.beyond(*maker, OWN, ["operator", "viewer"]) == ""
    assert catalog.beyond(*maker, OWN, ["tenant-admin"]) == ""
    assert (
        catalog.beyond(*maker, OWN, ["model-ops"])
        == "model-ops grants model.load, which the maker's credential does not hold"
    )
    assert "auditor grants audit.export" in catalog.beyond(*maker, ANY_TENANT, ["auditor"])
    assert catalog.beyond(OWN, ["operator"], OWN, ["tenant-admin"]).startswith(
        "tenant-admin grants auth.key.create in acme"
    )
    assert catalog.beyond(ANY_TENANT, ["admin"], OTHER, ["tenant-admin", "model-ops"]) == ""


def test_custom_roles_act_in_their_tenants_and_are_checked() -> None:
    """A limited role on a '*' key acts in its tenants only; one with tenant actions and no limit
    may not be held for every tenant; one with shared actions only may."""
    catalog = RoleCatalog.from_data(
        {
            "replayer": {"permissions": ["dlq.read", "dlq.replay"], "tenants": ["acme", "initech"]},
            "reader": {"permissions": ["task.read"], "tenants": None},
            "model-ops": {"permissions": ["model.read", "model.load", "model.unload"]},
        }
    )
    assert catalog.decide(ANY_TENANT, ["replayer"], "dlq.replay", "initech").allowed
    assert not catalog.decide(ANY_TENANT, ["replayer"], "dlq.replay", OTHER).allowed
    assert not catalog.decide(ANY_TENANT, ["replayer"], "dlq.replay", ANY_TENANT).allowed
    assert catalog.reach(ANY_TENANT, ["replayer"], "dlq.read") == {"acme", "initech"}
    assert not catalog.decide(OTHER, ["replayer"], "dlq.replay", OTHER).allowed  # globex is outside its limit
    assert catalog.decide(OWN, ["reader"], "task.read", OWN).allowed
    with pytest.raises(InvalidArgument, match="reader is for one tenant"):
        catalog.check_credential(ANY_TENANT, ["reader"])
    with pytest.raises(InvalidArgument, match="replayer is limited to tenants acme, initech, not 'globex'"):
        catalog.check_credential(OTHER, ["replayer"])
    assert catalog.check_credential(ANY_TENANT, ["model-ops", "replayer"]) == {"model-ops", "replayer"}
    assert catalog.decide(OWN, ["model-ops"], "model.load").allowed


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        ({"ops": {"permissions": ["task.read", "dlq.replya"]}}, "roles.ops.permissions[1]", "did you mean dlq.replay?"),
        ({"ops": {"permissions": []}}, "roles.ops.permissions", "at least one action"),
        ({"viewer": {"permissions": ["task.read"]}}, "roles.viewer", "is a built-in role"),
        ({"read": {"permissions": ["task.read"]}}, "roles.read", "is a built-in role"),
        ({"ops": {"permissions": ["task.read"], "tenants": ["*"]}}, "roles.ops.tenants", "never '*'"),
        ({"ops": ["task.read"]}, "roles.ops", "expected {permissions"),
    ],
)
def test_a_bad_custom_role_is_refused_naming_its_path(data: dict, path: str, words: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(RoleError) as refused:
        RoleCatalog.from_data(data)
    assert refused.value.path == path and words in refused.value.message


def test_the_roles_file_round_trips_in_the_order_given(tmp_path: Path) -> None:
    """What the plan writes is what observe and the gateway read; a bad file is refused naming it."""
    section = {
        "replayer": {"permissions": ["dlq.replay", "dlq.read"], "tenants": ["acme"]},
        "x": {"permissions": ["model.read"]},
    }
    path = write_roles(tmp_path / "auth" / "roles.json", section)
    assert roles_section(path) == {**section, "x": {"permissions": ["model.read"], "tenants": None}}
    assert [role.name for role in read_roles(path).custom] == ["replayer", "x"]
    path.write_text(json.dumps({"roles": {"x": {"permissions": ["nope.nope"]}}}))
    with pytest.raises(RoleError, match=r"roles.x.permissions\[0\]: unknown action 'nope.nope'"):
        read_roles(path)
    with pytest.raises(RoleError, match="cannot read the roles file"):
        read_roles(tmp_path / "missing.json")


def test_an_unknown_action_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as refused:
        action_named("dlq.prge")
    assert refused.value.field == "action" and "did you mean dlq.purge?" in refused.value.reason
    with pytest.raises(ValueError, match="unknown action"):
        ROLES.decide(OWN, ["admin"], "dlq.prge")


_roles = st.lists(st.sampled_from([*BUILTIN_NAMES, "read", "submit", "work", "nobody"]), max_size=4)
_holders = st.sampled_from([OWN, OTHER, ANY_TENANT])


@given(holder=_holders, roles=_roles, action=st.sampled_from(ACTION_NAMES), tenant=st.sampled_from([OWN, OTHER]))
def test_a_decision_for_every_tenant_implies_each_and_each_implies_some(
    holder: str, roles: list[str], action: str, tenant: str
) -> None:
    """Allowed in every tenant ⇒ allowed in any one; allowed in one ⇒ allowed "in some tenant";
    and the reach agrees with the decisions."""
    wide = ROLES.decide(holder, roles, action, ANY_TENANT).allowed
    one = ROLES.decide(holder, roles, action, tenant).allowed
    some = ROLES.decide(holder, roles, action).allowed
    assert (not wide or one) and (not one or some)
    if BY_NAME[action].scope == "tenant":
        reach = ROLES.reach(holder, roles, action)
        assert one == (reach is None or tenant in reach) and wide == (reach is None)
