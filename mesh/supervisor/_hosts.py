"""A mesh over several hosts (`tidemesh up --join`): which host this is, and the one identity
every host of the mesh shares.

Each host runs a NATS node of one JetStream cluster and a full set of the stateless services
(`build_plan(hosts=…)`). They trust one root and speak to NATS as the same users, so the mesh's
identity — the root (certificate and key: each host issues and renews its own leaves), the NATS
users, the gateways' keys (JWT, admin, TOTP, step-up) and the audit signing key — is made once,
on the first host, and handed to the others: `export_identity` writes it to a folder,
`import_identity` takes it into another host's state dir before its first `tidemesh up`. Leaves
are never handed over: each host issues its own, for its own name.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from mesh.security._ca import host_name, write_private

# What makes a mesh's identity, relative to a state dir: (folder, files; () = every file in it).
IDENTITY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pki", ("ca.crt", "ca.key")),
    ("nats", ()),
    ("auth", ("jwt.secret", "admin.key", "totp.key", "step-up.secret")),
    ("audit", ("signing.key", "signing.pub")),
)
_PUBLIC = frozenset({"pki/ca.crt", "audit/signing.pub"})


class HostError(ValueError):
    """Which host this is cannot be told (the message says why; `field` is the manifest's)."""

    field = "durability.cluster.host"


class IdentityError(ValueError):
    """An identity folder that cannot be exported or taken in (the message says why)."""


def check_hosts(hosts: Sequence[str]) -> tuple[str, ...]:
    """`hosts` as a tuple, each a DNS name or an IP address, none twice; ValueError naming the bad one."""
    for host in hosts:
        host_name("hosts", host)  # raises for a name no leaf could carry
    if len(set(hosts)) != len(hosts):
        raise ValueError(f"hosts: each host once, got {', '.join(hosts)}")
    return tuple(hosts)


def host_port(host: str, port: int) -> str:
    """``host:port`` (an IPv6 address in brackets)."""
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def _is_local(host: str) -> bool:
    """Whether this machine (its network namespace) has an address `host` names: one it can bind."""
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            try:
                probe.bind(address)
            except OSError:
                continue
            return True
    return False


def this_host(hosts: Sequence[str], given: str = "", is_local: Callable[[str], bool] = _is_local) -> str:
    """The one of `hosts` this machine is: `given` (which must be one of them), else the only one
    whose address it holds; HostError saying what to pass otherwise."""
    if given:
        if given not in hosts:
            raise HostError(f"host {given!r} is not one of the mesh's hosts ({', '.join(hosts)})")
        return given
    local = [host for host in hosts if is_local(host)]
    if len(local) == 1:
        return local[0]
    if not local:
        raise HostError(f"none of the hosts ({', '.join(hosts)}) is an address of this machine: name it with --host")
    raise HostError(f"several of the hosts ({', '.join(local)}) are addresses of this machine: name one with --host")


def _identity_files(state_dir: Path) -> list[str]:
    found = []
    for folder, names in IDENTITY:
        if not names:  # every user's file
            names = tuple(sorted(path.name for path in (state_dir / folder).glob("*.json")))
        found += [f"{folder}/{name}" for name in names]
    return found


def export_identity(state_dir: Path, out: Path) -> list[Path]:
    """Write the mesh's identity from `state_dir` (one `tidemesh up` or `plan` has prepared) to
    `out` (a new or empty folder, made owner-only); the files written. They hold the root's key and
    every credential of the mesh: move them as you would the root (and delete them after)."""
    if not (state_dir / "pki" / "ca.key").exists():
        raise IdentityError(
            f"no mesh root in {state_dir} (run `tidemesh plan --join …` or `tidemesh up` there first; "
            "an --insecure mesh has none)"
        )
    if out.exists() and any(out.iterdir()):
        raise IdentityError(f"{out} is not empty: export into a new folder")
    written = []
    for relative in _identity_files(state_dir):
        source = state_dir / relative
        if not source.exists():
            continue  # a mesh without auth (--no-auth) has no auth keys yet
        target = out / relative
        for folder in (out, target.parent):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(folder, 0o700)
        write_private(target, source.read_bytes(), 0o644 if relative in _PUBLIC else 0o600)
        written.append(target)
    return written


def import_identity(source: Path, state_dir: Path) -> list[Path]:
    """Take the identity `export_identity` wrote at `source` into `state_dir`; the files written.
    Refuses (IdentityError) a state dir that already holds another mesh's identity — its leaves,
    users and keys would no longer match — and takes the same identity again as a no-op."""
    if not (source / "pki" / "ca.crt").exists() or not (source / "pki" / "ca.key").exists():
        raise IdentityError(f"{source} holds no exported identity (pki/ca.crt and pki/ca.key are missing)")
    plan: list[tuple[Path, bytes, str]] = []
    clashes = []
    for relative in _identity_files(source):
        if not (source / relative).exists():
            continue
        data = (source / relative).read_bytes()
        target = state_dir / relative
        if target.exists() and target.read_bytes() != data:
            clashes.append(relative)
        plan.append((target, data, relative))
    if clashes:
        raise IdentityError(
            f"{state_dir} already belongs to another mesh ({', '.join(clashes)} differ): import into a fresh state dir"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for target, data, relative in plan:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(target.parent, 0o700)
        if not target.exists():
            write_private(target, data, 0o644 if relative in _PUBLIC else 0o600)
            written.append(target)
    return written
