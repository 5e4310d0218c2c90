"""The Alembic migrations: they build exactly the models' schema, and go back down cleanly, on
SQLite and on PostgreSQL (``tests.fixtures_postgres``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from storage import (
    Base,
    Database,
    DatabaseNotMigrated,
    current_revision,
    downgrade_to,
    head_revision,
    upgrade_to_head,
)
from storage.migrate import MIGRATIONS_DIR, alembic_config, include_object, scripts

pytest_plugins = ("tests.fixtures_postgres",)

ROOT = Path(__file__).resolve().parents[1]
TABLES = {
    "users",
    "jobs",
    "images",
    "deliveries",
    "likes",
    "showcase_posts",
    "guild_settings",
    "user_settings",
    "bans",
    "audit_events",
    "member_limits",
    "api_keys",
    "uploads",
    "job_search",
}


@pytest.fixture
def url(database_url: str) -> str:
    """An empty database, on SQLite and on PostgreSQL."""
    return database_url


def test_upgrade_reaches_head(url: str) -> None:
    assert current_revision(url) is None
    assert upgrade_to_head(url) == head_revision() is not None
    assert current_revision(url) == head_revision()
    assert upgrade_to_head(url) == head_revision()  # a second upgrade does nothing


def test_upgrade_creates_the_sqlite_file_and_its_folder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'nanke.db'}"
    assert upgrade_to_head(url) == head_revision()
    assert (tmp_path / "nested" / "nanke.db").is_file()


def test_every_migration_goes_up_and_down_one_at_a_time(url: str) -> None:
    """Each revision's upgrade runs on the one before it, and each downgrade undoes it."""
    revisions = [script.revision for script in reversed(list(scripts().walk_revisions()))]
    for revision in revisions:
        command.upgrade(alembic_config(url), revision)
        assert current_revision(url) == revision
    for expected in [*reversed(revisions[:-1]), None]:
        command.downgrade(alembic_config(url), "-1")
        assert current_revision(url) == expected


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_processes_upgrading_at_once_wait_for_each_other(url: str) -> None:
    """The bot and the HTTP API started together both upgrade the same new database: the second
    waits for the first (on SQLite ``BEGIN IMMEDIATE`` sees to that, here an advisory lock), then
    finds the schema at head."""
    upgrade = f"print('ready', flush=True); sys.stdin.readline(); print(upgrade_to_head({url!r}))"
    argv = [sys.executable, "-c", f"import sys; from storage import upgrade_to_head; {upgrade}"]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    processes = [subprocess.Popen(argv, cwd=ROOT, text=True, **pipes) for _ in range(2)]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    for process in processes:  # both at once
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert (process.returncode, out.strip()) == (0, head_revision()), err
    assert current_revision(url) == head_revision()


def test_migrated_schema_matches_the_models(url: str) -> None:
    upgrade_to_head(url)
    database = Database(url)
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            # The prompt search index (job_search*) has no model: migrations/env.py skips it too.
            connection,
            opts={"compare_type": True, "target_metadata": Base.metadata, "include_object": include_object},
        )
        assert compare_metadata(context, Base.metadata) == []
    database.dispose()


def test_constraints_and_indexes_are_named(url: str) -> None:
    upgrade_to_head(url)
    database = Database(url)
    inspector = inspect(database.engine)
    assert inspector.get_pk_constraint("jobs")["name"] == "pk_jobs"
    assert {fk["name"] for fk in inspector.get_foreign_keys("jobs")} == {
        "fk_jobs_owner_id_users",
        "fk_jobs_parent_id_jobs",
    }
    assert {c["name"] for c in inspector.get_check_constraints("jobs")} == {"ck_jobs_kind", "ck_jobs_status"}
    assert "ix_jobs_status_priority_created_at" in {i["name"] for i in inspector.get_indexes("jobs")}
    assert {u["name"] for u in inspector.get_unique_constraints("images")} == {"uq_images_job_id_index"}
    database.dispose()


def test_downgrade_to_base_removes_every_table(url: str) -> None:
    upgrade_to_head(url)
    assert downgrade_to(url, "base") is None
    database = Database(url)
    inspector = inspect(database.engine)
    assert TABLES.isdisjoint(inspector.get_table_names())
    if database.engine.dialect.name == "postgresql":
        assert inspector.get_sequence_names() == []  # the id sequences went with their tables
    assert database.current_revision() is None
    database.dispose()
    assert upgrade_to_head(url) == head_revision()  # and up again


def test_check_raises_when_the_database_is_behind(url: str) -> None:
    database = Database(url)
    with pytest.raises(DatabaseNotMigrated, match=r"python main\.py db upgrade") as caught:
        database.check_migrated()
    assert caught.value.current is None
    assert caught.value.head == head_revision()
    database.upgrade()
    database.check_migrated()
    database.dispose()


def test_check_raises_when_the_database_is_newer_than_the_code(url: str) -> None:
    database = Database(url)
    database.upgrade()
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(DatabaseNotMigrated, match="newer nanke"):
        database.check_migrated()
    database.dispose()


def test_in_memory_database_upgrades_through_its_own_engine() -> None:
    database = Database("sqlite://")
    assert database.upgrade() == head_revision()
    assert set(inspect(database.engine).get_table_names()) >= TABLES
    database.check_migrated()


def test_migrations_folder_ships_with_the_package() -> None:
    assert MIGRATIONS_DIR == ROOT / "migrations"
    for name in ("__init__.py", "env.py", "script.py.mako", "alembic.ini", "versions/__init__.py"):
        assert (MIGRATIONS_DIR / name).is_file(), name
    assert not (ROOT / "alembic.ini").exists()


def test_alembic_command_line(url: str) -> None:
    def alembic(*args: str) -> str:
        command = [sys.executable, "-m", "alembic", "-c", "migrations/alembic.ini", "-x", f"url={url}", *args]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
        return done.stdout

    alembic("upgrade", "head")
    assert head_revision() in alembic("current")
    assert current_revision(url) == head_revision()


def test_storage_imports_neither_discord_nor_torch() -> None:
    code = (
        "import sys, storage, storage.migrate; "
        "print(sorted(m for m in ('torch', 'discord', 'diffusers', 'pipeline', 'bot') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
