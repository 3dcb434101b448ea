"""`tidemesh schema` against the real mesh, through Envoy: register from a .proto, refuse, list, show, export."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

TIDEMESH = str(Path(sys.executable).parent / "tidemesh")
BUF = str(Path(sys.executable).parent / "buf")


async def _run(*argv: str, timeout_s: float = 60.0) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _proto(root: Path, package: str, body: str) -> Path:
    source = root / package.replace(".", "/") / "req.proto"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(f'syntax = "proto3";\npackage {package};\nmessage Req {{ {body} }}\n')
    (root / "buf.yaml").write_text("version: v2\nbreaking:\n  use: [WIRE_JSON]\n")
    return source


async def test_the_schema_commands_through_the_mesh(mesh: Mesh, tmp_path: Path) -> None:
    """Register v1 from a .proto, again (unchanged), refuse a breaking v2 listing every violation, then list,
    show and export — and the export is a descriptor set `buf breaking` reads."""
    package = f"acme.cli{uuid.uuid4().hex[:8]}"
    subject = f"{package}.Req"
    client = ("--endpoint", mesh.endpoint, "--state-dir", str(mesh.plan.state_dir))
    v1 = _proto(tmp_path / "v1", package, "int32 width = 1; string label = 2;")
    code, out, err = await _run(
        TIDEMESH, "schema", "register", str(v1), "--subject", subject, "-I", str(v1.parents[2]), *client
    )
    assert code == 0, err
    assert f"{subject} version 1" in out
    broken = _proto(tmp_path / "v2", package, "int64 width = 1;")
    include = ("-I", str(broken.parents[2]))
    exported = tmp_path / "v1.binpb"
    # With version 1 registered, the commands that only read it (or are refused) run at once.
    again, check, refused, listed, shown, export, missing = await asyncio.gather(
        _run(TIDEMESH, "schema", "register", str(v1), "--subject", subject, "-I", str(v1.parents[2]), *client),
        _run(TIDEMESH, "schema", "check", str(broken), "--subject", subject, *include, *client),
        _run(TIDEMESH, "schema", "register", str(broken), "--subject", subject, *include, *client),
        _run(TIDEMESH, "schema", "list", *client),
        _run(TIDEMESH, "schema", "show", subject, "--version", "1", *client),
        _run(TIDEMESH, "schema", "export", subject, "--file", str(exported), *client),
        _run(TIDEMESH, "schema", "show", f"{package}.Missing", *client),
    )
    code, out, err = again
    assert code == 0 and "unchanged" in out, err
    code, out, err = check
    assert code == 1 and "NOT backward-compatible" in out, (out, err)
    assert "FIELD_SAME_TYPE" in out and "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED" in out
    code, out, err = refused
    assert code == 1, out
    for rule in ("FIELD_SAME_TYPE", "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED", "FIELD_NO_DELETE_UNLESS_NAME_RESERVED"):
        assert rule in err, err
    code, out, err = listed
    assert code == 0 and subject in out, err
    code, out, err = shown
    assert code == 0 and f"{subject} version 1" in out and "req.proto: Req" in out, err
    code, out, err = export
    assert code == 0 and exported.stat().st_size > 0, err
    code, out, err = missing
    assert code == 2 and "not registered" in err, (out, err)
    (code, out, err), (again_code, again_out, again_err) = await asyncio.gather(
        _run(BUF, "breaking", str(tmp_path / "v2"), "--against", str(exported), "--error-format=json"),
        _run(TIDEMESH, "schema", "register", str(exported), "--subject", subject, *client),
    )
    assert code != 0 and "FIELD_WIRE_JSON_COMPATIBLE_TYPE" in out, (out, err)
    assert again_code == 0 and "unchanged" in again_out, again_err  # a descriptor-set file registers like its .proto
