"""Shell completion (argcomplete): commands and flags from the parser itself, and — from the live
mesh the command line points at (its ``--endpoint``, ``--state-dir``, credential and CA) — task
kinds, tenants and recent task ids. `tidemesh completion bash|zsh|fish` prints the shell's hook.

A live completion that cannot reach the mesh in `LIVE_TIMEOUT_S` offers what it knows without it
(the built-in kinds), never an error in the middle of a command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from argcomplete.shell_integration import shellcode

from clients.cli._connect import client_for

SHELLS = ("bash", "zsh", "fish")
LIVE_TIMEOUT_S = 2.0
_RECENT_TASKS = 20


def shell_hook(shell: str) -> str:
    """What to source (or save) for `shell` to complete ``tidemesh``."""
    if shell not in SHELLS:
        raise ValueError(f"shell must be one of {', '.join(SHELLS)}, not {shell!r}")
    return shellcode(["tidemesh"], shell=shell)


def _live(parsed: argparse.Namespace, fetch: Callable[[Any], Awaitable[Iterable[str]]]) -> list[str]:
    """`fetch(client)` against the mesh `parsed` names, or [] when it does not answer in time."""

    async def run() -> list[str]:
        async with asyncio.timeout(LIVE_TIMEOUT_S), client_for(parsed) as client:
            return list(await fetch(client))

    with contextlib.suppress(Exception):
        return asyncio.run(run())
    return []


def kinds(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    from mesh.tasks import KINDS

    async def fetch(client: Any) -> list[str]:
        return [info.kind.name for info in await client.kinds()]

    names = {*KINDS, *_live(parsed_args, fetch)}
    return sorted(n for n in names if n.startswith(prefix))


def task_ids(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    async def fetch(client: Any) -> list[str]:
        tasks, _ = await client.list_tasks(limit=_RECENT_TASKS)
        return [t.spec.task_id for t in tasks]

    return [t for t in _live(parsed_args, fetch) if t.startswith(prefix)]


def tenants(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    async def fetch(client: Any) -> list[str]:
        mesh = await client.status()
        return sorted({q.tenant for q in mesh.tenant_queues if q.tenant})

    return [t for t in _live(parsed_args, fetch) if t.startswith(prefix)]


def states(prefix: str, **_: Any) -> list[str]:
    """`--state`: every state's name, after the ones already given (``failed,dead-l`` → ``failed,dead-lettered``)."""
    from mesh.v1 import task_pb2

    done, _comma, last = prefix.rpartition(",")
    names = [n.removeprefix("TASK_STATE_").lower().replace("_", "-") for n in task_pb2.TaskState.keys()[1:]]
    return [f"{done},{name}" if done else name for name in names if name.startswith(last.lower())]


def attach(parser: argparse.ArgumentParser) -> None:
    """Put the completers on every sub-command's ``kind``, ``task_id``, ``--tenant`` and ``--state``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                attach(sub)
            continue
        completer = {"kind": kinds, "task_id": task_ids, "tenant": tenants, "state": states}.get(action.dest)
        if completer is not None:
            action.completer = completer  # type: ignore[attr-defined]
