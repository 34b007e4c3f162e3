"""The log store: complete output of every try, secrets masked even across chunk boundaries."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.logstore import (
    DirectoryLogStore,
    FsspecLogStore,
    Masker,
    NullLogStore,
    log_store,
    read_log,
    try_key,
)
from workers.retry import RetryPolicy
from workers.runner import RunnerHooks, run_job
from workers.spec import JobTask


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet="ab s3cr3t", max_size=200),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_a_secret_split_across_chunks_is_still_masked(text, cuts):
    secrets = [b"s3cr3t", b"cr3"]
    data = text.encode()
    masker = Masker(secrets)
    pieces, last = [], 0
    for cut in sorted(set(cuts)):
        if last <= cut <= len(data):
            pieces.append(data[last:cut])
            last = cut
    pieces.append(data[last:])
    out = b"".join(masker.feed(p) for p in pieces) + masker.finish()
    expected = data.replace(b"s3cr3t", b"***").replace(b"cr3", b"***")
    assert out == expected


def task(command: str, **kw) -> JobTask:
    return JobTask(run_id=7, attempt_id=2, job_id="j", command=command, retry=RetryPolicy(), scope="s", **kw)


def test_the_runner_writes_every_byte_and_the_tail_says_what_was_cut(tmp_path):
    store = DirectoryLogStore(tmp_path / "logs")
    r = run_job(
        task("head -c 5000000 /dev/zero | tr '\\0' y; echo; echo oops >&2"), RunnerHooks(log_store=store)
    )
    final = r.final
    assert final.log_uri and final.stdout_bytes == 5000001 and final.stderr_bytes == 5
    assert read_log(final.log_uri, "out") == b"y" * 5000000 + b"\n"
    assert read_log(final.log_uri, "err") == b"oops\n"
    assert final.stdout_tail.startswith(f"[… {5000001 - 65536} bytes before]")
    assert Path(f"{tmp_path / 'logs' / try_key('s', 7, 2, 'j', 1)}.out").stat().st_size == 5000001


def test_secrets_never_reach_the_store(tmp_path):
    store = DirectoryLogStore(tmp_path / "logs")
    t = task("echo token=$API_TOKEN; echo $API_TOKEN >&2", env={"API_TOKEN": "hunter2-very-secret"})
    r = run_job(t, RunnerHooks(log_store=store))
    for stream in ("out", "err"):
        assert b"hunter2" not in read_log(r.final.log_uri, stream)
    assert read_log(r.final.log_uri, "out") == b"token=***\n"


def test_a_store_that_cannot_be_written_never_fails_the_job(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    r = run_job(task("echo fine"), RunnerHooks(log_store=DirectoryLogStore(blocked)))
    assert r.status.value == "SUCCESS" and r.final.log_uri is None and r.final.stdout_tail == "fine\n"


def test_an_fsspec_store_uploads_each_try_when_it_ends(tmp_path):
    store = FsspecLogStore(f"file://{tmp_path}/remote", tmp_path / "spool")
    r = run_job(task("echo remote"), RunnerHooks(log_store=store))
    assert r.final.log_uri.startswith("file://") and read_log(r.final.log_uri, "out") == b"remote\n"
    assert not any((tmp_path / "spool").iterdir())  # the spool is emptied
    assert store.run_size("s", 7) == len(b"remote\n")
    assert store.remove_run("s", 7) == len(b"remote\n") and read_log(r.final.log_uri, "out") is None


def test_which_store_a_setting_names(tmp_path):
    assert isinstance(log_store(None, tmp_path), DirectoryLogStore)
    assert log_store(None, tmp_path).root == tmp_path / "logs"
    assert isinstance(log_store(str(tmp_path / "x"), tmp_path), DirectoryLogStore)
    assert isinstance(log_store(f"file://{tmp_path}/y", tmp_path), DirectoryLogStore)
    assert isinstance(log_store("none", tmp_path), NullLogStore)
    assert isinstance(log_store("memory://bucket", tmp_path), FsspecLogStore)
    assert read_log("memory://nowhere/x", "out") is None


@pytest.mark.parametrize("stream", ["out", "err"])
def test_remove_run_deletes_its_folder(tmp_path, stream):
    store = DirectoryLogStore(tmp_path)
    r = run_job(task("echo a; echo b >&2"), RunnerHooks(log_store=store))
    assert store.run_size("s", 7) == 4
    assert store.remove_run("s", 7) == 4 and read_log(r.final.log_uri, stream) is None
