"""Weighted fair share between tenants (stride scheduling), as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.worker._fairshare import FairShare, parse_weights

weights_st = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.floats(min_value=0.2, max_value=10, allow_nan=False),
    min_size=2,
    max_size=5,
)
batches_st = st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=300)


def _serve(share: FairShare, batch: int) -> str:
    tenant = share.pick()
    assert tenant is not None
    token = share.begin(tenant)
    share.settle(tenant, token, asked=batch, got=batch)
    return tenant


@given(weights_st, batches_st)
def test_backlogged_tenants_are_served_in_proportion_to_their_weights(
    weights: dict[str, float], batches: list[int]
) -> None:
    """While every tenant has work, items served per unit of weight never drift apart by more
    than one fetch of the lightest tenant: nobody starves, and heavier tenants get more."""
    share = FairShare(weights)
    share.observe(dict.fromkeys(weights, 10**9))
    served = dict.fromkeys(weights, 0)
    max_batch = max(batches)
    for batch in batches:
        served[_serve(share, batch)] += batch
        normalized = [served[t] / w for t, w in weights.items()]
        assert max(normalized) - min(normalized) <= max_batch / min(weights.values()) + 1e-9


@given(weights_st, st.integers(min_value=0, max_value=200), st.integers(min_value=1, max_value=200))
def test_an_idle_tenant_banks_no_credit(weights: dict[str, float], alone: int, together: int) -> None:
    """A tenant that had nothing queued while others were served does not get a burst when it
    returns: from then on it gets its weight's share, not more."""
    late, *others = sorted(weights)
    share = FairShare(weights)
    share.observe(dict.fromkeys(weights, 10**9))
    for _ in range(len(weights)):
        _serve(share, 1)
    share.observe(dict.fromkeys(others, 10**9))  # the late tenant's queue ran dry
    for _ in range(alone):
        assert _serve(share, 1) != late
    share.mark(late, 10**9)
    since = dict.fromkeys(weights, 0)
    for _ in range(together):
        since[_serve(share, 1)] += 1
    lightest = min(weights.values())
    for other in others:
        assert since[late] / weights[late] <= since[other] / weights[other] + 2 / lightest + 1e-9


@given(weights_st, st.integers(min_value=0, max_value=100))
def test_a_tenant_with_new_work_gets_a_turn_within_one_round(weights: dict[str, float], before: int) -> None:
    late, *others = sorted(weights)
    share = FairShare(weights)
    share.observe(dict.fromkeys(others, 10**9))
    for _ in range(before):
        _serve(share, 1)
    share.mark(late)
    turns = [_serve(share, 1) for _ in range(len(weights))]
    assert late in turns


def test_an_empty_fetch_empties_the_backlog_unless_a_doorbell_rang_meanwhile() -> None:
    share = FairShare()
    share.mark("acme", 3)
    token = share.begin("acme")
    share.settle("acme", token, asked=8, got=3)
    assert share.pick() == "acme"  # a short pull proves nothing: ask again
    token = share.begin("acme")
    share.settle("acme", token, asked=8, got=0)
    assert share.pick() is None  # the partition is empty

    share.mark("acme")
    token = share.begin("acme")
    share.mark("acme")  # stored while the fetch was on its way
    share.settle("acme", token, asked=8, got=0)
    assert share.pick() == "acme"

    token = share.begin("acme")
    share.settle("acme", token, asked=8, got=8)  # a full fetch: maybe more
    assert share.pick() == "acme"


def test_observed_counts_replace_the_estimates() -> None:
    share = FairShare()
    share.mark("acme", 5)
    share.observe({"globex": 2})
    assert share.pick() == "globex"
    share.observe({})
    assert share.pick() is None
    assert not share.backlogged


def test_weights_are_parsed_and_checked() -> None:
    assert parse_weights("acme=3,globex=0.5") == {"acme": 3.0, "globex": 0.5}
    assert parse_weights("") == {}
    for bad in ("acme", "acme=x", "acme=0", "=2", "acme=-1"):
        with pytest.raises(ValueError, match="TENANT=WEIGHT"):
            parse_weights(bad)
    with pytest.raises(ValueError, match="positive"):
        FairShare({"acme": 0})


def test_a_held_tenant_sits_out_and_keeps_its_backlog_and_place() -> None:
    """A tenant whose partition the broker refused is skipped until its hold ends; the others
    are served meanwhile, and it is picked again, backlog intact, once the hold is over."""
    share = FairShare()
    share.observe({"refused": 5, "fine": 3})
    share.hold("refused", until=10.0)
    picked = []
    for _ in range(3):
        tenant = share.pick(now=5.0)
        assert tenant is not None
        picked.append(tenant)
        share.settle(tenant, share.begin(tenant), asked=1, got=1)
    assert picked == ["fine", "fine", "fine"]
    assert share.backlog("refused") == 5
    assert share.pick(now=10.5) == "refused"
