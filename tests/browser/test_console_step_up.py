"""The web console on a mesh with step-up on, in Chromium through Envoy: purging a dead letter meets the
mesh's step-up challenge and the console asks for a one-time code in a modal dialog (a labelled field,
focused; Tab kept inside; Escape cancels and purges nothing, focus back on Purge); a wrong code is an
error on the field and the dialog stays; a good code (pyotp, from the operator's enrolled seed) buys a
token and the purge goes through, without signing out. axe (every theme) and pa11y (both runners) find
nothing on the open dialog with its error showing (what pa11y leaves to a person is checked another way)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from clients.design import contrast
from clients.sdk import Client
from mesh.errors import NotFound
from mesh.fabric._deadletters import DeadLetterStore, actions_for, runbook_for
from mesh.supervisor import MeshSecurity, Supervisor, admin_key, build_plan
from mesh.v1 import deadletter_pb2
from tests.browser._pa11y import View, ensure_pa11y, pa11y_run, trusting_home
from tests.browser.conftest import CHROMIUM_ARGS, edge_spki_pin
from tests.browser.test_console import REVIEW_OPTGROUPS, THEMES, _axe

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TENANT = "console-step-up"
DIALOG = "dialog[open]"


@dataclass(frozen=True)
class SteppedMesh:
    base_url: str
    endpoint: str
    state: Path
    nats_servers: str
    ca_path: str
    spki_pin: str
    admin_key: str = field(repr=False)


@dataclass(frozen=True)
class Operator:
    key: str = field(repr=False)
    secret: str = field(repr=False)


@pytest.fixture(scope="module")
async def stepped_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SteppedMesh]:
    """A mesh with auth and step-up on; no workers: the dead letters are put on record by the test."""
    state = tmp_path_factory.mktemp("console-step-up")
    plan = build_plan(state, public_port=0, workers=0, auth=True, step_up=True)
    async with Supervisor(plan, health_timeout_s=60, grace_s=2.0):
        pin = edge_spki_pin("127.0.0.1", plan.public_port, plan.ca_path)
        yield SteppedMesh(
            f"https://127.0.0.1:{plan.public_port}",
            f"127.0.0.1:{plan.public_port}",
            state,
            plan.nats_servers,
            str(plan.ca_path),
            pin,
            admin_key(state),
        )


@pytest.fixture(scope="module")
async def browser(chromium: Path, stepped_mesh: SteppedMesh) -> AsyncIterator[Browser]:
    """Chromium that accepts exactly this mesh edge's key (see tests/browser/conftest.py)."""
    args = [*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={stepped_mesh.spki_pin}"]
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=args, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    # bypass_csp: axe is injected into the page (the console's CSP allows 'self' scripts only).
    context = await browser.new_context(reduced_motion="reduce", bypass_csp=True)
    try:
        yield await context.new_page()
    finally:
        await context.close()


def code(secret: str, periods_ahead: int = 0) -> str:
    totp = pyotp.TOTP(secret)
    return totp.generate_otp(totp.timecode(time.time()) + periods_ahead)


def wrong(secret: str) -> str:
    """A code the gateway takes for no period it accepts now."""
    accepted = {code(secret, offset) for offset in range(-2, 3)}
    return next(c for c in (f"{n:06d}" for n in range(0, 10**6, 7919)) if c not in accepted)


async def operator(mesh: SteppedMesh) -> Operator:
    """An operator key of TENANT with a TOTP second factor enrolled and confirmed (this period's code used)."""
    async with Client(mesh.endpoint, credential=mesh.admin_key) as admin:
        key = (await admin.create_api_key(TENANT, ["operator"], name="console step-up")).api_key
    async with Client(mesh.endpoint, tenant=TENANT, credential=key) as client:
        enrolment = await client.enroll_totp()
        await client.confirm_totp(code(enrolment.secret))
    return Operator(key, enrolment.secret)


async def dead_letter(mesh: SteppedMesh) -> str:
    """A dead letter of TENANT on record (as the scheduler writes one); its task id."""
    task_id = f"purge-me-{uuid.uuid4().hex[:8]}"
    letter = deadletter_pb2.DeadLetter(
        task_id=task_id,
        classification=deadletter_pb2.FAILURE_CLASS_POISON_INPUT,
        error_class="invalid_input",
        message="bad input",
        attempts=1,
    )
    letter.spec.task_id, letter.spec.kind, letter.spec.tenant = task_id, "echo", TENANT
    commands, letter.dashboard_view = actions_for(task_id, letter.classification)
    letter.cli_commands.extend(commands)
    letter.runbook = runbook_for(letter.classification)
    async with await MeshSecurity(mesh.state).connect_nats(mesh.nats_servers, "cli", "test-console-step-up") as nc:
        await DeadLetterStore(nc.jetstream(), nc).record(letter, alert=False)
    return task_id


async def on_record(mesh: SteppedMesh, task_id: str) -> bool:
    async with Client(mesh.endpoint, credential=mesh.admin_key) as admin:
        try:
            await admin.dead_letter(task_id)
        except NotFound:
            return False
    return True


async def sign_in(page: Page, mesh: SteppedMesh, key: str, path: str) -> None:
    await page.goto(f"{mesh.base_url}{path}")
    await page.get_by_label("API key or JWT").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def ask_to_purge(page: Page, task_id: str) -> None:
    """Purge…, then the confirmation's Purge: the mesh's challenge opens the dialog for a code."""
    await page.get_by_role("button", name="Purge…").click()
    await page.get_by_role("dialog").get_by_role("button", name=f"Purge {task_id}").click()
    await expect(page.get_by_role("dialog", name="A second factor for dlq.purge")).to_be_visible()


async def test_a_purge_asks_for_a_code_refuses_a_wrong_one_and_goes_through_with_a_good_one(
    page: Page, stepped_mesh: SteppedMesh
) -> None:
    """Escape cancels (nothing purged, focus back on Purge…, still signed in); Tab stays in the dialog; a
    wrong code is an error on the field, focused; a good one purges the record."""
    who = await operator(stepped_mesh)
    task_id = await dead_letter(stepped_mesh)
    await sign_in(page, stepped_mesh, who.key, f"/console/dlq/{task_id}")
    await expect(page.locator("#dlq-commands code").first).to_be_visible()
    purge = page.get_by_role("button", name="Purge…")

    await ask_to_purge(page, task_id)
    dialog = page.get_by_role("dialog", name="A second factor for dlq.purge")
    await expect(dialog).to_contain_text(f"dlq:{task_id}")
    code_field = dialog.get_by_label("One-time code")
    await expect(code_field).to_be_focused()
    assert await code_field.get_attribute("autocomplete") == "one-time-code"
    cancel, verify = dialog.get_by_role("button", name="Cancel"), dialog.get_by_role("button", name="Verify code")
    for key, target in (("Tab", cancel), ("Tab", verify), ("Tab", code_field), ("Shift+Tab", verify)):
        await page.keyboard.press(key)
        await expect(target).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.locator(DIALOG)).to_have_count(0)
    await expect(purge).to_be_focused()
    await expect(page.locator("#dlq-outcome")).to_contain_text("Nothing purged: the second factor was cancelled")
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()  # a challenge is no refused key
    assert await on_record(stepped_mesh, task_id)

    await ask_to_purge(page, task_id)
    await code_field.fill(wrong(who.secret))
    await verify.click()
    error = page.locator("#step-up-code-error")
    await expect(error).to_contain_text("the one-time code is wrong or too old")
    await expect(code_field).to_have_attribute("aria-invalid", "true")
    assert "step-up-code-error" in (await code_field.get_attribute("aria-describedby") or "")
    await expect(code_field).to_be_focused()
    assert await on_record(stepped_mesh, task_id)

    await code_field.fill(code(who.secret, 1))
    await page.keyboard.press("Enter")
    await expect(page.locator("#dlq-outcome")).to_contain_text("Purged 1 record")
    await expect(page.locator(DIALOG)).to_have_count(0)
    assert not await on_record(stepped_mesh, task_id)


async def test_a_tenant_purge_asks_too(page: Page, stepped_mesh: SteppedMesh) -> None:
    """The tenant-wide purge meets its own challenge (dlq:tenant=…) and goes through with a code."""
    who = await operator(stepped_mesh)
    task_ids = [await dead_letter(stepped_mesh) for _ in range(2)]
    await sign_in(page, stepped_mesh, who.key, f"/console/dlq?tenant={TENANT}")
    await page.get_by_role("button", name=f"Purge tenant {TENANT}…").click()
    await page.get_by_role("dialog").get_by_role("button", name="Purge 2 records").click()
    dialog = page.get_by_role("dialog", name="A second factor for dlq.purge")
    await expect(dialog).to_contain_text(f"dlq:tenant={TENANT}")
    await dialog.get_by_label("One-time code").fill(code(who.secret, 1))
    await dialog.get_by_role("button", name="Verify code").click()
    await expect(page.locator("#dlq-outcome")).to_contain_text(f"dead-letter records of tenant {TENANT}")
    assert not [t for t in task_ids if await on_record(stepped_mesh, t)]


# What pa11y cannot decide on an open modal dialog, each checked here another way instead:
# - axe's colour contrast of a wrapped line ("elmPartiallyObscuring": axe's model of the page does not
#   know the top layer, so each line of the text seems to lie over other page content): the colours
#   are measured from the computed styles against the dialog's own opaque background;
# - HTML_CodeSniffer's reflow review of `position: fixed` (every modal <dialog> is): the dialog is
#   shown to fit a 320 px wide viewport;
# - HTML_CodeSniffer's H98 on autocomplete="one-time-code": an HTML autofill token (it lets a phone
#   offer the code from a message), outside WCAG 1.3.5's list of personal-data purposes, kept on purpose.
UNDECIDED = {
    ("color-contrast", "#step-up-code-hint"),
    ("color-contrast", "#step-up-code-error"),
    ("WCAG2AA.Principle1.Guideline1_4.1_4_10.C32,C31,C33,C38,SCR34,G206", "html > body > dialog"),
    ("WCAG2AA.Principle1.Guideline1_3.1_3_5.H98", "#step-up-code"),
}
COLOURS = """() => {
  const box = getComputedStyle(document.querySelector('dialog[open]')).backgroundColor;
  const colour = id => getComputedStyle(document.getElementById(id)).color;
  return ['step-up-code-hint', 'step-up-code-error'].map(id => [id, colour(id), box]);
}"""


def hex_of(css: str) -> str:
    """An opaque computed colour, rgb(r, g, b), as #rrggbb."""
    channels = [int(c) for c in css.removeprefix("rgb(").removesuffix(")").split(",")]
    assert len(channels) == 3, f"not an opaque rgb() colour: {css}"
    return "#" + "".join(f"{c:02x}" for c in channels)


async def test_axe_finds_nothing_on_the_open_dialog_in_any_theme(page: Page, stepped_mesh: SteppedMesh) -> None:
    """The dialog open with a refused code's error: axe WCAG 2.0-2.2 A+AA, 0 violations in every theme;
    the hint and the error (which pa11y leaves undecided) at >= 4.5:1 on the dialog; the dialog within
    a 320 px viewport."""
    who = await operator(stepped_mesh)
    task_id = await dead_letter(stepped_mesh)
    await sign_in(page, stepped_mesh, who.key, f"/console/dlq/{task_id}")
    await expect(page.locator("#dlq-commands code").first).to_be_visible()
    await ask_to_purge(page, task_id)
    await page.get_by_label("One-time code").fill("12")
    await page.get_by_role("button", name="Verify code").click()
    await expect(page.locator("#step-up-code-error")).to_contain_text("enter the 6 digits")
    findings: dict[str, Any] = {}
    for theme in THEMES:
        await page.evaluate("theme => { document.documentElement.dataset.theme = theme }", theme)
        if violations := await _axe(page):
            findings[theme] = violations
        for element, fg, bg in await page.evaluate(COLOURS):
            if (ratio := contrast(hex_of(fg), hex_of(bg))) < 4.5:
                findings[f"{theme}/{element}"] = f"{fg} on {bg}: {ratio:.2f}:1"
    await page.set_viewport_size({"width": 320, "height": 640})
    fits = (
        "() => { const d = document.querySelector('dialog[open]').getBoundingClientRect(); return [d.left, d.right] }"
    )
    left, right = await page.evaluate(fits)
    assert left >= 0 and right <= 320, (left, right)
    assert not findings, json.dumps(findings, indent=1)


async def test_pa11y_finds_nothing_on_the_open_dialog(
    chromium: Path, stepped_mesh: SteppedMesh, tmp_path: Path
) -> None:
    """pa11y's axe and HTML_CodeSniffer (WCAG2AA, through Envoy in a Chromium trusting the mesh's root)
    on the dialog open with a refused code's error: no finding but what they leave to a person
    (UNDECIDED, each checked another way)."""
    ensure_pa11y()
    who = await operator(stepped_mesh)
    task_id = await dead_letter(stepped_mesh)
    actions = (
        "click element #purge",
        "click element dialog[open] button.danger",
        "wait for element #step-up-code to be visible",
        f"set field #step-up-code to {wrong(who.secret)}",
        "click element dialog[open] button.danger",
        "wait for element #step-up-code[aria-invalid=true] to be visible",
    )
    view = View("step-up dialog", f"/console/dlq/{task_id}", "#dlq-commands code", actions)
    home = trusting_home(tmp_path / "home", Path(stepped_mesh.ca_path))
    results = await pa11y_run(stepped_mesh.base_url, who.key, chromium, CHROMIUM_ARGS, home, [view])
    assert list(results) == ["step-up dialog/system"]
    issues = results["step-up dialog/system"]["issues"]
    found = [
        (i["runner"], i["type"], i["code"], i["selector"], i["message"][:160])
        for i in issues
        if (i["code"], i["selector"]) not in UNDECIDED and not i["code"].endswith(REVIEW_OPTGROUPS)
    ]
    assert not found, json.dumps(found, indent=1)
    undecided = [i for i in issues if (i["code"], i["selector"]) in UNDECIDED]
    # axe's contrast is undecided (needs review), never failed; the dialog was open with its error when checked.
    assert all(i["runnerExtras"].get("needsFurtherReview", True) for i in undecided if i["runner"] == "axe")
    assert any(i["selector"] == "#step-up-code" for i in undecided), "pa11y ran on the open dialog"
    assert await on_record(stepped_mesh, task_id)  # a wrong code purged nothing
