"""A failpoint kills its process once, at the named place, and records that it fired."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mesh import failpoints

_PROGRAM = """
import sys
from mesh import failpoints
failpoints.arm(sys.argv[1])
failpoints.reached("elsewhere")
print("before", failpoints.armed("here"), flush=True)
failpoints.reached("here")
print("after", flush=True)
"""


def _run(spec: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _PROGRAM, spec], capture_output=True, text=True, timeout=60)


def test_an_armed_failpoint_kills_once_then_lets_the_restarted_process_run(tmp_path: Path) -> None:
    marker = tmp_path / "fired"
    first = _run(f"here={marker}")
    assert first.returncode == -signal.SIGKILL and first.stdout == "before True\n"
    assert marker.exists()
    second = _run(f"here={marker}")
    assert second.returncode == 0 and second.stdout == "before False\nafter\n"


def test_a_malformed_failpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="NAME=MARKER"):
        failpoints.arm("no-marker")
