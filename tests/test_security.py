"""Secrets and access: signed tasks, masked secrets, private files, Flower bound where it says."""

from __future__ import annotations

import json
import stat
import urllib.request

import pytest
from support import Worker, free_port, wait_until

from orchestrator.changes import Change, ChangeKind
from workers.secrets import mask_env, mask_output, redact_urls
from workers.signing import require_key, sign, verify
from workers.wire import WireError

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "hunter2-the-real-one"


# -- signing, pure ------------------------------------------------------------------------------------


def test_signed_payloads_verify_and_anything_else_is_refused():
    payload = {"run_id": 1, "command": "echo hi", "env": {}}
    signed = sign(payload, KEY, ttl=60, now=1000.0)
    verify(signed, KEY, now=1001.0)
    cases = {
        "unsigned": payload,
        "tampered": {**signed, "command": "id > /tmp/pwned"},
        "other key": sign(payload, b"another-key-of-sixteen+", ttl=60, now=1000.0),
        "expired": signed,
    }
    for name, candidate in cases.items():
        with pytest.raises(WireError, match="refused"):
            verify(candidate, KEY, now=2000.0 if name == "expired" else 1001.0)


def test_a_key_is_required_unless_the_broker_is_on_loopback():
    require_key("redis://127.0.0.1:6379/0", None)
    require_key("redis://localhost/0", None)
    with pytest.raises(ValueError, match="EXECUTIONER_SECRET_KEY"):
        require_key("redis://redis.internal:6379/0", None)
    require_key("redis://redis.internal:6379/0", KEY)


# -- masking, pure ------------------------------------------------------------------------------------


def test_secret_values_are_masked_where_shown():
    env = {"DB_PASSWORD": SECRET, "API_TOKEN": "t0k3n-value", "REGION": "eu", "KEY_REF": {"from_env": "K"}}
    assert mask_env(env) == {
        "DB_PASSWORD": "***",
        "API_TOKEN": "***",
        "REGION": "eu",
        "KEY_REF": {"from_env": "K"},
    }
    change = Change(ChangeKind.DEFINITION, "a", "env", {"DB_PASSWORD": "old-secret"}, env)
    assert "old-secret" not in str(change) and SECRET not in json.dumps(change.as_dict())
    assert mask_output(f"connecting with {SECRET}\n".encode(), [SECRET.encode()]) == b"connecting with ***\n"
    assert (
        redact_urls("run --database-url postgresql://me:pw@db/x")
        == "run --database-url postgresql://me:***@db/x"
    )


def test_flower_and_task_events_show_masked_arguments():
    from orchestrator.executors.celery import shown_args

    payload = sign({"job_id": "a", "env": {"DB_PASSWORD": SECRET, "REGION": "eu"}}, KEY, ttl=60)
    shown = shown_args(payload)
    assert SECRET not in shown and payload["sig"] not in shown and "'REGION': 'eu'" in shown


# -- through the CLI ------------------------------------------------------------------------------------


def test_home_and_database_are_private_and_urls_are_not_stored(cli, work, home, database_url):
    wf = work.workflow([work.job("a")])
    r = cli("--result-backend", "redis://:brokerpw@127.0.0.1:9/0", "run", wf)
    assert r.code == 0, r
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    if database_url.startswith("sqlite"):
        assert stat.S_IMODE((home / "executioner.db").stat().st_mode) == 0o600
    reason = cli("status", 1, "--json").json()["attempts"][0]["trigger_reason"]
    assert "brokerpw" not in reason and ":***@" in reason


def test_secrets_by_reference_reach_the_job_and_never_the_history(cli, work, database_url):
    jobs = [
        work.job(
            "a",
            command='echo "pw=$DB_PASSWORD inline=$API_TOKEN"',
            env={"DB_PASSWORD": {"from_env": "MY_DB_PASSWORD"}, "API_TOKEN": "inline-token-value"},
        )
    ]
    wf = work.workflow(jobs)
    r = cli("run", wf, env={"MY_DB_PASSWORD": SECRET})
    assert r.code == 0, r
    logs = cli("logs", 1, "a").out
    assert "pw=*** inline=***" in logs and SECRET not in logs and "inline-token-value" not in logs
    # The history holds the reference, never the value.
    dump = json.dumps([cli("status", 1, "--json").json(), cli("history", 1, "--json").json()])
    assert SECRET not in dump
    # Changing an inline secret of a succeeded job: the refusal does not print it.
    jobs[0]["env"]["API_TOKEN"] = "rotated-token-value"
    work.workflow(jobs)
    refused = cli("resume", 1, "-c", wf)
    assert refused.code == 2 and "API_TOKEN" in refused.err, refused
    assert "inline-token-value" not in refused.err and "rotated-token-value" not in refused.err
    forced = cli("resume", 1, "-c", wf, "--rerun-changed", "--json", env={"MY_DB_PASSWORD": SECRET})
    assert forced.code == 0, forced
    changes = json.dumps(cli("status", 1, "--json").json()["attempts"][1]["changes"])
    assert "rotated-token-value" not in changes and "***" in changes
    # A reference that is not set where the job runs: the try is ERROR with the reason.
    missing = cli("run", wf, "--json")
    assert missing.code == 1 and missing.json()["jobs"]["a"]["status"] == "ERROR", missing
    row = cli("history", 2, "--json").json()["rows"][0]
    assert "MY_DB_PASSWORD is not set where the job runs" in row["retry_history"][0]["error"]


def test_flower_pass_through_arguments_cannot_bypass_the_loopback_guard(cli):
    for extra in (("--", "--address=0.0.0.0"), ("--", "--address", "0.0.0.0"), ("--", "--conf=/tmp/x.py")):
        r = cli(
            "flower",
            "--port",
            free_port(),
            "--unauthenticated-api",
            *extra,
            env={"EXECUTIONER_BROKER_URL": "redis://127.0.0.1:9/0"},
        )
        assert r.code == 2 and ("loopback" in r.err or "--conf" in r.err), (extra, r)


def test_a_worker_with_a_broker_others_can_reach_needs_the_key(cli):
    r = cli("worker", env={"EXECUTIONER_BROKER_URL": "redis://redis.invalid:6379/0"})
    assert r.code == 2 and "EXECUTIONER_SECRET_KEY" in r.err, r


# -- a real worker with the key ---------------------------------------------------------------------


@pytest.fixture
def keyed(cli, own_redis, tmp_path):
    env = {"EXECUTIONER_SECRET_KEY": KEY.decode(), "EXECUTIONER_HEARTBEAT_INTERVAL": "1"}
    worker = Worker(own_redis.url, tmp_path, "keyed", "--concurrency", "1", env=env)
    cli.env.update({"EXECUTIONER_BROKER_URL": own_redis.url, **env})
    yield worker
    worker.stop()


@pytest.fixture
def own_redis(tmp_path):
    from support import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.mark.redis
def test_forged_tasks_are_refused_and_signed_ones_run(cli, work, keyed, own_redis, tmp_path):
    from workers.celery_app import TASK_NAME, create_app
    from workers.settings import WorkerSettings

    pwned = tmp_path / "pwned"
    forged = {"run_id": 99, "attempt_id": 1, "job_id": "x", "command": f"touch {pwned}", "scope": "s"}
    app = create_app(WorkerSettings(broker_url=own_redis.url))
    app.send_task(TASK_NAME, args=[forged])  # raw, unsigned: what a password-less Redis allows
    tampered = {**sign(forged, KEY, ttl=60), "command": f"touch {pwned}; id"}
    app.send_task(TASK_NAME, args=[tampered])
    wait_until(lambda: keyed.log.read_text().count("task refused") >= 2, 60, "both forgeries refused")
    assert "not signed" in keyed.log.read_text() and "bad task signature" in keyed.log.read_text()
    # Through Flower's task API too (a Flower login must not be a shell on every worker).
    port = free_port()
    flower = cli.popen("flower", "--port", port, "--unauthenticated-api")
    try:
        url = f"http://127.0.0.1:{port}/api/task/async-apply/{TASK_NAME}"
        body = json.dumps({"args": [forged]}).encode()

        def posted() -> bool:
            try:
                req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5):
                    return True
            except OSError:
                return False

        wait_until(posted, 60, "flower to accept the forged task")
        wait_until(lambda: keyed.log.read_text().count("task refused") >= 3, 60, "the Flower forgery refused")
    finally:
        flower.terminate()
        flower.wait(20)
    assert not pwned.exists()
    r = cli("run", work.workflow([work.job("a")]), "--json")  # the signed path is unaffected
    assert r.code == 0 and work.ran() == ["a"], r
