"""Login throttling: after too many wrong passwords for one user name or from one client address, logins
are held back with a growing delay. Counters live in Redis, so every node and worker sees the same ones.

Rule: key ``k`` (``user:<name>`` or ``addr:<ip>``) with ``f`` failures and threshold ``T`` is held back
until ``last_failure + backoff * 2**(f - T)`` (capped at ``backoff_max``) once ``f >= T``. A successful
login clears the user name's counter (not the address's: one known password must not buy an address more
guesses). Counters expire after the longest hold-back plus a quiet period.

When Redis is unreachable logins are not throttled (a call taker must be able to log in while the centre
is degraded) and a warning is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from intake.errors import TooManyAttempts

log = logging.getLogger(__name__)

QUIET_PERIOD_S = 900.0

_RECORD_FAILURE = """
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return count
"""


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    failures_per_user: int = 5
    failures_per_address: int = 20
    backoff_s: float = 30.0
    backoff_max_s: float = 900.0

    def held_until(self, failures: int, last_failure: float, threshold: int) -> float:
        """When a key with ``failures`` (the last at ``last_failure``) may try again; 0 if not held."""
        if failures < threshold:
            return 0.0
        delay = min(self.backoff_max_s, self.backoff_s * 2 ** min(failures - threshold, 32))
        return last_failure + delay


class LoginThrottle:
    def __init__(
        self,
        redis_client: aioredis.Redis,
        policy: ThrottlePolicy,
        namespace: str = "izs",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis_client
        self.policy = policy
        self.ns = namespace
        self.clock = clock
        self._record = redis_client.register_script(_RECORD_FAILURE)

    def _keys(self, username: str, address: str | None) -> list[tuple[str, int]]:
        keys = [(f"{self.ns}:login:user:{username.lower()}", self.policy.failures_per_user)]
        if address:
            keys.append((f"{self.ns}:login:addr:{address}", self.policy.failures_per_address))
        return keys

    async def check(self, username: str, address: str | None) -> None:
        """Raise :class:`TooManyAttempts` while the user name or the address is held back."""
        now = self.clock()
        held = 0.0
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, _ in self._keys(username, address):
                    pipe.hmget(key, "count", "last")
                rows = await pipe.execute()
        except RedisError as exc:
            log.warning("login throttling unavailable (Redis: %s): login of %s not throttled", exc, username)
            return
        for (_, threshold), (count, last) in zip(self._keys(username, address), rows, strict=True):
            if count is None:
                continue
            held = max(held, self.policy.held_until(int(count), float(last or 0), threshold))
        if held > now:
            raise TooManyAttempts("too many failed logins: try again later", retry_after_s=held - now)

    async def failed(self, username: str, address: str | None) -> None:
        ttl_ms = int((self.policy.backoff_max_s + QUIET_PERIOD_S) * 1000)
        now = self.clock()
        try:
            for key, _ in self._keys(username, address):
                await self._record(keys=[key], args=[repr(now), ttl_ms])
        except RedisError as exc:
            log.warning("login throttling unavailable (Redis: %s): failure of %s not counted", exc, username)

    async def succeeded(self, username: str) -> None:
        try:
            await self.redis.delete(self._keys(username, None)[0][0])
        except RedisError as exc:
            log.warning("login throttling unavailable (Redis: %s)", exc)
