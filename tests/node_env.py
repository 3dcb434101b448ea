"""Node.js for the tests that run Node: find `node`, install a package folder's pinned packages
(`clients/node`'s for the Node worker tests, `tests/browser/pa11y`'s for pa11y).

`ensure_packages()` skips the calling test only when `node` is not installed; with node present,
a missing `npm` or a failing `npm ci` is an error (the lock file pins every package, so a fresh
clone installs the same tree). The install runs once per lock-file content: a stamp in
node_modules records the lock's hash, and a file lock keeps parallel test processes from racing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE_PACKAGE = ROOT / "clients" / "node"
TEXTPIPE_NODE_WORKER = ROOT / "examples" / "textpipe" / "node" / "worker.mjs"
_STAMP = ".tidemesh-lock.sha256"
NPM_CI_TIMEOUT_S = 300


def node_binary() -> str:
    """The `node` on PATH; skips the test (saying why) when there is none."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: this test runs Node.js (20+, with npm on PATH)")
    return node


def ensure_node_worker() -> Path:
    """`clients/node` with its node_modules installed from package-lock.json (`npm ci` when missing or stale)."""
    return ensure_packages(NODE_PACKAGE)


def ensure_packages(package: Path, env: dict[str, str] | None = None) -> Path:
    """`package` (a folder with package.json and package-lock.json) with its node_modules installed
    (`npm ci`, with `env` added to the environment, when missing or stale); skips without node."""
    node_binary()
    lock = package / "package-lock.json"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    stamp = package / "node_modules" / _STAMP
    if stamp.exists() and stamp.read_text() == digest:
        return package
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"node is installed but npm is not: install npm to install {package}'s packages")
    with open(package / ".npm-ci.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == digest:  # another process installed it meanwhile
            return package
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=package,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT_S,
            check=False,
            env={**os.environ, **(env or {})},
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm ci in {package} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        stamp.write_text(digest)
    return package
