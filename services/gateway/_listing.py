"""What a task listing keeps, for ListTasks and GET /v1/tasks alike: the filters (kind, states, a
creation-time window) checked once, and the scan that pages through a tenant's index under them.

A page token is a task id, a place in the tenant's newest-first list, so it stays valid under any
filter. A filtered page is found by walking on from the token: the last state of a chunk of tasks
in one read (`states_of`) when states are asked for, then a fold of the ones that may match. One
call examines at most `MAX_EXAMINED` tasks, so a rare match costs a bounded time per page: the page
may come back short, even empty, with a token to go on from.

A mesh-assigned id carries the millisecond it was made (`assigned_at_ms`), and a task is created
(its first event) within moments of its id, so ids made well outside the time window are passed
over without a read; any other id (scoped, a replay's) is read and judged by its creation time.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from google.protobuf import timestamp_pb2

from mesh.errors import InvalidArgument
from mesh.tasks import assigned_at_ms
from mesh.v1 import gateway_pb2, task_pb2

MAX_EXAMINED = 1000  # tasks one filtered call looks at, whatever it finds
CHUNK = 100  # tasks read at once (one states read; their folds side by side)
# How far a task's creation may be from the time in its id: admission's latency, and clocks of
# the two processes (gateway, scheduler) that may each have made the id.
ID_TIME_SLACK_MS = 5 * 60 * 1000
_EARLIEST_ID_MS = 1_577_836_800_000  # 2020-01-01: an id "made" before is no mesh-assigned one

# A built-in kind (`stream`, `doc_embed`) or a user kind (`acme.resize`): lower-case tokens.
KIND_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
_KIND_RE = re.compile(KIND_PATTERN)
# The names a state goes by: QUEUED, or the enum's own TASK_STATE_QUEUED.
STATE_NAMES: dict[str, int] = {
    **{name.removeprefix("TASK_STATE_"): number for name, number in task_pb2.TaskState.items() if number},
    **{name: number for name, number in task_pb2.TaskState.items() if number},
}
_TIMESTAMP_MIN_S, _TIMESTAMP_MAX_S = -62_135_596_800, 253_402_300_799  # 0001-01-01 .. 9999-12-31 (UTC)
# ASCII digits only ([0-9], not \d, which takes any script's digits).
_RFC3339 = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks a listing keeps; every unset part keeps all. Times are Unix nanoseconds."""

    kind: str = ""
    states: frozenset[int] = frozenset()
    created_after_ns: int | None = None  # inclusive
    created_before_ns: int | None = None  # exclusive

    def __bool__(self) -> bool:
        return bool(self.kind or self.states) or self.created_after_ns is not None or self.created_before_ns is not None

    def keeps(self, task: task_pb2.TaskInfo) -> bool:
        if self.kind and task.spec.kind != self.kind:
            return False
        if self.states and task.state not in self.states:
            return False
        created = task.created.ToNanoseconds()
        if self.created_after_ns is not None and created < self.created_after_ns:
            return False
        return self.created_before_ns is None or created < self.created_before_ns

    def may_keep_id(self, task_id: str, now_ms: int) -> bool:
        """False only for a mesh-assigned id made well outside the time window (no read needed)."""
        made = assigned_at_ms(task_id)
        if made is None or not _EARLIEST_ID_MS <= made <= now_ms + ID_TIME_SLACK_MS:
            return True
        if self.created_after_ns is not None and made + ID_TIME_SLACK_MS < self.created_after_ns // 1_000_000:
            return False
        return self.created_before_ns is None or made - ID_TIME_SLACK_MS < self.created_before_ns // 1_000_000


def filter_of_request(request: gateway_pb2.ListTasksRequest) -> TaskFilter:
    """ListTasks' filters, checked; InvalidArgument names the field at fault."""
    for index, state in enumerate(request.states):
        if state not in STATE_NAMES.values():
            raise InvalidArgument(f"states[{index}]", f"{_unknown_state(state)} (one of: {_state_list()})")
    after = _timestamp_ns(request.created_after, "created_after") if request.HasField("created_after") else None
    before = _timestamp_ns(request.created_before, "created_before") if request.HasField("created_before") else None
    return _checked(request.kind, frozenset(request.states), after, before, "kind")


def filter_of_query(query: Mapping[str, str], states: Sequence[str]) -> TaskFilter:
    """GET /v1/tasks' filters: kind, state (repeated), created_after and created_before (RFC 3339)."""
    numbers = set()
    for text in states:
        if text not in STATE_NAMES:
            shown = text if len(text) <= 32 else f"{text[:32]}…"
            raise InvalidArgument("state", f"unknown state {shown!r} (one of: {_state_list()})")
        numbers.add(STATE_NAMES[text])
    after = parse_rfc3339(query["created_after"], "created_after") if "created_after" in query else None
    before = parse_rfc3339(query["created_before"], "created_before") if "created_before" in query else None
    if "kind" in query and not query["kind"]:
        raise InvalidArgument("kind", "is empty: leave it out to list every kind")
    return _checked(query.get("kind", ""), frozenset(numbers), after, before, "kind")


def _checked(kind: str, states: frozenset[int], after: int | None, before: int | None, kind_field: str) -> TaskFilter:
    if kind and not _KIND_RE.match(kind):
        raise InvalidArgument(
            kind_field,
            "a kind is 1 to 64 of a-z 0-9 _ . - starting with a letter (e.g. stream, acme.resize)",
        )
    if after is not None and before is not None and before <= after:
        raise InvalidArgument("created_before", "must be later than created_after (the window would be empty)")
    return TaskFilter(kind, states, after, before)


def _unknown_state(state: int) -> str:
    return "UNSPECIFIED is no state to list by" if state == 0 else f"unknown state {state}"


def _state_list() -> str:
    return ", ".join(name for name in STATE_NAMES if not name.startswith("TASK_STATE_"))


def _timestamp_ns(stamp: timestamp_pb2.Timestamp, field: str) -> int:
    if not _TIMESTAMP_MIN_S <= stamp.seconds <= _TIMESTAMP_MAX_S or not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidArgument(field, "not a valid timestamp (years 1 to 9999, nanos 0 to 999999999)")
    return stamp.seconds * 1_000_000_000 + stamp.nanos


def parse_rfc3339(text: str, field: str) -> int:
    """An RFC 3339 date-time (``2026-12-03T17:05:00Z``, ``…+01:00``, a fraction kept to the
    nanosecond) as Unix ns. A leap second (``:60``) is refused: no clock here can name one."""
    found = _RFC3339.match(text)
    if found is None:
        shown = text if len(text) <= 40 else f"{text[:40]}…"
        raise InvalidArgument(field, f"not an RFC 3339 date-time, e.g. 2026-12-03T17:05:00Z (got {shown!r})")
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    fraction, zone = found.group(7) or "", found.group(8)
    try:
        offset = timedelta(0)
        if zone not in ("Z", "z"):
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            offset = (1 if zone[0] == "+" else -1) * timedelta(hours=hours, minutes=minutes)
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError as exc:
        raise InvalidArgument(field, f"not a real date and time ({exc})") from exc
    whole = moment - datetime(1970, 1, 1, tzinfo=UTC)
    seconds = whole.days * 86_400 + whole.seconds
    if not _TIMESTAMP_MIN_S <= seconds <= _TIMESTAMP_MAX_S:
        raise InvalidArgument(field, "outside years 1 to 9999 (UTC)")
    return seconds * 1_000_000_000 + int(fraction[:9].ljust(9, "0"))  # beyond nanoseconds: cut


async def filtered_page(
    ids: Sequence[str],
    wanted: TaskFilter,
    limit: int,
    fold: Callable[[str], Awaitable[task_pb2.TaskInfo | None]],
    states_of: Callable[[list[str]], Awaitable[dict[str, int]]],
    *,
    now_ms: int | None = None,
) -> tuple[list[task_pb2.TaskInfo], str]:
    """Up to `limit` tasks of `ids` (newest first) that `wanted` keeps, and the token to go on from.

    `fold` gives a task's record (None: not the tenant's, or gone); `states_of` the last state of
    each task that has one. The token is the last id this call is done with: the last task
    returned on a full page, the last one examined when `MAX_EXAMINED` ran out; "" at the end.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    found: list[task_pb2.TaskInfo] = []
    examined = 0
    position = 0
    while position < len(ids) and examined < MAX_EXAMINED:
        chunk: list[str] = []
        while position < len(ids) and len(chunk) < min(CHUNK, MAX_EXAMINED - examined):
            task_id = ids[position]
            position += 1
            if wanted.may_keep_id(task_id, now_ms):
                chunk.append(task_id)
        examined += len(chunk)
        if not chunk:
            continue
        candidates = chunk
        if wanted.states:
            last = await states_of(chunk)
            candidates = [task_id for task_id in chunk if last.get(task_id) in wanted.states]
        folded = await asyncio.gather(*(fold(task_id) for task_id in candidates))
        kept = {task_id: task for task_id, task in zip(candidates, folded, strict=True) if task and wanted.keeps(task)}
        for index, task_id in enumerate(chunk):
            if task_id in kept:
                found.append(kept[task_id])
                if len(found) == limit:
                    done = position == len(ids) and index == len(chunk) - 1
                    return found, "" if done else task_id
    return found, ids[position - 1] if position < len(ids) else ""
