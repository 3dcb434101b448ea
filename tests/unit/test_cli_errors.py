"""What a failed command says next: the credential's source on an auth error, how to start the
mesh when it is unreachable, where the kinds are listed, and --yes for a declined confirmation."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from clients.cli._exit import EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE
from clients.cli._main import _failure
from clients.cli._output import Declined
from mesh.errors import InvalidArgument, PermissionDenied, Unauthenticated, Unavailable


def _args(tmp_path: Path, api_key: str | None = None, command: str = "list") -> argparse.Namespace:
    return argparse.Namespace(command=command, endpoint="10.0.0.9:8080", api_key=api_key, state_dir=str(tmp_path))


def test_an_auth_error_names_the_credential_it_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIDEMESH_API_KEY", raising=False)
    said, code = _failure(Unauthenticated("unknown API key"), _args(tmp_path, api_key="tmk_a_b"))
    assert code == EXIT_FAILED and "refused the credential from --api-key" in said and "tmk_a_b" not in said
    monkeypatch.setenv("TIDEMESH_API_KEY", "tmk_c_d")
    said, _ = _failure(PermissionDenied("needs admin"), _args(tmp_path))
    assert "denied the credential from $TIDEMESH_API_KEY" in said and "tmk_c_d" not in said
    monkeypatch.delenv("TIDEMESH_API_KEY")
    said, _ = _failure(Unauthenticated("no credential"), _args(tmp_path))
    assert f"none (no --api-key, no $TIDEMESH_API_KEY, no {tmp_path}/auth/admin.key)" in said
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "admin.key").write_text("tmk_admin_secret\n")
    said, _ = _failure(Unauthenticated("revoked"), _args(tmp_path))
    assert f"the local mesh's admin key ({tmp_path}/auth/admin.key)" in said and "secret" not in said


def test_an_unreachable_mesh_says_how_to_start_one(tmp_path: Path) -> None:
    said, code = _failure(Unavailable("connection refused"), _args(tmp_path))
    assert code == EXIT_UNAVAILABLE and said.startswith("mesh unavailable at 10.0.0.9:8080: connection refused")
    assert "`tidemesh up`" in said and "--endpoint" in said and "$TIDEMESH_ENDPOINT" in said


def test_an_unknown_kind_points_to_the_kinds(tmp_path: Path) -> None:
    said, code = _failure(InvalidArgument("kind", "unknown task kind 'embd'"), _args(tmp_path, command="submit"))
    assert code == EXIT_INVALID and "`tidemesh kinds`" in said
    said, _ = _failure(InvalidArgument("--payload", "not JSON"), _args(tmp_path, command="submit"))
    assert "tidemesh kinds" not in said


def test_a_declined_confirmation_is_bad_input(tmp_path: Path) -> None:
    assert _failure(Declined("refusing to purge: pass --yes"), _args(tmp_path)) == (
        "refusing to purge: pass --yes",
        EXIT_INVALID,
    )
