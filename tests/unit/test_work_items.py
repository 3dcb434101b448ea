"""One place spells a work item's subject and deduplication id, for every kind."""

from __future__ import annotations

from mesh.fabric import item_subject, work_item_id
from mesh.tasks import KINDS, TaskKind
from mesh.v1 import kind_pb2, task_pb2, work_pb2


def test_the_subject_follows_the_steps_pool_lane_and_tenant() -> None:
    """Built-in steps go to their pool; a user kind's to the pool of its step and schema version."""
    spec = task_pb2.TaskSpec(
        task_id="t1", tenant="acme", kind="doc_embed", priority_class=task_pb2.PRIORITY_CLASS_BATCH
    )
    assert item_subject(work_pb2.WorkItem(spec=spec, step_index=1)) == "tm.work.inference.batch.acme"
    declaration = kind_pb2.KindDeclaration(name="acme.items", input_type="acme.v1.In", output_type="acme.v1.Out")
    declaration.steps.add(name="first")
    declaration.steps.add(name="second")
    KINDS.register(TaskKind.from_declaration(declaration))
    user = task_pb2.TaskSpec(task_id="t2", tenant="acme", kind="acme.items", schema_version=3)
    assert item_subject(work_pb2.WorkItem(spec=user, step_index=1)) == "tm.work.u-acme_items-second-v3.standard.acme"


def test_the_dedupe_id_names_the_task_and_step_and_a_deliberate_copy() -> None:
    """`<task>:step:<i>` for every publisher of the step; a boost is a copy with its own id."""
    assert work_item_id("t1", 0) == "t1:step:0"
    assert work_item_id("t1", 2, "boost:1") == "t1:step:2:boost:1"
