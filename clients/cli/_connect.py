"""How a command reaches the mesh: the endpoint, TLS against which root, and which credential
from where — the local mesh in --state-dir unless told otherwise."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from clients.sdk import Client
from mesh.supervisor import MeshSecurity


def client_for(args: argparse.Namespace, tenant: str = "default") -> Client:
    """A client of the mesh in --state-dir: its admin key and its root, unless told otherwise."""
    return Client(args.endpoint, tenant=tenant, credential=credential_for(args), surface="cli", **transport_for(args))


def transport_for(args: argparse.Namespace) -> dict[str, Any]:
    """TLS verified against --cacert, else the local mesh's root, else $TIDEMESH_CA; plaintext
    with --insecure, or when the mesh in --state-dir runs --insecure and no --cacert says otherwise."""
    from mesh.supervisor import Plan

    if args.insecure:
        return {"insecure": True}
    plan_file = Path(args.state_dir) / "plan.json"
    if not args.cacert and plan_file.exists() and not Plan.from_json(json.loads(plan_file.read_text())).secure:
        return {"insecure": True}
    root = MeshSecurity(Path(args.state_dir)).root
    return {"ca": args.cacert or (str(root) if root.exists() else None)}  # None: $TIDEMESH_CA, system roots


def credential_of(args: argparse.Namespace) -> tuple[str, str]:
    """The credential this command sends and where it came from (said by -v and by auth errors)."""
    from mesh.supervisor import admin_key

    if args.api_key:
        return args.api_key, "--api-key"
    if os.environ.get("TIDEMESH_API_KEY"):
        return os.environ["TIDEMESH_API_KEY"], "$TIDEMESH_API_KEY"
    key = admin_key(Path(args.state_dir))
    where = Path(args.state_dir) / "auth" / "admin.key"
    return key, (
        f"the local mesh's admin key ({where})" if key else f"none (no --api-key, no $TIDEMESH_API_KEY, no {where})"
    )


def credential_for(args: argparse.Namespace) -> str:
    return credential_of(args)[0]


def connection_notes(args: argparse.Namespace) -> list[str]:
    """Where a client command connects and with what (-v)."""
    transport = transport_for(args)
    if transport.get("insecure"):
        tls = "plaintext (--insecure)"
    else:
        tls = f"TLS, verified against {transport['ca'] or os.environ.get('TIDEMESH_CA') or 'the system roots'}"
    return [f"endpoint: {args.endpoint}", f"transport: {tls}", f"credential: {credential_of(args)[1]}"]


def console_url(args: argparse.Namespace, view: str, task_id: str) -> str:
    """The web console's page of a task or dead letter on the mesh this command talks to."""
    from mesh.fabric import console_path

    scheme = "http" if transport_for(args).get("insecure") else "https"
    return f"{scheme}://{args.endpoint}{console_path(view, task_id)}"
