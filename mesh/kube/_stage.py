"""A pod's init step: its Secret and ConfigMap, copied owner-only into a folder laid out like a state dir.

Kubernetes mounts a Secret's files group-readable (``fsGroup``) behind ``..data`` links, and the
services refuse key files others can read (NATS users, the audit signing key: mode 600). So an
init container copies the projected tree (`SOURCE_DIR`) into a memory-backed folder (`POD_STATE`),
folders 700 and files 600, owned by the pod's user; Envoy's SDS files (its pair inline, `write_sds`)
are written there from its leaf. A Secret renewed later reaches the pod at its next start.
"""

from __future__ import annotations

import os
from pathlib import Path

from mesh.security._ca import write_private


def stage(source: Path, target: Path) -> list[str]:
    """Copy every file under `source` into `target` (700/600); the relative paths copied."""
    copied = []
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(target, 0o700)
    for root, folders, files in os.walk(source, followlinks=True):
        # Kubernetes' own bookkeeping (..data, ..<timestamp>): the same files again.
        folders[:] = sorted(f for f in folders if not f.startswith(".."))
        for name in sorted(files):
            if name.startswith(".."):
                continue
            relative = (Path(root) / name).relative_to(source)
            destination = target / relative
            for folder in reversed(destination.relative_to(target).parents[:-1]):
                (target / folder).mkdir(mode=0o700, exist_ok=True)
            write_private(destination, (Path(root) / name).read_bytes())
            copied.append(str(relative))
    return copied


def write_envoy_sds(target: Path) -> None:
    """Envoy's SDS files from its staged leaf (see `mesh.edge._sds`)."""
    from mesh.edge import write_sds
    from mesh.security import CertificateAuthority

    write_sds(target / "pki" / "envoy-sds", CertificateAuthority(target / "pki").files("envoy"))
