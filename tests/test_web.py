"""The web view's server side: the JSON API against the CLI's ``--json``, access rules (basic auth,
bearer token, CSRF, loopback-only without sign-in), actions through the library (audited with the web
user), escaping of job output, the live fragment's ETag, and the DAG layout's geometry."""

from __future__ import annotations

import base64
import time
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import UserError
from orchestrator.settings import Settings
from orchestrator.web.auth import WebAuth
from orchestrator.web.layout import NODE_H, NODE_W, layout

ALICE = ("alice", "s3cret-pass")
TOKEN = "tok-0123456789abcdef"


def client_for(database_url: str, **auth_options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's TestClient prefers httpx2, which is not out yet
        from starlette.testclient import TestClient

    from orchestrator.web.app import WebSettings, create_app

    options = {
        "basic_auth": "alice:s3cret-pass",
        "token": TOKEN,
        "unauthenticated": False,
        "host": "127.0.0.1",
    }
    options.update(auth_options)
    auth = WebAuth.configure(secret_key=None, **options)
    app = create_app(WebSettings(Settings.from_env(database_url=database_url), auth))
    return TestClient(app, base_url="http://127.0.0.1:8686")


def failing_run(cli, work, extra_jobs=()):
    wf = work.workflow(
        [
            work.job("extract"),
            work.job("transform", ["extract"], command=f"test -f {work.flag('fixed')}"),
            work.job("load", ["transform"]),
            *extra_jobs,
        ],
        application_name="etl",
    )
    assert cli("run", wf).code == 1
    return wf


def csrf(client, auth=ALICE) -> str:
    return client.get("/api/csrf", auth=auth).json()["csrf_token"]


def test_the_api_has_the_cli_json_shapes(cli, work, database_url):
    failing_run(cli, work)
    with client_for(database_url) as web:
        status = web.get("/api/runs/1", auth=ALICE)
        assert status.status_code == 200
        assert status.json() == cli("status", "1", "--json").json()
        assert status.json()["jobs"]["transform"]["status"] == "FAILED"
        assert web.get("/api/runs/1/history", auth=ALICE).json() == cli("history", "1", "--json").json()
        assert (
            web.get("/api/runs/1/history?job=load", auth=ALICE).json()
            == cli("history", "1", "--job", "load", "--json").json()
        )
        assert web.get("/api/runs/1/audit", auth=ALICE).json() == cli("audit", "1", "--json").json()
        runs = web.get("/api/runs", auth=ALICE).json()
        assert runs["runs"] == cli("runs", "--json").json()["runs"]
        assert runs["counts"] == {"FAILED": 1} and runs["next_before"] is None
        preview = web.get("/api/runs/1/preview/resume-failed", auth=ALICE).json()
        assert preview["plan"] == cli("resume", "1", "--failed-only", "--dry-run", "--json").json()
        logs = web.get("/api/runs/1/jobs/transform/logs", auth=ALICE).json()
        assert logs["tries"][0]["exit_code"] == 1 and logs["status"] == "FAILED"
        assert web.get("/api/runs/7", auth=ALICE).status_code == 404
        assert web.get("/api/runs/1/jobs/nope/logs", auth=ALICE).status_code == 404
        spec = web.get("/api/openapi.json", auth=ALICE).json()
        assert {"/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/actions/{action}"} <= set(
            spec["paths"]
        )
        assert "post" in spec["paths"]["/api/runs/{run_id}/actions/{action}"]


def test_every_page_and_call_needs_credentials(cli, work, database_url):
    failing_run(cli, work)
    with client_for(database_url) as web:
        for path in ("/", "/runs/1", "/runs/1/live", "/runs/1/jobs/transform", "/api/runs", "/api/runs/1"):
            refused = web.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Basic")
            assert "FAILED" not in refused.text
            assert web.get(path, auth=("alice", "wrong")).status_code == 401
            assert web.get(path, auth=ALICE).status_code == 200
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert web.get("/api/runs/1", headers=bearer).status_code == 200
        assert (
            web.get("/api/runs/1", headers={"Authorization": "Bearer nope-nope-nope-nope"}).status_code == 401
        )
        assert web.get("/api/runs/1", headers={"Authorization": "Basic %%%"}).status_code == 401
        assert web.get("/healthz").text == "ok"
        page = web.get("/runs/1", auth=ALICE)
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"


def test_actions_need_the_csrf_token_and_are_audited_with_the_web_user(cli, work, database_url):
    failing_run(cli, work)
    with client_for(database_url) as web:
        form = {"action": "mark-success", "job": "transform"}
        refused = web.post("/runs/1/act", data=form, auth=ALICE, follow_redirects=False)
        assert refused.status_code == 403
        wrong = web.post(
            "/runs/1/act", data={**form, "csrf_token": "0" * 64}, auth=ALICE, follow_redirects=False
        )
        assert wrong.status_code == 403
        assert cli("audit", "1", "--json").json()["events"] == []  # refused: nothing written
        # No credentials at all: refused before anything else.
        assert web.post("/runs/1/act", data={**form, "csrf_token": csrf(web)}).status_code == 401
        # The confirm page shows the dry run and carries the token; posting it acts.
        confirm = web.get("/runs/1/confirm?action=mark-success&job=transform", auth=ALICE)
        assert (
            confirm.status_code == 200 and 'name="csrf_token"' in confirm.text and "transform" in confirm.text
        )
        done = web.post(
            "/runs/1/act", data={**form, "csrf_token": csrf(web)}, auth=ALICE, follow_redirects=False
        )
        assert done.status_code == 303 and done.headers["location"] == "/runs/1?done=mark-success"
        events = cli("audit", "1", "--json").json()["events"]
        assert [(e["action"], e["jobs"]) for e in events] == [("mark_success", ["transform"])]
        assert events[0]["actor"].startswith("web:alice@")
        # The API: basic auth needs the header token; a bearer token (never sent by a browser on its
        # own) does not.
        api = "/api/runs/1/actions/rollback"
        assert web.post(api, json={"jobs": ["transform"]}, auth=ALICE).status_code == 403
        ok = web.post(api, json={"jobs": ["transform"]}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["manual"]["jobs"] == ["transform", "load"]
        assert cli("audit", "1", "--json").json()["events"][-1]["actor"].startswith("web:token@")
        bad = web.post(api, json={"jobs": "transform"}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert bad.status_code == 400 and "list of job ids" in bad.json()["error"]
        unknown = web.post(
            "/api/runs/1/actions/explode", json={}, headers={"X-CSRF-Token": csrf(web)}, auth=ALICE
        )
        assert unknown.status_code == 400 and "unknown action" in unknown.json()["error"]


def test_without_sign_in_only_loopback_and_only_loopback_hosts(cli, work, database_url):
    with pytest.raises(UserError, match="loopback"):
        WebAuth.configure(None, None, True, "0.0.0.0", None)
    with pytest.raises(UserError, match="needs --basic-auth"):
        WebAuth.configure(None, None, False, "127.0.0.1", None)
    with pytest.raises(UserError, match="user:password"):
        WebAuth.configure("alice", None, False, "127.0.0.1", None)
    failing_run(cli, work)
    with client_for(database_url, basic_auth=None, token=None, unauthenticated=True) as web:
        assert web.get("/api/runs/1").status_code == 200
        # DNS rebinding: a page on another name that resolves to us is not served.
        assert web.get("/api/runs/1", headers={"Host": "evil.example:8686"}).status_code == 421
        # Still CSRF-protected: another site's form could post to loopback.
        assert web.post("/runs/1/act", data={"action": "mark-success", "job": "extract"}).status_code == 403
        assert web.post("/api/runs/1/actions/cancel", json={}).status_code == 403


def test_the_web_command_refuses_to_serve_unsafely(cli):
    no_auth = cli("web", "--port", "1")
    assert no_auth.code == 2 and "needs --basic-auth" in no_auth.err and "Traceback" not in no_auth.err
    wide = cli("web", "--unauthenticated", "--host", "0.0.0.0")
    assert wide.code == 2 and "loopback" in wide.err
    short = cli("web", env={"EXECUTIONER_WEB_TOKEN": "short"})
    assert short.code == 2 and "16 characters" in short.err


def test_job_output_and_ids_are_escaped(cli, work, database_url):
    wf = work.workflow(
        [work.job("x", command="echo '<script>alert(1)</script>' >&2; exit 4")], application_name="<b>app</b>"
    )
    assert cli("run", wf).code == 1
    with client_for(database_url) as web:
        for path in ("/runs/1", "/runs/1/jobs/x", "/"):
            page = web.get(path, auth=ALICE).text
            assert "<script>alert(1)" not in page and "<b>app</b>" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in web.get("/runs/1", auth=ALICE).text
        raw = web.get("/runs/1/jobs/x/raw?stream=stderr", auth=ALICE)
        assert raw.headers["content-type"].startswith("text/plain") and "<script>" in raw.text


def test_runs_list_filters_counts_and_pages(cli, work, database_url):
    ok = work.workflow([work.job("a")], name="ok.yaml", application_name="good")
    for _ in range(3):
        assert cli("run", ok).code == 0
    failing_run(cli, work)  # run 4
    with client_for(database_url) as web:
        data = web.get("/api/runs", auth=ALICE).json()
        assert [r["run_id"] for r in data["runs"]] == [4, 3, 2, 1]
        assert data["counts"] == {"FAILED": 1, "SUCCESS": 3}
        page1 = web.get("/api/runs?limit=2", auth=ALICE).json()
        assert [r["run_id"] for r in page1["runs"]] == [4, 3] and page1["next_before"] == 3
        page2 = web.get("/api/runs?limit=2&before=3", auth=ALICE).json()
        assert [r["run_id"] for r in page2["runs"]] == [2, 1]
        good = web.get("/api/runs?workflow=good&status=SUCCESS", auth=ALICE).json()
        assert [r["run_id"] for r in good["runs"]] == [3, 2, 1] and good["counts"] == {"SUCCESS": 3}
        html = web.get("/?workflow=etl", auth=ALICE).text
        assert 'href="/runs/4"' in html and 'href="/runs/3"' not in html
        assert 'data-status="FAILED"' in html
        for bad in (
            "status=BOGUS",
            "limit=0",
            "limit=abc",
            "before=99999999999999",
            "logical_date=yesterday",
        ):
            assert web.get(f"/api/runs?{bad}", auth=ALICE).status_code == 400, bad
            assert web.get(f"/?{bad}", auth=ALICE).status_code == 400, bad
        # A mark-success after the last attempt: counted with the status `runs` derives.
        assert cli("mark-success", "4", "transform", "load").code == 0
        assert web.get("/api/runs", auth=ALICE).json()["counts"] == {"SUCCESS": 4}


def test_the_live_fragment_answers_304_until_something_changes(cli, work, database_url):
    failing_run(cli, work)
    with client_for(database_url) as web:
        first = web.get("/runs/1/live", auth=ALICE)
        tag = first.headers["etag"]
        assert first.status_code == 200 and 'data-status="FAILED"' in first.text
        assert web.get("/runs/1/live", auth=ALICE, headers={"If-None-Match": tag}).status_code == 304
        assert cli("mark-success", "1", "transform").code == 0
        changed = web.get("/runs/1/live", auth=ALICE, headers={"If-None-Match": tag})
        assert changed.status_code == 200 and changed.headers["etag"] != tag


def test_a_change_committed_while_the_page_is_read_is_shown_by_the_next_poll(cli, work, monkeypatch):
    """The page's version is read before its data: a job that changes in between must not leave the
    page with a tag of the newer state (every later poll would answer 304 and the page stay stale)."""
    from orchestrator.context import Context
    from orchestrator.web import model

    failing_run(cli, work)
    real = model.status_and_workflow

    def read_after_a_change(ctx, run_id, workflow_of):
        assert cli("mark-success", "1", "transform").code == 0  # committed between the two reads
        return real(ctx, run_id, workflow_of)

    monkeypatch.setattr(model, "status_and_workflow", read_after_a_change)
    with Context(Settings.from_env(cli.env)) as ctx:
        page = model.run_page(ctx, 1)
        assert page["version"] != model.version(ctx, 1)  # so the next poll re-renders


@pytest.mark.slow
def test_resume_and_cancel_through_the_api(cli, work, database_url):
    """Resume starts a real ``executioner resume`` process; while it runs a second resume is refused
    with the lock's reason; cancel stops it; the attempts say the web user did it."""
    failing_run(cli, work)
    work.flag("fixed").write_text("")
    hold = work.flag("hold")
    hold.write_text("")
    wf = work.workflow(
        [
            work.job("extract"),
            work.job("transform", ["extract"], command=f"while [ -f {hold} ]; do sleep 0.05; done"),
            work.job("load", ["transform"]),
        ],
        application_name="etl",
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with client_for(database_url) as web:
        # The web resumes the stored workflow, whose transform now passes (the flag exists).
        started = web.post("/api/runs/1/actions/resume", json={}, headers=headers)
        assert started.status_code == 200, started.text
        attempt = started.json()["attempt_id"]
        assert attempt == 2
        status = web.get("/api/runs/1", headers=headers).json()
        assert status["attempts"][-1]["triggered_by"] == "web"
        assert status["attempts"][-1]["user"] == "web:token"
        deadline = time.monotonic() + 60
        while web.get("/api/runs/1", headers=headers).json()["status"] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert web.get("/api/runs/1", headers=headers).json()["status"] == "SUCCESS"
        # A run that holds its lock: resume is refused with the reason; cancel stops it.
        cli.popen("run", wf)
        deadline = time.monotonic() + 60
        while True:
            runs = web.get("/api/runs?workflow=etl", headers=headers).json()["runs"]
            if runs[0]["run_id"] == 2 and runs[0]["status"] == "RUNNING":
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        again = web.post("/api/runs/2/actions/resume", json={}, headers=headers)
        assert again.status_code == 400 and "resume of run 2 stopped (exit 3)" in again.json()["error"]
        cancel = web.post("/api/runs/2/actions/cancel", json={}, headers=headers)
        assert cancel.status_code == 200 and cancel.json()["cancel"]["how"] == "requested"
        deadline = time.monotonic() + 60
        while web.get("/api/runs/2", headers=headers).json()["status"] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert web.get("/api/runs/2", headers=headers).json()["status"] == "CANCELLED"
        assert cli("audit", "2", "--json").json()["events"][-1]["actor"].startswith("web:token@")
    hold.unlink()


def test_basic_auth_header_parsing_is_strict():
    auth = WebAuth.configure("alice:pw:with:colons,bob:x", None, False, "127.0.0.1", None)

    def header(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert auth.identify(header("alice:pw:with:colons")).user == "alice"
    assert auth.identify(header("bob:x")).user == "bob"
    for bad in ("bob:y", "bob", "carol:x", ":x", ""):
        assert auth.identify(header(bad)) is None, bad
    assert auth.identify("Basic \x00\xff") is None
    assert auth.identify(None) is None
    assert "pw" not in repr(auth) and "x" not in repr(auth).replace("WebAuth", "")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), max_size=3), min_size=1, max_size=40))
def test_layout_draws_every_edge_left_to_right_without_overlaps(raw):
    parents = {f"j{i}": sorted({f"j{p % i}" for p in ps}) if i else [] for i, ps in enumerate(raw)}
    drawn = layout(parents)
    where = {n.job_id: (n.x, n.y) for n in drawn.nodes}
    assert set(where) == set(parents)
    assert len(set(where.values())) == len(where)  # no two boxes at one place
    for child, ps in parents.items():
        for p in ps:
            assert where[p][0] + NODE_W <= where[child][0]  # a parent is in an earlier column
    assert len(drawn.edges) == sum(len(ps) for ps in parents.values())
    assert all(x + NODE_W <= drawn.width and y + NODE_H <= drawn.height for x, y in where.values())


def test_an_unreachable_database_is_one_line_503(clean_env, tmp_path, monkeypatch):
    monkeypatch.setenv("EXECUTIONER_HOME", str(tmp_path / "home"))
    with client_for("postgresql://nobody@127.0.0.1:1/none") as web:
        api = web.get("/api/runs", auth=ALICE)
        assert api.status_code == 503 and "unreachable" in api.json()["error"]
        page = web.get("/runs/1", auth=ALICE)
        assert page.status_code == 503 and "unreachable" in page.text and "Traceback" not in page.text


def test_hostile_urls_and_forms_are_refused_in_one_line(cli, work, database_url):
    failing_run(cli, work)
    with client_for(database_url) as web:
        token = csrf(web)
        cases = [
            "/runs/99999999999999999999999",
            "/runs/-1",
            "/runs/abc",
            "/api/runs/0",
            "/runs/1/jobs/a%00b",
            "/api/runs/1/jobs/%2e%2e%2fetc/logs",
            "/api/runs/1/history?job=x%00",
            "/api/runs?workflow=a%00b",
            "/?workflow=" + "x" * 600,
            "/api/runs?logical_date=%ED%A0%80",
            "/api/runs?limit=1e20",
            "/runs/1/confirm?action=mark-success&job=..%2F..",
            "/runs/1/confirm?action=rollback",
            "/runs/1/jobs/transform/raw?stream=/etc/passwd",
            "/api/runs/1/preview/resume?job=%00",
        ]
        for path in cases:
            response = web.get(path, auth=ALICE)
            assert response.status_code in (400, 404), (path, response.status_code, response.text[:200])
            assert "Traceback" not in response.text and "SELECT" not in response.text, path
        posted = web.post(
            "/api/runs/1/actions/mark-success",
            content=b"{not json",
            auth=ALICE,
            headers={"X-CSRF-Token": token},
        )
        assert posted.status_code == 400
        nul_job = web.post(
            "/api/runs/1/actions/mark-success",
            json={"jobs": ["a\x00"]},
            auth=ALICE,
            headers={"X-CSRF-Token": token},
        )
        assert nul_job.status_code == 400
        many = web.post(
            "/runs/1/act",
            data={"action": "mark-success", "job": [f"j{i}" for i in range(2000)], "csrf_token": token},
            auth=ALICE,
        )
        assert many.status_code == 404  # unknown jobs, named; nothing written
    assert cli("audit", "1", "--json").json()["events"] == []


def test_mark_success_and_rollback_dry_runs_write_nothing(cli, work):
    """What the web view's confirm page shows, from the CLI too: the jobs it would change."""
    failing_run(cli, work)
    marked = cli("mark-success", "1", "load", "--with-upstream", "--dry-run", "--json")
    assert marked.code == 0 and marked.json()["jobs"] == ["transform", "load"] and marked.json()["dry_run"]
    rolled = cli("rollback", "1", "extract", "--dry-run")
    assert rolled.code == 0 and "would be rolled back" in rolled.out and "extract, transform" in rolled.out
    refused = cli("mark-success", "1", "load", "--dry-run")  # upstream not SUCCESS: refused, as for real
    assert refused.code == 2 and "upstream" in refused.err
    assert cli("audit", "1", "--json").json()["events"] == []
    assert cli("status", "1", "--json").json()["jobs"]["load"]["status"] == "UPSTREAM_FAILED"
