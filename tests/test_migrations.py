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
