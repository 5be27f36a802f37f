# ruff: noqa: E402 (the project root must be on sys.path before the project is imported)
"""Shared fixtures: real PostgreSQL / SQLite databases and a real Redis, started for the test run.

The database every storage-backed test uses is chosen by ``IZS_TEST_DB``: ``sqlite`` (default: a temp
SQLite file) or ``postgres`` (a private PostgreSQL cluster, or ``IZS_TEST_DATABASE_URL``). CI runs pytest
once per backend. Tests that need PostgreSQL itself (concurrency) use ``postgres_url`` on either run.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

# Test directories mirror the packages (tests/intake, tests/routing, ...) without __init__.py; when the
# bare `pytest` command runs (cwd not on sys.path, the project installed editable), those directories would
# be taken for namespace packages shadowing the real ones. With the project root on sys.path the real
# packages always win. (pyproject: `pythonpath = ["."]` under [tool.pytest.ini_options] does the same.)
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

import pytest
import redis.asyncio as aioredis
from support.databases import clean_database
from support.servers import PostgresServer, start_postgres

from intake.live import LiveState, connect_redis
from intake.redis_server import EmbeddedRedis
from intake.storage.database import Database
from intake.storage.repository import Repository

TEST_DB = os.environ.get("IZS_TEST_DB", "sqlite").strip().lower()
if TEST_DB not in ("sqlite", "postgres"):
    raise pytest.UsageError(f"IZS_TEST_DB must be 'sqlite' or 'postgres', not {TEST_DB!r}")


# ------------------------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """An (empty, unmigrated) PostgreSQL database of this test session."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("IZS_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), stop_with_parent=True)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------ databases


@pytest.fixture(scope="session")
def make_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., str]:
    """``make_database_url(backend=None)``: the URL of a new, empty database on the chosen backend
    (default: the session's backend), e.g. to test migrations from scratch."""

    def make(backend: str | None = None) -> str:
        backend = backend or TEST_DB
        if backend == "sqlite":
            path = tmp_path_factory.mktemp("sqlite") / "izs.db"
            return f"sqlite:///{path}"
        server: PostgresServer = request.getfixturevalue("postgres_server")
        return server.create_database()

    return make


@pytest.fixture(scope="session")
def database_url(make_database_url: Callable[..., str]) -> str:
    """The session's database on the backend IZS_TEST_DB chose (empty until ``migrated_database``)."""
    return make_database_url()


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def database(migrated_database: Database) -> Database:
    """The session's migrated database, emptied for this test."""
    clean_database(migrated_database)
    return migrated_database


@pytest.fixture
def repository(database: Database) -> Repository:
    return Repository(database)


# ---------------------------------------------------------------------------------------------- Redis


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = connect_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def live_state(redis_client: aioredis.Redis) -> AsyncIterator[LiveState]:
    """LiveState in a namespace of its own (so tests never see each other's keys), removed afterwards."""
    live = LiveState(redis_client, namespace=f"izs-test-{uuid.uuid4().hex[:12]}")
    try:
        yield live
    finally:
        await live.clear()


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path
