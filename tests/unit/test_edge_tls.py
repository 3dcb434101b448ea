"""The rendered Envoy bootstrap with TLS and an admin socket (checked on the YAML, no Envoy), and write_sds's files."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.edge import CA_SECRET, CERT_SECRET, EdgeConfig, EdgeTls, render_yaml, sds_path, write_sds
from mesh.security import CertificateAuthority

SDS = "/state/pki/envoy-sds"
TLS = "envoy.transport_sockets.tls"


def _bootstrap(cfg: EdgeConfig) -> dict[str, Any]:
    return yaml.safe_load(render_yaml(cfg))  # type: ignore[no-any-return]


def _clusters(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}


def _sds(name: str) -> dict[str, Any]:
    source = {"path": f"{SDS}/{name}.yaml", "watched_directory": {"path": SDS}}
    return {"name": name, "sds_config": {"path_config_source": source, "resource_api_version": "V3"}}


def test_defaults_stay_plaintext_with_a_tcp_admin() -> None:
    """Without tls and admin_socket the bootstrap has no transport sockets and a loopback TCP admin, as before."""
    bootstrap = _bootstrap(EdgeConfig())
    assert "transport_socket" not in bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]
    assert all("transport_socket" not in c for c in _clusters(bootstrap).values())
    assert bootstrap["admin"]["address"] == {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}


def test_public_listener_terminates_tls_with_alpn_from_sds() -> None:
    """The public chain offers h2 and http/1.1, TLS >= 1.2, no client certificate, its certificate from SDS."""
    chain = _bootstrap(EdgeConfig(tls=EdgeTls(SDS)))["static_resources"]["listeners"][0]["filter_chains"][0]
    socket = chain["transport_socket"]
    assert socket["name"] == TLS
    context = socket["typed_config"]
    assert context["@type"].endswith("DownstreamTlsContext")
    assert context["require_client_certificate"] is False
    common = context["common_tls_context"]
    assert common["alpn_protocols"] == ["h2", "http/1.1"]
    assert common["tls_params"] == {"tls_minimum_protocol_version": "TLSv1_2"}
    assert common["tls_certificate_sds_secret_configs"] == [_sds(CERT_SECRET)]


@pytest.mark.parametrize(("cluster", "alpn"), [("gateway_grpc", ["h2"]), ("gateway_http", ["http/1.1"])])
def test_upstream_clusters_use_mtls_pinned_to_the_gateway_identity(cluster: str, alpn: list[str]) -> None:
    """Each cluster presents Envoy's leaf, trusts the CA from SDS and accepts only the expected URI SAN."""
    cfg = EdgeConfig(tls=EdgeTls(SDS, upstream_identity="spiffe://tidemesh/gateway"))
    socket = _clusters(_bootstrap(cfg))[cluster]["transport_socket"]
    assert socket["name"] == TLS
    assert socket["typed_config"]["@type"].endswith("UpstreamTlsContext")
    common = socket["typed_config"]["common_tls_context"]
    assert common["alpn_protocols"] == alpn
    assert common["tls_certificate_sds_secret_configs"] == [_sds(CERT_SECRET)]
    combined = common["combined_validation_context"]
    assert combined["validation_context_sds_secret_config"] == _sds(CA_SECRET)
    assert combined["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": "spiffe://tidemesh/gateway"}}
    ]


def test_admin_socket_replaces_the_tcp_port() -> None:
    """admin_socket renders a pipe with mode 0o600 and no socket_address."""
    admin = _bootstrap(EdgeConfig(admin_socket="/state/envoy-admin.sock"))["admin"]
    assert admin == {"address": {"pipe": {"path": "/state/envoy-admin.sock", "mode": 0o600}}}


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: EdgeTls("relative/sds"), "tls.sds_dir"),
        (lambda: EdgeTls(SDS, upstream_identity="gateway"), "tls.upstream_identity"),
        (lambda: EdgeConfig(admin_socket="admin.sock"), "admin_socket"),
        (lambda: EdgeConfig(admin_socket="/" + "a" * 120), "admin_socket"),
    ],
)
def test_bad_tls_and_admin_options_name_the_field(make: Any, field: str) -> None:
    """A relative SDS dir, a non-SPIFFE identity, a relative or over-long socket path raise ValueError naming it."""
    with pytest.raises(ValueError, match=field):
        make()


def test_write_sds_publishes_both_secrets_privately(tmp_path: Path) -> None:
    """write_sds leaves one owner-only file per secret (PEM inline, the right name) and no temporary files."""
    ca = CertificateAuthority(tmp_path / "pki").ensure()
    leaf = ca.issue("envoy")
    sds_dir = tmp_path / "sds"
    write_sds(sds_dir, leaf)
    assert stat.S_IMODE(sds_dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in sds_dir.iterdir()) == sorted(
        sds_path(sds_dir, s).name for s in (CERT_SECRET, CA_SECRET)
    )
    [cert] = yaml.safe_load(sds_path(sds_dir, CERT_SECRET).read_text())["resources"]
    assert cert["name"] == CERT_SECRET
    assert cert["tls_certificate"]["certificate_chain"]["inline_string"] == leaf.cert.read_text()
    assert cert["tls_certificate"]["private_key"]["inline_string"] == leaf.key.read_text()
    [root] = yaml.safe_load(sds_path(sds_dir, CA_SECRET).read_text())["resources"]
    assert (root["name"], root["validation_context"]["trusted_ca"]["inline_string"]) == (CA_SECRET, leaf.ca.read_text())
    for secret in (CERT_SECRET, CA_SECRET):
        assert stat.S_IMODE(sds_path(sds_dir, secret).stat().st_mode) == 0o600


def test_write_sds_refuses_a_key_that_is_not_the_certificates(tmp_path: Path) -> None:
    """A key read mid-renewal (another leaf's) raises ValueError and leaves the published secrets as they were."""
    ca = CertificateAuthority(tmp_path / "pki").ensure()
    sds_dir = tmp_path / "sds"
    write_sds(sds_dir, ca.issue("envoy"))
    published = sds_path(sds_dir, CERT_SECRET).read_text()
    mixed = ca.issue("envoy")
    other = ca.issue("gateway")
    with pytest.raises(ValueError, match="does not belong"):
        write_sds(sds_dir, type(mixed)(mixed.component, mixed.ca, mixed.cert, other.key))
    assert sds_path(sds_dir, CERT_SECRET).read_text() == published
