"""The web view in a real headless browser (Debian's Chromium, Playwright), served by a real
``executioner web`` process: a failed job is red with its exit code; resumed from the page (dry run,
then confirm), it turns green while the page stays loaded; actions are refused without credentials
and without the CSRF token. The README's screenshot is this test's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import EXECUTIONER
from support import free_port, wait_until
from support.browser import chromium_page

pytestmark = pytest.mark.slow
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "web-run-page.png"
USER, PASSWORD = "ops", "correct-horse-battery"


@pytest.fixture
def web_server(cli, tmp_path):
    port = free_port()
    log = open(tmp_path / "web.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [EXECUTIONER, "web", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **cli.env, "EXECUTIONER_WEB_BASIC_AUTH": f"{USER}:{PASSWORD}"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"{url}/healthz", timeout=1).read() == b"ok"
        except OSError:
            return proc.poll() is not None  # died: the assertion below says why

    wait_until(up, 30, "the web server to answer")
    assert proc.poll() is None, (tmp_path / "web.log").read_text()
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_fail_resume_from_the_page_and_watch_it_turn_green(cli, work, web_server, tmp_path):
    go = work.flag("go")
    wf = work.workflow(
        [
            work.job("extract"),
            # Fails until the flag exists; then waits for `go`, so the page sees it running.
            work.job(
                "transform",
                ["extract"],
                command=f"test -f {work.flag('fixed')} || {{ echo 'bad input row 17' >&2; exit 3; }}; "
                f"while [ ! -f {go} ]; do sleep 0.05; done",
            ),
            work.job("load", ["transform"]),
            work.job("report", ["extract"]),
        ],
        application_name="nightly_etl",
    )
    assert cli("run", wf).code == 1
    work.flag("fixed").write_text("")

    with chromium_page(http_credentials={"username": USER, "password": PASSWORD}) as page:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(f"{web_server}/runs/1")
        failed = page.locator('#dag .node[data-job="transform"]')
        assert failed.get_attribute("data-status") == "FAILED"
        assert "bad" in failed.get_attribute("class")  # drawn red
        row = page.locator('#jobs tr[data-job="transform"]')
        assert row.locator("td.exit").inner_text() == "3"
        assert "bad input row 17" in page.locator("#failure-transform").inner_text()
        assert page.locator('#dag .node[data-job="load"]').get_attribute("data-status") == "UPSTREAM_FAILED"
        shot = tmp_path / "run-page.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("EXECUTIONER_UPDATE_SCREENSHOTS"):  # the README's picture: a failed run
            SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)

        page.click("#act-resume")  # first the dry run ...
        assert "/confirm?action=resume" in page.url
        assert "transform" in page.locator("#plan").inner_text()
        page.click("#confirm")  # ... then the resume
        page.wait_for_selector("#flash")
        assert "Attempt 2 started" in page.locator("#flash").inner_text()
        page.evaluate("window.__loaded_once = true")  # gone if the page were reloaded
        page.wait_for_selector('#jobs tr[data-job="transform"][data-status="RUNNING"]')
        go.write_text("")
        page.wait_for_selector('#dag .node[data-job="load"][data-status="SUCCESS"]')
        assert page.evaluate("window.__loaded_once") is True  # updated in place, never reloaded
        assert page.locator("#run-status").inner_text() == "SUCCESS"
        assert "ok" in page.locator('#dag .node[data-job="transform"]').get_attribute("class")
        assert "web:ops" in page.locator("#attempts").inner_text()
        page.screenshot(path=str(tmp_path / "run-page-resumed.png"), full_page=True)

        # Without the CSRF token the page's own origin is refused too; nothing is written.
        refused = page.evaluate(
            """async () => {
                const r = await fetch('/runs/1/act', {method: 'POST',
                    headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                    body: 'action=rollback&job=extract'});
                return r.status;
            }"""
        )
        assert refused == 403
    assert cli("audit", "1", "--json").json()["events"] == []

    with chromium_page() as anonymous:  # no credentials: nothing shown, nothing done
        response = anonymous.request.get(f"{web_server}/runs/1")
        assert response.status == 401 and "nightly_etl" not in response.text()
        posted = anonymous.request.post(
            f"{web_server}/runs/1/act", form={"action": "rollback", "job": "extract"}, max_redirects=0
        )
        status = posted.status
        assert status == 401
    assert cli("audit", "1", "--json").json()["events"] == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_mark_success_and_rollback_from_the_job_page(cli, work, web_server):
    wf = work.workflow(
        [work.job("a"), work.job("b", ["a"], command="exit 5"), work.job("c", ["b"])], application_name="app"
    )
    assert cli("run", wf).code == 1
    with chromium_page(http_credentials={"username": USER, "password": PASSWORD}) as page:
        page.goto(f"{web_server}/runs/1/jobs/b")
        assert "exit 5" in page.content()
        assert "exit 5" in page.locator("#job-attempts").inner_text()  # each attempt's command and end
        page.click("text=Mark success…")
        assert page.locator("#manual-jobs").inner_text() == "b"
        page.click("#confirm")
        page.wait_for_selector('#jobs tr[data-job="b"][data-status="SUCCESS"]')
        assert "web:ops@" in page.locator("#audit").inner_text()
        page.goto(f"{web_server}/runs/1/jobs/a")
        page.click("text=Roll back…")
        assert page.locator("#manual-jobs").inner_text() == "a, b, c"
        page.click("#confirm")
        page.wait_for_selector('#jobs tr[data-job="a"][data-status="PENDING"]')
    actions = [
        (e["action"], e["jobs"], e["actor"].split("@")[0])
        for e in cli("audit", "1", "--json").json()["events"]
    ]
    assert actions == [("mark_success", ["b"], "web:ops"), ("rollback", ["a", "b", "c"], "web:ops")]
