"""The secure default of a local mesh: its CA, every component's leaf and NATS user, renewals.

`MeshSecurity.prepare(state_dir)` runs when a plan is built (`tidemesh up`, `tidemesh plan`):
the root is created once, each component gets a leaf (kept while it is young enough, issued
again once half its life has passed) and a NATS user (created once). `LeafRenewer` runs
inside the supervisor and renews leaves before they expire; servers and clients pick the new
pair up by themselves (see `mesh.security._tls`), Envoy through its SDS files.
``--insecure`` skips all of it: plaintext, nothing verified, and every surface says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client as Nats

from mesh.fabric import connect
from mesh.security import CertificateAuthority, LeafFiles, Transport
from mesh.security._nats import (
    NatsUser,
    authorization_block,
    cluster_tls_block,
    ensure_nats_users,
    tls_block,
)
from mesh.telemetry import get_logger

log = get_logger(__name__)

# Every component with a leaf; the NATS users are those that speak to NATS.
COMPONENTS = ("nats", "scheduler", "inference", "worker", "gateway", "envoy", "supervisor", "cli", "triton")
NATS_CLIENTS = ("scheduler", "inference", "worker", "gateway", "supervisor", "cli")


@dataclass(frozen=True)
class MeshSecurity:
    """Where a secure mesh keeps its material; `None` in a plan means --insecure. `hosts`: the
    names this host's leaves also answer to (its address in a mesh of several hosts)."""

    state_dir: Path
    hosts: tuple[str, ...] = ()

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def nats_dir(self) -> Path:
        return self.state_dir / "nats"

    @property
    def ca(self) -> CertificateAuthority:
        return CertificateAuthority(self.pki_dir)

    @property
    def root(self) -> Path:
        return self.ca.root_path

    def leaf(self, component: str) -> LeafFiles:
        return self.ca.files(component)

    def nats_user(self, component: str) -> Path:
        return self.nats_dir / f"{component}.json"

    def transport(self, component: str) -> Transport:
        return Transport.of(self.pki_dir, component)

    async def connect_nats(self, servers: str, component: str, name: str) -> Nats:
        """NATS as `component`'s own user, over TLS verified against the root (with its leaf)."""
        return await connect(
            servers, name=name, tls=self.transport(component).client_ssl_context(), user_file=self.nats_user(component)
        )

    @staticmethod
    def prepare(
        state_dir: Path,
        leaf_lifetime: dt.timedelta | None = None,
        root_from: Path | str | None = None,
        hosts: tuple[str, ...] = (),
    ) -> MeshSecurity:
        """Root, leaves and NATS users of the mesh in `state_dir`. `root_from` (default
        `TIDEMESH_CA_DIR`) is a folder with an existing ``ca.crt`` + ``ca.key`` — an organisation's
        root, shared by meshes that must trust each other — adopted when this mesh has none yet.
        Every leaf also answers to `hosts` (issued again if it does not)."""
        security = MeshSecurity(state_dir, tuple(hosts))
        ca = CertificateAuthority(security.pki_dir, **({"leaf_lifetime": leaf_lifetime} if leaf_lifetime else {}))
        root_from = root_from or os.environ.get("TIDEMESH_CA_DIR", "")
        if root_from and not ca.root_path.exists():
            ca.adopt(Path(root_from))
        ca.ensure()
        for component in COMPONENTS:
            ca.ensure_leaf(component, security.hosts)
        ensure_nats_users(security.nats_dir, NATS_CLIENTS)
        return security

    def service_args(self, component: str) -> list[str]:
        """What a service process needs: paths only (no secret is ever an argument)."""
        args = ["--pki", str(self.pki_dir)]
        if component in NATS_CLIENTS:
            args += ["--nats-user", str(self.nats_user(component))]
        return args


def nats_security(security: MeshSecurity) -> str:
    """A node's TLS block (clients verify it against the root) and its users with permissions."""
    users = {component: NatsUser.load(security.nats_user(component)) for component in NATS_CLIENTS}
    return "\n".join([tls_block(security.leaf("nats")), authorization_block(users)])


def nats_cluster_security(security: MeshSecurity) -> str:
    """Routes between nodes: TLS verified against the same root."""
    return cluster_tls_block(security.leaf("nats"))


class LeafRenewer:
    """Renews every component's leaf once half of its life has passed (checked every minute).

    `after_renewal(component)` runs after a leaf is rewritten (Envoy's SDS files are swapped
    there); the processes themselves reload on their next handshake."""

    def __init__(
        self,
        security: MeshSecurity,
        after_renewal: Callable[[str], None] = lambda _: None,
        every_s: float = 60.0,
        leaf_lifetime: dt.timedelta | None = None,
    ) -> None:
        self._security = security
        self._after = after_renewal
        self._every_s = every_s
        self._lifetime = leaf_lifetime
        self._task: asyncio.Task[None] | None = None
        self.renewed: list[str] = []

    def renew_due(self, everything: bool = False) -> list[str]:
        """Renew what is due now (`everything`: every leaf, due or not); the components renewed."""
        ca = self._security.ca
        if self._lifetime:
            ca.leaf_lifetime = self._lifetime
        done = []
        for component in COMPONENTS:
            if everything or ca.renew_due(component):
                ca.issue(component, hosts=self._security.hosts)
                self._after(component)
                done.append(component)
                log.info(
                    "certificate renewed", extra={"component": component, "expires": str(ca.expires_at(component))}
                )
        self.renewed += done
        return done

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                self.renew_due()
            except OSError as exc:  # a full disk must not stop supervision; try again next round
                log.warning("certificate renewal failed: %s", exc)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
