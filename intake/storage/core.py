"""The one transaction core every store shares: sessions, error mapping and retry of transient failures.

Methods of the stores are synchronous (SQLAlchemy sessions are); async callers run them with
``asyncio.to_thread``. Database failures surface as :class:`~intake.errors.StorageError` (the cause chained),
missing things as :class:`~intake.errors.NotFound`, contradictions as :class:`~intake.errors.Conflict`.
Deadlocks and serialization failures (and SQLite's "database is locked") are retried a few times here,
and only here.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from intake.errors import IzsError, NotFound, StorageError
from intake.storage.database import Database

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_PAGE = 1000

# PostgreSQL SQLSTATEs worth retrying: serialization_failure, deadlock_detected, lock_not_available
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03"}
_WRITE_ATTEMPTS = 5


def page(limit: int, offset: int) -> tuple[int, int]:
    """A page request clamped to what one answer may hold."""
    return max(0, min(int(limit), MAX_PAGE)), max(0, int(offset))


def escape_like(column: Any, pattern: str) -> Any:
    """``column LIKE pattern`` with ``\\`` escaping LIKE's wildcards (see :func:`mapping.like_pattern`)."""
    return column.like(pattern, escape="\\")


class StoreCore:
    """One database, a writer and a reader session factory, and the two ways to run work on them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._writer = sessionmaker(bind=db.engine, expire_on_commit=False)
        self._reader = sessionmaker(bind=db.reader, expire_on_commit=False)

    def _write(
        self,
        what: str,
        work: Callable[[Session], T],
        on_integrity_error: Callable[[IntegrityError], IzsError] | None = None,
    ) -> T:
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                with self._writer() as session, session.begin():
                    return work(session)
            except IntegrityError as exc:
                if on_integrity_error is not None:
                    raise on_integrity_error(exc) from exc
                raise StorageError(f"{what}: {exc.orig}", operation=what) from exc
            except DataError as exc:
                # A value the database cannot hold (a NUL byte in an id from a URL): nothing stored matches.
                raise NotFound(f"{what}: no such value ({exc.orig})", operation=what) from exc
            except (OperationalError, DBAPIError) as exc:
                if attempt < _WRITE_ATTEMPTS and self._is_transient(exc):
                    delay = 0.02 * 2**attempt * (0.5 + random.random())
                    log.info(
                        "%s: transient database error, retry %d in %.2fs: %s", what, attempt, delay, exc.orig
                    )
                    time.sleep(delay)
                    continue
                raise StorageError(f"{what}: {exc.orig}", operation=what) from exc
            except SQLAlchemyError as exc:
                raise StorageError(f"{what}: {exc}", operation=what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, what: str, work: Callable[[Session], T]) -> T:
        try:
            with self._reader() as session, session.begin():
                return work(session)
        except DataError as exc:
            # A value the database cannot even hold (PostgreSQL refuses NUL bytes in text): nothing stored
            # can match it. That is the caller's input, not a storage failure.
            raise NotFound(f"{what}: no such value ({exc.orig})", operation=what) from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"{what}: {exc}", operation=what) from exc

    def _is_transient(self, exc: DBAPIError) -> bool:
        if self.db.is_sqlite:
            return "locked" in str(exc.orig) or "busy" in str(exc.orig)
        return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES

    def _insert(self, table: Any) -> Any:
        """A dialect INSERT that supports ON CONFLICT (both SQLite and PostgreSQL spell it the same)."""
        if self.db.is_postgresql:
            return pg_dialect.insert(table)
        return sqlite_dialect.insert(table)
