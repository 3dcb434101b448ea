"""The audit on real NATS and a real mesh: administrative actions through the CLI and REST are
recorded, `tidemesh audit list|show|export|verify` read and check them through Envoy and the
gateway, a tampered or cut export is named, and no service's NATS user — nor the admin, for one
message — can remove what was recorded."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path

import aiohttp
import nats.js.api as api
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js.errors import APIError

from clients.sdk import Client
from mesh.audit import (
    ALLOWED,
    AUDIT_STREAM,
    STARTED,
    Actor,
    AuditLog,
    Entry,
    JetStreamAuditStore,
    Signer,
    declare_audit_stream,
    verify,
)
from mesh.errors import NotFound, Unavailable
from tests.integration.conftest import Mesh, NatsServer

pytestmark = pytest.mark.integration

TIDEMESH = str(Path(sys.executable).parent / "tidemesh")
SLOW = {"text": "a b c d e f g h", "chunks": 8, "chunk_delay_ms": 1000}  # still running when cancelled
REFUSED_WAIT_S = 0.5


async def _run(*argv: str, timeout_s: float = 60.0) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_two_writers_on_jetstream_keep_one_chain(private_nats: NatsServer) -> None:
    """Two AuditLogs (two gateways) appending at once through JetStream's expected-last-sequence:
    one chain, 1..60, that verifies; the stream refuses deleting a message or purging."""
    signer = Signer(Ed25519PrivateKey.generate())
    async with await private_nats.connect() as nc:
        js = nc.jetstream(timeout=5)
        await declare_audit_stream(js)
        await declare_audit_stream(js)  # a second gateway's start: the same stream, unchanged
        first, second = (AuditLog(JetStreamAuditStore(js), signer, checkpoint_every=8) for _ in range(2))
        entry = Entry(Actor("k"), "task.cancel", "task:t", ALLOWED, STARTED)
        records = await asyncio.gather(*(log.append(entry) for _ in range(30) for log in (first, second)))
        assert sorted(record.seq for record in records) == list(range(1, 61))
        verdict = verify([stored async for stored in first.entries()], signer.public_key)
        assert verdict.ok and verdict.records == 60, verdict.problems
        with pytest.raises(APIError, match="message delete not permitted"):
            await js.delete_msg(AUDIT_STREAM, 1)
        with pytest.raises(APIError, match="purge not permitted"):
            await js.purge_stream(AUDIT_STREAM)


async def test_an_existing_stream_that_allows_deletes_is_refused(private_nats: NatsServer) -> None:
    """A TM_AUDIT someone made without deny_delete: the gateway will not record into it."""
    async with await private_nats.connect() as nc:
        js = nc.jetstream(timeout=5)
        await js.add_stream(api.StreamConfig(name=AUDIT_STREAM, subjects=["tm.audit.>"]))
        with pytest.raises(Unavailable, match="not append-only: deny_delete is off; deny_purge is off"):
            await declare_audit_stream(js)


async def test_admin_actions_are_audited_listed_exported_and_verified(mesh: Mesh, tmp_path: Path) -> None:
    """A cancel through the CLI and one over REST, a purge and a failed model unload: each is
    recorded started then with its outcome, with its surface; list and show read them; the live
    audit and its export verify; an edited, a reordered and a cut export are each named."""
    state = Path(mesh.plan.state_dir)
    client = ("--endpoint", mesh.endpoint, "--state-dir", str(state))
    async with Client(mesh.endpoint, tenant="audited") as sdk:
        by_cli, by_rest = [(await sdk.submit("stream", SLOW)).task_id for _ in range(2)]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{mesh.base_url}/v1/tasks/{by_rest}/cancel", json={"reason": "over rest"}) as reply:
            assert reply.status == 200, await reply.text()
    cancel, purge, unload = await asyncio.gather(
        _run(TIDEMESH, "cancel", by_cli, "--reason", "audit test", "--yes", *client),
        _run(TIDEMESH, "dlq", "purge", "--tenant", "audited", "--yes", *client),
        _run(TIDEMESH, "model", "unload", "no-such-model", *client),
    )
    assert cancel[0] == 0 and purge[0] == 0, (cancel, purge)
    assert unload[0] != 0, unload

    code, out, err = await _run(TIDEMESH, "audit", "list", "--limit", "200", "-o", "json", *client)
    assert code == 0, err
    records = json.loads(out)
    mine = {
        (r["action"], r["resource"], r["outcome"], r["surface"])
        for r in records
        if r["resource"] in (f"task:{by_cli}", f"task:{by_rest}", "dlq:tenant=audited", "model:no-such-model")
    }
    assert mine == {
        ("task.cancel", f"task:{by_cli}", "started", "cli"),
        ("task.cancel", f"task:{by_cli}", "succeeded", "cli"),
        ("task.cancel", f"task:{by_rest}", "started", "rest"),
        ("task.cancel", f"task:{by_rest}", "succeeded", "rest"),
        ("dlq.purge", "dlq:tenant=audited", "started", "cli"),
        ("dlq.purge", "dlq:tenant=audited", "succeeded", "cli"),
        ("model.unload", "model:no-such-model", "started", "cli"),
        ("model.unload", "model:no-such-model", "failed", "cli"),
    }
    assert all(r["actor"]["credential_id"] == "anonymous" for r in records)  # this mesh runs auth off
    purged = next(r for r in records if r["action"] == "dlq.purge" and r["outcome"] == "succeeded")
    assert purged["detail"] == "purged 0 dead letters" and len(purged["trace_id"]) == 32

    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    public_key = str(state / "audit" / "signing.pub")
    shown, table, exported = await asyncio.gather(
        _run(TIDEMESH, "audit", "show", str(purged["seq"]), *client),
        _run(TIDEMESH, "audit", "list", "--action", "dlq.", *client),
        _run(TIDEMESH, "audit", "export", "--file", str(first), *client),
    )
    assert shown[0] == 0 and "dlq:tenant=audited" in shown[1] and purged["hash"] in shown[1], shown
    assert table[0] == 0 and "dlq.purge" in table[1] and "task.cancel" not in table[1], table
    assert exported[0] == 0 and "checkpoints" in exported[1], exported
    code, out, err = await _run(TIDEMESH, "audit", "export", "--file", str(second), *client)
    assert code == 0, err

    live, offline, anchored = await asyncio.gather(
        _run(TIDEMESH, "audit", "verify", "--against", str(first), *client),
        _run(TIDEMESH, "audit", "verify", "--file", str(first), "--public-key", public_key, "-o", "json", *client),
        _run(TIDEMESH, "audit", "verify", "--file", str(second), "--against", str(first), *client),
    )
    assert live[0] == 0 and "audit intact" in live[1], live
    assert offline[0] == 0, offline
    report = json.loads(offline[1])
    assert report["ok"] and report["signed_seq"] == report["head_seq"] >= purged["seq"]
    assert anchored[0] == 0, anchored

    lines = first.read_text().splitlines()

    def record_line(seq: int) -> int:
        return next(i for i, line in enumerate(lines) if '"record"' in line and f'"seq": {seq},' in line)

    position, before = record_line(purged["seq"]), record_line(purged["seq"] - 1)
    edited, cut, swapped = tmp_path / "edited.jsonl", tmp_path / "cut.jsonl", tmp_path / "swapped.jsonl"
    edited.write_text(
        "\n".join(line.replace("purged 0", "purged 9") if i == position else line for i, line in enumerate(lines))
    )
    cut.write_text("\n".join(lines[: position + 1]))
    order = {position: lines[before], before: lines[position]}
    swapped.write_text("\n".join(order.get(i, line) for i, line in enumerate(lines)))
    changed, truncated, reordered = await asyncio.gather(
        _run(TIDEMESH, "audit", "verify", "--file", str(edited), "--public-key", public_key, *client),
        _run(TIDEMESH, "audit", "verify", "--file", str(cut), "--against", str(second), "-o", "json", *client),
        _run(TIDEMESH, "audit", "verify", "--file", str(swapped), "--public-key", public_key, *client),
    )
    assert changed[0] == 1, changed
    assert f"first bad record: record {purged['seq']}" in changed[1] and "does not match its hash" in changed[1]
    assert truncated[0] == 1, truncated
    assert json.loads(truncated[1])["first_bad"]["kind"] == "truncated"
    assert reordered[0] == 1 and "reordered" in reordered[1], reordered


async def test_a_bad_argument_is_named(mesh: Mesh, tmp_path: Path) -> None:
    """A file that is no export, a key that is no key, a record number that is none: each names its flag or field."""
    client = ("--endpoint", mesh.endpoint, "--state-dir", str(mesh.plan.state_dir))
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    no_export, no_key, no_record, zero = await asyncio.gather(
        _run(TIDEMESH, "audit", "verify", "--file", str(junk), *client),
        _run(TIDEMESH, "audit", "verify", "--public-key", str(junk), *client),
        _run(TIDEMESH, "audit", "show", "999999999", *client),
        _run(TIDEMESH, "audit", "show", "0", *client),
    )
    assert no_export[0] == 2 and "--file" in no_export[2] and "not a tidemesh-audit-export/1 header" in no_export[2]
    assert no_key[0] == 2 and "--public-key" in no_key[2], no_key
    assert no_record[0] == 2 and "no audit record 999999999" in no_record[2], no_record
    assert zero[0] == 2 and "seq" in zero[2], zero


@pytest.mark.parametrize("component", ["gateway", "scheduler", "worker", "inference", "supervisor"])
async def test_no_service_user_can_remove_or_reshape_the_audit(mesh: Mesh, component: str) -> None:
    """Each service's own NATS user: deleting or purging the stream, deleting a message, updating
    its config (max_msgs 1 would drop every record but the last) — all refused; and only the
    gateway may append. Afterwards the stream is whole, its config unchanged."""
    async with Client(mesh.endpoint) as sdk:  # at least one record: a cancel of a missing task
        with pytest.raises(NotFound):
            await sdk.cancel("no-such-task-audit")
    async with await mesh.nats() as admin:
        before = await admin.jetstream(timeout=5).stream_info(AUDIT_STREAM)
    async with await mesh.nats(component) as intruder:
        js = intruder.jetstream(timeout=REFUSED_WAIT_S)
        outcomes = await asyncio.gather(
            js.delete_stream(AUDIT_STREAM),
            js.purge_stream(AUDIT_STREAM),
            asyncio.wait_for(js.delete_msg(AUDIT_STREAM, 1), REFUSED_WAIT_S),  # (it takes no timeout of its own)
            js.update_stream(dataclasses.replace(before.config, max_msgs=1)),
            *([] if component == "gateway" else [js.publish("tm.audit.record.1", b"forged")]),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    async with await mesh.nats() as admin:
        js = admin.jetstream(timeout=5)
        after = await js.stream_info(AUDIT_STREAM)
        assert after.config.max_msgs == before.config.max_msgs and after.state.first_seq == 1
        assert after.state.messages >= before.state.messages
        with pytest.raises(APIError, match="message delete not permitted"):
            await js.delete_msg(AUDIT_STREAM, 1)  # even the admin: the stream itself refuses
