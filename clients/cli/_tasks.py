"""Task commands: submit and watch (events as they come, progress beside them), get, list, cancel."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from clients.cli._connect import client_for, console_url
from clients.cli._exit import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK
from clients.cli._output import Output, Progress
from clients.cli._render import event_line
from clients.sdk import Client, task_state
from mesh.errors import InvalidArgument
from mesh.v1 import task_pb2

BULK_LIMIT = 10_000  # the most records one bulk command lists before it acts
BULK_CONCURRENCY = 16  # calls a bulk command keeps in flight at once

T = TypeVar("T")
R = TypeVar("R")


async def for_each(
    items: Sequence[T], call: Callable[[T], Awaitable[R]], progress: Progress, said: Callable[[T, R], str]
) -> list[R]:
    """`call` on every item, `BULK_CONCURRENCY` at a time; `progress` advances (saying `said`) as
    each finishes. The results in the items' order; the first failure stops the rest."""
    gate = asyncio.Semaphore(BULK_CONCURRENCY)

    async def one(item: T) -> R:
        async with gate:
            result = await call(item)
        progress.advance(said(item, result))
        return result

    calls = [asyncio.ensure_future(one(item)) for item in items]
    try:
        return list(await asyncio.gather(*calls))
    except BaseException:
        for pending in calls:
            pending.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        raise


_WAITING = (task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_RETRYING)


async def stream_events(client: Client, task_id: str, after: int, out: Output) -> int:
    """A task's events as they come; on stderr meanwhile, a spinner while it waits in its queue
    and a bar of a fan-out's children (on a terminal; "still working" lines otherwise)."""
    final = None
    async with contextlib.AsyncExitStack() as shown:
        bar: Progress | None = None
        async for event in client.watch(task_id, after):
            waiting = event.state in _WAITING and not event.final
            if bar is not None and bar.total is None and not waiting:  # out of the queue
                await shown.aclose()
                bar = None
            if out.table:  # a user kind's output rendered through the registry's descriptors
                rendered = await client.to_dict(event) if event.output.HasField("custom") else None
                out.record(None, event_line(event, rendered, out.stamp))
            else:  # every Any (a user kind's input in the spec too) needs the registry's descriptors
                out.record(await client.to_dict(event), "")
            final = event
            if event.final:
                break
            if event.child_task_ids and (bar is None or bar.total is None):
                await shown.aclose()
                children = len(event.child_task_ids)
                label = f"{children} child tasks of {task_id}"
                bar = await shown.enter_async_context(out.progress(label, total=children, announce=False))
            elif bar is not None and bar.total is not None and event.HasField("output"):
                bar.advance("a child finished")
            elif waiting and bar is None:
                bar = await shown.enter_async_context(
                    out.progress(f"task {task_id} waiting in its queue", announce=False)
                )
    if final is None or final.state == task_pb2.TASK_STATE_SUCCEEDED:
        return EXIT_OK
    return EXIT_CANCELLED if final.state == task_pb2.TASK_STATE_CANCELLED else EXIT_FAILED


async def submit_command(args: argparse.Namespace, out: Output) -> int:
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise InvalidArgument("--payload", f"not JSON: {exc.msg}") from exc
    if not isinstance(payload, dict):
        raise InvalidArgument("--payload", "must be a JSON object")
    if args.text is not None:
        payload["text"] = args.text
    async with client_for(args, args.tenant) as client:
        submitted = await client.submit(
            args.kind, payload, priority=args.priority, idempotency_key=args.idempotency_key
        )
        out.note(f"task {submitted.task_id}" + (" (deduplicated)" if submitted.deduplicated else ""))
        out.note(f"  follow it in the web console: {console_url(args, 'tasks', submitted.task_id)}")
        if args.no_wait:
            out.data(
                {"task_id": submitted.task_id, "deduplicated": submitted.deduplicated},
                table=lambda: out.line(submitted.task_id),
            )
            return EXIT_OK
        return await stream_events(client, submitted.task_id, 0, out)


_AGE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhdw])$")
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
# The request's fields, as `list`'s flags name them (the mesh's errors name the fields).
_LIST_FLAGS = {"kind": "--kind", "states": "--state", "created_after": "--since", "created_before": "--until"}


def moment(text: str, flag: str, now: datetime | None = None) -> datetime:
    """`--since`/`--until`: an ISO 8601 time (local unless it names its zone) or an age before now
    (``90s``, ``15m``, ``2h``, ``7d``, ``1w``)."""
    age = _AGE.match(text.strip().lower())
    if age:
        return (now or datetime.now(UTC)) - timedelta(seconds=float(age[1]) * _AGE_SECONDS[age[2]])
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(
            flag,
            f"{text!r} is neither a time (2026-12-03T17:05, local unless it names its zone) nor an age (15m, 2h, 7d)",
        ) from None
    return parsed if parsed.tzinfo else parsed.astimezone()  # a time without a zone is the local time


def list_filters(args: argparse.Namespace) -> dict[str, Any]:
    """`list`'s filters as `Client.list_tasks` takes them; each bad one names its flag."""
    states = [name for given in args.state for name in given.split(",") if name.strip()]
    try:
        chosen = [task_state(name) for name in states]
    except InvalidArgument as exc:
        raise InvalidArgument("--state", exc.reason) from None
    since = moment(args.since, "--since") if args.since else None
    until = moment(args.until, "--until") if args.until else None
    if since is not None and until is not None and until <= since:
        raise InvalidArgument(
            "--until", f"must be later than --since ({until.isoformat()} is not after {since.isoformat()})"
        )
    return {"kind": args.kind, "states": chosen, "created_after": since, "created_before": until}


async def list_command(client: Client, args: argparse.Namespace, out: Output) -> int:
    from google.protobuf.json_format import MessageToDict

    try:
        tasks, token = await client.list_tasks(args.tenant, args.limit, args.page_token, **list_filters(args))
    except InvalidArgument as exc:
        flag = _LIST_FLAGS.get(exc.field.split("[")[0])
        if flag is None:
            raise
        raise InvalidArgument(flag, exc.reason) from None
    rows = [MessageToDict(t) for t in tasks]

    def table() -> None:
        for task in tasks:
            state = task_pb2.TaskState.Name(task.state).removeprefix("TASK_STATE_")
            out.line(f"{task.spec.task_id}  {task.spec.kind:<10} {state:<14} {task.updated.ToJsonString()}")

    if out.format == "jsonl":  # one task per line
        out.data(rows)
    else:
        out.data({"tasks": rows, "next_page_token": token}, table=table)
    if token and out.format in ("table", "jsonl"):  # the others carry it in the data
        out.note(f"more: --page-token {token}")
    return EXIT_OK


_UNFINISHED = (task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_RUNNING, task_pb2.TASK_STATE_RETRYING)


async def cancel_command(client: Client, args: argparse.Namespace, out: Output) -> int:
    """Cancel the tasks named, or every unfinished one of --tenant; more than one asks first."""
    ids = list(args.task_ids)
    if args.tenant:
        token = ""
        while len(ids) < BULK_LIMIT:
            tasks, token = await client.list_tasks(args.tenant, 500, token, states=_UNFINISHED)
            ids += [t.spec.task_id for t in tasks if t.state in _UNFINISHED]  # a state may have moved on
            if not token:
                break
        if not ids:
            out.note(f"tenant {args.tenant} has no unfinished task")
            out.data([], table=lambda: None)
            return EXIT_OK
    elif not ids:
        raise InvalidArgument("task_id", "cancel needs a task id (or several, or --tenant)")
    if len(ids) == 1 and not args.tenant:
        state = task_pb2.TaskState.Name(await client.cancel(ids[0], reason=args.reason))
        out.data({"task_id": ids[0], "state": state}, table=lambda: out.line(state))
        return EXIT_OK
    out.confirm(f"cancel {len(ids)} tasks", ids)

    async def cancel(task_id: str) -> str:
        return task_pb2.TaskState.Name(await client.cancel(task_id, reason=args.reason))

    async with out.progress("cancelling", total=len(ids)) as progress:
        states = await for_each(ids, cancel, progress, lambda task_id, state: f"{task_id} {state}")
    out.data(
        [{"task_id": task_id, "state": state} for task_id, state in zip(ids, states, strict=True)],
        table=lambda: out.lines(f"{task_id}  {state}" for task_id, state in zip(ids, states, strict=True)),
    )
    return EXIT_OK


async def get_command(client: Client, args: argparse.Namespace, out: Output) -> int:
    from google.protobuf.json_format import MessageToDict

    info = await client.get(args.task_id)
    out.data(MessageToDict(info), table=None)  # a task's record reads best as YAML
    return EXIT_OK
