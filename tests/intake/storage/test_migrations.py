"""The schema comes from Alembic migrations, on both backends, and matches the ORM exactly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from intake.storage.database import Database
from intake.storage.tables import Base

BACKENDS = [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_on_an_empty_database_creates_the_whole_schema(
    backend: str, make_database_url: Callable[..., str]
) -> None:
    database = Database(make_database_url(backend))
    try:
        assert database.current_revision() is None
        database.upgrade()
        assert database.is_up_to_date()
        tables = set(inspect(database.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        database.upgrade()  # running it again changes nothing
        assert database.current_revision() == database.head_revision()
    finally:
        database.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_nodes_starting_together_migrate_once(backend: str, make_database_url: Callable[..., str]) -> None:
    url = make_database_url(backend)
    databases = [Database(url) for _ in range(4)]
    barrier = threading.Barrier(len(databases))

    def start(database: Database) -> str | None:
        barrier.wait()
        database.upgrade()
        return database.current_revision()

    try:
        with ThreadPoolExecutor(len(databases)) as pool:
            revisions = list(pool.map(start, databases))
        assert revisions == [databases[0].head_revision()] * len(databases)
    finally:
        for database in databases:
            database.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_match_the_orm_tables(backend: str, make_database_url: Callable[..., str]) -> None:
    database = Database(make_database_url(backend))
    try:
        database.upgrade()
        with database.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        database.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_downgrade_to_base_and_back(backend: str, make_database_url: Callable[..., str]) -> None:
    database = Database(make_database_url(backend))
    try:
        database.upgrade()
        database.downgrade("base")
        assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
        database.upgrade()
        assert database.is_up_to_date()
    finally:
        database.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(make_database_url: Callable[..., str]) -> None:
    database = Database(make_database_url("sqlite"))
    try:
        database.upgrade()  # turns foreign keys off while it migrates, and on again
        with database.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        database.dispose()


def test_unreachable_database_fails_ping_and_upgrade_clearly(tmp_path: object) -> None:
    from intake.errors import StorageError

    database = Database("postgresql+psycopg://nobody@/nothing?host=/nonexistent-dir&connect_timeout=1")
    try:
        assert database.ping() is False
        with pytest.raises(StorageError):
            database.upgrade()
    finally:
        database.dispose()


def test_unsupported_database_url_is_a_config_error() -> None:
    from intake.errors import ConfigError

    with pytest.raises(ConfigError):
        Database("mysql://localhost/izs")
    with pytest.raises(ConfigError):
        Database("not a url")
