"""The schema registry on a real nats-server (TLS, a user): versions, ids, races, reads, refusals."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from nats.aio.client import Client as NATS

from mesh.errors import InvalidArgument, NotFound, Unavailable
from mesh.schemas import IncompatibleSchema, SchemaRegistry, compile_proto, decode_strict, fingerprint
from mesh.security import CertificateAuthority
from mesh.security._nats import (
    NATS_COMPONENTS,
    NatsUser,
    authorization_block,
    ensure_nats_users,
    tls_block,
    write_private_config,
)
from mesh.supervisor import find_binary, free_port
from mesh.v1 import schema_pb2
from tests.conftest import eventually
from tests.integration.conftest import NatsServer

pytestmark = pytest.mark.integration

V1 = "message {name} {{ int32 width = 1; string label = 2; }}"
V2 = "message {name} {{ int32 width = 1; string label = 2; int32 height = 3; }}"
V3_BREAKING = "message {name} {{ int64 width = 1; bytes label = 2; }}"  # and height deleted unreserved


def _set(tmp: Path, tag: str, template: str, name: str) -> bytes:
    root = tmp / tag
    source = root / "acme" / "v1" / f"{name.lower()}.proto"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(f'syntax = "proto3";\npackage acme.v1;\n{template.format(name=name)}\n')
    return compile_proto(source, [root])


@pytest.fixture
async def registry(private_nats: NatsServer) -> AsyncIterator[SchemaRegistry]:
    async with await private_nats.connect("registry-test") as nc:
        yield await SchemaRegistry.open(nc.jetstream(timeout=5.0))


async def test_versions_are_registered_idempotently_and_checked(registry: SchemaRegistry, tmp_path: Path) -> None:
    """v1, the same v1 again (not created), a compatible v2, an incompatible v3 refused with every violation."""
    subject = "acme.v1.Resize"
    first, created = await registry.register(subject, _set(tmp_path, "v1", V1, "Resize"))
    assert created and first.version == 1 and first.id >= 1 and first.subject == subject
    assert first.mode == schema_pb2.COMPATIBILITY_MODE_BACKWARD
    assert first.fingerprint == fingerprint(FileDescriptorSet.FromString(first.descriptor_set))
    again, created_again = await registry.register(subject, _set(tmp_path, "v1-again", "// same\n" + V1, "Resize"))
    assert not created_again and again == first
    second, created = await registry.register(subject, _set(tmp_path, "v2", V2, "Resize"))
    assert created and second.version == 2 and second.id > first.id
    with pytest.raises(IncompatibleSchema) as refused:
        await registry.register(subject, _set(tmp_path, "v3", V3_BREAKING, "Resize"))
    rules = {(v.rule, v.path) for v in refused.value.violations}
    assert rules >= {
        ("FIELD_SAME_TYPE", "acme.v1.Resize.width"),
        ("FIELD_SAME_TYPE", "acme.v1.Resize.label"),
        ("FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED", "acme.v1.Resize.height"),
        ("FIELD_NO_DELETE_UNLESS_NAME_RESERVED", "acme.v1.Resize.height"),
    }
    assert all(v.against_version == 2 for v in refused.value.violations)
    assert all(f"{rule} {path}" in refused.value.message for rule, path in rules)
    assert [v.version for v in await registry.versions(subject)] == [1, 2]
    violations, mode = await registry.check(subject, _set(tmp_path, "v3c", V3_BREAKING, "Resize"))
    assert {(v.rule, v.path) for v in violations} == rules and mode == schema_pb2.COMPATIBILITY_MODE_BACKWARD
    forced, created = await registry.register(
        subject, _set(tmp_path, "v3n", V3_BREAKING, "Resize"), schema_pb2.COMPATIBILITY_MODE_NONE
    )
    assert created and forced.version == 3 and await registry.mode(subject) == schema_pb2.COMPATIBILITY_MODE_NONE


async def test_concurrent_registrations_get_distinct_versions_and_ids(registry: SchemaRegistry, tmp_path: Path) -> None:
    """Racing registrations: distinct subjects get distinct ids; one subject gets distinct versions; the
    same schema racing itself is one version."""
    names = [f"Race{n}" for n in range(8)]
    sets = [_set(tmp_path, name, V1, name) for name in names]
    results = await asyncio.gather(*(registry.register(f"acme.v1.{n}", s) for n, s in zip(names, sets, strict=True)))
    assert all(created for _, created in results)
    assert len({version.id for version, _ in results}) == len(names)
    none = schema_pb2.COMPATIBILITY_MODE_NONE
    bodies = [V1.replace(" }", f" int32 f{n} = {n + 3}; }}") for n in range(6)]
    racing = [_set(tmp_path, f"r{n}", body, "Race0") for n, body in enumerate(bodies)]
    raced = await asyncio.gather(*(registry.register("acme.v1.Race0", data, none) for data in racing))
    assert sorted(version.version for version, _ in raced) == [2, 3, 4, 5, 6, 7]
    ids = [version.id for version, _ in results] + [version.id for version, _ in raced]
    assert len(set(ids)) == len(ids)
    same = _set(tmp_path, "same", V1.replace(" }", " int32 z = 9; }"), "Race1")
    twins = await asyncio.gather(*(registry.register("acme.v1.Race1", same) for _ in range(5)))
    assert sum(created for _, created in twins) == 1
    assert {version.version for version, _ in twins} == {2}


async def test_get_list_and_resolve(registry: SchemaRegistry, tmp_path: Path) -> None:
    """Versions are read by number or as the latest; the listing has no descriptor sets; resolve
    decodes payloads and follows a new latest at once."""
    subject = "acme.v1.Shape"
    v1, _ = await registry.register(subject, _set(tmp_path, "v1", V1, "Shape"), schema_pb2.COMPATIBILITY_MODE_FULL)
    assert (await registry.get(subject)).version == 1
    _, shape_v1 = await registry.resolve(subject)
    payload = shape_v1(width=3, label="a").SerializeToString()  # type: ignore[call-arg]
    assert decode_strict(shape_v1, payload, "spec.payload.custom").width == 3  # type: ignore[attr-defined]
    v2, _ = await registry.register(subject, _set(tmp_path, "v2", V2, "Shape"))  # FULL stays the mode
    assert v2.mode == schema_pb2.COMPATIBILITY_MODE_FULL
    assert (await registry.get(subject, 1)) == v1 and (await registry.get(subject, 0)) == v2
    latest, shape_v2 = await registry.resolve(subject, 0)
    assert latest.version == 2
    newer = shape_v2(width=1, height=2).SerializeToString()  # type: ignore[call-arg]
    with pytest.raises(InvalidArgument) as refused:
        decode_strict((await registry.resolve(subject, 1))[1], newer, "spec.payload.custom")
    assert refused.value.field == "spec.payload.custom.3"
    listed = {s.subject: s for s in await registry.subjects()}
    assert listed[subject].mode == schema_pb2.COMPATIBILITY_MODE_FULL
    assert [v.version for v in listed[subject].versions] == [1, 2]
    assert all(not v.descriptor_set and v.fingerprint for v in listed[subject].versions)
    with pytest.raises(NotFound, match=r"version 7 of subject 'acme.v1.Shape'"):
        await registry.get(subject, 7)
    with pytest.raises(NotFound, match=r"acme\.v1\.Nothing"):
        await registry.resolve("acme.v1.Nothing")


async def test_bad_registrations_name_the_problem(registry: SchemaRegistry, tmp_path: Path) -> None:
    """Junk bytes, a missing import, a subject the set lacks and a malformed subject are InvalidArgument."""
    with pytest.raises(InvalidArgument) as junk:
        await registry.register("acme.v1.Resize", b"\x08\x96\x01 not a descriptor set")
    assert junk.value.field == "descriptor_set"
    fds = FileDescriptorSet.FromString(_set(tmp_path, "v1", V1, "Resize"))
    fds.file[0].dependency.append("acme/v1/elsewhere.proto")
    with pytest.raises(InvalidArgument, match=r"acme/v1/elsewhere\.proto"):
        await registry.register("acme.v1.Resize", fds.SerializeToString())
    with pytest.raises(InvalidArgument) as unknown:
        await registry.register("acme.v1.Other", _set(tmp_path, "v1b", V1, "Resize"))
    assert unknown.value.field == "subject"
    with pytest.raises(InvalidArgument) as malformed:
        await registry.get("acme.*.Resize")
    assert malformed.value.field == "subject"
    assert await registry.subjects() == []


async def test_a_reader_binds_once_the_gateway_has_created_the_bucket(private_nats: NatsServer, tmp_path: Path) -> None:
    """A read-only registry (scheduler, worker) before the bucket exists says NotFound, then reads versions."""
    async with await private_nats.connect("reader") as reader_nc, await private_nats.connect("writer") as writer_nc:
        reader = await SchemaRegistry.open(reader_nc.jetstream(timeout=5.0), create=False)
        with pytest.raises(NotFound, match="tm_schemas"):
            await reader.resolve("acme.v1.Resize")
        assert await reader.subjects() == []
        writer = await SchemaRegistry.open(writer_nc.jetstream(timeout=5.0))
        written, _ = await writer.register("acme.v1.Resize", _set(tmp_path, "v1", V1, "Resize"))
        version, _ = await reader.resolve("acme.v1.Resize")
        assert version == written


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, NatsUser]]]:
    """nats-server with every component's user and the permissions of its role (as the mesh renders them)."""
    leaf = CertificateAuthority(tmp_path / "pki").ensure().issue("nats")
    users = {c: NatsUser.load(p) for c, p in ensure_nats_users(tmp_path / "users", NATS_COMPONENTS).items()}
    port = free_port()
    config = tmp_path / "nats.conf"
    write_private_config(
        config,
        f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
        + authorization_block(users)
        + tls_block(leaf),
    )
    process = subprocess.Popen([find_binary("nats-server"), "-c", str(config)], stderr=subprocess.DEVNULL)
    try:
        yield f"tls://127.0.0.1:{port}", leaf.ca, users
    finally:
        process.terminate()
        process.wait(10)


async def test_the_roles_permissions_fit_what_the_registry_sends(
    secured_nats: tuple[str, Path, dict[str, NatsUser]], tmp_path: Path
) -> None:
    """As the gateway user the registry creates its bucket, registers, lists; as the scheduler and worker
    users it reads and resolves — with no permissions violation — and a worker's write is refused."""
    url, ca, users = secured_nats
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(f"{exc}")

    async def connect(component: str) -> NATS:
        async def attempt() -> NATS:
            return await nats.connect(
                url,
                user=component,
                password=users[component].password,
                tls=ssl.create_default_context(cafile=str(ca)),
                error_cb=on_error,
                allow_reconnect=False,
                connect_timeout=1,
            )

        return await eventually(attempt, 15.0, f"nats-server accepts {component}")

    async with await connect("gateway") as gateway_nc:
        gateway = await SchemaRegistry.open(gateway_nc.jetstream(timeout=5.0))
        await gateway.register("acme.v1.Resize", _set(tmp_path, "v1", V1, "Resize"))
        await gateway.register("acme.v1.Resize", _set(tmp_path, "v2", V2, "Resize"))
        assert [s.subject for s in await gateway.subjects()] == ["acme.v1.Resize"]
    for component in ("scheduler", "worker"):
        async with await connect(component) as reader_nc:
            reader = await SchemaRegistry.open(reader_nc.jetstream(timeout=5.0), create=False)
            assert (await reader.resolve("acme.v1.Resize"))[0].version == 2
            assert (await reader.resolve("acme.v1.Resize", 1))[0].version == 1
    assert [e for e in errors if "permissions violation" in e] == []
    async with await connect("worker") as worker_nc:
        worker = await SchemaRegistry.open(worker_nc.jetstream(timeout=0.5), create=False)
        with pytest.raises(Unavailable):
            await worker.register("acme.v1.Resize", _set(tmp_path, "v3", V2.replace(" }", " int32 d = 4; }"), "Resize"))

        async def refused() -> bool:
            return any("permissions violation" in e and "$kv.tm_schemas" in e for e in errors)

        await eventually(refused, 5.0, "the server refuses the worker's write")
