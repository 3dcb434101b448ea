"""The contract: buf lint/format pass, and the checked-in generated code matches the protos."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

from mesh.supervisor import find_binary

REPO = Path(__file__).resolve().parents[2]


def _diff(left: Path, right: Path) -> list[str]:
    comparison = filecmp.dircmp(left, right, ignore=["__pycache__"])
    problems = [f"only in fresh: {n}" for n in comparison.left_only]
    problems += [f"only checked in: {n}" for n in comparison.right_only]
    problems += [f"differs: {n}" for n in comparison.diff_files]
    for name, sub in comparison.subdirs.items():
        problems += _diff(left / name, right / name) if sub else []
    return problems


def test_buf_lint_and_format_pass() -> None:
    """`buf lint` (STANDARD) and `buf format --diff` report nothing."""
    buf = find_binary("buf")
    lint = subprocess.run([buf, "lint"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [buf, "format", "--diff", "--exit-code"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_generated_code_has_no_drift(tmp_path: Path) -> None:
    """Regenerating from proto/ reproduces mesh/v1 and clients/betterproto byte for byte."""
    env = {**os.environ, "PYTHON": sys.executable, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run([str(REPO / "proto" / "generate.sh"), str(tmp_path)], cwd=REPO, env=env, check=True, timeout=120)
    assert _diff(tmp_path / "mesh" / "v1", REPO / "mesh" / "v1") == []
    assert _diff(tmp_path / "clients" / "betterproto", REPO / "clients" / "betterproto") == []
