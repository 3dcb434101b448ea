"""Dead letters on a real mesh: diagnosis record, alert, listing, idempotent replay with an id chain, purge."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from clients.sdk import Client
from mesh.errors import Conflict, NotFound
from mesh.fabric import ALERT_SUBJECT, REPLAY_OF_LABEL
from mesh.v1 import deadletter_pb2, task_pb2
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


async def test_fatal_failure_is_dead_lettered_with_a_diagnosis(mesh: Mesh) -> None:
    """An embed task naming an unknown model fails fatally on its first attempt: its stream ends
    DEAD_LETTERED, an alert is published, and the record classifies it with a runbook."""
    nc = await mesh.nats()
    alerts: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def on_alert(msg) -> None:  # type: ignore[no-untyped-def]
        alerts.put_nowait(json.loads(msg.data))

    await nc.subscribe(ALERT_SUBJECT, cb=on_alert)
    try:
        async with Client(mesh.endpoint, tenant="dlq") as client:
            submitted = await client.submit("embed", {"text": "hello", "model": "no-such-model"})
            events = [e async for e in client.watch(submitted.task_id)]
            assert events[-1].state == task_pb2.TASK_STATE_DEAD_LETTERED
            assert events[-1].error.error_class == "invalid_input"
            letter = await client.dead_letter(submitted.task_id)
            alert = await asyncio.wait_for(alerts.get(), 10)
            listed = await client.dead_letters(tenant="dlq")
    finally:
        await nc.close()
    assert letter.classification == deadletter_pb2.FAILURE_CLASS_POISON_INPUT
    assert (REPO / letter.runbook).is_file(), letter.runbook
    assert letter.attempts == 1 and letter.step == "embed" and letter.worker_ids
    assert "no-such-model" in letter.message and len(letter.fingerprint) == 16
    assert letter.trace_id == events[0].traceparent.split("-")[1]
    assert letter.spec.payload.embed.model == "no-such-model"
    assert alert["task_id"] == submitted.task_id and alert["runbook"] == letter.runbook
    # what acts on it, in the record and in the alert (no replay: the same input fails the same way)
    task_id = submitted.task_id
    assert list(letter.cli_commands) == [f"tidemesh dlq show {task_id}", f"tidemesh dlq purge {task_id}"]
    assert letter.dashboard_view == f"tidemesh dash --dlq {task_id}"
    assert alert["cli_commands"] == list(letter.cli_commands) and alert["dashboard_view"] == letter.dashboard_view
    assert letter.console_path == f"/console/dlq/{task_id}" and alert["console_path"] == letter.console_path
    assert submitted.task_id in [item.task_id for item in listed]


async def test_replay_is_idempotent_and_keeps_the_id_chain(mesh: Mesh) -> None:
    """Replaying creates `<id>-r` labelled with the original; replaying again returns the same task;
    the original's record lists the replay; purge removes the record."""
    async with Client(mesh.endpoint, tenant="dlq") as client:
        submitted = await client.submit("embed", {"text": "hello", "model": "no-such-model"})
        [e async for e in client.watch(submitted.task_id)]
        first = await client.replay(submitted.task_id)
        again = await client.replay(submitted.task_id)
        assert first.task_id == again.task_id == f"{submitted.task_id}-r"
        assert again.deduplicated and not first.deduplicated
        replayed = [e async for e in client.watch(first.task_id)]
        assert replayed[0].spec.labels[REPLAY_OF_LABEL] == submitted.task_id
        assert replayed[-1].state == task_pb2.TASK_STATE_DEAD_LETTERED  # still a bad model
        assert list((await client.dead_letter(submitted.task_id)).replayed_as) == [first.task_id]
        assert (await client.dead_letter(first.task_id)).replay_of == submitted.task_id
        assert await client.purge_dead_letters(task_id=submitted.task_id) == 1
        with pytest.raises(NotFound):
            await client.dead_letter(submitted.task_id)
        with pytest.raises(NotFound):
            await client.replay("never-dead-lettered")


async def test_a_letter_whose_task_did_not_end_dead_lettered_is_not_replayed(mesh: Mesh) -> None:
    """A dead-letter record left behind for a task that then succeeded (a worker crashed between the
    letter and the final event) is refused for replay as a conflict; nothing is admitted."""
    async with Client(mesh.endpoint, tenant="dlq") as client:
        submitted = await client.submit("echo", {"text": "fine after all"})
        events = [e async for e in client.watch(submitted.task_id)]
        assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
        letter = deadletter_pb2.DeadLetter(task_id=submitted.task_id, spec=events[0].spec, error_class="bug")
        nc = await mesh.nats()
        try:
            await nc.jetstream().publish(f"tm.dlq.{submitted.task_id}", letter.SerializeToString())
        finally:
            await nc.close()
        with pytest.raises(Conflict, match="did not end dead-lettered"):
            await client.replay(submitted.task_id)
        with pytest.raises(NotFound):
            await client.get(f"{submitted.task_id}-r")
