"""`Transport`: how one process speaks TLS — its leaf, the root it trusts, reloads on renewal.

Every internal hop is mutual TLS: a server presents its leaf and requires the caller's,
both signed by the mesh's root; the caller's workload identity (the SPIFFE URI in its SAN)
is then checked against the allow-list in `_policy`. `Transport.insecure()` is plaintext
for `tidemesh up --insecure` experiments: nothing is verified.

Renewal without downtime: the supervisor rewrites a leaf in place (atomically, key first);
gRPC servers pick the new pair on their next handshake (`dynamic_ssl_server_credentials`
asks on every handshake; a stat tells whether the files changed), `ssl.SSLContext`s are
reloaded in place by `refresh()` (new handshakes use the new pair, open connections keep
theirs), and client channels are rebuilt on the next call after a change (`RenewingChannel`),
while calls already in flight finish on the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio

from mesh.security._ca import CertificateAuthority, LeafFiles, component_of


def _stamp(leaf: LeafFiles) -> tuple[float, float, float]:
    """Changes whenever the supervisor swaps a file (mtime_ns of each of the three)."""
    stamps = []
    for path in (leaf.ca, leaf.cert, leaf.key):
        try:
            stamps.append(path.stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
    return (stamps[0], stamps[1], stamps[2])


@dataclass
class Transport:
    """TLS material of one process (`leaf`), or plaintext when `leaf` is None."""

    leaf: LeafFiles | None
    _contexts: list[ssl.SSLContext] = field(default_factory=list, repr=False)
    _loaded: object = None  # the files' stamp the contexts were last loaded from

    @staticmethod
    def insecure() -> Transport:
        return Transport(None)

    @staticmethod
    def of(pki_dir: str | Path | None, component: str) -> Transport:
        """The transport for `component` given ``--pki`` (None or "": plaintext)."""
        if not pki_dir:
            return Transport.insecure()
        leaf = CertificateAuthority(Path(pki_dir)).files(component)
        for path in (leaf.ca, leaf.cert, leaf.key):
            if not path.exists():
                raise FileNotFoundError(f"TLS material missing for {component}: {path} (does `tidemesh up` own it?)")
        return Transport(leaf, _loaded=_stamp(leaf))

    @property
    def secure(self) -> bool:
        return self.leaf is not None

    @property
    def identity(self) -> str:
        return self.leaf.identity if self.leaf else ""

    def stamp(self) -> object:
        """Changes whenever the leaf's files are swapped (None when insecure)."""
        return _stamp(self.leaf) if self.leaf else None

    def _require(self) -> LeafFiles:
        if self.leaf is None:
            raise RuntimeError("this transport is plaintext (--insecure)")
        return self.leaf

    def _pair(self) -> tuple[bytes, bytes, bytes]:
        """(root, key, cert) read together, read again if a swap happened half-way."""
        leaf = self._require()
        for _ in range(3):
            stamp = _stamp(leaf)
            material = (leaf.ca.read_bytes(), leaf.key.read_bytes(), leaf.cert.read_bytes())
            if _stamp(leaf) == stamp:
                break
        return material

    # --- gRPC ---------------------------------------------------------------------------

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server TLS that requires a client certificate and follows renewals."""
        leaf = self._require()
        lock = threading.Lock()  # grpc asks from its own threads
        loaded = [_stamp(leaf)]

        def config() -> grpc.ServerCertificateConfiguration:
            root, key, cert = self._pair()
            return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=root)

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            stamp = _stamp(leaf)
            with lock:
                if stamp == loaded[0]:
                    return None  # unchanged: keep serving the loaded pair
                try:
                    fresh = config()
                except OSError:
                    return None  # half-way through a swap: the next handshake asks again
                loaded[0] = stamp
                return fresh

        # grpc's stubs say the fetcher returns a configuration; its docs say None keeps the current one.
        return grpc.dynamic_ssl_server_credentials(
            config(),
            fetch,  # type: ignore[arg-type]
            require_client_authentication=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        root, key, cert = self._pair()
        return grpc.ssl_channel_credentials(root, key, cert)

    def channel(
        self,
        target: str,
        options: Sequence[tuple[str, Any]] = (),
        interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
    ) -> grpc.aio.Channel:
        """A client channel to another component: mutual TLS (renewing), or h2c when insecure."""
        if self.leaf is None:
            return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
        leaf = self.leaf
        return cast(
            grpc.aio.Channel,
            RenewingChannel(
                lambda: grpc.aio.secure_channel(
                    target, self.channel_credentials(), options=options, interceptors=interceptors
                ),
                lambda: _stamp(leaf),
            ),
        )

    # --- ssl (aiohttp, NATS) ------------------------------------------------------------

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """For an HTTPS server (aiohttp): requires a client certificate from the mesh's root."""
        if self.leaf is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.leaf.ca))
        context.verify_mode = ssl.CERT_REQUIRED
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.leaf.cert, self.leaf.key)
        self._contexts.append(context)
        return context

    def client_ssl_context(self) -> ssl.SSLContext | None:
        """For a client (aiohttp, nats-py): verifies the server against the root, presents our leaf."""
        if self.leaf is None:
            return None
        context = ssl.create_default_context(cafile=str(self.leaf.ca))
        context.load_cert_chain(self.leaf.cert, self.leaf.key)
        self._contexts.append(context)
        return context

    def refresh(self) -> bool:
        """Reload every context this transport made if the files changed; True when it did."""
        stamp = self.stamp()
        if self.leaf is None or stamp == self._loaded:
            return False
        for context in self._contexts:
            try:
                context.load_verify_locations(cafile=str(self.leaf.ca))
                context.load_cert_chain(self.leaf.cert, self.leaf.key)
            except (OSError, ssl.SSLError):
                return False  # half-way through a swap: the next refresh finishes it
        self._loaded = stamp
        return True

    async def follow_renewals(self, every_s: float = 5.0) -> None:
        """Run `refresh` every few seconds until cancelled (ServiceHost runs it)."""
        while True:
            await asyncio.sleep(every_s)
            self.refresh()


def peer_identity(context: Any) -> str:
    """The caller's SPIFFE id on a mutual-TLS gRPC call ("" on plaintext)."""
    try:
        found = context.auth_context().get("peer_spiffe_id") or ()
    except Exception:  # a context without TLS has no auth context
        return ""
    return found[0].decode() if found else ""


def peer_component(context: Any) -> str:
    return component_of(peer_identity(context))


class _Multi:
    """A multicallable that resolves the channel current at call time."""

    def __init__(self, owner: RenewingChannel, kind: str, method: str, kwargs: dict[str, Any]) -> None:
        self._owner, self._kind, self._method, self._kwargs = owner, kind, method, kwargs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel = self._owner.current()
        return getattr(channel, self._kind)(self._method, **self._kwargs)(*args, **kwargs)


class RenewingChannel:
    """A grpc.aio channel that is rebuilt, on the next call, once its TLS files change.

    Stubs bind multicallables at construction, so they get `_Multi`s that look the channel up
    per call. The replaced channel closes after a grace period, so calls in flight finish.
    """

    def __init__(self, make: Callable[[], grpc.aio.Channel], stamp: Callable[[], object], grace_s: float = 60.0):
        self._make, self._stamp, self._grace_s = make, stamp, grace_s
        self._seen = stamp()
        self._channel = make()
        self._retired: set[asyncio.Task[None]] = set()
        self._old: list[grpc.aio.Channel] = []

    def current(self) -> grpc.aio.Channel:
        stamp = self._stamp()
        if stamp != self._seen:
            self._seen = stamp
            old, self._channel = self._channel, self._make()
            self._old.append(old)
            task = asyncio.get_running_loop().create_task(self._retire(old))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
        return self._channel

    async def _retire(self, channel: grpc.aio.Channel) -> None:
        await channel.close(grace=self._grace_s)
        self._old.remove(channel)

    def unary_unary(self, method: str, **kwargs: Any) -> Any:
        return _Multi(self, "unary_unary", method, kwargs)

    def unary_stream(self, method: str, **kwargs: Any) -> Any:
        return _Multi(self, "unary_stream", method, kwargs)

    def stream_unary(self, method: str, **kwargs: Any) -> Any:
        return _Multi(self, "stream_unary", method, kwargs)

    def stream_stream(self, method: str, **kwargs: Any) -> Any:
        return _Multi(self, "stream_stream", method, kwargs)

    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.current().get_state(try_to_connect)

    async def close(self, grace: float | None = None) -> None:
        for task in list(self._retired):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for old in self._old:
            await old.close(grace)
        await self._channel.close(grace)

    async def __aenter__(self) -> RenewingChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
