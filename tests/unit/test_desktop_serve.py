"""`serve_web` without a browser: the port answers with Flet's page configured not to use a CDN
(the renderer and fonts come from this server), the URL is announced once it answers, and a stop
request shuts the server down."""

from __future__ import annotations

import asyncio

import aiohttp
import flet as ft
import pytest

from desktop._serve import serve_web

pytestmark = pytest.mark.timeout(30)


async def _main(page: ft.Page) -> None:
    page.add(ft.Text("hello"))


async def test_the_page_is_served_without_a_cdn_and_stops_on_request() -> None:
    """index.html says noCdn and loads CanvasKit from this server; setting `stop` ends serve_web."""
    announced: asyncio.Queue[str] = asyncio.Queue()
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_web(_main, "127.0.0.1", 0, announced.put_nowait, stop))
    try:
        url = await asyncio.wait_for(announced.get(), timeout=20)
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            index = await response.text()
        assert "flet.noCdn=true;" in index and 'flet.canvasKitBaseUrl="/canvaskit/";' in index
        async with aiohttp.ClientSession() as session, session.get(url + "canvaskit/canvaskit.wasm") as response:
            assert response.status == 200  # the renderer ships in the flet-web wheel
    finally:
        stop.set()
        await asyncio.wait_for(serving, timeout=10)
