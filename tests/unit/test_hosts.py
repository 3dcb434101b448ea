"""A mesh over several hosts, without starting it: each host's plan (its NATS node, routes and
advertised addresses, the services' seeds, the ports every host shares), leaves for a host's name,
which host this machine is, the identity handed from the first host to the others, the manifest's
hosts fields, `--join`, and `tidemesh ca export|import`."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509

from clients.cli._config import resolve_args
from clients.cli._main import _parser, main
from mesh.manifest import ManifestError, observe, plan_arguments, resolve
from mesh.security import CertificateAuthority
from mesh.supervisor import (
    HostError,
    IdentityError,
    MeshSecurity,
    build_plan,
    export_identity,
    import_identity,
    this_host,
)
from mesh.supervisor._security import LeafRenewer

HOSTS = ["10.77.0.1", "10.77.0.2", "node-c.example"]
HEAD = {"apiVersion": "tidemesh.dev/v1alpha1", "kind": "Mesh"}


def _names(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))}


def _flag(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command[:-1]) if word == flag]


def test_each_host_runs_one_node_routed_to_the_others_and_every_service_seeded_with_all(tmp_path: Path) -> None:
    """Host 2 of three: its node listens on and advertises its address, routes to the others' same
    route port, checks peers against the root; services try its node first, then the others'."""
    plan = build_plan(tmp_path, public_port=8080, cluster=3, hosts=HOSTS, host="10.77.0.2")
    assert (plan.hosts, plan.host) == (HOSTS, "10.77.0.2")
    (node,) = [spec for spec in plan.processes if spec.name.startswith("nats")]
    assert node.name == "nats" and node.address == "tls://10.77.0.2:8082" and node.health.url == node.address
    config = (tmp_path / "nats.conf").read_text()
    assert "server_name: tidemesh-1\n" in config
    assert "listen: 10.77.0.2:8082\n" in config and 'client_advertise: "10.77.0.2:8082"' in config
    cluster = config[config.index("cluster {") :]
    assert "listen: 10.77.0.2:8084" in cluster and 'advertise: "10.77.0.2:8084"' in cluster
    assert "routes: [nats-route://10.77.0.1:8084, nats-route://node-c.example:8084]" in cluster
    assert "verify: true" in cluster and 'ping_interval: "2s"' in config
    for name in ("scheduler", "inference", "worker-1", "gateway"):
        command = plan.by_name(name).command
        assert _flag(command, "--nats") == ["tls://10.77.0.2:8082,tls://10.77.0.1:8082,tls://node-c.example:8082"]
        assert "--nats-in-order" in command and _flag(command, "--replicas") == ["3"]
    inference = plan.by_name("inference")  # other hosts' workers call it where it registers
    assert _flag(inference.command, "--grpc") == ["10.77.0.2:8087"] and inference.address == "10.77.0.2:8087"
    assert _flag(inference.command, "--advertise") == ["10.77.0.2:8087"]
    assert _flag(plan.by_name("scheduler").command, "--grpc") == ["127.0.0.1:8085"]  # the rest stay local
    assert _flag(plan.by_name("worker-1").command, "--inference") == ["10.77.0.2:8087"]


def test_every_host_has_the_same_ports_and_its_own_node_name(tmp_path: Path) -> None:
    """The seeds are the hosts' names: ports are derived from the public port alike on each."""
    plans = [
        build_plan(tmp_path / host, public_port=9000, cluster=3, hosts=HOSTS, host=host, workers=2) for host in HOSTS
    ]
    assert all(plan.ports() == plans[0].ports() for plan in plans)
    names = [re.search(r"server_name: (\S+)", (tmp_path / h / "nats.conf").read_text()) for h in HOSTS]
    assert [m.group(1) for m in names if m] == ["tidemesh-0", "tidemesh-1", "tidemesh-2"]


def test_a_hosts_leaves_answer_to_its_name_and_keep_it_when_renewed(tmp_path: Path) -> None:
    """IP addresses as IP SANs, names as DNS SANs; a leaf issued before the host joined is issued
    again; the supervisor's renewal keeps the host's name."""
    plain = build_plan(tmp_path, public_port=8080)
    assert _names(MeshSecurity(tmp_path).leaf("nats").cert) == {"localhost", "127.0.0.1"}
    plan = build_plan(tmp_path, public_port=8080, cluster=3, hosts=HOSTS, host="node-c.example")
    for component in ("nats", "envoy", "inference", "scheduler"):
        assert _names(MeshSecurity(tmp_path).leaf(component).cert) == {"localhost", "127.0.0.1", "node-c.example"}
    assert plain.security is not None and plan.security is not None and plan.security.hosts == ("node-c.example",)
    LeafRenewer(plan.security).renew_due(everything=True)
    assert "node-c.example" in _names(MeshSecurity(tmp_path).leaf("nats").cert)
    ca = CertificateAuthority(tmp_path / "pki")
    ca.issue("envoy", hosts=["10.77.0.9", "*.mesh.example"])
    assert _names(ca.files("envoy").cert) >= {"10.77.0.9", "*.mesh.example"}
    assert ca.covers("envoy", ["10.77.0.9"]) and not ca.covers("envoy", ["10.77.0.8"])
    for bad in ("", "a b", "host:8080", "a.*.example"):
        with pytest.raises(ValueError, match=r"DNS name, \*.name or an IP address"):
            ca.issue("envoy", hosts=[bad])


def test_one_host_named_by_host_faces_the_network_by_that_name(tmp_path: Path) -> None:
    """--host without --join: the leaves answer to it; nothing else moves off loopback."""
    plan = build_plan(tmp_path, public_port=8080, host="10.77.0.5")
    assert "10.77.0.5" in _names(MeshSecurity(tmp_path).leaf("envoy").cert)
    assert plan.hosts == [] and plan.host == "10.77.0.5" and plan.nats_servers.startswith("tls://127.0.0.1:")
    assert "--nats-in-order" not in plan.by_name("scheduler").command


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cluster": 1}, "a mesh over 3 hosts runs 3 nodes"),
        ({"insecure": True}, "runs secure only"),
        ({"public_port": 0}, "0 \\(free ports\\) cannot be known"),
        ({"host": "10.9.9.9"}, "is not one of the mesh's hosts"),
        ({"hosts": ["10.77.0.1", "10.77.0.1", "10.77.0.3"]}, "each host once"),
        ({"hosts": ["10.77.0.1", "bad host", "10.77.0.3"]}, "DNS name"),
    ],
)
def test_a_plan_over_hosts_refuses_what_cannot_work(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    """Each refusal names the argument."""
    arguments: dict[str, object] = {"public_port": 8080, "cluster": 3, "hosts": HOSTS, "host": HOSTS[0], **kwargs}
    with pytest.raises(ValueError, match=message):
        build_plan(tmp_path, **arguments)  # type: ignore[arg-type]


def test_this_host_is_the_one_address_it_can_bind() -> None:
    """Loopback is this machine's, a name under .invalid nobody's; two of its own are ambiguous."""
    assert this_host(["a.invalid", "127.0.0.1", "b.invalid"]) == "127.0.0.1"
    assert this_host(["a.invalid", "127.0.0.1"], given="a.invalid") == "a.invalid"
    with pytest.raises(HostError, match=r"none of the hosts .* name it with --host"):
        this_host(["a.invalid", "b.invalid", "c.invalid"])
    with pytest.raises(HostError, match=r"several of the hosts \(10.0.0.1, 10.0.0.2\)"):
        this_host(["10.0.0.1", "10.0.0.2", "10.0.0.3"], is_local=lambda host: host != "10.0.0.3")
    with pytest.raises(HostError, match="is not one of the mesh's hosts"):
        this_host(["a.invalid", "b.invalid", "c.invalid"], given="d.invalid")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_identity_goes_from_the_first_host_to_the_others(tmp_path: Path) -> None:
    """Exported owner-only; imported, another host's plan keeps the root, users and keys and issues
    its own leaves from that root; the same identity again is a no-op, another mesh's is refused."""
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "identity"
    build_plan(first, public_port=8080, cluster=3, hosts=HOSTS, host=HOSTS[0], auth=True)
    written = export_identity(first, out)
    relative = sorted(str(path.relative_to(out)) for path in written)
    assert "pki/ca.key" in relative and "nats/worker.json" in relative and "auth/admin.key" in relative
    assert "audit/signing.key" in relative and not any(name.endswith(("nats.key", "nats.crt")) for name in relative)
    assert _mode(out) == 0o700 and _mode(out / "pki" / "ca.key") == 0o600 and _mode(out / "nats" / "cli.json") == 0o600
    assert len(import_identity(out, second)) == len(written)
    build_plan(second, public_port=8080, cluster=3, hosts=HOSTS, host=HOSTS[1], auth=True)
    for shared in ("pki/ca.crt", "pki/ca.key", "nats/worker.json", "auth/jwt.secret", "audit/signing.key"):
        assert (first / shared).read_bytes() == (second / shared).read_bytes(), shared
    leaf = x509.load_pem_x509_certificate((second / "pki" / "nats.crt").read_bytes())
    root = x509.load_pem_x509_certificate((first / "pki" / "ca.crt").read_bytes())
    assert leaf.issuer == root.subject and "10.77.0.2" in _names(second / "pki" / "nats.crt")
    assert import_identity(out, second) == []
    other = tmp_path / "other"
    build_plan(other, public_port=8080)  # the test session's root (TIDEMESH_CA_DIR), its own users
    with pytest.raises(IdentityError, match=r"already belongs to another mesh \(nats/cli.json"):
        import_identity(out, other)
    with pytest.raises(IdentityError, match="is not empty"):
        export_identity(first, out)
    with pytest.raises(IdentityError, match="no mesh root"):
        export_identity(tmp_path / "nowhere", tmp_path / "fresh")
    with pytest.raises(IdentityError, match="holds no exported identity"):
        import_identity(tmp_path / "nowhere", tmp_path / "fresh")


def test_the_manifest_says_the_hosts_and_a_plan_reads_them_back(tmp_path: Path) -> None:
    """durability.cluster.hosts and host reach the plan and come back from it (with the nodes)."""
    manifest = resolve(
        {
            **HEAD,
            "stateDir": str(tmp_path),
            "durability": {"cluster": {"nodes": 3, "hosts": HOSTS, "host": HOSTS[2]}},
        }
    )
    plan = build_plan(tmp_path, **plan_arguments(manifest))
    assert plan.host == "node-c.example"
    cluster = observe(plan).document["durability"]["cluster"]
    assert cluster == {"nodes": 3, "hosts": HOSTS, "host": "node-c.example"}


@pytest.mark.parametrize(
    ("section", "issue"),
    [
        ({"durability": {"cluster": {"nodes": 3, "hosts": HOSTS[:2]}}}, "durability.cluster.hosts: a mesh over hosts"),
        ({"durability": {"cluster": {"hosts": HOSTS}}}, "durability.cluster.nodes: must be the number of hosts \\(3"),
        ({"durability": {"cluster": {"nodes": 3, "hosts": HOSTS, "host": "x.example"}}}, "cluster.host: must be one"),
        ({"durability": {"cluster": {"nodes": 3, "hosts": ["bad_host", "c", "d"]}}}, "durability.cluster.hosts"),
        (
            {"durability": {"cluster": {"nodes": 3, "hosts": HOSTS}}, "endpoints": {"public": {"port": 0}}},
            "endpoints.public.port: 0 picks free ports on each host",
        ),
        (
            {"durability": {"cluster": {"nodes": 3, "hosts": HOSTS}}, "experiments": {"insecure": True}},
            "experiments.insecure: a mesh over several hosts runs secure only",
        ),
    ],
)
def test_the_manifest_refuses_hosts_that_cannot_work(section: dict[str, object], issue: str) -> None:
    """Each refusal names its field."""
    with pytest.raises(ManifestError, match=issue):
        resolve({**HEAD, **section})


def test_join_sets_the_hosts_and_one_node_on_each(tmp_path: Path) -> None:
    """`up --join a,b,c --host b`: the manifest's hosts, nodes and host."""
    parser = _parser()
    args = parser.parse_args(["up", "--state-dir", str(tmp_path), "--join", " 10.77.0.1,10.77.0.2,10.77.0.3"])
    cluster = resolve_args(args).manifest.durability.cluster
    assert (cluster.nodes, cluster.hosts, cluster.host) == (3, ("10.77.0.1", "10.77.0.2", "10.77.0.3"), None)
    args = parser.parse_args(["plan", "--state-dir", str(tmp_path), "--join", "a,b,c", "--host", "b"])
    assert resolve_args(args).manifest.durability.cluster.host == "b"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_ca_export_and_import_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tidemesh ca export FOLDER` then `ca import FOLDER --state-dir …`; a refusal exits 2 naming the folder."""
    build_plan(tmp_path / "first", public_port=8080, cluster=3, hosts=HOSTS, host=HOSTS[0], auth=True)
    code, out, _ = _run(["ca", "export", str(tmp_path / "id"), "--state-dir", str(tmp_path / "first")], capsys)
    assert code == 0 and "exported the mesh's identity" in out and "ca import" in out
    code, out, _ = _run(
        ["ca", "import", str(tmp_path / "id"), "--state-dir", str(tmp_path / "second"), "-o", "json"], capsys
    )
    assert code == 0 and '"action": "import"' in out
    assert (tmp_path / "second" / "pki" / "ca.key").read_bytes() == (tmp_path / "first" / "pki" / "ca.key").read_bytes()
    code, _, err = _run(["ca", "export", str(tmp_path / "id"), "--state-dir", str(tmp_path / "first")], capsys)
    assert code == 2 and "folder" in err and "is not empty" in err
    code, out, _ = _run(["ca", "--state-dir", str(tmp_path / "second")], capsys)
    assert code == 0 and out.strip() == str(tmp_path / "second" / "pki" / "ca.crt")
    code, _, err = _run(["ca", "import", "--state-dir", str(tmp_path / "second")], capsys)
    assert code == 2 and "needs a folder" in err


def test_plan_says_which_host_field_to_give(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """None of the hosts is this machine's: exit 2 naming durability.cluster.host and --host; two
    hosts: exit 2 naming --join, not the node count it could not set."""
    argv = ["plan", "--state-dir", str(tmp_path), "--join", "a.invalid,b.invalid,c.invalid"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "durability.cluster.host: none of the hosts" in err and "--host" in err
    code, _, err = _run(["plan", "--state-dir", str(tmp_path), "--join", "a.invalid,b.invalid"], capsys)
    assert code == 2 and "--join (durability.cluster.hosts): a mesh over hosts needs 3 or 5" in err
    code, out, _ = _run([*argv, "--host", "b.invalid", "-o", "json"], capsys)
    assert code == 0 and '"host": "b.invalid"' in out
