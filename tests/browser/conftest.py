"""A real browser on another origin: Debian's Chromium driven by Playwright, a static server for
clients/web/dist, and an auth-on mesh whose Envoy the page calls over gRPC-Web (HTTPS).

How Chromium trusts the mesh: Chromium on Linux verifies against NSS, and adding a root to an NSS
database needs `certutil` (libnss3-tools), which the suite does not install. Instead the browser
is launched with ``--ignore-certificate-errors-spki-list=<SHA-256 of Envoy's public key>``:
Chromium then accepts a chain only if it carries exactly that key (Playwright always passes
``--user-data-dir``, without which Chromium ignores the switch). The pin is taken from a
connection that Python first verified against the mesh's root for 127.0.0.1, so the browser
trusts precisely the key the root vouches for, not "any certificate" (`ignore_https_errors`
stays False; `test_a_browser_without_the_pin_refuses_the_edge` shows the pin is what lets it in).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.async_api import Browser, Page, async_playwright

from mesh.supervisor import Supervisor, admin_key, build_plan

DIST = Path(__file__).resolve().parents[2] / "clients" / "web" / "dist"
CHROMIUM = Path(os.environ.get("TIDEMESH_CHROMIUM", "/usr/bin/chromium"))
# What Debian's Chromium needs to run headless here (no GPU, no sandbox in a container, no phoning home).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-background-networking"]


@dataclass(frozen=True)
class WebMesh:
    base_url: str  # Envoy's public port (HTTPS): the page's cross-origin target
    admin_key: str = field(repr=False)  # a failing test prints its fixtures: never the key
    spki_pin: str  # base64 SHA-256 of the public key Envoy serves, verified against the mesh's root
    ca_path: str = ""  # the mesh's root, for Python clients the tests use alongside the browser


def edge_spki_pin(host: str, port: int, root: str) -> str:
    """The SPKI pin (RFC 7469) of the certificate served at host:port, after verifying it against `root`."""
    context = ssl.create_default_context(cafile=root)  # checks the chain and that it is valid for `host`
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None, f"{host}:{port} sent no certificate"
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
async def web_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebMesh]:
    """A whole mesh with auth on (streams carry tidemesh-stream-id only under a credential)."""
    state = tmp_path_factory.mktemp("web-mesh")
    plan = build_plan(state, public_port=0, workers=1, auth=True)
    # A short grace: a test may leave a slow stream running, which the worker would otherwise drain for
    # the default grace; how the mesh stops is not under test here.
    async with Supervisor(plan, health_timeout_s=60, grace_s=2.0):
        pin = edge_spki_pin("127.0.0.1", plan.public_port, plan.ca_path)
        yield WebMesh(f"https://127.0.0.1:{plan.public_port}", admin_key(state), pin, str(plan.ca_path))


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
async def browser(chromium: Path, web_mesh: WebMesh) -> AsyncIterator[Browser]:
    """Chromium that accepts exactly the mesh edge's key (see the module docstring)."""
    args = [*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={web_mesh.spki_pin}"]
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=args, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, page_origin: str) -> AsyncIterator[Page]:
    """The client page, loaded and ready: its functions are on `window.tidemesh`."""
    context = await browser.new_context(ignore_https_errors=False)  # certificate errors stay errors
    try:
        opened = await context.new_page()
        await opened.goto(f"{page_origin}/index.html")
        await opened.wait_for_selector("#state[data-ready=true]", state="attached", timeout=10_000)
        yield opened
    finally:
        await context.close()
