"""The benchmark harness must not rot: CI runs it in smoke mode (tiny sizes, no timing targets)."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import require_binary

ROOT = Path(__file__).parent.parent


def test_every_case_runs_and_reports_a_ratio_line(tmp_path):
    require_binary("redis-server")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "all", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    names = [case["name"] for case in data["cases"]]
    assert names == [
        "local-wide",
        "local-wide-cli",
        "local-chain",
        "local-chain-cli",
        "celery-wide",
        "celery-wide-ev",
        "celery-wide-flower",
        "celery-wide-cli",
        "celery-chain",
        "celery-chain-cli",
        "plan-fresh",
        "plan-fresh-cli",
        "plan-resume",
        "plan-resume-cli",
        "memory",
        "cli-status",
        "cli-runs",
        "web-runs",
        "web-run",
    ]
    for case in data["cases"]:
        assert case["ours"] and all(v > 0 for v in case["ours"])
        assert f"{case['name']:<14}" in proc.stdout
    assert all(
        "ratio" in line
        for line in proc.stdout.splitlines()
        if line.startswith(("local", "celery", "web", "cli"))
    )
