import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from orchestrator.db.engine import alembic_config, current_revision, ensure_schema, make_engine, upgrade
from orchestrator.db.schema import HEAD_REVISION, metadata


def test_head_revision_constant_matches_the_migrations(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    assert ScriptDirectory.from_config(alembic_config(engine)).get_current_head() == HEAD_REVISION


def test_models_and_migrations_agree(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    upgrade(engine)
    command.check(alembic_config(engine))  # raises if autogenerate would find a difference
    assert set(inspect(engine).get_table_names()) >= set(metadata.tables)


def test_upgrade_applies_only_new_migrations(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    assert upgrade(engine, "0001") == (None, "0001")
    assert "schedule_slots" not in inspect(engine).get_table_names()
    assert upgrade(engine) == ("0001", HEAD_REVISION)
    assert "schedule_slots" in inspect(engine).get_table_names()
    assert upgrade(engine) == (HEAD_REVISION, HEAD_REVISION)


def test_sqlite_migrates_itself_on_first_use(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/new/dir/x.db")
    assert current_revision(engine) is None
    ensure_schema(engine)
    assert current_revision(engine) == HEAD_REVISION


def test_in_memory_sqlite_works_for_unit_tests():
    engine = make_engine("sqlite://")
    ensure_schema(engine)
    assert current_revision(engine) == HEAD_REVISION


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("postgres").new_database(migrated=False)
    return f"sqlite:///{tmp_path}/empty.db"


def test_db_upgrade_applies_only_new_migrations_on_both_databases(cli, empty_database):
    engine = make_engine(empty_database)
    try:
        upgrade(engine, "0001")  # a database made by the previous release
        r = cli("db", "upgrade", env={"EXECUTIONER_DATABASE_URL": empty_database})
        assert r.code == 0 and f"upgraded from 0001 to {HEAD_REVISION}" in r.out, r
        again = cli("db", "upgrade", env={"EXECUTIONER_DATABASE_URL": empty_database})
        assert again.code == 0 and f"already at revision {HEAD_REVISION}" in again.out
        command.check(alembic_config(engine))  # models and migrations agree on this database too
    finally:
        engine.dispose()


def test_postgres_is_not_migrated_behind_the_users_back(cli, postgres):
    url = postgres.new_database(migrated=False)
    r = cli("runs", env={"EXECUTIONER_DATABASE_URL": url})
    assert r.code == 2 and "executioner db upgrade" in r.err


def test_a_url_with_percent_escapes_migrates(cli, postgres):
    # A password with "@" or "/" is %-escaped in the URL, and so is a socket folder in ?host=;
    # Alembic's config parser once refused such URLs ("invalid interpolation syntax").
    url = postgres.new_database(migrated=False, local=True).replace("postgres@", "postgres:p%40ss%2Fw@", 1)
    assert "%2F" in url
    r = cli("db", "upgrade", env={"EXECUTIONER_DATABASE_URL": url})
    assert r.code == 0 and f"to {HEAD_REVISION}" in r.out, r
    assert "p%40ss" not in r.out + r.err and "p@ss" not in r.out + r.err  # the password is never shown


def test_a_database_from_a_later_release_is_refused_in_one_line(tmp_path):
    from sqlalchemy import text

    from orchestrator.errors import UserError

    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(UserError, match="newer than this version"):
        ensure_schema(engine)


def test_0004_upgrades_a_database_that_already_holds_runs(home, empty_database, work):
    """A run recorded by the previous release reads as no parameters, logical date = its creation,
    and resumes (its jobs render and get EXECUTIONER_LOGICAL_DATE)."""
    from datetime import UTC, datetime

    from conftest import Cli
    from sqlalchemy import insert

    from orchestrator.db.schema import attempts, job_runs, runs
    from orchestrator.loader import workflow_from_data

    cli = Cli(work.root, {"EXECUTIONER_HOME": str(home)})
    engine = make_engine(empty_database)
    created = datetime(2026, 11, 1, 3, tzinfo=UTC)
    out = work.root / "date"
    wf = workflow_from_data(
        {
            "application_name": "old",
            "jobs": [{"id": "a", "command": f'echo "$EXECUTIONER_LOGICAL_DATE" > {out}'}],
        }
    )
    try:
        upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(
                insert(runs).values(
                    run_id=1,
                    application_name="old",
                    created_at=created,
                    created_by="me",
                    epoch=1,
                    lock_kind="sql",
                )
            )
            conn.execute(
                insert(attempts).values(
                    run_id=1,
                    attempt_id=1,
                    application_name="old",
                    status="FAILED",
                    start_time=created,
                    end_time=created,
                    total_jobs=1,
                    successful_jobs=0,
                    failed_jobs=1,
                    skipped_jobs=0,
                    config_hash=wf.config_hash,
                    workflow_snapshot=wf.snapshot(),
                    triggered_by="cli",
                    host="h",
                    user="u",
                    pid=1,
                    executor="local",
                    request={},
                    changes=[],
                    forced=False,
                    epoch=1,
                )
            )
            conn.execute(
                insert(job_runs).values(
                    run_id=1, attempt_id=1, job_id="a", status="FAILED", exit_code=1, retry_count=0
                )
            )
        assert cli("db", "upgrade", env={"EXECUTIONER_DATABASE_URL": empty_database}).code == 0
        env = {"EXECUTIONER_DATABASE_URL": empty_database}
        st = cli("status", 1, "--json", env=env).json()
        assert st["params"] == {} and st["logical_date"] == created.isoformat()
        assert cli("runs", "--json", env=env).json()["runs"][0]["params"] == {}
        r = cli("resume", 1, "--json", env=env)
        assert r.code == 0 and r.json()["status"] == "SUCCESS", r
        assert out.read_text().strip() == created.isoformat()
        rows = cli("history", 1, "--json", env=env).json()["rows"]
        assert [(x["attempt_id"], x["command"]) for x in rows] == [(1, None), (2, wf.jobs["a"].command)]
    finally:
        engine.dispose()
