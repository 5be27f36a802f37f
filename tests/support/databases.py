"""Helpers for tests that manage their own databases (imported as ``support.databases``)."""

from __future__ import annotations

from sqlalchemy import text

from intake.storage.database import Database
from intake.storage.tables import Base


def clean_database(database: Database) -> None:
    """Empty every table (keeps the schema): each test starts from an empty database."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with database.engine.begin() as conn:
        if database.is_postgresql:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
