"""The local CA and the TLS transport: identities, file modes, half-life renewal, reloads."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import grpc
import grpc.aio
import pytest
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mesh.security import CertificateAuthority, Transport, allowed_callers, callers_for, component_of, spiffe_id


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_leaf_carries_its_workload_identity_and_loopback(tmp_path: Path) -> None:
    """SAN: the SPIFFE URI of the component, localhost and 127.0.0.1; keys are mode 600."""
    ca = CertificateAuthority(tmp_path / "pki").ensure()
    leaf = ca.issue("gateway")
    cert = x509.load_pem_x509_certificate(leaf.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://tidemesh/gateway"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(hours=24, minutes=5)
    assert _mode(leaf.key) == 0o600 and _mode(tmp_path / "pki" / "ca.key") == 0o600
    assert _mode(tmp_path / "pki") == 0o700
    assert component_of(spiffe_id("worker")) == "worker" and component_of("spiffe://other/worker") == ""


def test_the_root_is_created_once(tmp_path: Path) -> None:
    """A restart keeps the root (clients keep trusting the mesh); an adopted root is used as is."""
    first = CertificateAuthority(tmp_path / "a").ensure().root_path.read_bytes()
    assert CertificateAuthority(tmp_path / "a").ensure().root_path.read_bytes() == first
    adopted = CertificateAuthority(tmp_path / "b").adopt(tmp_path / "a").ensure()
    assert adopted.root_path.read_bytes() == first
    issued = x509.load_pem_x509_certificate(adopted.issue("worker").cert.read_bytes())
    assert issued.issuer == x509.load_pem_x509_certificate(first).subject


def test_renewal_is_due_at_half_life(tmp_path: Path) -> None:
    """Missing leaves are due; a fresh one is not; past half of its life it is."""
    ca = CertificateAuthority(tmp_path / "pki", leaf_lifetime=dt.timedelta(hours=10)).ensure()
    assert ca.renew_due("scheduler")
    ca.issue("scheduler")
    start = x509.load_pem_x509_certificate(ca.files("scheduler").cert.read_bytes()).not_valid_before_utc
    assert not ca.renew_due("scheduler")
    assert not ca.renew_due("scheduler", now=start + dt.timedelta(hours=5))
    assert ca.renew_due("scheduler", now=start + dt.timedelta(hours=5, minutes=10))


def test_the_allow_list_names_who_calls_what() -> None:
    """Admission is the gateway's; a worker reports itself; the public API is Envoy's only."""
    assert allowed_callers("/mesh.v1.SchedulerService/AdmitTask") == {"gateway"}
    assert "worker" not in allowed_callers("/mesh.v1.SchedulerService/AbortTask")
    assert allowed_callers("/mesh.v1.GatewayService/SubmitTask") == {"envoy"}
    assert allowed_callers("/mesh.v1.Unknown/Method") == frozenset()
    # One service, two servers: the gateway takes workers' streams from Envoy only, a worker process
    # hosting sessions takes them from the gateway only (which checked the credential).
    connect = "/mesh.v1.WorkerSessionService/Connect"
    assert allowed_callers(connect, callers_for("gateway")) == {"envoy"}
    assert allowed_callers(connect, callers_for("worker")) == {"gateway"}
    assert allowed_callers(connect) == frozenset(), "served nowhere without its server's list"


async def test_servers_and_channels_follow_a_renewed_leaf(tmp_path: Path) -> None:
    """After the files are swapped, a new handshake gets the new server pair and the client
    channel is rebuilt on its next call; the old channel is retired, not cut."""
    ca = CertificateAuthority(tmp_path / "pki").ensure()
    for component in ("scheduler", "gateway"):
        ca.issue(component)
    server_side = Transport.of(ca.directory, "scheduler")
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", server_side.server_credentials())
    await server.start()
    try:
        channel = Transport.of(ca.directory, "gateway").channel(f"127.0.0.1:{port}")
        stub = health_pb2_grpc.HealthStub(channel)
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        first = channel.current()  # type: ignore[attr-defined]
        ca.issue("gateway")
        ca.issue("scheduler")
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert channel.current() is not first  # type: ignore[attr-defined]
        await channel.close()
    finally:
        await server.stop(0)


def test_ssl_contexts_reload_in_place(tmp_path: Path) -> None:
    """`refresh` reloads every context the transport made, once, when the files changed."""
    ca = CertificateAuthority(tmp_path / "pki").ensure()
    ca.issue("cli")
    transport = Transport.of(ca.directory, "cli")
    assert transport.client_ssl_context() is not None
    assert not transport.refresh()
    ca.issue("cli")
    assert transport.refresh()
    assert not transport.refresh()


def test_missing_material_is_a_clear_error(tmp_path: Path) -> None:
    """A process told to use a pki dir without its leaf names the missing file."""
    CertificateAuthority(tmp_path / "pki").ensure()
    with pytest.raises(FileNotFoundError, match="worker"):
        Transport.of(tmp_path / "pki", "worker")
    assert not Transport.of("", "worker").secure
