"""Running the app: served over HTTP to a browser (Flet's web client from the flet-web wheel,
`no_cdn=True`), or in Flet's desktop window; both inside the caller's asyncio loop, beside the
client's grpc.aio channel."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable

import flet as ft

AppMain = Callable[[ft.Page], Awaitable[None]]


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


async def serve_web(
    main: AppMain, host: str, port: int, on_ready: Callable[[str], None], stop: asyncio.Event | None = None
) -> None:
    """Serve until SIGINT, SIGTERM or `stop` is set; `on_ready(url)` once the port accepts connections."""
    import flet_web.fastapi as flet_fastapi
    import uvicorn

    app = flet_fastapi.FastAPI()
    app.mount("/", flet_fastapi.app(main, no_cdn=True, app_name="tidemesh", app_short_name="tidemesh"))
    bound = port or free_port(host)
    # Flet's own logging stays at warnings: it never sees a credential, but it is noisy.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=bound, log_level="warning", ws="websockets-sansio"))
    loop = asyncio.get_running_loop()
    # uvicorn catches SIGINT/SIGTERM while it serves, then raises the signal again once it has shut
    # down; this no-op handler absorbs that, so the caller still closes its client and exits 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: None)
    serving = asyncio.create_task(server.serve())

    async def stop_when_told() -> None:
        if stop is not None:
            await stop.wait()
            server.should_exit = True

    stopper = asyncio.create_task(stop_when_told())
    try:
        while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn offers only the flag)
            await asyncio.sleep(0.05)
        if server.started:
            url_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
            on_ready(f"http://{url_host}:{bound}/")
        await serving
    finally:
        server.should_exit = True
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def run_window(main: AppMain) -> None:
    """Flet's desktop window (its client found or fetched beforehand); returns when it closes."""
    await ft.run_async(main, view=ft.AppView.FLET_APP, name="tidemesh")
