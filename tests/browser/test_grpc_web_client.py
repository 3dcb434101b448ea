"""connect-web's gRPC-Web transport in Chromium, from another origin, through Envoy (HTTPS) to an auth-on
mesh: every call carries x-api-key, so each one also proves the CORS preflight allows it. Chromium trusts
exactly the edge's key (an SPKI pin, see tests/browser/conftest.py), never any certificate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Error, Page, async_playwright

from mesh.v1 import task_pb2
from tests.browser.conftest import CHROMIUM_ARGS, WebMesh

pytestmark = pytest.mark.integration

SUCCEEDED = task_pb2.TASK_STATE_SUCCEEDED


async def _call(page: Page, function: str, *args: Any) -> Any:
    """Run `window.tidemesh[function](...args)` in the page and return its JSON result."""
    return await page.evaluate("([name, args]) => window.tidemesh[name](...args)", [function, list(args)])


def _target(web_mesh: WebMesh) -> dict[str, str]:
    return {"baseUrl": web_mesh.base_url, "apiKey": web_mesh.admin_key}


async def test_unary_calls_with_an_api_key_from_another_origin(page: Page, web_mesh: WebMesh) -> None:
    """GetMeshStatus and SubmitTask succeed from the page with x-api-key (the preflight must allow it)."""
    status = await _call(page, "meshStatus", _target(web_mesh))
    assert status["workers"] >= 1, status
    task = {"tenant": "web", "text": "a b", "chunks": 2, "chunkDelayMs": 0}
    submitted = await _call(page, "submitStream", _target(web_mesh), task)
    assert submitted["taskId"] and not submitted["deduplicated"], submitted


async def test_watch_reads_the_stream_id_and_refreshes_its_credential(page: Page, web_mesh: WebMesh) -> None:
    """A streamed WatchTask exposes tidemesh-stream-id to the page, which refreshes the stream's credential."""
    task = {"tenant": "web", "text": "one two three", "chunks": 3, "chunkDelayMs": 300}
    submitted = await _call(page, "submitStream", _target(web_mesh), task)
    watched = await _call(page, "watch", _target(web_mesh), submitted["taskId"], "0", True)
    assert watched["streamId"], "tidemesh-stream-id is not readable by the page (not in expose-headers?)"
    assert watched["refreshed"] is True, watched["refreshed"]
    events = watched["events"]
    assert events[-1]["final"] and events[-1]["state"] == SUCCEEDED, events
    assert [e["text"] for e in events if e["text"] is not None and not e["final"]] == ["one", "two", "three"]
    sequences = [int(e["sequence"]) for e in events]
    assert sequences == sorted(set(sequences)), sequences


async def test_resume_after_a_sequence_is_exact(page: Page, web_mesh: WebMesh) -> None:
    """Watching again after_sequence=N yields exactly the events after N, to the final one."""
    task = {"tenant": "web", "text": "p q r s", "chunks": 4, "chunkDelayMs": 0}
    submitted = await _call(page, "submitStream", _target(web_mesh), task)
    full = (await _call(page, "watch", _target(web_mesh), submitted["taskId"]))["events"]
    assert full[-1]["final"], full
    middle = len(full) // 2
    resumed = await _call(page, "watch", _target(web_mesh), submitted["taskId"], full[middle]["sequence"])
    assert resumed["events"] == full[middle + 1 :]


async def test_invalid_argument_details_are_readable(page: Page, web_mesh: WebMesh) -> None:
    """An unknown kind is INVALID_ARGUMENT, and the page reads tidemesh-field and tidemesh-error-class."""
    error = await _call(page, "submitUnknownKind", _target(web_mesh), "web")
    assert error == {
        "code": "InvalidArgument",
        "message": error["message"],
        "field": "spec.kind",
        "errorClass": "invalid_input",
    }
    assert error["message"].startswith("spec.kind:"), error


async def test_grpc_web_json_is_refused_as_invalid_argument_in_the_browser(page: Page, web_mesh: WebMesh) -> None:
    """connect-web's JSON codec gets INVALID_ARGUMENT naming content-type and the supported types, not 503."""
    error = await _call(page, "meshStatusAsJson", _target(web_mesh))
    assert error is not None and error["code"] == "InvalidArgument", error
    assert error["field"] == "content-type" and error["errorClass"] == "invalid_input", error
    assert "application/grpc-web+proto" in error["message"], error


async def test_rest_replica_header_is_readable(page: Page, web_mesh: WebMesh) -> None:
    """A cross-origin fetch can read x-tidemesh-replica (which gateway replica answered)."""
    assert (await _call(page, "replica", _target(web_mesh))) is not None


async def test_the_pinned_browser_verifies_the_edge(browser: Browser, web_mesh: WebMesh) -> None:
    """With certificate errors not ignored, the pinned Chromium loads a page from Envoy's HTTPS port."""
    context = await browser.new_context(ignore_https_errors=False)
    try:
        response = await (await context.new_page()).goto(f"{web_mesh.base_url}/v1/openapi.json")
        assert response is not None and response.url.startswith("https://")
    finally:
        await context.close()


async def test_a_browser_without_the_pin_refuses_the_edge(chromium: Path, web_mesh: WebMesh) -> None:
    """A Chromium without the SPKI pin refuses Envoy's certificate: the pin, not a blanket bypass, lets it in."""
    async with async_playwright() as playwright:
        bare = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            context = await bare.new_context(ignore_https_errors=False)
            with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
                await (await context.new_page()).goto(f"{web_mesh.base_url}/v1/openapi.json")
        finally:
            await bare.close()


# --- the same edge contract without a browser (runs even where Chromium cannot be installed) -----------


async def test_grpc_web_json_gets_a_trailers_only_invalid_argument(web_mesh: WebMesh) -> None:
    """A raw application/grpc-web+json POST is answered by Envoy at once: HTTP 200, grpc-status 3, CORS headers."""
    headers = {
        "content-type": "application/grpc-web+json",
        "x-grpc-web": "1",
        "origin": "http://page.test",
        "x-api-key": web_mesh.admin_key,
    }
    url = f"{web_mesh.base_url}/mesh.v1.GatewayService/GetMeshStatus"
    async with aiohttp.ClientSession() as session, session.post(url, data=b"{}", headers=headers) as response:
        assert response.status == 200
        assert response.headers["grpc-status"] == "3"
        assert response.headers["tidemesh-field"] == "content-type"
        assert "application/grpc-web+proto" in response.headers["grpc-message"]
        assert response.headers["access-control-allow-origin"] == "http://page.test"
        exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
        assert {"grpc-status", "grpc-message", "tidemesh-field", "tidemesh-error-class"} <= exposed


async def test_preflight_allows_what_a_browser_client_sends(web_mesh: WebMesh) -> None:
    """Envoy's preflight answer allows connect-web's headers plus x-api-key and the session header."""
    wanted = ["content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "x-api-key", "x-tidemesh-session"]
    headers = {
        "origin": "http://page.test",
        "access-control-request-method": "POST",
        "access-control-request-headers": ",".join(wanted),
    }
    url = f"{web_mesh.base_url}/mesh.v1.GatewayService/SubmitTask"
    async with aiohttp.ClientSession() as session, session.options(url, headers=headers) as response:
        assert response.status == 200
        allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
        assert set(wanted) <= allowed, allowed
