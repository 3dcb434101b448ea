"""Envoy's certificates through file-based SDS, swapped atomically so renewal needs no restart.

The bootstrap (``EdgeConfig(tls=EdgeTls(sds_dir))``) names two secrets, each read from its own
file in ``sds_dir`` with ``path_config_source`` + ``watched_directory: sds_dir``: Envoy reloads
a file whenever an entry is *moved into* that directory (only a rename is atomic; a file being
written in place is never read half-done). `write_sds` therefore writes each file under a
temporary name in the same directory and ``os.replace``-s it over the old one.

The secrets carry the PEM data inline rather than file names: one rename swaps the certificate
and its key together, so Envoy can never pair a new key with an old certificate, and a leaf
re-issued in ``pki/`` takes effect only when `write_sds` publishes it. The leaf file holds the
private key: it is mode 600 in a mode-700 directory, read only by Envoy (the same user).

Envoy refuses to start when a ``path_config_source`` file is missing, so call `write_sds`
before starting Envoy (and before ``envoy --mode validate`` on a TLS rendering).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.json_format import MessageToJson, ParseDict, ParseError

from mesh.security import LeafFiles
from mesh.security._ca import write_private

__all__ = ["CA_SECRET", "CERT_SECRET", "check_sds", "sds_path", "write_sds"]

# Secret names; each is also its file's stem in the SDS directory.
CERT_SECRET = "tidemesh_edge_cert"
CA_SECRET = "tidemesh_mesh_ca"


def sds_path(sds_dir: str | Path, secret: str) -> Path:
    """The file in `sds_dir` that holds `secret` (one resource per file, as file-based SDS requires)."""
    return Path(sds_dir) / f"{secret}.yaml"


def _document(secret: secret_pb2.Secret) -> str:
    packed = any_pb2.Any()
    packed.Pack(secret)
    response = discovery_pb2.DiscoveryResponse(resources=[packed])
    data = json.loads(MessageToJson(response, preserving_proto_field_name=True))
    return str(yaml.safe_dump(data, sort_keys=True, default_flow_style=False, width=1_000_000))


def _replace(path: Path, text: str) -> None:
    """Mode 600 from the first byte, then renamed over `path`: the IN_MOVED_TO Envoy's
    watched_directory reacts to."""
    write_private(path, text.encode())


def _check_pair(leaf: LeafFiles, cert_pem: bytes, key_pem: bytes) -> None:
    """Refuse to publish a key that is not the certificate's (read mid-renewal): Envoy would reject it anyway."""
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    private = serialization.load_pem_private_key(key_pem, password=None)
    encoding, public_format = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if public.public_bytes(encoding, public_format) != private.public_key().public_bytes(encoding, public_format):
        raise ValueError(f"{leaf.key} does not belong to {leaf.cert} (re-read after the renewal finishes)")


def write_sds(sds_dir: Path, leaf: LeafFiles) -> None:
    """Publish `leaf` (Envoy's own pair) and its trust root to Envoy's SDS directory, atomically per file.

    Called at first start and again after each ``CertificateAuthority.issue("envoy")``: Envoy then
    serves the new certificate on new connections (and presents it to new upstream connections);
    connections already open keep theirs.
    """
    sds_dir = Path(sds_dir)
    sds_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(sds_dir, 0o700)
    cert_pem, key_pem = leaf.cert.read_bytes(), leaf.key.read_bytes()
    _check_pair(leaf, cert_pem, key_pem)
    data = base_pb2.DataSource
    ca = secret_pb2.Secret(
        name=CA_SECRET,
        validation_context=common_pb2.CertificateValidationContext(trusted_ca=data(inline_string=leaf.ca.read_text())),
    )
    cert = secret_pb2.Secret(
        name=CERT_SECRET,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=data(inline_string=cert_pem.decode()),
            private_key=data(inline_string=key_pem.decode()),
        ),
    )
    # The root first: when the CA itself changes, upstreams are trusted by the new root before
    # Envoy presents a leaf that only the new root vouches for.
    _replace(sds_path(sds_dir, CA_SECRET), _document(ca))
    _replace(sds_path(sds_dir, CERT_SECRET), _document(cert))


def check_sds(sds_dir: str | Path) -> None:
    """Raise ValueError unless each SDS file in `sds_dir` holds exactly one secret of its name and kind.

    ``envoy --mode validate`` only checks that the files exist; a file Envoy cannot use would be
    found at start (or, after a renewal, only in Envoy's log while it keeps the old secret).
    """
    for name, kind in ((CERT_SECRET, "tls_certificate"), (CA_SECRET, "validation_context")):
        path = sds_path(sds_dir, name)
        try:
            response = ParseDict(yaml.safe_load(path.read_text()), discovery_pb2.DiscoveryResponse())
        except (OSError, yaml.YAMLError, ParseError, TypeError) as exc:
            raise ValueError(f"{path}: not a readable SDS file: {exc}") from exc
        if len(response.resources) != 1:
            raise ValueError(f"{path}: file-based SDS wants exactly one secret, found {len(response.resources)}")
        secret = secret_pb2.Secret()
        if not response.resources[0].Unpack(secret) or secret.name != name or secret.WhichOneof("type") != kind:
            raise ValueError(f"{path}: expected a {kind} secret named {name!r}")
