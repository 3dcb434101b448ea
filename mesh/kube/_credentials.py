"""The secrets a Kubernetes rendering refers to, made from a state dir (`create-secrets.sh` runs it).

The state dir's own material is prepared as `tidemesh up` prepares it — the root (adopted from
``TIDEMESH_CA_DIR`` when set and the dir has none), the NATS users, the gateway's keys, the audit
signing key — so a CLI holding that state dir trusts the cluster and signs in as its admin. For
the cluster, `issue` adds under `out`: a copy of the root, a leaf per component that also answers
to its in-cluster names (every gRPC client checks them), living days rather than hours (nothing
renews them in the cluster), and the NATS users' ``authorization`` block for the nodes. Every file
is owner-only; nothing is printed.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from mesh.audit import ensure_signing_key
from mesh.security._ca import write_private
from mesh.security._nats import NatsUser, authorization_block
from mesh.supervisor import MeshSecurity
from mesh.supervisor._credentials import ensure_credentials
from mesh.supervisor._security import NATS_CLIENTS


def issue(state_dir: Path, out: Path, leaves: Mapping[str, Sequence[str]], lifetime: dt.timedelta) -> list[Path]:
    """Prepare `state_dir` and write the cluster's files under `out`; the files written."""
    security = MeshSecurity.prepare(state_dir)
    ensure_credentials(state_dir / "auth")
    ensure_signing_key(state_dir / "audit")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(out, 0o700)
    pki = out / "pki"
    pki.mkdir(exist_ok=True, mode=0o700)
    write_private(pki / "ca.crt", security.root.read_bytes(), 0o644)
    ca = security.ca
    written = [pki / "ca.crt"]
    for component, hosts in leaves.items():
        files = ca.issue(component, lifetime, hosts=hosts, into=pki)
        written += [files.cert, files.key]
    users = {component: NatsUser.load(security.nats_user(component)) for component in NATS_CLIENTS}
    write_private(out / "authorization.conf", authorization_block(users).encode())
    written.append(out / "authorization.conf")
    return written
