"""The Flet app's web build in Chromium: `tidemesh desktop --web` against an auth-on mesh (the
admin key in its environment, never in argv), Flutter's semantics tree enabled, controls found by
role and label; a `stream` task submitted from the form generated from its input message (and a
user kind's, from the schema registry) and its partial outputs followed to SUCCEEDED; the mesh's
task filters; routes in the URL opening their view; axe-core's WCAG A+AA rules, whose one finding
is Flet's own `meta-viewport` (its index.html disables zooming), recorded here rather than hidden."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from clients.sdk import Client
from mesh.schemas import compile_proto, message_class
from mesh.v1 import kind_pb2, task_pb2
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


@contextlib.asynccontextmanager
async def _opened(browser: Browser, url: str) -> AsyncIterator[Page]:
    """The app loaded at `url` with Flutter's semantics tree on (a click on its placeholder turns it on)."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(url)
        placeholder = page.locator("flt-semantics-placeholder")
        await placeholder.wait_for(state="attached", timeout=30_000)
        await placeholder.dispatch_event("click")
        yield page
    finally:
        await context.close()


@pytest.fixture
async def app_page(browser: Browser, desktop_url: str) -> AsyncIterator[Page]:
    async with _opened(browser, desktop_url) as page:
        yield page


async def _type(page: Page, name: str, typed: str) -> None:
    """Replace a text field's value by typing, as a person would (keys sent before Flutter focuses it are lost)."""
    field = _textbox(page, name)
    await field.click()
    await expect(field).to_be_focused()
    for attempt in range(3):  # a select-all Flutter has not taken yet leaves the old text: clear again
        await page.keyboard.press("Control+a")
        await page.keyboard.press("Backspace")
        try:
            await expect(field).to_have_value("", timeout=2_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
    await field.press_sequentially(typed, delay=20)
    await expect(field).to_have_value(typed)


def _textbox(page: Page, label: str) -> Locator:
    """A text field by its label (an empty focused field's name goes on with its hint)."""
    return page.get_by_role("textbox", name=re.compile(rf"^{re.escape(label)}( |$)"))


async def _choose(page: Page, dropdown: str, option: str) -> None:
    """Open a dropdown (a button with its label) and pick an option (a button in its menu)."""
    await page.get_by_role("button", name=dropdown, exact=True).click()
    await page.get_by_role("button", name=option, exact=True).click()


async def _axe(page: Page) -> list[dict[str, Any]]:
    await page.add_script_tag(path=str(AXE))
    options = {"runOnly": {"type": "tag", "values": WCAG_TAGS}}
    result = await page.evaluate("options => axe.run(document, options)", options)
    violations: list[dict[str, Any]] = result["violations"]
    return violations


async def test_a_stream_task_submitted_from_the_form_is_followed_to_succeeded(app_page: Page) -> None:
    """Live overview, then New task: the form is StreamInput's fields; a bad number is refused on its field
    before anything is sent; then the task's partial outputs (sequence, confidence) arrive and it succeeds,
    at its own route; the mesh's kind and state filters find it in the task list."""
    page = app_page  # Flutter exposes each control by its semantics label (the app's labels say it in words)
    await expect(page.get_by_text("connection: live")).to_be_attached(timeout=15_000)
    await expect(page.get_by_text(re.compile(r"^worker \S+ alive, pools ")).first).to_be_attached()

    await page.get_by_role("button", name="New task").click()
    await expect(page.get_by_text("input message mesh.v1.StreamInput")).to_be_attached(timeout=10_000)
    for label in ("text (string)", "chunks (uint32)", "chunk_delay_ms (uint32)"):  # from the descriptor
        await expect(_textbox(page, label)).to_be_attached()
    await expect(page.get_by_role("button", name="Priority")).to_be_attached()
    await _type(page, "chunks (uint32)", "four")
    await page.get_by_role("button", name="Submit", exact=True).click()
    chunks = _textbox(page, "chunks (uint32)")
    await expect(chunks).to_have_attribute("aria-description", "chunks must be a whole number from 0 to 4294967295")
    await expect(page.get_by_text(re.compile(r"^✖ not submitted: 1 field to fix"))).to_be_attached()
    await expect(chunks).to_be_focused()  # the first field in error takes the focus

    await _type(page, "chunks (uint32)", "4")
    await _type(page, "chunk_delay_ms (uint32)", "150")
    await _type(page, "text (string)", "tide pools at dawn")
    await page.get_by_role("button", name="Submit", exact=True).click()

    await expect(page.get_by_text(re.compile(r"^stream of \S+: streaming$"))).to_be_attached(timeout=10_000)
    finished = page.get_by_text(re.compile(r"^stream of \S+: finished, SUCCEEDED$"))
    await expect(finished).to_be_attached(timeout=20_000)
    task_id = str(await finished.text_content()).split()[2].rstrip(":")
    await expect(page).to_have_url(re.compile(rf"/tasks/{task_id}$"))  # the view's route, in the URL
    # One line per partial output, each with its confidence: chunk i of 4 says i/4.
    confidences = [await c.text_content() for c in await page.get_by_text(re.compile(r"^confidence \d\.\d\d$")).all()]
    assert confidences == [f"confidence {i / 4:.2f}" for i in range(1, 5)], confidences
    labels = [await s.text_content() for s in await page.get_by_text(re.compile(r"^sequence \d+$")).all()]
    numbers = [int(str(label).split()[-1]) for label in labels]
    assert numbers == sorted(set(numbers)) and len(numbers) >= 5, numbers  # in order, no gap, no duplicate
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers

    # The task list has it; the mesh's filters keep it (stream, succeeded) or leave it out (echo).
    await page.get_by_role("button", name="Tasks").click()
    row = page.get_by_text(f"task {task_id}, stream, SUCCEEDED", exact=True)
    await expect(row).to_be_attached(timeout=10_000)
    await _type(page, "Kind filter", "echo")
    await page.keyboard.press("Enter")
    await expect(row).not_to_be_attached()
    await _type(page, "Kind filter", "stream")
    await page.keyboard.press("Enter")
    await expect(row).to_be_attached()
    await _choose(page, "State filter", "failed")
    await expect(page.get_by_text("no task matches the kind and state filters")).to_be_attached()
    await _choose(page, "State filter", "succeeded")
    await expect(row).to_be_attached()
    search = page.get_by_role("textbox", name="Filter tasks")
    await search.click()
    await expect(search).to_be_focused()
    await search.press_sequentially("nothing-matches", delay=20)
    await expect(page.get_by_text("no task matches", exact=True)).to_be_attached()


GREET = """syntax = "proto3";
package desktop.v1;
message Greeting { string name = 1; uint32 times = 2; repeated string tags = 3; bool loud = 4; }
"""


async def test_a_user_kinds_form_comes_from_its_registered_schema(
    browser: Browser, desktop_url: str, web_mesh: WebMesh, tmp_path: Path
) -> None:
    """A kind registered with its schema gets a form from the registry's descriptor set (text, a number,
    lines for a repeated field, a check box for a bool); the task carries the message packed in `custom`."""
    source = tmp_path / "desktop" / "v1" / "greet.proto"
    source.parent.mkdir(parents=True)
    source.write_text(GREET)
    descriptor_set = compile_proto(source, [tmp_path])
    declaration = kind_pb2.KindDeclaration(
        name="desktop.greet", input_type="desktop.v1.Greeting", output_type="desktop.v1.Greeting"
    )
    declaration.steps.add(name="greet")
    endpoint = web_mesh.base_url.removeprefix("https://")
    async with (
        Client(endpoint, tenant="default", credential=web_mesh.admin_key, ca=web_mesh.ca_path) as client,
        _opened(browser, desktop_url) as page,
    ):
        await client.register_schema("desktop.v1.Greeting", descriptor_set)
        await client.register_kind(declaration)
        await page.get_by_role("button", name="New task").click()
        await expect(page.get_by_text("input message mesh.v1.StreamInput")).to_be_attached(timeout=10_000)
        await _choose(page, "Kind", "desktop.greet (user kind)")
        await expect(page.get_by_text("input message desktop.v1.Greeting")).to_be_attached(timeout=10_000)
        await _type(page, "name (string)", "Ada")
        await _type(page, "times (uint32)", "2")
        tags = _textbox(page, "tags (repeated string)")
        await tags.click()
        await expect(tags).to_be_focused()
        await tags.press_sequentially("first", delay=20)
        await page.keyboard.press("Enter")  # a new line: one tag per line
        await tags.press_sequentially("second", delay=20)
        await expect(tags).to_have_value("first\nsecond")
        loud = page.get_by_role("checkbox", name="loud (bool)")
        await loud.click()
        await expect(loud).to_be_checked()
        await page.get_by_role("button", name="Submit", exact=True).click()
        heading = page.get_by_text(re.compile(r"^Task \S+$"))
        await expect(heading).to_be_attached(timeout=10_000)
        task_id = str(await heading.text_content()).split()[1]
        spec = (await client.get(task_id)).spec
        await client.cancel(task_id)  # no worker serves the kind here
    assert spec.kind == "desktop.greet" and spec.payload.custom.type_url == "type.googleapis.com/desktop.v1.Greeting"
    greeting = message_class(descriptor_set, "desktop.v1.Greeting").FromString(spec.payload.custom.value)
    got = (greeting.name, greeting.times, list(greeting.tags), greeting.loud)  # type: ignore[attr-defined]
    assert got == ("Ada", 2, ["first", "second"], True), got


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


async def test_a_route_in_the_url_opens_its_view(browser: Browser, desktop_url: str, web_mesh: WebMesh) -> None:
    """/tasks/<id> opens that task's live stream, /dlq/<id> that dead letter with its replay; a route to no
    view lands on the overview saying which routes there are; `--open` refuses one before starting."""
    endpoint = web_mesh.base_url.removeprefix("https://")
    async with Client(endpoint, tenant="default", credential=web_mesh.admin_key, ca=web_mesh.ca_path) as client:
        task_id = (await client.submit("stream", {"text": "deep link", "chunks": 2})).task_id
    letter_id = await _dead_letter(web_mesh)
    async with _opened(browser, f"{desktop_url}tasks/{task_id}") as page:
        await expect(page.get_by_text(f"Task {task_id}", exact=True)).to_be_attached(timeout=15_000)
        await expect(page.get_by_text(f"stream of {task_id}: finished, SUCCEEDED")).to_be_attached(timeout=15_000)
        await page.get_by_role("button", name="Dead letters").click()
        await expect(page).to_have_url(f"{desktop_url}dlq")
        await page.go_back()  # the browser's history walks the app's routes
        await expect(page.get_by_text(f"Task {task_id}", exact=True)).to_be_attached(timeout=10_000)
    async with _opened(browser, f"{desktop_url}dlq/{letter_id}") as page:
        await expect(page.get_by_text(f"Dead letter {letter_id}", exact=True)).to_be_attached(timeout=15_000)
        await expect(page.get_by_text(re.compile(rf"^dead letter {letter_id}, embed: POISON_INPUT "))).to_be_attached()
        await expect(page.get_by_role("button", name="Replay", exact=True)).to_be_attached()
    async with _opened(browser, f"{desktop_url}no/such/view") as page:
        await expect(
            page.get_by_text(re.compile(r"^✖ no view at '/no/such/view': the app has /, tasks"))
        ).to_be_attached(timeout=15_000)
    refused = await asyncio.create_subprocess_exec(
        str(TIDEMESH), "desktop", "--web", "--open", "tasks/a.b", stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(refused.communicate(), 30)
    assert refused.returncode == 2 and b"invalid argument: --open: no view at 'tasks/a.b'" in err, err


async def test_axe_finds_only_flets_own_meta_viewport(app_page: Page) -> None:
    """WCAG 2.0-2.2 A+AA over the app with semantics on: the only violation is Flet's page's meta-viewport."""
    await expect(app_page.get_by_role("button", name="Overview")).to_be_attached(timeout=15_000)
    await expect(app_page.get_by_role("button", name="Theme")).to_be_attached()  # the theme switch, labelled
    violations = await _axe(app_page)
    assert [v["id"] for v in violations] == FLET_OWN_FINDINGS, violations
