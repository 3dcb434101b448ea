"""`tidemesh dash`: the live terminal dashboard (`tui`), with the CLI's credentials, CA and theme."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from clients.cli._exit import EXIT_OK
from clients.cli._output import accessible_from
from clients.cli._style import resolve_theme, wants_colour
from clients.sdk import Client
from tui import PANE_NAMES, clamp_fps, reduced_motion


def add_dash_command(sub: Any, client_args: Callable[[argparse.ArgumentParser], None]) -> None:
    p_dash = sub.add_parser(
        "dash",
        help="the live dashboard: queues, workers, tasks, a task's stream, inference backends, dead letters, alerts",
        description="Keyboard only: Tab/Shift-Tab between panes, arrows or j/k inside, Enter opens (a task, a "
        "dead letter, an alert's view), Esc goes back, / filters the tasks, f follows a task's live stream, R "
        "replays a dead letter, D purges one (asking for a one-time code where the mesh wants a second factor), "
        "p pauses, r refreshes, ? lists every key, q quits.",
    )
    p_dash.add_argument("--task", default="", metavar="ID", help="open this task's live stream")
    p_dash.add_argument("--dlq", default="", metavar="ID", help="open this dead letter's diagnosis")
    p_dash.add_argument("--pane", default="", choices=PANE_NAMES, help="start with this pane focused")
    p_dash.add_argument("--tenant", default="default", help="whose tasks the task list shows (default: default)")
    p_dash.add_argument(
        "--alert-age-s",
        type=float,
        default=30.0,
        metavar="S",
        help="alert on a lane whose oldest item waited longer than this (default 30)",
    )
    p_dash.add_argument(
        "--fps", type=float, default=10.0, help="redraws per second at most, coalesced (1..60; default 10)"
    )
    p_dash.add_argument(
        "--reduced-motion",
        action="store_true",
        default=None,
        help="no transitions (a pane's flash, new rows' highlight); always so with --accessible "
        "(default: $TIDEMESH_REDUCED_MOTION)",
    )
    client_args(p_dash)  # with --accessible: one column without box drawing, changes announced as lines


async def dash_command(args: argparse.Namespace, transport: dict[str, Any], credential: str) -> int:
    isatty = sys.stdout.isatty()
    colour = wants_colour(os.environ, isatty)
    theme = resolve_theme(getattr(args, "theme", None), os.environ, isatty) if colour else None
    from clients.cli._main import _parser  # here: _main imports this module

    linear = accessible_from(os.environ) if args.accessible is None else args.accessible

    from tui import run_dashboard  # urwid, only for this command

    async with Client(args.endpoint, tenant=args.tenant, credential=credential, surface="dash", **transport) as client:
        await run_dashboard(
            client,
            tenant=args.tenant,
            task_id=args.task,
            dead_letter=args.dlq,
            linear=linear,
            fps=clamp_fps(args.fps),
            theme=theme,
            endpoint=args.endpoint,
            pane=args.pane,
            alert_age_s=args.alert_age_s,
            cli=_parser(),
            reduced_motion=reduced_motion(args.reduced_motion, linear, os.environ),
        )
    return EXIT_OK
