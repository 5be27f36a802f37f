"""Alembic environment: programmatic (``Database.upgrade`` passes its connection) or the ``alembic`` CLI."""

from __future__ import annotations

import logging.config
import os
from pathlib import Path

from alembic import context
from sqlalchemy.engine import Connection

from intake.storage.database import Database
from intake.storage.tables import Base

config = context.config
target_metadata = Base.metadata


def _cli_url() -> str:
    url = os.environ.get("IZS_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    return f"sqlite:///{Path('var/izs.db').resolve()}"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if config.config_file_name is not None:
        logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)
    database = Database(_cli_url())
    try:
        with database.engine.begin() as cli_connection:
            _run(cli_connection)
    finally:
        database.dispose()


if context.is_offline_mode():
    context.configure(url=_cli_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
