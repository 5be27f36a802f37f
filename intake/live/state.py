"""Live state: every store of :mod:`intake.live` over one Redis connection, for the composition root.

Each concept is a class of its own (queues, presence, streams, leases) and can be used alone; a service
declares the narrow port it needs (:mod:`intake.ports`). :class:`LiveState` only puts them together on one
:class:`~intake.live.connection.LiveRedis` and adds what concerns the whole namespace: ping, the epoch mark
that detects a Redis that lost its data, a diagnostic snapshot, and clearing a namespace.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from intake.domain import utc_now
from intake.live.connection import LiveRedis
from intake.live.leases import Leases
from intake.live.presence import ActiveCalls, ConsolePresence, NodeHealth, TakerStates
from intake.live.queues import DeskQueues
from intake.live.streams import DEFAULT_STREAM_MAXLEN, IncidentStream, NodeReplies, PubSub


class LiveState(
    DeskQueues,
    ActiveCalls,
    TakerStates,
    ConsolePresence,
    NodeHealth,
    IncidentStream,
    PubSub,
    NodeReplies,
    Leases,
):
    """Async access to the live state in one Redis, under one key namespace (``ns:epoch`` marks it)."""

    def __init__(
        self,
        redis_client: aioredis.Redis,
        namespace: str = "izs",
        stream_maxlen: int = DEFAULT_STREAM_MAXLEN,
    ) -> None:
        super().__init__(LiveRedis(redis_client, namespace), stream_maxlen)

    async def ping(self) -> bool:
        """True when Redis answers; LiveStateError otherwise."""
        return bool(await self.conn.call("ping", self.redis.ping()))

    async def ensure_epoch(self) -> bool:
        """Mark this Redis as holding our live state; True if the mark was missing, i.e. Redis is new or
        lost its data (flushed, replaced, restored without AOF). The app then rebuilds the desk queues from
        the database (:func:`~intake.live.queues.queue_entries_from_calls` + :meth:`rebuild_queues`); with a
        new Redis that rebuild simply finds nothing to do. Only one of several nodes starting together gets
        True."""
        created = await self.conn.call(
            "set epoch", self.redis.set(self.conn.key("epoch"), utc_now().isoformat(), nx=True)
        )
        return bool(created)

    async def snapshot(self) -> dict[str, Any]:
        """Everything live, as plain JSON (persistence checks, diagnostics)."""
        lease_names = await self.lease_names()
        queues = await self.all_queues()
        return {
            "active_calls": await self.active_calls(),
            "queues": {desk: [e.to_json() for e in entries] for desk, entries in queues.items()},
            "takers": await self.taker_states(),
            "idle_takers": [(t, at.isoformat()) for t, at in await self.idle_takers()],
            "stream_length": await self.stream_length(),
            "leases": {name: await self.lease_holder(name) for name in lease_names},
            "epoch": await self.conn.call("read epoch", self.redis.get(self.conn.key("epoch"))),
        }

    async def clear(self) -> int:
        """Delete every key of this namespace (tests, or a deliberate reset); returns how many."""
        what = f"clear namespace {self.ns}"
        keys = await self.conn.keys(f"{self.ns}:*", what, count=500)
        deleted = 0
        for start in range(0, len(keys), 500):
            deleted += int(await self.conn.call(what, self.redis.delete(*keys[start : start + 500])))
        return deleted
