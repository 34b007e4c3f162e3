"""A run's workflow as its last attempt stored it (the snapshot every resume, status and page uses).

Its own small module: readers (``status``, ``logs``, the web view, ``runs`` for a marked run) need
it without importing the coordinator and everything ``launch`` drives.
"""

from __future__ import annotations

from orchestrator.db.queries import RunRecord
from orchestrator.errors import UserError
from orchestrator.loader import workflow_from_data
from orchestrator.workflow import Workflow


def stored_workflow(record: RunRecord) -> Workflow:
    if record.last_snapshot is None:
        raise UserError(f"run {record.run_id} has no attempt to take a workflow from")
    return workflow_from_data(
        record.last_snapshot, f"run {record.run_id} attempt {record.last_attempt.attempt_id}"
    )
