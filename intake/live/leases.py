"""Leases for work only one node may do at a time (the leader's duties, a call's media, a node's liveness).

A lease is a key holding its holder's name with a TTL: taken only if free, renewed and released only by
its holder (Lua, so check and change are one step); a holder that dies loses it when the TTL runs out.

Keys (``ns`` = namespace):

    ns:lease:<name>    string  holder of a lease, with a TTL
"""

from __future__ import annotations

from intake.live.connection import LiveStore, text

_ACQUIRE_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Leases(LiveStore):
    def _lease_key(self, name: str) -> str:
        return self.conn.key("lease", name)

    async def acquire_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Take the lease if free (or already ours, which renews it). True if ``holder`` holds it now."""
        script = self.conn.script(_ACQUIRE_LEASE)
        result = await self.conn.call(
            "acquire lease", script(keys=[self._lease_key(name)], args=[holder, str(int(ttl_ms))])
        )
        return bool(result)

    async def renew_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Extend the lease only if ``holder`` still holds it; False means it was lost (stop leader work)."""
        script = self.conn.script(_RENEW_LEASE)
        result = await self.conn.call(
            "renew lease", script(keys=[self._lease_key(name)], args=[holder, str(int(ttl_ms))])
        )
        return bool(result)

    async def release_lease(self, name: str, holder: str) -> bool:
        script = self.conn.script(_RELEASE_LEASE)
        result = await self.conn.call("release lease", script(keys=[self._lease_key(name)], args=[holder]))
        return bool(result)

    async def lease_holder(self, name: str) -> str | None:
        raw = await self.conn.call("read lease", self.redis.get(self._lease_key(name)))
        return text(raw) if raw is not None else None

    async def lease_names(self) -> list[str]:
        prefix = self.conn.key("lease") + ":"
        return sorted(k[len(prefix) :] for k in await self.conn.keys(prefix + "*", "list leases"))
