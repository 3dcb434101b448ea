"""The web console's built files (`clients/web/dist/console`, checked in) on the gateway's HTTP side,
so Envoy's public port serves them like every other non-gRPC path — no Node at run time.

GET /console                 301 to /console/
GET /console/{view...}       index.html for every view's URL (/console/tasks/<id>, /console/dlq/<id>, …):
                             the page routes in the browser; ``no-cache`` with an ETag
GET /console/assets/{name}   a bundled file; its name carries its content hash, so it is cached for
                             a year (``immutable``); an unknown name is 404
GET /console/runbooks/{name} a runbook (docs/runbooks/<name>.md, as plain text), which a dead
                             letter's diagnosis links to; ``no-cache``

The files are read once, at start, and the text ones gzip-compressed then: a client whose
Accept-Encoding takes gzip gets that body (``Content-Encoding: gzip``, its own ETag), and every answer for such a
file says ``Vary: Accept-Encoding``. Every answer carries a Content-Security-Policy that allows only
this origin (the console calls the mesh's gRPC-Web on the same port), and no credential is needed:
the page holds no data until it signs in.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

CONSOLE_DIST = Path(__file__).resolve().parents[2] / "clients" / "web" / "dist" / "console"
RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
    ".md": "text/plain; charset=utf-8",  # a runbook as written; nothing in it runs
}
_SECURITY = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_INDEX_CACHE = "no-cache"  # revalidated each time: a new build's index names new asset files
_ASSET_CACHE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str
    etag: str
    gzipped: bytes | None = None  # the body gzip-compressed, when text and smaller so

    @classmethod
    def read(cls, path: Path) -> _File:
        body = path.read_bytes()
        content_type = _TYPES.get(path.suffix, "application/octet-stream")
        compressed = gzip.compress(body, compresslevel=9, mtime=0) if content_type.startswith("text/") else None
        if compressed is not None and len(compressed) >= len(body):
            compressed = None
        return cls(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"', compressed)


def _accepts_gzip(request: web.Request) -> bool:
    """Accept-Encoding takes gzip: named (or `*` when gzip is not) with a quality above 0."""
    qualities: dict[str, float] = {}
    for item in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = item.partition(";")
        params = params.strip().lower()
        try:
            qualities[coding.strip().lower()] = float(params[2:]) if params.startswith("q=") else 1.0
        except ValueError:
            qualities[coding.strip().lower()] = 0.0
    return qualities.get("gzip", qualities.get("*", 0.0)) > 0


def _answer(request: web.Request, file: _File, cache: str) -> web.Response:
    body, etag, encoding = file.body, file.etag, {}
    if file.gzipped is not None:
        if _accepts_gzip(request):
            # Another representation, so another entity tag (a cache must not answer one with the other).
            body, etag, encoding = file.gzipped, file.etag[:-1] + '-gzip"', {"Content-Encoding": "gzip"}
        encoding["Vary"] = "Accept-Encoding"
    headers = {**_SECURITY, "Cache-Control": cache, "ETag": etag, **encoding}
    if etag in {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": file.content_type})


def _not_built(dist: Path) -> web.Response:
    body = {"type": "error", "error_class": "not_found", "message": f"the web console is not built ({dist}): make web"}
    return web.json_response(body, status=404)


def add_console(app: web.Application, dist: Path = CONSOLE_DIST, runbooks: Path = RUNBOOKS) -> None:
    """Route /console/… on `app` to the built console in `dist` (404 naming `make web` if it is missing)
    and the runbooks in `runbooks`."""
    index_path = dist / "index.html"
    index = _File.read(index_path) if index_path.is_file() else None
    assets = {path.name: _File.read(path) for path in sorted((dist / "assets").glob("*")) if path.is_file()}
    books = {path.name: _File.read(path) for path in sorted(runbooks.glob("*.md")) if path.is_file()}

    async def page(request: web.Request) -> web.Response:
        return _answer(request, index, _INDEX_CACHE) if index else _not_built(dist)

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()  # the JSON error shape, from the gateway's middleware
        return _answer(request, found, _ASSET_CACHE)

    async def runbook(request: web.Request) -> web.Response:
        found = books.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        return _answer(request, found, _INDEX_CACHE)

    async def to_slash(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/console/")

    app.router.add_get("/console", to_slash)
    app.router.add_get("/console/assets/{name}", asset)
    app.router.add_get("/console/runbooks/{name}", runbook)
    app.router.add_get("/console/{view:.*}", page)
