"""`tidemesh list`'s filters before any call: ages and times for --since/--until (a time without a
zone is local), states by any spelling, an empty window and every bad value refused naming the
flag; `--state` completes each name after the ones already typed."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, timezone

import pytest

from clients.cli._complete import states
from clients.cli._tasks import list_filters, moment
from mesh.errors import InvalidArgument
from mesh.v1 import task_pb2

NOW = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("15m", NOW - timedelta(minutes=15)),
        ("2H", NOW - timedelta(hours=2)),
        ("1.5d", NOW - timedelta(hours=36)),
        ("1w", NOW - timedelta(days=7)),
        ("2026-12-03T09:30:00+01:00", datetime(2026, 12, 3, 8, 30, tzinfo=UTC)),
        ("2026-12-03T09:30Z", datetime(2026, 12, 3, 9, 30, tzinfo=UTC)),
    ],
)
def test_since_takes_an_age_or_a_time(text: str, expected: datetime) -> None:
    """An age counts back from now; a time with a zone is that instant."""
    assert moment(text, "--since", NOW) == expected


def test_a_time_without_a_zone_is_local() -> None:
    """2026-12-03T09:30 means 09:30 on this machine's clock, whatever its zone."""
    local = moment("2026-12-03T09:30", "--since", NOW)
    assert local.tzinfo is not None
    assert local.replace(tzinfo=None) == datetime(2026, 12, 3, 9, 30)
    assert local.utcoffset() == datetime(2026, 12, 3, 9, 30).astimezone().utcoffset()


@pytest.mark.parametrize("text", ["yesterday", "-1h", "5 minutes", "1y", ""])
def test_what_is_neither_age_nor_time_names_the_flag(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        moment(text, "--until", NOW)
    assert caught.value.field == "--until"


def _args(**given: object) -> argparse.Namespace:
    return argparse.Namespace(**{"kind": "", "state": [], "since": "", "until": "", **given})


def test_states_by_any_spelling_repeated_or_comma_separated() -> None:
    """--state failed --state Succeeded,dead-lettered: three states, in the request's numbers."""
    filters = list_filters(_args(kind="stream", state=["failed", "Succeeded,dead-lettered"]))
    assert filters["kind"] == "stream" and filters["created_after"] is None and filters["created_before"] is None
    assert filters["states"] == [
        task_pb2.TASK_STATE_FAILED,
        task_pb2.TASK_STATE_SUCCEEDED,
        task_pb2.TASK_STATE_DEAD_LETTERED,
    ]


@pytest.mark.parametrize(
    ("given", "flag"),
    [
        ({"state": ["done"]}, "--state"),
        ({"state": ["unspecified"]}, "--state"),
        ({"since": "2h", "until": "3h"}, "--until"),
        ({"since": "2026-12-03T10:00Z", "until": "2026-12-03T10:00Z"}, "--until"),
        ({"since": "soon"}, "--since"),
    ],
)
def test_bad_filters_name_their_flag(given: dict[str, object], flag: str) -> None:
    """An unknown state, a window that ends before it starts (or as it starts), a time that is none."""
    with pytest.raises(InvalidArgument) as caught:
        list_filters(_args(**given))
    assert caught.value.field == flag


def test_a_window_in_any_zones_is_compared_as_instants() -> None:
    """--since in one zone and --until in another: a window of one hour, not refused."""
    filters = list_filters(_args(since="2026-12-03T10:00+02:00", until="2026-12-03T09:00Z"))
    assert filters["created_before"] - filters["created_after"] == timedelta(hours=1)
    assert filters["created_after"].tzinfo == timezone(timedelta(hours=2))


def test_state_completion_goes_on_after_a_comma() -> None:
    assert states("") == ["queued", "running", "retrying", "succeeded", "failed", "cancelled", "dead-lettered"]
    assert states("fa") == ["failed"]
    assert states("failed,dead") == ["failed,dead-lettered"]
    assert states("failed,zz") == []
