"""A real browser on another origin: Debian's Chromium driven by Playwright, a static server for
clients/web/dist, and an auth-on mesh whose Envoy the page calls over gRPC-Web."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from mesh.supervisor import Supervisor, admin_key, build_plan

DIST = Path(__file__).resolve().parents[2] / "clients" / "web" / "dist"
CHROMIUM = Path(os.environ.get("TIDEMESH_CHROMIUM", "/usr/bin/chromium"))
# What Debian's Chromium needs to run headless here (no GPU, no sandbox in a container, no phoning home).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-background-networking"]


@dataclass(frozen=True)
class WebMesh:
    base_url: str  # Envoy's public port: the page's cross-origin target
    admin_key: str


@pytest.fixture(scope="module")
async def web_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebMesh]:
    """A whole mesh with auth on (streams carry tidemesh-stream-id only under a credential)."""
    state = tmp_path_factory.mktemp("web-mesh")
    plan = build_plan(state, public_port=0, workers=1, auth=True)
    async with Supervisor(plan, health_timeout_s=60):
        yield WebMesh(f"http://127.0.0.1:{plan.public_port}", admin_key(state))


@pytest.fixture(scope="module")
async def page_origin() -> AsyncIterator[str]:
    """clients/web/dist served from its own port, so every call to Envoy is cross-origin (CORS applies)."""
    app = web.Application()
    app.router.add_static("/", DIST, show_index=False)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium; `make test` installs it with apt, so only a machine that could not install it skips."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt could not install it?): `make browser` installs Debian's chromium")
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, page_origin: str) -> AsyncIterator[Page]:
    """The client page, loaded and ready: its functions are on `window.tidemesh`."""
    context = await browser.new_context()
    try:
        opened = await context.new_page()
        await opened.goto(f"{page_origin}/index.html")
        await opened.wait_for_selector("#state[data-ready=true]", state="attached", timeout=10_000)
        yield opened
    finally:
        await context.close()
