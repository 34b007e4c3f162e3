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


def test_a_database_from_a_later_release_is_refused_in_one_line(tmp_path):
    from sqlalchemy import text

    from orchestrator.errors import UserError

    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(UserError, match="newer than this version"):
        ensure_schema(engine)
