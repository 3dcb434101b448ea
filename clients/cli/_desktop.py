"""`tidemesh desktop`: the Flet app (`desktop/`) in its desktop window, or `--web` served to a
browser, with the CLI's endpoint, credential and CA. The app runs inside this command's asyncio
loop (Flet's server and the client's grpc.aio channel share it).

`--open tasks/ID` (or dlq/ID, …) opens that view; in a browser the same route is the URL's path.

Desktop mode needs Flet's desktop client, which Flet downloads at first run (or finds through
$FLET_VIEW_PATH); where it cannot (offline, or no display), the app is served to a browser
instead and the command says why and how to get the client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

from clients.sdk import Client
from mesh.errors import InvalidArgument

EXIT_OK = 0


def add_desktop_command(sub: Any, client_args: Callable[[argparse.ArgumentParser], None]) -> None:
    p_desktop = sub.add_parser(
        "desktop",
        help="the desktop app (Flet): overview, tasks, a task's live stream, submit, dead letters",
        description="Opens Flet's desktop window; --web serves the same app to a browser instead and prints its "
        "URL. Flet downloads its desktop client at first run (or set FLET_VIEW_PATH to an unpacked one); without "
        "it the app falls back to --web and says why. The credential stays in this process: the browser or "
        "window gets only the page.",
    )
    p_desktop.add_argument("--web", action="store_true", help="serve the app to a browser (prints the URL)")
    p_desktop.add_argument("--host", default="127.0.0.1", help="the address --web listens on (default 127.0.0.1)")
    p_desktop.add_argument("--port", type=int, default=0, help="the port --web listens on (default 0: a free one)")
    p_desktop.add_argument("--tenant", default="default", help="whose tasks and dead letters it shows")
    p_desktop.add_argument(
        "--open",
        default="",
        metavar="VIEW",
        help="the view to open: tasks, tasks/TASK_ID, submit, dlq or dlq/TASK_ID (with --web: the URL printed "
        "leads there)",
    )
    client_args(p_desktop)


async def desktop_command(args: argparse.Namespace, transport: dict[str, Any], credential: str) -> int:
    from desktop._model import parse_route, route_for

    try:  # a bad --open is refused before anything starts
        route = route_for(*parse_route(args.open)) if args.open else ""
    except ValueError as exc:
        raise InvalidArgument("--open", str(exc)) from None

    from desktop._app import session
    from desktop._launch import desktop_refusal, environment, fallback_note, fetch_flet_client
    from desktop._serve import run_window, serve_web

    theme = getattr(args, "theme", None) or os.environ.get("TIDEMESH_THEME", "") or "auto"
    async with Client(
        args.endpoint, tenant=args.tenant, credential=credential, surface="desktop", **transport
    ) as client:
        web = args.web
        if not web:
            refusal = await asyncio.to_thread(desktop_refusal, environment(), fetch_flet_client)
            if refusal is not None:
                print(fallback_note(refusal), file=sys.stderr, flush=True)
                web = True
        if web:

            def ready(url: str) -> None:
                # The route rides in the URL: every browser session opens the view its URL names.
                shown = url.rstrip("/") + route if route else url
                print(f"tidemesh desktop: serving the app at {shown} (Ctrl-C stops it)", flush=True)

            await serve_web(session(client, args.tenant, theme), args.host, args.port, ready)
        else:
            await run_window(session(client, args.tenant, theme, route))
    return EXIT_OK
