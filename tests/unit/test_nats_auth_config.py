"""NATS users on disk, the permission table by role, and the rendered nats.conf blocks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mesh.fabric import EVENTS_STREAM, IDEMPOTENCY_BUCKET, ORDER_KEYS_BUCKET, WORK_STREAM
from mesh.security import LeafFiles
from mesh.security._nats import (
    CREDENTIALS_BUCKET,
    NATS_COMPONENTS,
    RECONCILER_CONSUMER,
    STREAMS,
    TOPOLOGY_BUCKETS,
    NatsUser,
    Permissions,
    authorization_block,
    cluster_tls_block,
    ensure_nats_users,
    permissions,
    quote,
    route_url,
    subject_matches,
    tls_block,
)

SERVICES = [c for c in NATS_COMPONENTS if c != "cli"]


def test_users_are_created_once_owner_only_and_kept(tmp_path: Path) -> None:
    """One file per component, mode 600 in a 700 folder; a second start keeps every password."""
    directory = tmp_path / "nats"
    first = ensure_nats_users(directory, ["scheduler", "gateway"])
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    loaded = {c: NatsUser.load(p) for c, p in first.items()}
    for component, path in first.items():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert loaded[component].user == component
        assert len(loaded[component].password) >= 40
    again = ensure_nats_users(directory, ["scheduler", "gateway", "worker"])
    assert {c: NatsUser.load(p) for c, p in again.items() if c in loaded} == loaded
    assert sorted(p.name for p in directory.iterdir()) == ["gateway.json", "scheduler.json", "worker.json"]


def test_a_user_file_others_can_read_is_refused(tmp_path: Path) -> None:
    """A password file with group or other bits is not used (it may have leaked)."""
    path = ensure_nats_users(tmp_path / "nats", ["worker"])["worker"]
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="600"):
        NatsUser.load(path)


def test_the_password_never_shows_in_a_repr() -> None:
    """Logs and tracebacks print users without their password."""
    user = NatsUser.generate("gateway")
    assert user.password not in repr(user) and "gateway" in repr(user)


def test_bad_user_names_are_refused(tmp_path: Path) -> None:
    """A component name becomes a file name and a NATS user: a path or a space is refused."""
    for name in ("../etc", "a b", ""):
        with pytest.raises(ValueError):
            ensure_nats_users(tmp_path, [name])


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("tm.evt.>", "tm.evt.t1", True),
        ("tm.evt.>", "tm.evt", False),
        ("$JS.API.STREAM.INFO.*", "$JS.API.STREAM.INFO.TM_WORK", True),
        ("$JS.API.STREAM.INFO.*", "$JS.API.STREAM.INFO.TM_WORK.x", False),
        (">", "anything.at.all", True),
        ("a.b", "a.b.c", False),
    ],
)
def test_subject_matching_follows_nats_wildcards(pattern: str, subject: str, expected: bool) -> None:
    """``*`` matches one token, ``>`` one or more trailing ones."""
    assert subject_matches(pattern, subject) is expected


@pytest.mark.parametrize("component", SERVICES)
def test_no_service_may_delete_or_purge_a_stream_or_bucket(component: str) -> None:
    """Stream and bucket deletion and purges are denied to every service, with no exception: the
    listing and dead-letter code empties one subject by deleting its messages by sequence."""
    grant = permissions(component)
    for stream in (*STREAMS, *(f"KV_{b}" for b in (*TOPOLOGY_BUCKETS, CREDENTIALS_BUCKET)), "ANY"):
        assert not grant.may_publish(f"$JS.API.STREAM.DELETE.{stream}")
    for stream in STREAMS:
        assert not grant.may_publish(f"$JS.API.STREAM.PURGE.{stream}")
    for bucket in (*TOPOLOGY_BUCKETS, CREDENTIALS_BUCKET):
        assert not grant.may_publish(f"$JS.API.STREAM.PURGE.KV_{bucket}")


def test_only_the_scheduler_and_workers_append_events_and_only_the_gateway_writes_credentials() -> None:
    """The issue's two write rules, for every role (cli, the admin, may do both). Worker sessions
    run in worker processes: the gateway, which relays workers' streams, still appends nothing."""
    for component in NATS_COMPONENTS:
        grant = permissions(component)
        assert grant.may_publish("tm.evt.t1") is (component in ("scheduler", "worker", "cli"))
        assert grant.may_publish(f"$KV.{CREDENTIALS_BUCKET}.apikey.k") is (component in ("gateway", "cli"))
        assert grant.may_subscribe("_INBOX.abc.1"), component


def test_admission_subjects_are_the_schedulers() -> None:
    """Listing entries, parking, idempotency claims, cancels and scale advice: scheduler only."""
    for subject in ("tm.task.acme.t1", "tm.ord.acme.k", f"$KV.{IDEMPOTENCY_BUCKET}.k", "tm.cancel.t1", "tm.scale.x"):
        assert [c for c in SERVICES if permissions(c).may_publish(subject)] == ["scheduler"], subject


def test_workers_pull_ack_and_order_but_inference_only_registers() -> None:
    """A worker pulls tenant partitions and acks them, moves ordering keys; inference writes its
    registry bucket and nothing else."""
    worker = permissions("worker")
    assert worker.may_publish(f"$JS.API.CONSUMER.MSG.NEXT.{WORK_STREAM}.work-ingestion-standard-acme")
    assert worker.may_publish(f"$JS.ACK.{WORK_STREAM}.work-ingestion-standard-acme.1.2.3.4.5")
    assert worker.may_publish(f"$KV.{ORDER_KEYS_BUCKET}.acme.abc")
    assert not worker.may_publish(f"$JS.API.CONSUMER.MSG.NEXT.TM_TASKS.{RECONCILER_CONSUMER}")
    inference = permissions("inference")
    assert inference.may_publish("$KV.tm_inference.host.cpu")
    assert not inference.may_publish(f"$JS.API.DIRECT.GET.{EVENTS_STREAM}")
    assert not inference.may_subscribe("tm.evt.t1")


def test_a_worker_narrowed_to_pools_hears_only_their_doorbells() -> None:
    """`pools` narrows the doorbells a worker may follow; an unknown pool is refused."""
    grant = permissions("worker", pools=["inference"])
    assert grant.may_subscribe("tm.bell.inference.standard.acme")
    assert not grant.may_subscribe("tm.bell.ingestion.standard.acme")
    with pytest.raises(ValueError):
        permissions("worker", pools=["nope"])
    with pytest.raises(ValueError):
        permissions("stranger")


def test_names_shared_with_the_services_agree() -> None:
    """The bucket and consumer names spelled here are the services' own."""
    from services.gateway._auth import CREDENTIALS_BUCKET as GATEWAY_BUCKET
    from services.scheduler._reconcile import RECONCILER_CONSUMER as SCHEDULER_CONSUMER

    assert (CREDENTIALS_BUCKET, RECONCILER_CONSUMER) == (GATEWAY_BUCKET, SCHEDULER_CONSUMER)


def test_strings_are_double_quoted_safely() -> None:
    """Quotes and backslashes are escaped; control characters (a newline would end the value) refused."""
    assert quote('a"b\\c-_') == '"a\\"b\\\\c-_"'
    with pytest.raises(ValueError):
        quote("a\nb")


def test_the_authorization_block_lists_every_user_and_denies_all_for_an_empty_allow() -> None:
    """Each user with its quoted password and permissions; an empty allow list renders deny ">"
    (an empty allow would restrict nothing)."""
    users = {"supervisor": NatsUser("supervisor", "pa-ss_1"), "worker": NatsUser("worker", "pw2")}
    text = authorization_block(users)
    assert 'user: "supervisor", password: "pa-ss_1"' in text and 'user: "worker", password: "pw2"' in text
    custom = authorization_block(users, grants={"worker": Permissions((), ("_INBOX.>",))})
    assert 'publish: { deny: [">"] }, subscribe: { allow: ["_INBOX.>"] }' in custom
    with pytest.raises(ValueError):
        authorization_block({})


def test_tls_blocks_name_the_leaf_and_the_ca(tmp_path: Path) -> None:
    """Clients: TLS with the server's leaf, no client certificate asked; routes: verified both ways,
    with the route password that every route URL then carries."""
    leaf = LeafFiles("nats", tmp_path / "ca.crt", tmp_path / "nats.crt", tmp_path / "nats.key")
    client = tls_block(leaf)
    assert f'cert_file: "{leaf.cert}"' in client and f'ca_file: "{leaf.ca}"' in client
    assert "verify: false" in client
    route = NatsUser("route", "r-pw")
    cluster = cluster_tls_block(leaf, route)
    assert "verify: true" in cluster and 'password: "r-pw"' in cluster
    assert route_url(6222, route) == "nats-route://route:r-pw@127.0.0.1:6222"
