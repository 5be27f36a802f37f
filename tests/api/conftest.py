"""Fixtures for API tests: real centres (database + Redis from tests/conftest.py) served by the real app,
through httpx over ASGI or a real uvicorn on an ephemeral port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from api_support import (
    PASSWORD,
    ROLE_USER,
    SECRET,
    USERS,
    api_redis_url,
    centre_settings,
)

from api.app import create_app
from api.auth import Role, TokenSigner, hash_password
from intake.app import Centre


@pytest.fixture
async def shared_redis(redis_url: str) -> str:
    url = api_redis_url(redis_url)
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return url


@pytest.fixture
async def start_centre(
    tmp_path: Path, database: Any, database_url: str, shared_redis: str
) -> AsyncIterator[Callable[[str], Awaitable[Centre]]]:
    """``await start_centre("node-a")``: a centre on the test database and Redis (several share them)."""
    started: list[Centre] = []

    async def start(node: str = "node-a") -> Centre:
        centre = await Centre.start(
            centre_settings(tmp_path / node, database_url, shared_redis, node), with_telephony=False
        )
        started.append(centre)
        return centre

    try:
        yield start
    finally:
        for centre in reversed(started):
            await centre.stop()


@pytest.fixture(scope="session")
def password_hash() -> str:
    """argon2 is slow on purpose: hash the test password once per session."""
    return hash_password(PASSWORD)


@pytest.fixture
async def centre(start_centre: Callable[[str], Awaitable[Centre]], password_hash: str) -> Centre:
    centre = await start_centre("node-a")
    for username, role in USERS.items():
        await asyncio.to_thread(centre.repo.create_user, username, password_hash, role)
    return centre


@pytest.fixture
def app(centre: Centre) -> Any:
    return create_app(centre)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://izs.test") as c:
        yield c


@pytest.fixture
def tokens(centre: Centre) -> dict[str, str]:
    """A bearer token per user name, signed as POST /api/auth/token signs them (logging in is tested on
    its own; argon2 verification per user per test would dominate the run time)."""
    signer = TokenSigner(SECRET.encode())
    return {username: signer.issue(username, Role(role))[0] for username, role in USERS.items()}


@pytest.fixture
def as_user(tokens: dict[str, str]) -> Callable[[str], dict[str, str]]:
    return lambda username: {"Authorization": f"Bearer {tokens[username]}"}


@pytest.fixture
def role_users() -> dict[str, str]:
    """One user name per role."""
    return dict(ROLE_USER)
