"""pa11y for the console's tests: its npm packages (`tests/browser/pa11y`, installed once per lock
file, never a browser download), and a Chromium that trusts the test mesh's root.

Trust is real verification, not an ignored error: Chromium on Linux verifies certificates against
NSS, so the mesh's root goes into an NSS database (`certutil`, Debian's libnss3-tools, which
`make browser` installs) under a HOME of the test's own, and Chromium checks Envoy's chain
against it like any other root. `pa11y_run` can also run without that root, to show the refusal.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.node_env import ensure_packages, node_binary

PACKAGE = Path(__file__).with_name("pa11y")
RUNNER = PACKAGE / "run.mjs"
CERTUTIL = "certutil"
RUN_TIMEOUT_S = 120


def ensure_pa11y() -> Path:
    """tests/browser/pa11y installed (`npm ci` without Puppeteer's browser download); skips
    only when node or npm is missing."""
    node_binary()
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the pa11y test installs pa11y with npm (Node.js 20+ and npm on PATH)")
    return ensure_packages(PACKAGE, {"PUPPETEER_SKIP_DOWNLOAD": "1"})


def trusting_home(home: Path, root: Path) -> Path:
    """A HOME whose NSS database (~/.pki/nssdb) trusts `root` for TLS servers, and nothing else added."""
    certutil = shutil.which(CERTUTIL)
    if certutil is None:
        raise RuntimeError("certutil is missing: `make browser` installs it (Debian's libnss3-tools)")
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True)
    for argv in (
        [certutil, "-N", "-d", f"sql:{database}", "--empty-password"],
        [certutil, "-A", "-d", f"sql:{database}", "-n", "tidemesh test mesh", "-t", "C,,", "-i", str(root)],
    ):
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
    return home


@dataclass(frozen=True)
class View:
    name: str
    path: str  # under the mesh's base URL
    ready: str  # a CSS selector that is visible once the view has loaded what it shows
    actions: tuple[str, ...] = ()  # pa11y actions after `ready`, e.g. "click element #pause-overview"
    signed_in: bool = True
    themes: tuple[str, ...] = ("system",)  # checked in each: the console's theme switch ("system": the browser's)


async def pa11y_run(
    base_url: str,
    credential: str,
    chromium: Path,
    chromium_args: list[str],
    home: Path,
    views: list[View],
) -> dict[str, Any]:
    """run.mjs over `views`, each in its themes (signed-out ones first, then it signs in once): the
    issues of each "<view>/<theme>". The credential goes on stdin, never in argv or the environment."""
    document = {
        "base": base_url,
        "credential": credential,
        "chromium": str(chromium),
        "args": chromium_args,
        "views": [{**view.__dict__, "actions": list(view.actions), "themes": list(view.themes)} for view in views],
    }
    process = await asyncio.create_subprocess_exec(
        node_binary(),
        str(RUNNER),
        cwd=PACKAGE,
        env={**os.environ, "HOME": str(home), "PUPPETEER_SKIP_DOWNLOAD": "1"},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(json.dumps(document).encode()), RUN_TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise Pa11yFailed(err.decode(errors="replace")[-4000:])
    result: dict[str, Any] = json.loads(out)["views"]
    return result


class Pa11yFailed(RuntimeError):
    """run.mjs exited non-zero (a page that did not load, a ready selector never seen): its stderr."""
