"""The Flet app's web build in Chromium: `tidemesh desktop --web` against an auth-on mesh (the
admin key in its environment, never in argv), Flutter's semantics tree enabled, controls found by
role and label; a `stream` task submitted from the form and its partial outputs followed to
SUCCEEDED; axe-core's WCAG A+AA rules, whose one finding is Flet's own `meta-viewport` (its
index.html disables zooming), recorded here rather than hidden."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from clients.sdk import Client
from mesh.v1 import task_pb2
from tests.browser.conftest import WebMesh
from tests.conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

AXE = Path(__file__).with_name("vendor") / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]  # axe's tags are not cumulative
TIDEMESH = Path(sys.executable).with_name("tidemesh")
# Flet's index.html ships `<meta name="viewport" content="... user-scalable=no">`: axe's
# meta-viewport rule (WCAG 1.4.4) flags it. It is Flet's page, not ours; the test pins that it is
# the only finding, so any violation the app itself adds fails.
FLET_OWN_FINDINGS = ["meta-viewport"]


async def _serving_url(process: asyncio.subprocess.Process) -> str:
    """The URL `tidemesh desktop --web` prints once its port accepts connections."""
    assert process.stdout is not None
    while line := (await process.stdout.readline()).decode():
        if found := re.search(r"serving the app at (\S+)", line):
            return found.group(1)
    raise AssertionError(f"tidemesh desktop exited ({await process.wait()}) before serving")


@pytest.fixture(scope="module")
async def desktop_url(web_mesh: WebMesh) -> AsyncIterator[str]:
    """`tidemesh desktop --web` on a free port; the credential comes from $TIDEMESH_API_KEY."""
    endpoint = web_mesh.base_url.removeprefix("https://")
    argv = [str(TIDEMESH), "desktop", "--web", "--port", "0", "--endpoint", endpoint, "--cacert", web_mesh.ca_path]
    env = {**os.environ, "TIDEMESH_API_KEY": web_mesh.admin_key}
    process = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.PIPE)
    assert web_mesh.admin_key not in " ".join(argv)
    try:
        yield await asyncio.wait_for(_serving_url(process), timeout=30)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                code = await process.wait()
            assert code == 0, f"tidemesh desktop exited {code} on SIGTERM"


@pytest.fixture
async def app_page(browser: Browser, desktop_url: str) -> AsyncIterator[Page]:
    """The app loaded with Flutter's semantics tree on (a click on its placeholder turns it on)."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(desktop_url)
        placeholder = page.locator("flt-semantics-placeholder")
        await placeholder.wait_for(state="attached", timeout=30_000)
        await placeholder.dispatch_event("click")
        yield page
    finally:
        await context.close()


async def _axe(page: Page) -> list[dict[str, Any]]:
    await page.add_script_tag(path=str(AXE))
    options = {"runOnly": {"type": "tag", "values": WCAG_TAGS}}
    result = await page.evaluate("options => axe.run(document, options)", options)
    violations: list[dict[str, Any]] = result["violations"]
    return violations


async def test_a_stream_task_submitted_from_the_form_is_followed_to_succeeded(app_page: Page) -> None:
    """Live overview, then New task: a stream task's partial outputs (sequence, confidence) arrive and it succeeds."""
    page = app_page  # Flutter exposes each control by its semantics label (the app's labels say it in words)
    await expect(page.get_by_text("connection: live")).to_be_attached(timeout=15_000)
    await expect(page.get_by_text(re.compile(r"^worker \S+ alive, pools ")).first).to_be_attached()

    await page.get_by_role("button", name="New task").click()
    for name, typed in (("Text", "tide pools at dawn"), ("Payload JSON", '{"chunks": 4, "chunk_delay_ms": 150}')):
        field = page.get_by_role("textbox", name=name)
        await field.click()
        await expect(field).to_be_focused()  # keys sent before Flutter focuses the field are lost
        await field.press_sequentially(typed, delay=20)
        await expect(field).to_have_value(typed)
    await expect(page.get_by_role("button", name="Priority")).to_be_attached()
    await page.get_by_role("button", name="Submit", exact=True).click()

    await expect(page.get_by_text(re.compile(r"^stream of \S+: streaming$"))).to_be_attached(timeout=10_000)
    finished = page.get_by_text(re.compile(r"^stream of \S+: finished, SUCCEEDED$"))
    await expect(finished).to_be_attached(timeout=20_000)
    task_id = str(await finished.text_content()).split()[2].rstrip(":")
    # One line per partial output, each with its confidence: chunk i of 4 says i/4.
    confidences = [await c.text_content() for c in await page.get_by_text(re.compile(r"^confidence \d\.\d\d$")).all()]
    assert confidences == [f"confidence {i / 4:.2f}" for i in range(1, 5)], confidences
    labels = [await s.text_content() for s in await page.get_by_text(re.compile(r"^sequence \d+$")).all()]
    numbers = [int(str(label).split()[-1]) for label in labels]
    assert numbers == sorted(set(numbers)) and len(numbers) >= 5, numbers  # in order, no gap, no duplicate
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers

    # The task list has it, and a filter that names its kind and state keeps it.
    await page.get_by_role("button", name="Tasks").click()
    row = page.get_by_text(f"task {task_id}, stream, SUCCEEDED", exact=True)
    await expect(row).to_be_attached(timeout=10_000)
    search = page.get_by_role("textbox", name="Filter tasks")
    await search.click()
    await expect(search).to_be_focused()
    await search.press_sequentially("stream succeeded", delay=20)
    await expect(row).to_be_attached()
    await search.press_sequentially(" nothing-matches", delay=20)
    await expect(page.get_by_text("no task matches")).to_be_attached()


async def _dead_letter(web_mesh: WebMesh) -> str:
    """An embed task naming a model nobody has, in tenant default: dead-lettered on its first attempt."""
    endpoint = web_mesh.base_url.removeprefix("https://")
    async with Client(endpoint, tenant="default", credential=web_mesh.admin_key, ca=web_mesh.ca_path) as client:
        task_id = (await client.submit("embed", {"text": "hello", "model": "no-such-model"})).task_id

        async def dead() -> bool:
            return (await client.get(task_id)).state == task_pb2.TASK_STATE_DEAD_LETTERED

        await eventually(dead, what=f"{task_id} dead-lettered")
    return task_id


async def test_replaying_a_dead_letter_asks_first_and_cancel_is_the_default(app_page: Page, web_mesh: WebMesh) -> None:
    """Replay opens a modal whose focused answer is Cancel (Enter keeps the letter); Replay then runs it as <id>-r."""
    task_id = await _dead_letter(web_mesh)
    page = app_page
    await page.get_by_role("button", name="Dead letters").click()
    await expect(page.get_by_text(re.compile(rf"^dead letter {task_id}, embed: "))).to_be_attached(timeout=10_000)
    await page.get_by_role("button", name="Replay", exact=True).click()

    await expect(page.get_by_role("alertdialog")).to_be_attached()
    question = re.compile(rf"^Replay dead letter {task_id} \(embed, tenant default\)\? It runs again as a new task")
    await expect(page.get_by_text(question)).to_be_attached()
    cancel = page.get_by_role("button", name="Cancel", exact=True)
    await expect(cancel).to_be_focused()
    await page.keyboard.press("Enter")  # the default answer
    await expect(cancel).not_to_be_attached()
    await expect(page.get_by_text(re.compile("^replayed "))).not_to_be_attached()

    await page.get_by_role("button", name="Replay", exact=True).click()
    await page.get_by_role("button", name="Replay", exact=True).last.click()
    await expect(page.get_by_text(f"replayed {task_id} as {task_id}-r")).to_be_attached(timeout=10_000)


async def test_axe_finds_only_flets_own_meta_viewport(app_page: Page) -> None:
    """WCAG 2.0-2.2 A+AA over the app with semantics on: the only violation is Flet's page's meta-viewport."""
    await expect(app_page.get_by_role("button", name="Overview")).to_be_attached(timeout=15_000)
    await expect(app_page.get_by_role("button", name="Theme")).to_be_attached()  # the theme switch, labelled
    violations = await _axe(app_page)
    assert [v["id"] for v in violations] == FLET_OWN_FINDINGS, violations
