"""Scoped task ids: a client-chosen id is a name in its tenant's namespace (`mesh.tasks._ids`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh.fabric import TOKEN_RE
from mesh.tasks import new_task_id, scoped_task_id

tokens = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")


@given(tokens, tokens)
def test_a_scoped_id_is_a_token_with_room_for_a_replay(tenant: str, chosen: str) -> None:
    """It fits a subject token, with its replay's `-r` too, and is the same every time."""
    scoped = scoped_task_id(tenant, chosen)
    assert TOKEN_RE.match(scoped) and TOKEN_RE.match(f"{scoped}-r")
    assert scoped == scoped_task_id(tenant, chosen)
    assert scoped.startswith(chosen[:37])


@given(tokens, tokens, tokens)
def test_two_tenants_naming_the_same_id_get_two_ids(first: str, second: str, chosen: str) -> None:
    """Another tenant, or another name (even one sharing the readable prefix), is another id."""
    if first != second:
        assert scoped_task_id(first, chosen) != scoped_task_id(second, chosen)
    assert scoped_task_id(first, chosen) != scoped_task_id(first, f"{chosen}x")
    assert scoped_task_id(first, "p" * 40) != scoped_task_id(first, "p" * 41)


@given(tokens, tokens)
def test_a_scoped_id_is_never_a_mesh_assigned_or_replay_id(tenant: str, chosen: str) -> None:
    """A mesh-assigned id has no `_`, a replay id ends in `-r`: a scoped id can be neither."""
    scoped = scoped_task_id(tenant, chosen)
    assert "_" not in new_task_id() and scoped[-25] == "_"
    assert not scoped.endswith("-r")
