"""Notifications: an outbox written with the state change, delivered once, by whoever comes next."""

from __future__ import annotations

import http.server
import json
import os
import signal
import threading

import pytest
import yaml
from support import free_port, poll


class Receiver:
    """A loopback HTTP endpoint for apprise's json:// webhooks; it can be down (not listening)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.posts: list[dict] = []
        self.server = None

    def up(self) -> None:
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                posts.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def events(self) -> list[dict]:
        return [json.loads(p["message"]) for p in self.posts]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.down()


def alerting_workflow(work, receiver, jobs, on=("failure", "retry")):
    path = work.root / "alerting.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "application_name": "alerting",
                "notify": [
                    {"on": list(on), "urls": [f"json://127.0.0.1:{receiver.port}/hook/${{HOOK_PATH}}"]},
                    {
                        "on": ["failure"],
                        "command": f"cat >> {work.root}/alerts.jsonl; echo >> {work.root}/alerts.jsonl",
                    },
                ],
                "jobs": jobs,
            }
        )
    )
    return path


@pytest.mark.slow
def test_a_receiver_down_then_up_gets_each_event_exactly_once(cli, work, receiver):
    wf = alerting_workflow(
        work, receiver, [{"id": "a", "command": f"test -e {work.flag('a')}", "max_retries": 1}]
    )
    env = {"HOOK_PATH": "s3cr3t-path-value"}
    assert cli("run", wf, env=env).code == 1  # receiver down: nothing delivered, nothing lost
    st = cli("status", 1, "--json").json()
    by_event = {(n["event"], n["sink"].split(":")[0]): n for n in st["notifications"]}
    assert by_event[("failure", "url")]["status"] == "retrying" and by_event[("failure", "url")]["last_error"]
    assert by_event[("retry", "url")]["status"] == "retrying"
    assert by_event[("failure", "command")]["status"] == "sent"  # the command sink worked at once
    assert all("${HOOK_PATH}" in n["sink"] for n in st["notifications"] if n["sink"].startswith("url:"))
    assert "s3cr3t-path-value" not in json.dumps(st)
    receiver.up()
    work.flag("a").touch()
    r = cli("resume", 1, env=env)
    assert r.code == 0, r  # delivers attempt 1's alerts first, then runs attempt 2 (SUCCESS: no alert)
    events = receiver.events()
    assert sorted((e["event"], e["attempt_id"]) for e in events) == [("failure", 1), ("retry", 1)]
    assert {p["path"] for p in receiver.posts} == {"/hook/s3cr3t-path-value"}
    assert cli("resume", 1, env=env).code == 0  # nothing to do, nothing sent again
    assert len(receiver.posts) == 2
    assert all(n["status"] == "sent" for n in cli("status", 1, "--json").json()["notifications"])
    lines = [json.loads(x) for x in (work.root / "alerts.jsonl").read_text().split("\n") if x.strip()]
    assert [(x["event"], x["run_id"], x["status"]) for x in lines] == [("failure", 1, "FAILED")]
    assert "resume 1" in lines[0]["resume"] and lines[0]["failed_jobs"][0]["job"] == "a"


@pytest.mark.slow
def test_an_attempt_whose_coordinator_died_is_alerted_by_the_resume(cli, work, receiver):
    """The coordinator is SIGKILLed before the failure; the resume records it (from the pool's
    journal), and delivers its alert exactly once, then its own attempt's."""
    receiver.up()
    cli.env["HOOK_PATH"] = "p"
    started, gate = work.root / "started", work.root / "gate"
    command = f"touch {started}; while [ ! -e {gate} ]; do sleep 0.05; done; exit 3"
    wf = alerting_workflow(work, receiver, [{"id": "a", "command": command}], on=("failure",))
    run = cli.popen("run", wf, env={"EXECUTIONER_LEASE_TTL": "2"})
    assert poll(started.exists, 60)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(10)
    gate.touch()  # the job fails now, in the pool that outlived its coordinator
    assert poll(lambda: cli("status", 1, "--json").json()["locked_by"] is None, 30)
    r = cli("resume", 1, "--json")
    assert r.code == 1, r
    events = sorted((e["event"], e["attempt_id"], e["status"]) for e in receiver.events())
    assert events == [("failure", 1, "FAILED"), ("failure", 2, "FAILED")], events


def test_the_outbox_rows_and_the_stub_sender(tmp_path):
    from orchestrator.db.engine import make_engine, write_tx
    from orchestrator.db.schema import metadata
    from orchestrator.notify import RecordingSender, deliver, outbox_rows, record
    from orchestrator.notify_rules import NotifyRule

    engine = make_engine(f"sqlite:///{tmp_path}/n.db")
    metadata.create_all(engine)
    rules = (NotifyRule(("failure",), ("json://x/${A}",), "cat"), NotifyRule(("success",), ("json://y",)))
    rows = outbox_rows(rules, "failure", {"text": "t"}, run_id=1, attempt_id=1)
    assert [r["sink"] for r in rows] == ["url:json://x/${A}", 'command:"cat"']
    with write_tx(engine) as conn:
        record(conn, rows)
        record(conn, outbox_rows(rules, "failure", {"text": "t"}, run_id=1, attempt_id=1))  # a replay: no-op
    down = RecordingSender(fail=True)
    assert deliver(engine, sender=down) == 0
    up = RecordingSender()
    assert deliver(engine, sender=up) == 0  # backing off
    assert deliver(engine, sender=up, due_only=False) == 2 and len(up.sent) == 2
    assert deliver(engine, sender=up, due_only=False) == 0  # sent once
    assert {p["event"] for _, p in up.sent} == {"failure"} and all("id" in p for _, p in up.sent)
