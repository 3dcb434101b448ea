"""The mesh's local certificate authority: one root, short-lived leaves per component.

`tidemesh up` creates the root once under ``<state>/pki`` (``ca.key`` mode 600, ``ca.crt``)
and issues every component a leaf whose SAN carries its workload identity,
``spiffe://tidemesh/<component>``, plus ``localhost`` and ``127.0.0.1``. Leaves live for
hours, not years: the supervisor renews each one once half of its life has passed
(`renew_due`), writing the new pair atomically (`os.replace` of a complete file, the key
before the certificate), so a reader sees the old pair or the new one, never a mix it
cannot use: servers reload on their next handshake, Envoy watches the files through SDS.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "tidemesh"
ROOT_LIFETIME = dt.timedelta(days=3650)
LEAF_LIFETIME = dt.timedelta(hours=24)
_CLOCK_SKEW = dt.timedelta(minutes=5)


def spiffe_id(component: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/{component}"


def component_of(identity: str) -> str:
    """``spiffe://tidemesh/gateway`` → ``gateway``; "" for anything outside the trust domain."""
    prefix = f"spiffe://{TRUST_DOMAIN}/"
    return identity[len(prefix) :] if identity.startswith(prefix) else ""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` atomically with `mode` from the first byte (never world-readable):
    a complete temporary file beside it, fsynced, renamed over it (a watcher sees a move-in)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class LeafFiles:
    """Where one component's pair and the trust root lie."""

    component: str
    ca: Path
    cert: Path
    key: Path

    @property
    def identity(self) -> str:
        return spiffe_id(self.component)


class CertificateAuthority:
    """``CertificateAuthority(state / "pki").ensure()``: the root exists; `issue` makes leaves."""

    def __init__(self, directory: Path, leaf_lifetime: dt.timedelta = LEAF_LIFETIME) -> None:
        self.directory = directory
        self.leaf_lifetime = leaf_lifetime
        self._root: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None

    @property
    def root_path(self) -> Path:
        return self.directory / "ca.crt"

    def files(self, component: str) -> LeafFiles:
        return LeafFiles(
            component, self.root_path, self.directory / f"{component}.crt", self.directory / f"{component}.key"
        )

    def ensure(self) -> CertificateAuthority:
        """Create the root once (a restart keeps it, so clients keep trusting the mesh)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        key_path = self.directory / "ca.key"
        if key_path.exists() and self.root_path.exists():
            self._load_root()
            return self
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tidemesh local CA")])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + ROOT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(key_path, _key_pem(key))
        write_private(self.root_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        self._root = (cert, key)
        return self

    def adopt(self, source: Path) -> CertificateAuthority:
        """Take an existing root (``source/ca.crt`` and ``source/ca.key``) as this CA's own."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        write_private(self.directory / "ca.key", (source / "ca.key").read_bytes())
        write_private(self.root_path, (source / "ca.crt").read_bytes(), 0o644)
        self._root = None
        self._load_root()  # fails here, not at the first leaf, if the pair is unusable
        return self

    def _load_root(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if self._root is None:
            cert = x509.load_pem_x509_certificate(self.root_path.read_bytes())
            key = serialization.load_pem_private_key((self.directory / "ca.key").read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{self.directory / 'ca.key'} is not an EC key")
            self._root = (cert, key)
        return self._root

    def issue(
        self,
        component: str,
        lifetime: dt.timedelta | None = None,
        hosts: Sequence[str] = (),
        into: Path | None = None,
    ) -> LeafFiles:
        """A fresh leaf for `component` (server and client use), written over the old one.

        `hosts` are the names the leaf also answers to — DNS names (``*.name`` wildcards allowed)
        or IP addresses: the names other hosts reach it by, e.g. in-cluster service names
        (`mesh.kube`) or a host's address (`tidemesh up --join`). `into` writes the pair to another
        folder than the CA's own (the root stays where it is)."""
        if not component or "/" in component or component.startswith("."):
            raise ValueError(f"component must be a plain name, got {component!r}")
        names = [host_name(component, host) for host in dict.fromkeys(hosts)]
        root, root_key = self._load_root()
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, component)]))
            .issuer_name(root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(min(now + (lifetime or self.leaf_lifetime), root.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(spiffe_id(component)),
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        *(name for name in names if name not in _LOCAL_NAMES),
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        files = self.files(component)
        if into is not None:
            into.mkdir(parents=True, exist_ok=True, mode=0o700)
            files = LeafFiles(component, self.root_path, into / f"{component}.crt", into / f"{component}.key")
        write_private(files.key, _key_pem(key))
        write_private(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return files

    def ensure_leaf(self, component: str, hosts: Sequence[str] = ()) -> LeafFiles:
        """The component's leaf, issued now if it is missing, due for renewal, or does not answer
        to every one of `hosts` (a state dir that joins a mesh of several hosts)."""
        if self.renew_due(component) or not self.covers(component, hosts):
            return self.issue(component, hosts=hosts)
        return self.files(component)

    def covers(self, component: str, hosts: Sequence[str]) -> bool:
        """Whether the component's leaf answers to every one of `hosts` (False when unreadable)."""
        if not hosts:
            return True
        try:
            cert = x509.load_pem_x509_certificate(self.files(component).cert.read_bytes())
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            return False
        held = {*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))}
        return all(str(host_name(component, host).value) in held for host in hosts)

    def expires_at(self, component: str) -> dt.datetime | None:
        path = self.files(component).cert
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            return None
        return cert.not_valid_after_utc

    def renew_due(self, component: str, now: dt.datetime | None = None) -> bool:
        """True once half of the leaf's life has passed (or it is missing or unreadable)."""
        path = self.files(component).cert
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            return True
        if not self.files(component).key.exists():
            return True
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        return (now or _now()) >= start + (end - start) / 2


_LOCAL_NAMES = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))


def host_name(component: str, host: str) -> x509.DNSName | x509.IPAddress:
    """`host` as a subject alternative name: an IP address as one, else a DNS name (``*.name``
    allowed); ValueError naming the component for anything else."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or any(c.isspace() for c in host) or "*" in host.removeprefix("*.") or ":" in host or "/" in host:
        raise ValueError(f"{component}: a leaf's host name must be a DNS name, *.name or an IP address, got {host!r}")
    return x509.DNSName(host)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def trust_in_this_process(directory: Path) -> Path:
    """Create a root in `directory` and trust it the way a user's machine trusts an organisation's
    root — for this process and the ones it starts: the SDK (`TIDEMESH_CA`), Python's ssl
    (`SSL_CERT_FILE`: aiohttp, websockets), grpcio's defaults (`GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`);
    and every mesh started from here adopts it (`TIDEMESH_CA_DIR`). For test sessions and
    benchmarks; call it before aiohttp is imported (its default context reads SSL_CERT_FILE then)."""
    root = CertificateAuthority(directory).ensure().root_path
    os.environ["TIDEMESH_CA_DIR"] = str(directory)
    for name in ("TIDEMESH_CA", "SSL_CERT_FILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"):
        os.environ[name] = str(root)
    return root
