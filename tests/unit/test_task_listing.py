"""ListTasks' filters and the filtered scan (`services.gateway._listing`): every bad value refused
naming its field; a filtered listing read page by page is the full list filtered, whatever the
page size; a call examines a bounded number of tasks; ids made far outside a time window are
passed over without a read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.errors import InvalidArgument
from mesh.tasks import new_task_id
from mesh.v1 import gateway_pb2, task_pb2
from services.gateway import _listing
from services.gateway._listing import (
    MAX_EXAMINED,
    STATE_NAMES,
    TaskFilter,
    filter_of_query,
    filter_of_request,
    filtered_page,
    parse_rfc3339,
)

NOW_MS = 1_800_000_000_000
HOUR_MS = 3_600_000


def _task(task_id: str, kind: str, state: int, created_ms: int) -> task_pb2.TaskInfo:
    info = task_pb2.TaskInfo(state=state, spec=task_pb2.TaskSpec(task_id=task_id, kind=kind, tenant="t"))  # type: ignore[arg-type]
    info.created.FromMilliseconds(created_ms)
    return info


class Store:
    """Tasks by id, counting the reads a scan makes."""

    def __init__(self, tasks: list[task_pb2.TaskInfo]) -> None:
        self.tasks = {task.spec.task_id: task for task in tasks}
        self.folds = 0
        self.state_reads = 0

    def ids(self, after: str = "") -> list[str]:
        ids = sorted(self.tasks, reverse=True)
        return [task_id for task_id in ids if task_id < after] if after else ids

    async def fold(self, task_id: str) -> task_pb2.TaskInfo | None:
        self.folds += 1
        return self.tasks.get(task_id)

    async def states_of(self, task_ids: list[str]) -> dict[str, int]:
        self.state_reads += 1
        return {task_id: self.tasks[task_id].state for task_id in task_ids if task_id in self.tasks}

    async def page(self, wanted: TaskFilter, limit: int, token: str = "") -> tuple[list[str], str]:
        tasks, next_token = await filtered_page(
            self.ids(token), wanted, limit, self.fold, self.states_of, now_ms=NOW_MS
        )
        return [task.spec.task_id for task in tasks], next_token


def _states(*names: str) -> frozenset[int]:
    return frozenset(STATE_NAMES[name] for name in names)


# -- the filters, as each surface gives them --------------------------------------------------


def test_a_request_without_filters_keeps_everything() -> None:
    """No kind, no state, no window: the empty filter (false), which keeps any task."""
    wanted = filter_of_request(gateway_pb2.ListTasksRequest(tenant="t"))
    assert not wanted and wanted == TaskFilter()
    assert wanted.keeps(_task("a", "echo", task_pb2.TASK_STATE_FAILED, 0))


def test_request_filters_are_read_and_applied() -> None:
    """kind, states and the window [after, before) each decide; all must agree."""
    request = gateway_pb2.ListTasksRequest(
        kind="stream", states=[task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_FAILED]
    )
    request.created_after.FromMilliseconds(1000)
    request.created_before.FromMilliseconds(2000)
    wanted = filter_of_request(request)
    assert wanted == TaskFilter("stream", _states("SUCCEEDED", "FAILED"), 1000 * 10**6, 2000 * 10**6)
    assert wanted.keeps(_task("a", "stream", task_pb2.TASK_STATE_FAILED, 1000))  # after is inclusive
    assert not wanted.keeps(_task("a", "stream", task_pb2.TASK_STATE_FAILED, 2000))  # before is not
    assert not wanted.keeps(_task("a", "echo", task_pb2.TASK_STATE_FAILED, 1500))
    assert not wanted.keeps(_task("a", "stream", task_pb2.TASK_STATE_RUNNING, 1500))
    assert not wanted.keeps(_task("a", "stream", task_pb2.TASK_STATE_FAILED, 999))


@pytest.mark.parametrize(
    ("request_fields", "field", "says"),
    [
        ({"states": [task_pb2.TASK_STATE_QUEUED, 0]}, "states[1]", "UNSPECIFIED"),
        ({"states": [42]}, "states[0]", "unknown state 42"),
        ({"kind": "Stream"}, "kind", "a kind is"),
        ({"kind": "x" * 65}, "kind", "a kind is"),
        ({"kind": "acme resize"}, "kind", "a kind is"),
    ],
)
def test_bad_request_filters_name_their_field(request_fields: dict[str, object], field: str, says: str) -> None:
    """An unknown or UNSPECIFIED state names its index; a kind no name could be, the kind."""
    with pytest.raises(InvalidArgument) as caught:
        filter_of_request(gateway_pb2.ListTasksRequest(**request_fields))  # type: ignore[arg-type]
    assert caught.value.field == field and says in caught.value.reason


@pytest.mark.parametrize(("after_ms", "before_ms"), [(2000, 1000), (2000, 2000)])
def test_a_window_that_ends_before_it_starts_is_refused(after_ms: int, before_ms: int) -> None:
    """created_before at or before created_after: the window is empty, which is a mistake, not a query."""
    request = gateway_pb2.ListTasksRequest()
    request.created_after.FromMilliseconds(after_ms)
    request.created_before.FromMilliseconds(before_ms)
    with pytest.raises(InvalidArgument, match="later than created_after") as caught:
        filter_of_request(request)
    assert caught.value.field == "created_before"


def test_a_timestamp_out_of_range_is_refused() -> None:
    """A Timestamp outside years 1..9999 or with nanos over a second names its field."""
    request = gateway_pb2.ListTasksRequest()
    request.created_after.seconds = 253_402_300_800
    with pytest.raises(InvalidArgument) as caught:
        filter_of_request(request)
    assert caught.value.field == "created_after"
    request = gateway_pb2.ListTasksRequest()
    request.created_before.nanos = 1_000_000_000
    with pytest.raises(InvalidArgument) as caught:
        filter_of_request(request)
    assert caught.value.field == "created_before"


def test_query_filters_take_state_names_in_both_spellings() -> None:
    """REST: state repeated, as QUEUED or TASK_STATE_QUEUED; times in RFC 3339."""
    query = {"kind": "acme.resize", "created_after": "2026-12-03T17:05:00Z"}
    wanted = filter_of_query(query, ["QUEUED", "TASK_STATE_RUNNING"])
    assert wanted.kind == "acme.resize" and wanted.states == _states("QUEUED", "RUNNING")
    assert wanted.created_after_ns == int(datetime(2026, 12, 3, 17, 5, tzinfo=UTC).timestamp()) * 10**9
    assert wanted.created_before_ns is None


@pytest.mark.parametrize(
    ("query", "states", "field"),
    [
        ({}, ["queued"], "state"),
        ({}, [""], "state"),
        ({}, ["QUEUED,RUNNING"], "state"),
        ({"kind": ""}, [], "kind"),
        ({"created_after": ""}, [], "created_after"),
        ({"created_before": "yesterday"}, [], "created_before"),
        ({"created_after": "2026-12-03T18:00:00Z", "created_before": "2026-12-03T17:00:00Z"}, [], "created_before"),
    ],
)
def test_bad_query_filters_name_their_field(query: dict[str, str], states: list[str], field: str) -> None:
    """An unknown state (names are exact), an empty kind or time, a time that is no time, an empty window."""
    with pytest.raises(InvalidArgument) as caught:
        filter_of_query(query, states)
    assert caught.value.field == field


def test_rfc3339_takes_lower_case_separators_and_long_fractions() -> None:
    """``t`` and ``z`` are RFC 3339 too; digits past the nanosecond are cut, not refused."""
    base = parse_rfc3339("2026-12-03T17:05:00Z", "t")
    assert parse_rfc3339("2026-12-03t17:05:00z", "t") == base
    assert parse_rfc3339("2026-12-03T17:05:00.1234567899Z", "t") == base + 123_456_789
    assert parse_rfc3339("2026-12-03T18:05:00+01:00", "t") == base == parse_rfc3339("2026-12-03T17:05:00-00:00", "t")


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-03",
        "2026-12-03T17:05Z",
        "2026-12-03 17:05:00Z",
        "2026-12-03T17:05:00",
        "2026-02-30T00:00:00Z",
        "2026-12-03T24:00:00Z",
        "2026-12-03T17:05:00+24:00",
        "2026-12-03T23:59:60Z",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "٢٠٢٦-12-03T17:05:00Z",
    ],
)
def test_what_is_no_rfc3339_date_time_is_refused(text: str) -> None:
    """No date-only, no missing seconds or zone, no impossible day, hour or offset, nothing outside 1..9999."""
    with pytest.raises(InvalidArgument) as caught:
        parse_rfc3339(text, "created_after")
    assert caught.value.field == "created_after"


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)).map(
        lambda moment: moment.replace(tzinfo=None)
    ),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
    st.integers(min_value=0, max_value=999_999_999),
)
def test_rfc3339_round_trips_to_the_nanosecond(moment: datetime, offset_min: int, nanos: int) -> None:
    """Any instant written in any offset, with a nanosecond fraction, reads back as that instant."""
    utc = moment.replace(microsecond=0, tzinfo=UTC)
    local = utc.astimezone(timezone(timedelta(minutes=offset_min)))
    sign, magnitude = ("+" if offset_min >= 0 else "-"), abs(offset_min)
    text = f"{local.year:04d}-{local:%m-%dT%H:%M:%S}.{nanos:09d}{sign}{magnitude // 60:02d}:{magnitude % 60:02d}"
    if not 1 <= local.year <= 9999:
        return  # written in its offset, the instant falls outside the years RFC 3339 can write
    seconds = (utc - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    assert parse_rfc3339(text, "t") == seconds * 10**9 + nanos
    assert parse_rfc3339(f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}Z", "t") == seconds * 10**9


# -- the scan ---------------------------------------------------------------------------------

_KINDS = ("echo", "stream", "acme.resize")
_STATES = (task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_FAILED)


@st.composite
def _stores(draw: st.DrawFn) -> Store:
    """Up to 60 tasks over two hours: mesh ids made at their creation, some client-named ids."""
    tasks = []
    for index in range(draw(st.integers(min_value=0, max_value=60))):
        created = NOW_MS - draw(st.integers(min_value=0, max_value=2 * HOUR_MS))
        named = draw(st.booleans())
        task_id = f"name{index:03d}_x" if named else new_task_id(created)
        tasks.append(_task(task_id, draw(st.sampled_from(_KINDS)), draw(st.sampled_from(_STATES)), created))
    return Store(tasks)


@st.composite
def _filters(draw: st.DrawFn) -> TaskFilter:
    kind = draw(st.sampled_from(("", *_KINDS)))
    states = frozenset(draw(st.sets(st.sampled_from(_STATES), max_size=2)))
    after = draw(st.none() | st.integers(min_value=NOW_MS - 2 * HOUR_MS, max_value=NOW_MS - HOUR_MS))
    before = draw(st.none() | st.integers(min_value=NOW_MS - HOUR_MS + 1, max_value=NOW_MS))
    return TaskFilter(
        kind, states, after * 10**6 if after is not None else None, before * 10**6 if before is not None else None
    )


@settings(max_examples=150, deadline=None)
@given(
    _stores(),
    _filters(),
    st.integers(min_value=1, max_value=7),
    st.sampled_from([(MAX_EXAMINED, _listing.CHUNK), (7, 3), (5, 5)]),
)
def test_paging_a_filtered_list_gives_the_whole_list_filtered(
    store: Store, wanted: TaskFilter, limit: int, bounds: tuple[int, int]
) -> None:
    """Page after page, each at most `limit`, the tasks come newest first: exactly those the filter keeps
    (also when a call may examine only a few tasks, in small chunks)."""

    async def read_all() -> list[str]:
        seen: list[str] = []
        page, token = await store.page(wanted, limit)
        seen += page
        while token:
            assert len(page) <= limit
            page, token = await store.page(wanted, limit, token)
            seen += page
        return seen

    expected = [task_id for task_id in store.ids() if wanted.keeps(store.tasks[task_id])]
    with mock.patch.object(_listing, "MAX_EXAMINED", bounds[0]), mock.patch.object(_listing, "CHUNK", bounds[1]):
        assert asyncio.run(read_all()) == expected


async def test_a_full_page_ends_at_its_last_task_and_the_end_has_no_token() -> None:
    """A full page's token is its last task (the next page starts right after it); a last page has none."""
    store = Store([_task(f"t{i:02d}", "echo" if i % 2 else "stream", task_pb2.TASK_STATE_QUEUED, i) for i in range(10)])
    assert await store.page(TaskFilter(kind="echo"), 2) == (["t09", "t07"], "t07")
    assert await store.page(TaskFilter(kind="echo"), 2, "t07") == (["t05", "t03"], "t03")
    assert await store.page(TaskFilter(kind="echo"), 2, "t03") == (["t01"], "")
    assert await store.page(TaskFilter(kind="stream"), 1, "t01") == (["t00"], "")  # full, and nothing after


async def test_one_call_examines_a_bounded_number_of_tasks() -> None:
    """A filter no task meets: each call reads at most MAX_EXAMINED tasks and hands back where it stopped."""
    store = Store([_task(f"t{i:05d}", "echo", task_pb2.TASK_STATE_QUEUED, i) for i in range(MAX_EXAMINED + 50)])
    page, token = await store.page(TaskFilter(kind="stream"), 10)
    assert page == [] and store.folds == MAX_EXAMINED
    assert token == store.ids()[MAX_EXAMINED - 1]
    page, token = await store.page(TaskFilter(kind="stream"), 10, token)
    assert page == [] and token == "" and store.folds == MAX_EXAMINED + 50


async def test_a_state_filter_folds_only_tasks_in_those_states() -> None:
    """The last states come in one read per chunk; only the tasks in a wanted state are folded."""
    states = [task_pb2.TASK_STATE_SUCCEEDED] * 95 + [task_pb2.TASK_STATE_FAILED] * 5
    store = Store([_task(f"t{i:03d}", "echo", state, i) for i, state in enumerate(states)])
    page, token = await store.page(TaskFilter(states=_states("FAILED")), 50)
    assert page == ["t099", "t098", "t097", "t096", "t095"] and token == ""
    assert store.folds == 5 and store.state_reads == 1


async def test_mesh_ids_made_far_outside_the_window_are_not_read() -> None:
    """Ids made a day before the window (or after it) are passed over unread; a named id is always read."""
    old = [
        _task(new_task_id(NOW_MS - 24 * HOUR_MS + i), "echo", task_pb2.TASK_STATE_QUEUED, NOW_MS - 24 * HOUR_MS)
        for i in range(300)
    ]
    recent = _task(new_task_id(NOW_MS - 60_000), "echo", task_pb2.TASK_STATE_QUEUED, NOW_MS - 60_000)
    named = _task("mine_x", "echo", task_pb2.TASK_STATE_QUEUED, NOW_MS - 30_000)
    store = Store([*old, recent, named])
    window = TaskFilter(created_after_ns=(NOW_MS - HOUR_MS) * 10**6)
    page, token = await store.page(window, 50)
    assert sorted(page) == sorted([recent.spec.task_id, "mine_x"]) and token == ""
    assert store.folds == 2
    store.folds = 0
    page, _ = await store.page(TaskFilter(created_before_ns=(NOW_MS - 23 * HOUR_MS) * 10**6), 500)
    assert len(page) == 300 and store.folds == 300 + 1  # the named id read too, and left out by its time


def test_an_id_whose_time_is_implausible_is_read_not_judged() -> None:
    """An id shaped like a mesh id but "made" before 2020 or in the future is judged only by its record."""
    window = TaskFilter(created_after_ns=NOW_MS * 10**6)
    assert window.may_keep_id(new_task_id(1_000), NOW_MS)
    assert window.may_keep_id(new_task_id(NOW_MS + 2 * _listing.ID_TIME_SLACK_MS), NOW_MS)
    assert not window.may_keep_id(new_task_id(NOW_MS - 2 * _listing.ID_TIME_SLACK_MS), NOW_MS)
    assert window.may_keep_id(new_task_id(NOW_MS - _listing.ID_TIME_SLACK_MS // 2), NOW_MS)  # within the slack
