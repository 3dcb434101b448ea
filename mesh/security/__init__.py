"""Zero trust inside the mesh: the local CA, TLS for every hop, who may call whom.

Layout under a mesh's state dir (created by `tidemesh up`, owner-only):

| path | what |
|---|---|
| ``pki/ca.crt``, ``pki/ca.key`` | the local root (`CertificateAuthority`); clients trust ``ca.crt`` |
| ``pki/<component>.crt|.key`` | a short-lived leaf, SAN ``spiffe://tidemesh/<component>`` + localhost/127.0.0.1 |
| ``pki/envoy-sds/*.yaml`` | Envoy's SDS secrets pointing at its leaf and the root (swapped atomically) |
| ``nats/<component>.json`` | the component's NATS user and password (mode 600), read by path |

Components (identities): ``nats``, ``scheduler``, ``inference``, ``worker``, ``gateway``,
``envoy``, ``supervisor`` (health checks, renewals), ``cli`` (operators' tooling, scrapes).
"""

from mesh.security._ca import (
    LEAF_LIFETIME,
    TRUST_DOMAIN,
    CertificateAuthority,
    LeafFiles,
    component_of,
    spiffe_id,
    trust_in_this_process,
)
from mesh.security._policy import CALLERS, MESH, CallerPolicy, allowed_callers, callers_for
from mesh.security._tls import RenewingChannel, Transport, peer_component, peer_identity

__all__ = [
    "CALLERS",
    "LEAF_LIFETIME",
    "MESH",
    "TRUST_DOMAIN",
    "CallerPolicy",
    "CertificateAuthority",
    "LeafFiles",
    "RenewingChannel",
    "Transport",
    "allowed_callers",
    "callers_for",
    "component_of",
    "peer_component",
    "peer_identity",
    "spiffe_id",
    "trust_in_this_process",
]
