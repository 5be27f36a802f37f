"""The database connection: SQLite (embedded default, a file under ``var/``) or PostgreSQL (production).

The schema is made by Alembic migrations (:meth:`Database.upgrade`), never by ``create_all``, so an
existing production database and a fresh one always have the same schema.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from intake.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# How long an SQLite writer waits for another writer before giving up (the file is locked per write).
SQLITE_BUSY_TIMEOUT_MS = 30_000

PG_CONNECT_TIMEOUT_S = 5
PG_LOCK_TIMEOUT_MS = 15_000
# Several nodes may start at once: the first migrates, the others wait for it and find the schema at head.
_MIGRATION_LOCK_ID = 0x1257_1A4E

# Execution option set on the engine used for read-only transactions (see Database.reader).
_READ_ONLY_OPTION = "izs_read_only"


class Database:
    """One engine for one database URL; thread-safe, shared by all repositories of the process."""

    def __init__(self, url: str, echo: bool = False) -> None:
        try:
            self.url: URL = make_url(url)
        except ArgumentError as exc:
            raise ConfigError([f"database URL is not valid: {exc}"]) from exc
        self.backend = self.url.get_backend_name()
        if self.backend not in ("sqlite", "postgresql"):
            raise ConfigError([f"unsupported database {self.backend!r} (use sqlite or postgresql)"])
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.backend == "sqlite":
            database = self.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 20
            kwargs["pool_timeout"] = 10
            connect_args: dict[str, Any] = {}
            if "connect_timeout" not in self.url.query:
                connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
            if "options" not in self.url.query:
                # A writer stuck behind a lock fails (and is retried) instead of hanging a call path forever.
                connect_args["options"] = f"-c lock_timeout={PG_LOCK_TIMEOUT_MS}"
            kwargs["connect_args"] = connect_args
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.backend == "sqlite":
            _configure_sqlite(self.engine)
        # Same pool; a read-only transaction on SQLite starts DEFERRED so readers never queue behind writers.
        self.reader: Engine = self.engine.execution_options(**{_READ_ONLY_OPTION: True})

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.backend == "postgresql"

    def alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        # '%' would be taken for configparser interpolation
        config.set_main_option(
            "sqlalchemy.url", self.url.render_as_string(hide_password=False).replace("%", "%%")
        )
        return config

    def upgrade(self, revision: str = "head") -> None:
        """Run the Alembic migrations up to ``revision`` (used at start-up and by ``izs db upgrade``)."""
        self._migrate(lambda config: command.upgrade(config, revision))

    def downgrade(self, revision: str) -> None:
        self._migrate(lambda config: command.downgrade(config, revision))

    def _migrate(self, run: Callable[[Config], None]) -> None:
        with self._sqlite_migration_lock():
            self._migrate_locked(run)

    @contextlib.contextmanager
    def _sqlite_migration_lock(self) -> Iterator[None]:
        """Nodes (or threads) starting together on one SQLite file migrate one at a time: PostgreSQL has its
        advisory lock; SQLite's deferred transactions would instead let two migrators both read "no schema"
        and then fail on each other's locks. An exclusive lock on a file beside the database (flock is held
        per open file, so it also orders threads of one process)."""
        database = self.engine.url.database
        if not self.is_sqlite or not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate.lock", "a+b") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _migrate_locked(self, run: Callable[[Config], None]) -> None:
        config = self.alembic_config()
        try:
            with self.engine.connect() as connection:
                if self.is_sqlite:
                    # SQLite alters a table by copying it (Alembic batch mode); with foreign keys enforced,
                    # dropping the old copy would cascade into the tables referring to it. The pragma only
                    # works outside a transaction; integrity is checked before commit instead.
                    connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
                try:
                    with connection.begin():
                        if self.is_postgresql:
                            connection.execute(
                                text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
                            )
                        config.attributes["connection"] = connection
                        run(config)
                        if self.is_sqlite:
                            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                            if broken:
                                raise StorageError(f"migration left broken foreign keys: {broken[:5]}")
                finally:
                    if self.is_sqlite:
                        connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
        except SQLAlchemyError as exc:
            raise StorageError(f"database migration failed: {exc}") from exc

    def current_revision(self) -> str | None:
        try:
            with self.engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot read the schema revision: {exc}") from exc

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    def is_up_to_date(self) -> bool:
        return self.current_revision() == self.head_revision()

    def ping(self) -> bool:
        """True when the database answers; never raises (health checks call it)."""
        try:
            with self.reader.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError as exc:
            log.warning("database ping failed: %s", exc)
            return False

    def dispose(self) -> None:
        self.engine.dispose()

    def url_for_display(self) -> str:
        """The URL with the password masked, for logs and messages."""
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Database({self.url_for_display()!r})"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 module, so we can BEGIN IMMEDIATE ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A write transaction takes the write lock up front: a DEFERRED one that later upgrades its lock
        # can fail with SQLITE_BUSY at once (no busy wait), and two of them would race on read-then-write.
        if connection.get_execution_options().get(_READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
