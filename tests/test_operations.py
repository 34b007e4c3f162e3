"""Operating a pipeline: what manual actions do to a run's status, audit trail, cancel (issue 11)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_a_run_status_follows_mark_success_and_rollback(cli, work):
    wf = work.workflow([work.job("a"), work.job("b", ["a"], command="exit 3")])
    assert cli("run", wf).code == 1
    assert cli("mark-success", 1, "b").code == 0
    assert cli("status", 1, "--json").json()["status"] == "SUCCESS"
    assert cli("runs", "--json").json()["runs"][0]["status"] == "SUCCESS"
    assert cli("runs", "--status", "SUCCESS", "--json").json()["runs"][0]["run_id"] == 1
    assert cli("runs", "--status", "FAILED", "--json").json()["runs"] == []
    nothing = cli("resume", 1, "--json")
    assert nothing.code == 0 and nothing.json()["status"] == "SUCCESS" and nothing.json()["nothing_to_do"]
    assert cli("rollback", 1, "b").code == 0
    assert cli("status", 1, "--json").json()["status"] == "PARTIAL"  # b back to PENDING
    assert cli("runs", "--json").json()["runs"][0]["status"] == "PARTIAL"
    again = cli("resume", 1, "--json")  # b fails again: the new attempt's status is the run's
    assert again.code == 1 and cli("status", 1, "--json").json()["status"] == "FAILED"
