"""The gateway serves the built web console: index.html for every view's URL (deep links),
hashed assets with their content type and a year's caching, revalidation by ETag, a same-origin
Content-Security-Policy, and a clear 404 when the console was never built."""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway._console import CONSOLE_DIST, RUNBOOKS, add_console


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_console(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "path",
    [
        "/console/",
        "/console/tasks",
        "/console/tasks/01JABC",
        "/console/dlq",
        "/console/dlq/01JABC",
        "/console/submit",
        "/console/workers",
        "/console/inference",
    ],
)
async def test_every_view_url_answers_the_page(client: TestClient[web.Request, web.Application], path: str) -> None:
    """Deep links get the same index.html, revalidated on each load, under a same-origin CSP."""
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert await response.read() == (CONSOLE_DIST / "index.html").read_bytes()


async def test_assets_are_typed_and_cached_for_a_year(client: TestClient[web.Request, web.Application]) -> None:
    """Every asset index.html names exists, with its MIME type and an immutable year of caching."""
    index = (CONSOLE_DIST / "index.html").read_text(encoding="utf-8")
    names = re.findall(r'"/console/assets/([^"]+)"', index)
    assert {Path(name).suffix for name in names} == {".js", ".css"}, names
    for name in names:
        response = await client.get(f"/console/assets/{name}")
        assert response.status == 200, name
        expected = "text/javascript" if name.endswith(".js") else "text/css"
        assert response.headers["Content-Type"] == f"{expected}; charset=utf-8"
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert await response.read() == (CONSOLE_DIST / "assets" / name).read_bytes()


async def test_an_etag_revalidates_to_304(client: TestClient[web.Request, web.Application]) -> None:
    """The page's ETag answered back gets 304 without a body."""
    first = await client.get("/console/tasks/x")
    again = await client.get("/console/", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304 and await again.read() == b""


async def test_unknown_assets_and_the_bare_prefix(client: TestClient[web.Request, web.Application]) -> None:
    """An unknown asset is 404 (never the page, which a script tag would run as JS); /console redirects."""
    missing = await client.get("/console/assets/nope.js")
    assert missing.status == 404
    bare = await client.get("/console", allow_redirects=False)
    assert bare.status == 301 and bare.headers["Location"] == "/console/"


async def test_a_missing_build_says_how_to_make_it(tmp_path: Path) -> None:
    """Without dist/console the page is a 404 naming `make web`, and the gateway still starts."""
    app = web.Application()
    add_console(app, tmp_path / "absent")
    async with TestClient(TestServer(app)) as test_client:
        response = await test_client.get("/console/")
        assert response.status == 404 and "make web" in (await response.json())["message"]


async def test_a_runbook_is_served_as_plain_text(client: TestClient[web.Request, web.Application]) -> None:
    """A dead letter's runbook link (/console/runbooks/<name>.md) reads docs/runbooks as text; others are 404."""
    response = await client.get("/console/runbooks/poison-input.md")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert await response.read() == (RUNBOOKS / "poison-input.md").read_bytes()
    assert (await client.get("/console/runbooks/no-such.md")).status == 404
    assert (await client.get("/console/runbooks/..%2F..%2FREADME.md")).status == 404


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("*", True),
        ("", False),
        ("identity", False),
        ("gzip;q=0", False),
        ("*, gzip;q=0", False),
        ("deflate", False),
    ],
)
async def test_the_script_is_gzipped_for_a_client_that_takes_gzip(
    client: TestClient[web.Request, web.Application], accept: str, gzipped: bool
) -> None:
    """Content-Encoding: gzip (compressed once, at start) only when Accept-Encoding takes it; the same bytes
    either way once decoded, a distinct ETag per representation, Vary on both, and 304 for each's own tag."""
    index = (CONSOLE_DIST / "index.html").read_text(encoding="utf-8")
    script = re.search(r'src="(/console/assets/main-[^"]+\.js)"', index)
    assert script is not None
    # auto_decompress off: the test reads the bytes on the wire.
    response = await client.get(script[1], headers={"Accept-Encoding": accept}, auto_decompress=False)
    body = await response.read()
    assert response.headers["Vary"] == "Accept-Encoding"
    plain = (CONSOLE_DIST / "assets" / script[1].rsplit("/", 1)[1]).read_bytes()
    if gzipped:
        assert response.headers["Content-Encoding"] == "gzip" and response.headers["ETag"].endswith('-gzip"')
        assert gzip.decompress(body) == plain and len(body) < len(plain) / 2
    else:
        assert "Content-Encoding" not in response.headers and body == plain
    again = await client.get(
        script[1], headers={"Accept-Encoding": accept, "If-None-Match": response.headers["ETag"]}, auto_decompress=False
    )
    assert again.status == 304
