"""The gateway fails closed: auth is off only when asked for by name, and submit limits are on
unless turned off — in the plan `tidemesh up` and Tilt run."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clients.cli._main import _parser
from clients.cli._up import plan_from
from mesh.supervisor import CREDENTIAL_LIMIT, TENANT_LIMIT, build_plan
from services.gateway import _ratelimit
from services.gateway._audit import Auditor
from services.gateway._guard import Guard
from services.gateway._http import http_app
from services.gateway._service import Gateway

_NOTHING: Any = object()  # stands in for the NATS-backed collaborators; nothing here calls them


def test_a_guard_without_an_authenticator_is_refused() -> None:
    """`Guard(events, None)` raises: a forgotten authenticator never means "anyone may call"."""
    with pytest.raises(TypeError, match=r"Guard\.disabled"):
        Guard(_NOTHING, None)  # type: ignore[arg-type]


async def test_auth_off_is_explicit_and_said_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """`Guard.disabled(events)` lets callers in anonymously and logs a warning that says so."""
    with caplog.at_level(logging.WARNING):
        guard = Guard.disabled(_NOTHING)
    assert not guard.enabled and await guard.authenticate("", "") is None
    assert any("AUTH IS OFF" in record.getMessage() for record in caplog.records)


def test_gateway_and_http_app_require_a_guard() -> None:
    """Neither the gRPC servicer nor the HTTP app can be built without naming a guard (nor the
    servicer without naming its auditor)."""
    with pytest.raises(TypeError, match="guard"):
        Gateway(_NOTHING, _NOTHING, _NOTHING, _NOTHING, auditor=Auditor.disabled())  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="guard"):
        http_app(_NOTHING, _NOTHING)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="auditor"):
        Gateway(_NOTHING, _NOTHING, _NOTHING, _NOTHING, guard=Guard.disabled(_NOTHING))  # type: ignore[call-arg]
    Gateway(_NOTHING, _NOTHING, _NOTHING, _NOTHING, guard=Guard.disabled(_NOTHING), auditor=Auditor.disabled())


def test_audit_off_is_explicit_and_said_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """`Auditor(None)` raises; `Auditor.disabled()` records nothing and logs a warning that says so;
    every plan `tidemesh up` runs starts its gateways with the audit on."""
    with pytest.raises(TypeError, match=r"Auditor\.disabled"):
        Auditor(None)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        assert Auditor.disabled().log is None
    assert any("AUDIT IS OFF" in record.getMessage() for record in caplog.records)


def _gateway_command(plan: Any) -> str:
    return " ".join(next(p for p in plan.processes if p.name.startswith("gateway")).command)


def test_every_planned_gateway_keeps_the_audit(tmp_path: Path) -> None:
    """`build_plan` makes the mesh's signing key (600) and starts each gateway with --audit-dir."""
    command = _gateway_command(build_plan(tmp_path, public_port=0))
    assert f"--audit-dir {tmp_path.resolve() / 'audit'}" in command
    assert ((tmp_path / "audit" / "signing.key").stat().st_mode & 0o777) == 0o600


def test_the_plan_defaults_are_the_gateways_own() -> None:
    """`build_plan`'s limits and a bare `services.gateway`'s are the same numbers."""
    assert TENANT_LIMIT == (_ratelimit.DEFAULT_TENANT_RATE, _ratelimit.DEFAULT_TENANT_BURST)
    assert CREDENTIAL_LIMIT == (_ratelimit.DEFAULT_CREDENTIAL_RATE, _ratelimit.DEFAULT_CREDENTIAL_BURST)


def test_up_flags_change_or_turn_off_the_limits(tmp_path: Path) -> None:
    """`--tenant-rate 0` turns the tenant limit off; `--credential-rate/--credential-burst` set it."""
    flags = ["--tenant-rate", "0", "--credential-rate", "5", "--credential-burst", "7"]
    args = _parser().parse_args(["up", "--state-dir", str(tmp_path), "--port", "0", *flags])
    command = _gateway_command(plan_from(args))
    assert "--tenant-rate 0 " in command
    assert "--credential-rate 5 --credential-burst 7 " in command
    with pytest.raises(SystemExit):
        _parser().parse_args(["up", "--tenant-rate", "-1"])


def test_explicit_gateway_args_override_the_default_limits(tmp_path: Path) -> None:
    """A test's or bench's own `--tenant-rate` comes after the defaults, so argparse keeps it."""
    command = _gateway_command(build_plan(tmp_path, public_port=0, gateway_args=("--tenant-rate", "2")))
    assert command.index("--tenant-rate 1000") < command.index("--tenant-rate 2")


def test_tidemesh_plan_json_carries_the_limits(tmp_path: Path) -> None:
    """What the Tiltfile reads (`tidemesh plan --json`) starts every gateway with both limits on."""
    plan = ["plan", "--json", "--port", "0", "--state-dir", str(tmp_path), "--gateways", "2"]
    out = subprocess.run(
        [sys.executable, "-c", "from clients.cli import main; main()", *plan],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    gateways = [p for p in json.loads(out)["processes"] if p["name"].startswith("gateway")]
    assert len(gateways) == 2
    for gateway in gateways:
        command = " ".join(gateway["command"])
        assert "--tenant-rate 1000 --tenant-burst 2000 --credential-rate 500 --credential-burst 1000" in command
