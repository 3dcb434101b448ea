"""Shell completion from the live mesh: the kinds it knows (a user kind registered in it among
them) and a tenant's recent task ids, through the front door with the CLI's own credential."""

from __future__ import annotations

import asyncio
from pathlib import Path

from clients.sdk import Client
from tests.conftest import eventually
from tests.integration.conftest import Mesh
from tests.unit.test_cli_completion import complete


async def test_kinds_and_task_ids_complete_from_the_live_mesh(mesh: Mesh, registered: None, tmp_path: Path) -> None:
    async with Client(mesh.endpoint) as client:  # the tenant the CLI's admin key lists by default
        task_id = (await client.submit("echo", {"text": "complete me"})).task_id
    where = f"--endpoint {mesh.endpoint} --state-dir {mesh.plan.state_dir}"
    kinds = await asyncio.to_thread(complete, f"tidemesh submit {where} ", tmp_path)
    assert {"echo", "embed", "textpipe.count"} <= set(kinds), kinds  # the user kind comes from the mesh

    async def listed() -> list[str] | None:  # the task list is an index the scheduler writes after the submit
        ids = await asyncio.to_thread(complete, f"tidemesh get {where} {task_id[:4]}", tmp_path)
        return ids if task_id in ids else None

    assert task_id in await eventually(listed, timeout_s=20, what="the new task id offered for `get`")
