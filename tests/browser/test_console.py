"""The web console in Chromium, served by the mesh itself at /console/ on Envoy's TLS port, signed
in to an auth-on mesh: sign-in and a refused credential, the live overview, a streaming task's
partial outputs in order (and resumed after a pause without gap or duplicate), deep links,
keyboard-only use with visible focus, the theme switch, reduced motion, and axe-core's WCAG
2.0/2.1/2.2 A+AA rules on every view in every theme (0 violations)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from clients.sdk import Client
from mesh.schemas import compile_proto, message_class
from mesh.v1 import kind_pb2
from tests.browser._pa11y import Pa11yFailed, View, ensure_pa11y, pa11y_run, trusting_home
from tests.browser.conftest import CHROMIUM_ARGS, WebMesh
from tests.conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

AXE = Path(__file__).with_name("vendor") / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]  # axe's tags are not cumulative
THEMES = ["light", "dark", "high-contrast"]
REVIEW_OPTGROUPS = "Guideline1_3.1_3_1.H85.2"  # pa11y's htmlcs: "group related options with optgroup"
TENANT = "console"


async def _rest(web_mesh: WebMesh, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
    """One REST call to the mesh's public port with the admin key: (status, body text)."""
    tls = ssl.create_default_context(cafile=web_mesh.ca_path)
    headers = {"authorization": f"ApiKey {web_mesh.admin_key}"}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session,
        session.request(method, f"{web_mesh.base_url}{path}", json=body, headers=headers) as response,
    ):
        return response.status, await response.text()


async def _submit(web_mesh: WebMesh, kind: str, payload: dict[str, Any], tenant: str = TENANT) -> str:
    body = {"kind": kind, "tenant": tenant, "priority": "interactive", "payload": payload}
    status, text = await _rest(web_mesh, "POST", "/v1/tasks", body)
    assert status == 201, text
    return str(json.loads(text)["task_id"])


async def _submit_stream(web_mesh: WebMesh, words: list[str], delay_ms: int) -> str:
    """A `stream` task (one partial output per word) submitted over REST; its task id."""
    payload = {"text": " ".join(words), "chunks": len(words), "chunk_delay_ms": delay_ms}
    return await _submit(web_mesh, "stream", payload)


async def _dead_letter(web_mesh: WebMesh, tenant: str) -> str:
    """An embed task naming a model nobody has: dead-lettered (poison input) on its first attempt; its id."""
    task_id = await _submit(web_mesh, "embed", {"text": "hello", "model": "no-such-model"}, tenant)

    async def dead() -> bool:
        return "dead_lettered" in (await _rest(web_mesh, "GET", f"/v1/tasks/{task_id}"))[1].lower()

    await eventually(dead, what=f"{task_id} dead-lettered")
    return task_id


async def _sign_in(page: Page, web_mesh: WebMesh, path: str = "/console/") -> None:
    await page.goto(f"{web_mesh.base_url}{path}")
    await page.get_by_label("API key or JWT").fill(web_mesh.admin_key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh context (empty session and local storage) with reduced motion not requested."""
    context = await browser.new_context(ignore_https_errors=False)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def test_sign_in_refuses_a_bad_key_and_keeps_a_good_one_in_the_tab(page: Page, web_mesh: WebMesh) -> None:
    """A refused key is an error tied to its field; a good one lives in sessionStorage only; sign out forgets it."""
    await page.goto(f"{web_mesh.base_url}/console/")
    field = page.get_by_label("API key or JWT")
    await field.fill("tmk_nobody_0000")
    await page.get_by_role("button", name="Sign in").click()
    error = page.locator("#credential-error")
    await expect(error).to_contain_text("the mesh refused this credential")
    await expect(field).to_have_attribute("aria-invalid", "true")
    assert "credential-error" in (await field.get_attribute("aria-describedby") or "")
    await expect(field).to_be_focused()

    await field.fill(web_mesh.admin_key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('tidemesh.credential')") == web_mesh.admin_key
    assert web_mesh.admin_key not in page.url
    assert web_mesh.admin_key not in json.dumps(await page.evaluate("Object.assign({}, localStorage)"))

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('tidemesh.credential')") is None


async def test_the_workers_and_inference_views_show_their_details_live(page: Page, web_mesh: WebMesh) -> None:
    """/console/workers: each worker with host and pid, and the scaler's replicas per pool; /console/inference:
    each backend with its circuit as a word, its models and memory."""
    await _sign_in(page, web_mesh, "/console/workers")
    workers = page.get_by_role("table", name="Workers")
    await expect(workers.get_by_text("✓ alive")).not_to_have_count(0)
    await expect(workers).to_contain_text("(pid ")
    await expect(page.get_by_role("table", name="Replicas per pool, as the scaler recommends")).to_contain_text(
        "inference"
    )
    await page.get_by_role("link", name="Inference").click()
    backends = page.get_by_role("table", name="Inference backends")
    await expect(backends.get_by_role("row")).not_to_have_count(1)  # a header and at least one backend
    await expect(backends).to_contain_text("closed")
    await expect(page.get_by_role("link", name="Inference")).to_have_attribute("aria-current", "page")


async def test_the_overview_shows_live_queue_figures(page: Page, web_mesh: WebMesh) -> None:
    """WatchMeshStatus fills queues per pool and class and workers, and keeps updating (a running task shows)."""
    await _sign_in(page, web_mesh)
    queues = page.get_by_role("table", name="Queue depth per pool and class")
    await expect(queues.get_by_role("row")).not_to_have_count(0)
    await expect(page.get_by_role("table", name="Workers").get_by_text("✓ alive")).not_to_have_count(0)
    await expect(page.get_by_role("table", name="Inference backends")).to_be_visible()
    first = await page.locator("#overview-updated").get_attribute("data-updated")
    await _submit_stream(web_mesh, ["slow"] * 3, 700)
    # The running task's queue: 1 in flight on a row of the interactive class, then back to 0.
    interactive = queues.locator("tr", has=page.get_by_role("cell", name="interactive", exact=True))
    in_flight = interactive.locator("td:nth-child(4)")
    await expect(in_flight.filter(has_text="1")).to_have_count(1, timeout=10_000)
    assert await page.locator("#overview-updated").get_attribute("data-updated") != first
    await expect(in_flight.filter(has_text="1")).to_have_count(0, timeout=10_000)


async def test_a_deep_link_opens_the_task_and_its_outputs_stream_in_order(page: Page, web_mesh: WebMesh) -> None:
    """/console/tasks/<id> opened signed out asks for a credential, then shows that task; its partial
    outputs arrive in order in a polite, busy-while-streaming log, each with its sequence number."""
    words = ["alpha", "beta", "gamma", "delta"]
    task_id = await _submit_stream(web_mesh, words, 250)
    await _sign_in(page, web_mesh, f"/console/tasks/{task_id}")
    assert page.url == f"{web_mesh.base_url}/console/tasks/{task_id}"
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Task {task_id}")
    log = page.get_by_role("log")
    await expect(log).to_have_attribute("aria-live", "polite")
    await expect(page.locator("#stream-status")).to_contain_text("Finished — succeeded", timeout=15_000)
    await expect(log).to_have_attribute("aria-busy", "false")
    assert await log.locator(".chunk .text").all_inner_texts() == words
    sequences = [int(s) for s in await log.locator(".chunk").evaluate_all("els => els.map(e => e.dataset.sequence)")]
    assert sequences == sorted(set(sequences)), sequences
    assert await log.locator(".chunk time").count() == len(words)
    await expect(page.locator("#task-timeline")).to_contain_text("✓ succeeded")
    assert await page.title() == f"Task {task_id} — tidemesh console"


async def test_pausing_and_resuming_the_stream_leaves_no_gap_or_duplicate(page: Page, web_mesh: WebMesh) -> None:
    """The pause control closes the stream; resuming reopens it after the last sequence shown: every output once."""
    words = [f"w{i}" for i in range(6)]
    task_id = await _submit_stream(web_mesh, words, 300)
    await _sign_in(page, web_mesh, f"/console/tasks/{task_id}")
    chunks = page.get_by_role("log").locator(".chunk .text")
    await expect(chunks.first).to_be_visible(timeout=10_000)
    await page.get_by_role("button", name="Pause stream").click()
    await expect(page.get_by_role("button", name="Resume stream")).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#stream-status")).to_contain_text("Paused after #")
    shown_while_paused = await chunks.count()
    assert shown_while_paused < len(words)
    await page.get_by_role("button", name="Resume stream").click()
    await expect(page.locator("#stream-status")).to_contain_text("Finished — succeeded", timeout=15_000)
    assert await chunks.all_inner_texts() == words


async def test_the_tasks_view_lists_filters_and_ties_errors_to_fields(page: Page, web_mesh: WebMesh) -> None:
    """ListTasks for a tenant, filtered by the mesh (a stream task older than a page of echoes is on
    the first filtered page), deep-linkable, linking to each task; each refused value errors on its field."""
    tenant = "console-filter"
    task_id = await _submit(web_mesh, "stream", {"text": "one", "chunks": 1}, tenant)
    echoes = await asyncio.gather(*(_submit(web_mesh, "echo", {"text": str(i)}, tenant) for i in range(26)))
    await _sign_in(page, web_mesh, "/console/tasks")
    tenant_field = page.get_by_label("Tenant")
    await tenant_field.fill("bad tenant!")
    await page.get_by_role("button", name="Show").click()
    await expect(tenant_field).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#tenant-error")).not_to_be_empty()
    await tenant_field.fill(tenant)
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#tasks-summary")).to_contain_text("25 tasks on page 1; older tasks on the next page")
    await expect(page.get_by_role("link", name=task_id)).to_have_count(0)  # 26 echoes are newer
    assert "tenant=console-filter" in page.url

    await page.goto(f"{web_mesh.base_url}/console/tasks?tenant={tenant}&kind=stream&state=succeeded")
    await expect(page.get_by_role("link", name=task_id)).to_be_visible(timeout=10_000)
    await expect(page.locator("#tasks-summary")).to_have_text("1 matching task on page 1.")
    await expect(page.get_by_label("Kind")).to_have_value("stream")
    await expect(page.get_by_label("State")).to_have_value("succeeded")
    await page.get_by_label("State").select_option("failed")
    await expect(page.locator("#tasks-summary")).to_have_text("0 matching tasks on page 1.")
    assert "state=failed" in page.url and "kind=stream" in page.url
    await page.get_by_label("Kind").fill("echo")
    await page.get_by_label("State").select_option("")
    await expect(page.get_by_role("link", name=echoes[-1])).to_be_visible()
    assert "state=" not in page.url

    kind = page.get_by_label("Kind")
    await kind.fill("Not A Kind")
    await page.get_by_role("button", name="Show").click()
    await expect(kind).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#kind-error")).to_contain_text("kind: a kind is")
    await expect(kind).to_be_focused()
    await kind.fill("stream")
    await page.get_by_label("Created after").fill("2026-12-03T10:00")
    await page.get_by_label("Created before").fill("2026-12-03T09:00")
    await page.get_by_role("button", name="Show").click()
    before = page.get_by_label("Created before")
    await expect(before).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#before-error")).to_contain_text("later than created_after")
    await expect(kind).not_to_have_attribute("aria-invalid", "true")
    await before.fill("")
    await page.get_by_label("Created after").fill("")
    await page.get_by_role("button", name="Show").click()
    await page.get_by_role("link", name=task_id).click()
    await expect(page).to_have_url(f"{web_mesh.base_url}/console/tasks/{task_id}")


_CONTROLS = "a[href], button:not([disabled]), input, select, textarea, [tabindex='0']"


# How a control is named in a failure: tag#id[href] and the start of its text.
_NAME = "e => `${e.tagName.toLowerCase()}#${e.id}[${e.getAttribute('href') ?? ''}] ${e.textContent.slice(0, 30)}`"


async def _tab_walk(page: Page) -> None:
    """Tab from the top reaches every visible control, each with a visible focus outline and a target >= 24x24."""
    wanted = await page.locator(_CONTROLS).evaluate_all(f"els => els.filter(e => e.checkVisibility()).map({_NAME})")
    await page.locator("body").focus()
    reached: list[str] = []
    probe = f"""() => {{ const e = document.activeElement, s = getComputedStyle(e), r = e.getBoundingClientRect();
        return {{name: ({_NAME})(e), outline: s.outlineStyle, width: parseFloat(s.outlineWidth),
                w: r.width, h: r.height, type: e.type}}; }}"""
    for _ in range(len(wanted)):  # one Tab per control: a control reached late means one missed
        await page.keyboard.press("Tab")
        focused: dict[str, Any] = await page.evaluate(probe)
        # A date-time input's day, month, year, hour and minute are Tab stops of their own, inside it.
        for _segment in range(8):
            if not (reached and focused["name"] == reached[-1] and focused["type"] == "datetime-local"):
                break
            await page.keyboard.press("Tab")
            focused = await page.evaluate(probe)
        where = "\n".join(map(str, [page.url, focused, "reached:", *reached, "wanted:", *wanted]))
        assert focused["outline"] != "none" and focused["width"] >= 2, where
        assert focused["w"] >= 24 and focused["h"] >= 24, focused
        reached.append(focused["name"])
    assert reached == wanted  # every control, in document order


async def test_keyboard_alone_reaches_every_control_with_visible_focus(page: Page, web_mesh: WebMesh) -> None:
    """On the sign-in, overview, tasks and task views, Tab reaches every control and shows where focus is."""
    task_id = await _submit_stream(web_mesh, ["k"], 0)
    await page.goto(f"{web_mesh.base_url}/console/")
    await _tab_walk(page)
    await _sign_in(page, web_mesh)
    for path in ("/console/", "/console/tasks", f"/console/tasks?tenant={TENANT}", f"/console/tasks/{task_id}"):
        await page.goto(f"{web_mesh.base_url}{path}")
        await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        await _tab_walk(page)


async def test_the_theme_is_remembered_and_reduced_motion_stops_the_fade(browser: Browser, web_mesh: WebMesh) -> None:
    """A chosen theme survives a reload (localStorage); streamed output fades in unless reduced motion is asked for."""
    context = await browser.new_context(reduced_motion="no-preference", color_scheme="light")
    try:
        page = await context.new_page()
        task_id = await _submit_stream(web_mesh, ["fade"], 0)
        await _sign_in(page, web_mesh, f"/console/tasks/{task_id}")
        chunk = page.locator(".chunk").first
        await expect(chunk).to_be_visible(timeout=10_000)
        assert await chunk.evaluate("e => getComputedStyle(e).animationName") == "tm-fade-in"
        await page.emulate_media(reduced_motion="reduce")
        assert await chunk.evaluate("e => getComputedStyle(e).animationName") == "none"

        background = "() => getComputedStyle(document.documentElement).backgroundColor"
        assert await page.evaluate(background) == "rgb(255, 255, 255)"  # light follows the system
        await page.get_by_label("Theme").select_option("high-contrast")
        await page.reload()
        await expect(page.get_by_label("Theme")).to_have_value("high-contrast")
        assert await page.evaluate("document.documentElement.dataset.theme") == "high-contrast"
        assert await page.evaluate(background) == "rgb(0, 0, 0)"
    finally:
        await context.close()


@pytest.fixture
async def axe_page(browser: Browser) -> AsyncIterator[Page]:
    # bypass_csp: the console's CSP (script-src 'self') would refuse the injected axe script.
    context = await browser.new_context(reduced_motion="reduce", bypass_csp=True)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def _axe(page: Page) -> list[dict[str, Any]]:
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    options = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
    result = await page.evaluate("options => axe.run(document, options)", options)
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
    ]


async def test_axe_finds_no_wcag_violations_on_any_view_in_any_theme(axe_page: Page, web_mesh: WebMesh) -> None:
    """axe-core (vendored, offline), WCAG 2.0/2.1/2.2 A and AA, reduced motion: 0 violations on each view and theme."""
    page = axe_page
    task_id = await _submit_stream(web_mesh, ["x", "y"], 0)
    findings: dict[str, Any] = {}

    async def check(name: str) -> None:
        if violations := await _axe(page):
            findings[name] = violations

    await page.goto(f"{web_mesh.base_url}/console/")
    await page.get_by_label("API key or JWT").fill("tmk_nobody_0000")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#credential-error")).not_to_be_empty()  # the form with its error showing
    for theme in THEMES:
        await page.get_by_label("Theme").select_option(theme)
        await check(f"sign-in/{theme}")
    await page.get_by_label("API key or JWT").fill(web_mesh.admin_key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    views = {
        "overview": ("/console/", page.locator("#overview-updated[data-updated]")),
        "tasks": (f"/console/tasks?tenant={TENANT}", page.get_by_role("link", name=task_id)),
        "task": (f"/console/tasks/{task_id}", page.get_by_text("Finished — succeeded")),
    }
    for view, (path, ready) in views.items():
        # In-page navigation, as the console's links do: no reload, so axe is injected once.
        await page.evaluate(
            "p => { history.pushState(null, '', p); dispatchEvent(new PopStateEvent('popstate')) }", path
        )
        await expect(ready).to_be_visible(timeout=10_000)
        for theme in THEMES:
            await page.get_by_label("Theme").select_option(theme)
            await check(f"{view}/{theme}")
    assert not findings, json.dumps(findings, indent=1)


# ---- slice 2: dead letters, task actions, the generated submit form ----

DIALOG = "dialog[open]"


async def test_a_dead_letter_is_diagnosed_and_replayed_through_its_confirmation(page: Page, web_mesh: WebMesh) -> None:
    """The list and the diagnosis show the record (runbook linked, commands copyable); Replay asks first —
    Cancel does nothing — and once confirmed links to `<id>-r`; Retry on the task is the same replay."""
    tenant = "console-dlq"
    task_id = await _dead_letter(web_mesh, tenant)
    await _sign_in(page, web_mesh, f"/console/dlq?tenant={tenant}")
    row = page.get_by_role("row", name=task_id)
    await expect(row).to_contain_text("poison-input")
    await expect(row).to_contain_text("no-such-model")
    await row.get_by_role("link", name=task_id).click()
    await expect(page).to_have_url(f"{web_mesh.base_url}/console/dlq/{task_id}")
    diagnosis = page.locator("#dlq-diagnosis")
    for text in ("embed", "poison-input", "no-such-model", "Attempts", "Fingerprint", "Trace id"):
        await expect(diagnosis).to_contain_text(text)
    runbook = page.get_by_role("link", name="docs/runbooks/poison-input.md")
    assert await runbook.get_attribute("href") == "/console/runbooks/poison-input.md"
    assert (await _rest(web_mesh, "GET", "/console/runbooks/poison-input.md"))[0] == 200
    commands = await page.locator("#dlq-commands code").all_inner_texts()
    assert f"tidemesh dlq show {task_id}" in commands and f"tidemesh dash --dlq {task_id}" in commands
    await expect(page.get_by_role("button", name="Copy")).to_have_count(len(commands))

    replay = page.get_by_role("button", name="Replay…")
    await replay.click()
    dialog = page.get_by_role("dialog", name=f"Replay task {task_id}?")
    await expect(dialog).to_contain_text(f"{task_id}-r")
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(page.locator(DIALOG)).to_have_count(0)
    await expect(replay).to_be_focused()
    await expect(page.locator("#replayed-task")).to_have_count(0)
    status, _ = await _rest(web_mesh, "GET", f"/v1/tasks/{task_id}-r")
    assert status == 404  # Cancel replayed nothing

    await replay.click()
    await dialog.get_by_role("button", name=f"Replay {task_id}").click()
    link = page.locator("#replayed-task")
    await expect(link).to_have_text(f"{task_id}-r")
    await expect(diagnosis.get_by_role("link", name=f"{task_id}-r")).to_be_visible()  # "replayed as"
    await link.click()
    await expect(page).to_have_url(f"{web_mesh.base_url}/console/tasks/{task_id}-r")
    # The replay fails the same way (the model is still unknown): Retry on its page replays it in turn.
    await expect(page.locator("#stream-status")).to_contain_text("dead-lettered", timeout=15_000)
    await page.get_by_role("button", name="Retry (replay)…").click()
    await page.get_by_role("button", name=f"Replay {task_id}-r").click()
    await expect(page.locator("#replayed-task")).to_have_text(f"{task_id}-r-r")


async def test_purge_shows_its_scope_and_deletes_only_when_confirmed(page: Page, web_mesh: WebMesh) -> None:
    """A tenant-wide purge names the count and the ids before it runs; Escape cancels it; one record's
    purge names that record; confirmed, the records are gone."""
    tenant = "console-purge"
    first, second = [await _dead_letter(web_mesh, tenant) for _ in range(2)]
    await _sign_in(page, web_mesh, f"/console/dlq?tenant={tenant}")
    await expect(page.get_by_role("link", name=second)).to_be_visible()
    purge = page.get_by_role("button", name=f"Purge tenant {tenant}…")
    await purge.click()
    dialog = page.get_by_role("dialog")
    await expect(dialog.locator("#purge-scope")).to_contain_text(f"2 dead-letter records of tenant {tenant}")
    assert sorted(await dialog.locator("#purge-ids code").all_inner_texts()) == sorted([first, second])
    await page.keyboard.press("Escape")
    await expect(page.locator(DIALOG)).to_have_count(0)
    await expect(purge).to_be_focused()
    await expect(page.get_by_role("link", name=first)).to_be_visible()  # nothing purged

    await page.get_by_role("link", name=first).click()
    await page.get_by_role("button", name="Purge…").click()
    await expect(page.get_by_role("dialog").locator("#purge-scope")).to_contain_text(f"1 dead-letter record: {first}")
    await page.get_by_role("button", name=f"Purge {first}").click()
    await expect(page.locator("#dlq-outcome")).to_contain_text("Purged 1 record")
    await page.get_by_role("link", name="All dead letters").click()
    await page.get_by_label("Tenant").fill(tenant)
    await page.get_by_role("button", name="Show").click()
    await expect(page.get_by_role("link", name=second)).to_be_visible()
    await expect(page.get_by_role("link", name=first)).to_have_count(0)
    await page.get_by_role("button", name=f"Purge tenant {tenant}…").click()
    await page.get_by_role("button", name="Purge 1 record").click()
    await expect(page.locator("#dlq-outcome")).to_contain_text(f"Purged 1 dead-letter records of tenant {tenant}")
    await expect(page.get_by_role("link", name=second)).to_have_count(0)
    await expect(page.locator("#dlq-outcome")).to_be_focused()  # the purge button went with the records


async def test_a_running_task_is_cancelled_through_its_confirmation(page: Page, web_mesh: WebMesh) -> None:
    """Cancel on a streaming task asks first (Cancel focused), then CancelTask ends it cancelled."""
    task_id = await _submit_stream(web_mesh, [f"c{i}" for i in range(30)], 300)
    await _sign_in(page, web_mesh, f"/console/tasks/{task_id}")
    await expect(page.get_by_role("log").locator(".chunk").first).to_be_visible(timeout=10_000)
    await page.get_by_role("button", name="Cancel task…").click()
    dialog = page.get_by_role("dialog", name=f"Cancel task {task_id}?")
    await expect(dialog.get_by_role("button", name="Cancel", exact=True)).to_be_focused()
    await dialog.get_by_role("button", name=f"Cancel {task_id}").click()
    await expect(page.locator("#stream-status")).to_contain_text("Finished — cancelled", timeout=10_000)
    await expect(page.get_by_role("button", name="Cancel task…")).to_be_hidden()
    await expect(page.locator("#task-outcome")).to_be_focused()  # not dropped to the page's start with its button
    assert await page.get_by_role("log").locator(".chunk").count() < 30


async def test_a_stream_task_is_submitted_from_the_generated_form(page: Page, web_mesh: WebMesh) -> None:
    """The stream kind's form comes from StreamInput's descriptor (labelled fields with their types); bad
    input is an error on its field before anything is sent; a good one opens the task, whose outputs stream."""
    await _sign_in(page, web_mesh, "/console/submit?kind=stream")
    text = page.get_by_label("text (string)")
    chunks = page.get_by_label("chunks (uint32)")
    await expect(text).to_be_visible()
    await expect(page.get_by_label("chunk_delay_ms (uint32)")).to_be_visible()
    await expect(page.get_by_label("Kind")).to_have_value("stream")
    await text.fill("one two three")
    await chunks.fill("three")
    rank = page.get_by_label("Priority within the class")
    await rank.fill("101")
    await page.get_by_role("button", name="Submit").click()
    await expect(chunks).to_have_attribute("aria-invalid", "true")
    await expect(rank).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#submit-rank-error")).to_contain_text("0 to 100")
    await expect(chunks).to_be_focused()  # the first field in error
    error = page.locator("#input-chunks-error")
    await expect(error).to_contain_text("must be a whole number from 0 to 4294967295")
    assert "input-chunks-error" in (await chunks.get_attribute("aria-describedby") or "")
    assert page.url.endswith("/console/submit?kind=stream")  # nothing was sent

    await chunks.fill("3")
    await page.get_by_label("chunk_delay_ms (uint32)").fill("150")
    await page.get_by_label("Tenant").fill(TENANT)
    await page.get_by_label("Priority class").select_option(label="interactive")
    await rank.fill("7")
    await page.get_by_label("Idempotency key").fill("console-form-1")
    await page.get_by_role("button", name="Submit").click()
    await expect(page).to_have_url(re.compile(r"/console/tasks/[^/?]+$"))
    task_url = page.url
    await expect(page.locator("#stream-status")).to_contain_text("Finished — succeeded", timeout=15_000)
    assert await page.get_by_role("log").locator(".chunk .text").all_inner_texts() == ["one", "two", "three"]
    await expect(page.locator("#task-summary")).to_contain_text("interactive")
    # What only the mesh checks (chunks 1..10000) comes back on its field too (tidemesh-field).
    await page.go_back()
    await page.get_by_label("text (string)").fill("one two three")
    await page.get_by_label("Tenant").fill(TENANT)
    await page.get_by_role("button", name="Submit").click()
    await expect(page.get_by_label("chunks (uint32)")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#input-chunks-error")).to_contain_text("spec.payload.stream.chunks")
    # The same request under the same idempotency key: the mesh answers with the first task, which opens.
    await page.get_by_label("chunks (uint32)").fill("3")
    await page.get_by_label("chunk_delay_ms (uint32)").fill("150")
    await page.get_by_label("Priority class").select_option(label="interactive")
    await page.get_by_label("Priority within the class").fill("7")
    await page.get_by_label("Idempotency key").fill("console-form-1")
    await page.get_by_role("button", name="Submit").click()
    await expect(page).to_have_url(task_url)


GREET = """syntax = "proto3";
package console.v1;
message Greeting { string name = 1; uint32 times = 2; repeated string tags = 3; bool loud = 4; }
"""


async def test_a_user_kinds_form_comes_from_its_registered_schema(
    page: Page, web_mesh: WebMesh, tmp_path: Path
) -> None:
    """For a user kind the form is built from the schema registry's descriptor set (GetSchema); the task
    submitted carries the message packed in `custom`, readable with the registered type."""
    source = tmp_path / "console" / "v1" / "greet.proto"
    source.parent.mkdir(parents=True)
    source.write_text(GREET)
    descriptor_set = compile_proto(source, [tmp_path])
    declaration = kind_pb2.KindDeclaration(
        name="console.greet", input_type="console.v1.Greeting", output_type="console.v1.Greeting"
    )
    declaration.steps.add(name="greet")
    endpoint = web_mesh.base_url.removeprefix("https://")
    async with Client(endpoint, tenant=TENANT, credential=web_mesh.admin_key, ca=web_mesh.ca_path) as client:
        await client.register_schema("console.v1.Greeting", descriptor_set)
        await client.register_kind(declaration)
        await _sign_in(page, web_mesh, "/console/submit?kind=console.greet")
        await expect(page.get_by_label("Kind")).to_have_value("console.greet")
        await page.get_by_label("name (string)").fill("Ada")
        times = page.get_by_label("times (uint32)")
        await times.fill("2.5")
        await page.get_by_role("button", name="Submit").click()
        await expect(times).to_have_attribute("aria-invalid", "true")
        await times.fill("2")
        await page.get_by_label("tags (repeated string)").fill("first\nsecond")
        await page.get_by_label("loud (bool)").select_option("true")
        await page.get_by_label("Tenant").fill(TENANT)
        await page.get_by_role("button", name="Submit").click()
        await expect(page).to_have_url(re.compile(r"/console/tasks/[^/?]+$"))
        await expect(page.locator("#task-summary")).to_contain_text("console.greet")
        task_id = page.url.rsplit("/", 1)[1]
        spec = (await client.get(task_id)).spec
        await client.cancel(task_id)  # no worker serves the kind here
    assert spec.payload.custom.type_url == "type.googleapis.com/console.v1.Greeting"
    greeting = message_class(descriptor_set, "console.v1.Greeting").FromString(spec.payload.custom.value)
    assert (greeting.name, greeting.times, list(greeting.tags), greeting.loud) == ("Ada", 2, ["first", "second"], True)  # type: ignore[attr-defined]


async def test_axe_finds_no_wcag_violations_on_the_new_views_and_the_dialog(axe_page: Page, web_mesh: WebMesh) -> None:
    """WCAG 2.0-2.2 A+AA, reduced motion: workers, inference, dead letters, a diagnosis, its open confirmation,
    and the submit form with a field error — 0 violations in light, dark and high contrast."""
    page = axe_page
    task_id = await _dead_letter(web_mesh, "console-axe")
    await _sign_in(page, web_mesh)
    findings: dict[str, Any] = {}

    async def go(path: str) -> None:
        """In-page navigation (as a console link does): no reload, so axe is injected once."""
        await page.evaluate(
            "path => { history.pushState(null, '', path); dispatchEvent(new PopStateEvent('popstate')) }", path
        )

    async def check(name: str) -> None:
        for theme in THEMES:  # as the theme switch sets it (the switch itself is inert behind a dialog)
            await page.evaluate("theme => { document.documentElement.dataset.theme = theme }", theme)
            if violations := await _axe(page):
                findings[f"{name}/{theme}"] = violations

    for view in ("workers", "inference"):
        await go(f"/console/{view}")
        await expect(page.locator("#overview-updated[data-updated]")).to_be_visible()
        await page.get_by_role("button", name="Pause updates").click()  # a still page to check
        await check(view)
    await go("/console/dlq?tenant=console-axe")
    await expect(page.get_by_role("link", name=task_id)).to_be_visible()
    await check("dlq")
    await go(f"/console/dlq/{task_id}")
    await expect(page.locator("#dlq-commands code").first).to_be_visible()
    await check("dead-letter")
    await page.get_by_role("button", name="Replay…").click()
    await expect(page.locator(DIALOG)).to_be_visible()
    await check("dialog")
    await page.keyboard.press("Escape")
    await go("/console/submit?kind=stream")
    await page.get_by_label("chunks (uint32)").fill("-1")
    await page.get_by_role("button", name="Submit").click()
    await expect(page.locator("#input-chunks-error")).not_to_be_empty()
    await check("submit")
    assert not findings, json.dumps(findings, indent=1)


async def test_keyboard_alone_walks_the_new_views_and_the_dialog_traps_focus(page: Page, web_mesh: WebMesh) -> None:
    """Tab reaches every control of the workers, inference, dead-letter, diagnosis and submit views; the dialog
    opens from the keyboard with Cancel focused, keeps Tab and Shift+Tab inside, and Escape returns focus to its
    opener."""
    task_id = await _dead_letter(web_mesh, "console-keys")
    await _sign_in(page, web_mesh)
    for path, ready in (
        ("/console/workers", page.locator("#overview-updated[data-updated]")),
        ("/console/inference", page.locator("#overview-updated[data-updated]")),
        ("/console/dlq?tenant=console-keys", page.get_by_role("link", name=task_id)),
        (f"/console/dlq/{task_id}", page.locator("#dlq-commands code").first),
        ("/console/submit?kind=stream", page.get_by_label("chunks (uint32)")),
    ):
        await page.goto(f"{web_mesh.base_url}{path}")
        await expect(ready).to_be_visible()
        await _tab_walk(page)

    await page.goto(f"{web_mesh.base_url}/console/dlq/{task_id}")
    replay = page.get_by_role("button", name="Replay…")
    await replay.focus()
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    cancel, confirm = (
        dialog.get_by_role("button", name="Cancel"),
        dialog.get_by_role("button", name=f"Replay {task_id}"),
    )
    await expect(cancel).to_be_focused()
    for key, target in (("Tab", confirm), ("Tab", cancel), ("Shift+Tab", confirm), ("Shift+Tab", cancel)):
        await page.keyboard.press(key)
        await expect(target).to_be_focused()
    assert await page.evaluate("document.activeElement.closest('dialog') !== null")
    await page.keyboard.press("Escape")
    await expect(page.locator(DIALOG)).to_have_count(0)
    await expect(replay).to_be_focused()
    await expect(page.locator("#replayed-task")).to_have_count(0)


IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


async def test_screenshots_of_the_overview_and_a_streaming_task(
    browser: Browser, web_mesh: WebMesh, tmp_path: Path
) -> None:
    """The README's pictures: the overview and a task streaming, 1280x720, light theme, reduced motion.
    Written to docs/images with TIDEMESH_SCREENSHOTS=1 (else to a temporary folder)."""
    folder = IMAGES if os.environ.get("TIDEMESH_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(
        viewport={"width": 1280, "height": 720}, color_scheme="light", reduced_motion="reduce", device_scale_factor=1
    )
    try:
        page = await context.new_page()
        words = "the tide turns and every partial output arrives in order".split()
        task_id = await _submit_stream(web_mesh, words, 600)
        await _sign_in(page, web_mesh)
        await expect(page.get_by_role("table", name="Workers").get_by_text("✓ alive")).not_to_have_count(0)
        await page.screenshot(path=folder / "console-overview.png")
        await page.goto(f"{web_mesh.base_url}/console/tasks/{task_id}")
        await expect(page.get_by_role("log").locator(".chunk")).to_have_count(3, timeout=10_000)
        await page.screenshot(path=folder / "console-task-stream.png")
        await _rest(web_mesh, "POST", f"/v1/tasks/{task_id}/cancel", {})  # not left for the mesh to drain
    finally:
        await context.close()
    for name in ("console-overview.png", "console-task-stream.png"):
        header = (folder / name).read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(header[16:20], "big") == 1280, name


async def test_text_at_200_percent_needs_no_horizontal_scrolling_at_1280_px(
    browser: Browser, web_mesh: WebMesh
) -> None:
    """With the browser's text size doubled (root font 32 px: the console sizes in rem), every main view
    at 1280 px wide still fits its width: no horizontal scroll, nothing pushed off the side (the tables too)."""
    dead = await _dead_letter(web_mesh, "console-zoom")
    task_id = await _submit_stream(web_mesh, ["zoomed", "text"], 0)
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, reduced_motion="reduce")
    try:
        page = await context.new_page()
        await _sign_in(page, web_mesh)
        views = {
            "/console/": page.locator("#overview-updated[data-updated]"),
            f"/console/tasks?tenant={TENANT}": page.get_by_role("link", name=task_id),
            f"/console/tasks/{task_id}": page.get_by_text("Finished — succeeded"),
            "/console/workers": page.locator("#overview-updated[data-updated]"),
            "/console/inference": page.locator("#overview-updated[data-updated]"),
            "/console/dlq?tenant=console-zoom": page.get_by_role("link", name=dead),
            f"/console/dlq/{dead}": page.locator("#dlq-commands code").first,
            "/console/submit?kind=stream": page.get_by_label("chunks (uint32)"),
        }
        overflowing: dict[str, Any] = {}
        for path, ready in views.items():
            await page.goto(f"{web_mesh.base_url}{path}")
            await expect(ready).to_be_visible(timeout=10_000)
            await page.evaluate("document.documentElement.style.fontSize = '200%'")
            assert await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") == 28  # 0.875rem
            measured = await page.evaluate(
                """() => ({scroll: document.documentElement.scrollWidth, width: window.innerWidth,
                    wide: [...document.querySelectorAll('main *')]
                        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                        .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)})"""
            )
            if measured["scroll"] > measured["width"] or measured["wide"]:
                overflowing[path] = measured
        assert not overflowing, json.dumps(overflowing, indent=1)
    finally:
        await context.close()


async def test_the_script_arrives_gzipped_through_envoy(page: Page, web_mesh: WebMesh) -> None:
    """Chromium asks for gzip, and the bundled script comes through Envoy with Content-Encoding: gzip."""
    async with page.expect_response(re.compile(r"/console/assets/main-.*\.js$")) as script:
        await page.goto(f"{web_mesh.base_url}/console/")
    response = await script.value
    headers = await response.all_headers()
    assert headers.get("content-encoding") == "gzip", headers
    assert "accept-encoding" in headers.get("vary", "").lower()
    await expect(page.get_by_label("API key or JWT")).to_be_visible()  # and it ran


async def test_a_renewed_credential_moves_onto_the_open_stream_in_band(page: Page, web_mesh: WebMesh) -> None:
    """Renew credential checks the new one, moves the task's open stream to it (RefreshStreamCredential) and
    keeps it: the old key is then revoked and the stream goes on — one WatchTask call, no reconnect."""
    endpoint = web_mesh.base_url.removeprefix("https://")
    async with Client(endpoint, tenant=TENANT, credential=web_mesh.admin_key, ca=web_mesh.ca_path) as client:
        old = await client.create_api_key(TENANT, ["read", "submit"], name="console-old")
        new = await client.create_api_key(TENANT, ["read", "submit"], name="console-new")
        words = [f"r{i}" for i in range(8)]
        task_id = await _submit_stream(web_mesh, words, 400)
        watches: list[str] = []
        page.on("request", lambda r: watches.append(r.url) if r.url.endswith("GatewayService/WatchTask") else None)
        await page.goto(f"{web_mesh.base_url}/console/tasks/{task_id}")
        await page.get_by_label("API key or JWT").fill(old.api_key)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("log").locator(".chunk").first).to_be_visible(timeout=10_000)

        await page.get_by_role("button", name="Renew credential").click()
        field = page.get_by_label("New API key or JWT")
        await expect(field).to_be_focused()
        await field.fill("tmk_nobody_0000")
        await page.keyboard.press("Enter")
        await expect(field).to_have_attribute("aria-invalid", "true")  # refused, the dialog stays
        await field.fill(new.api_key)
        await page.get_by_role("button", name="Renew", exact=True).click()
        await expect(page.locator("#connection")).to_contain_text("1 open stream moved to it in-band")
        assert await page.evaluate("sessionStorage.getItem('tidemesh.credential')") == new.api_key
        await client.revoke_credential(old.key_id, reason="rotated")
        await expect(page.locator("#stream-status")).to_contain_text("Finished — succeeded", timeout=15_000)
    assert await page.get_by_role("log").locator(".chunk .text").all_inner_texts() == words
    assert len(watches) == 1, watches  # the stream was never closed and reopened


class _Cutter:
    """A TCP relay in front of Envoy whose open connections the test can cut: a real dropped connection
    (the browser sees its stream break mid-response), where going offline leaves open streams alone."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> _Cutter:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers.update({writer, upstream_writer})

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.transport.abort()
                self._writers.discard(sink)

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_a_dropped_connection_resumes_without_gap_or_duplicate(page: Page, web_mesh: WebMesh) -> None:
    """The connection under a stream is cut mid-response: the console says so and reopens WatchTask after the
    last sequence shown — every output exactly once, in order."""
    words = [f"d{i}" for i in range(8)]
    task_id = await _submit_stream(web_mesh, words, 300)
    async with _Cutter(int(web_mesh.base_url.rsplit(":", 1)[1])) as cutter:
        relayed = WebMesh(f"https://127.0.0.1:{cutter.port}", web_mesh.admin_key, web_mesh.spki_pin)
        watches: list[str] = []
        page.on("request", lambda r: watches.append(r.url) if r.url.endswith("GatewayService/WatchTask") else None)
        await _sign_in(page, relayed, f"/console/tasks/{task_id}")
        chunks = page.get_by_role("log").locator(".chunk")
        await expect(chunks.nth(1)).to_be_visible(timeout=10_000)
        cutter.cut()
        await expect(page.locator("#stream-status")).to_contain_text("Connection lost", timeout=10_000)
        await expect(page.locator("#stream-status")).to_contain_text("Finished — succeeded", timeout=15_000)
    assert len(watches) >= 2, watches  # the stream was reopened
    assert await chunks.locator(".text").all_inner_texts() == words
    sequences = [int(s) for s in await chunks.evaluate_all("els => els.map(e => e.dataset.sequence)")]
    assert sequences == sorted(set(sequences)), sequences


_LOCAL_TIME = """ms => { const d = new Date(Date.now() + ms), p = n => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`; }"""


async def test_the_tasks_view_filters_by_creation_time(page: Page, web_mesh: WebMesh) -> None:
    """Created after / before (local time, kept in the URL) narrow the page to a window around a task."""
    task_id = await _submit_stream(web_mesh, ["when"], 0)
    await _sign_in(page, web_mesh)
    hour_ago, in_an_hour = [await page.evaluate(_LOCAL_TIME, ms) for ms in (-3_600_000, 3_600_000)]
    await page.goto(f"{web_mesh.base_url}/console/tasks?tenant={TENANT}&after={in_an_hour}")
    await expect(page.locator("#tasks-summary")).to_contain_text("0 matching tasks on page 1")
    await expect(page.get_by_role("link", name=task_id)).to_have_count(0)
    await page.get_by_label("Created after").fill(hour_ago)
    await page.get_by_label("Created before").fill(in_an_hour)
    await expect(page.get_by_role("link", name=task_id)).to_be_visible()
    assert f"after={hour_ago.replace(':', '%3A')}" in page.url


@pytest.mark.timeout(120)  # some 20 pages, two runners each
async def test_pa11y_axe_and_htmlcs_find_no_wcag2aa_error_on_any_view(
    web_mesh: WebMesh, chromium: Path, tmp_path: Path
) -> None:
    """pa11y with both its runners (axe, HTML_CodeSniffer), WCAG 2 AA, on every view (some in every theme),
    over TLS through Envoy, in Chromium trusting the mesh's root from its NSS store: no error; without the
    root Chromium refuses the edge."""
    ensure_pa11y()
    task_id = await _submit_stream(web_mesh, ["p", "q"], 0)  # a finished stream for the task view
    letter = await _dead_letter(web_mesh, "console-pa11y")
    paused = ("click element #pause-overview",)  # a still page to check
    # Every view as the system has it (light, here); the task list and a task, whose states carry the
    # themes' colours, in the dark and high-contrast themes too (axe checks every view in every theme).
    themed = ("system", "dark", "high-contrast")
    views = [
        View("sign-in", "/console/", "#credential", signed_in=False),
        View("overview", "/console/", "#overview-updated[data-updated]", paused),
        View("tasks", f"/console/tasks?tenant={TENANT}", "#tasks-results table", themes=themed),
        View("task", f"/console/tasks/{task_id}", "#task-output[aria-busy=false]", themes=themed),
        View("submit", "/console/submit?kind=stream", "#input-chunks"),
        View("workers", "/console/workers", "#overview-updated[data-updated]", paused),
        View("inference", "/console/inference", "#overview-updated[data-updated]", paused),
        View("dead letters", "/console/dlq?tenant=console-pa11y", "#dlq-results table"),
        View("dead letter", f"/console/dlq/{letter}", "#dlq-commands code"),
    ]
    home = trusting_home(tmp_path / "home", Path(web_mesh.ca_path))
    results = await pa11y_run(web_mesh.base_url, web_mesh.admin_key, chromium, CHROMIUM_ARGS, home, views)
    assert sorted(results) == sorted(f"{view.name}/{theme}" for view in views for theme in view.themes)
    # Errors fail, and so does every warning but one: HTML_CodeSniffer asks a person to check each
    # select for groups of options that belong in an optgroup (H85.2); none of the console's lists has any.
    found = {
        name: [
            (i["runner"], i["type"], i["code"], i["selector"], i["message"][:160])
            for i in r["issues"]
            if i["type"] == "error" or not i["code"].endswith(REVIEW_OPTGROUPS)
        ]
        for name, r in results.items()
    }
    assert not any(found.values()), json.dumps(found, indent=1)
    assert any(i["code"].endswith(REVIEW_OPTGROUPS) for i in results["tasks/dark"]["issues"])  # htmlcs ran there
    assert all(r["url"].startswith(web_mesh.base_url) for r in results.values())  # over TLS, through Envoy

    (tmp_path / "bare").mkdir()  # the same browser without the mesh's root: the edge is refused
    with pytest.raises(Pa11yFailed, match="ERR_CERT_AUTHORITY_INVALID"):
        await pa11y_run(web_mesh.base_url, "", chromium, CHROMIUM_ARGS, tmp_path / "bare", views[:1])
