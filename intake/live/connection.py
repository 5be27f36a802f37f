"""The one Redis connection of live state: a redis-py client under a key namespace, and the one mapping of
Redis failures to :class:`~intake.errors.LiveStateError` that every live-state store goes through."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from intake.errors import LiveStateError


def connect_redis(url: str, *, timeout_s: float = 5.0, connect_timeout_s: float = 2.0) -> aioredis.Redis:
    """A redis-py asyncio client tuned for live state: fail within seconds when Redis is gone (redis-py's
    default retries for ~10 s per command), so the call path degrades instead of hanging.

    ``timeout_s`` must exceed any ``block_ms`` given to :meth:`IncidentStream.read_group`.
    """
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=connect_timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.02), 2),
        health_check_interval=15,
    )


def ms(at: datetime) -> int:
    """Epoch milliseconds of ``at`` (naive means UTC): how times are stored in Redis."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)


class LiveRedis:
    """One Redis client and the key namespace (``ns``) of one centre's live state."""

    def __init__(self, redis_client: aioredis.Redis, namespace: str = "izs") -> None:
        self.redis = redis_client
        self.ns = namespace
        self._scripts: dict[str, AsyncScript] = {}

    def key(self, *parts: str) -> str:
        return ":".join((self.ns, *parts))

    def script(self, source: str) -> AsyncScript:
        """A Lua script registered once per connection (EVALSHA, loaded again if Redis lost it)."""
        registered = self._scripts.get(source)
        if registered is None:
            registered = self._scripts[source] = self.redis.register_script(source)
        return registered

    async def call(self, what: str, awaitable: Awaitable[Any] | Any, **context: str) -> Any:
        """Await one Redis command; a Redis failure becomes LiveStateError (``what`` says which step)."""
        try:
            return await awaitable
        except RedisError as exc:
            raise LiveStateError(f"Redis: {what} failed: {exc}", operation=what, **context) from exc

    async def keys(self, pattern: str, what: str, count: int = 100) -> list[str]:
        """Keys matching ``pattern`` (SCAN, never KEYS: Redis stays responsive)."""
        try:
            return [text(k) async for k in self.redis.scan_iter(match=pattern, count=count)]
        except RedisError as exc:
            raise LiveStateError(f"Redis: {what} failed: {exc}", operation=what) from exc


class LiveStore:
    """Base of the live-state stores: each is a concept over the same :class:`LiveRedis`."""

    def __init__(self, conn: LiveRedis) -> None:
        self.conn = conn

    @property
    def redis(self) -> aioredis.Redis:
        return self.conn.redis

    @property
    def ns(self) -> str:
        return self.conn.ns
