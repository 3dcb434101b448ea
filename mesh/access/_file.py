"""The custom roles a gateway is started with: a JSON file the plan writes from the manifest.

``{"roles": {NAME: {"permissions": [ACTION, ...], "tenants": [TENANT, ...] | null}}}`` — the
manifest's ``roles`` section as it is, so reading the file back gives the section again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mesh.access._roles import RoleCatalog, RoleError

ROLES_FILE = "roles.json"


def write_roles(path: Path, roles: Mapping[str, Mapping[str, Any]]) -> Path:
    """Check `roles` (RoleError naming the path of a bad one) and write them to `path`, atomically,
    in the order given."""
    RoleCatalog.from_data(roles)
    data = {
        name: {"permissions": list(spec["permissions"]), "tenants": _listed(spec.get("tenants"))}
        for name, spec in roles.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(json.dumps({"roles": data}, indent=2) + "\n")
    os.replace(scratch, path)
    return path


def _listed(tenants: Any) -> list[str] | None:
    return None if tenants is None else list(tenants)


def roles_section(path: Path) -> dict[str, Any]:
    """The roles file at `path` as the manifest's ``roles`` section, checked; RoleError (a
    ValueError) saying what is wrong."""
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RoleError(str(path), f"cannot read the roles file: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("roles"), dict):
        raise RoleError(str(path), 'expected {"roles": {NAME: {"permissions": [...], "tenants": [...]}}}')
    RoleCatalog.from_data(document["roles"])
    section: dict[str, Any] = document["roles"]
    return section


def read_roles(path: Path) -> RoleCatalog:
    """The catalog of the roles file at `path` (see `roles_section`)."""
    return RoleCatalog.from_data(roles_section(path))
