"""Who and what is live now, shared by every node: calls on the line, call takers' states, console sessions
(and the form drafts they have not saved), and each node's health as it reports it.

Keys (``ns`` = namespace):

    ns:calls:active              hash  call id -> JSON summary
    ns:takers                    hash  taker id -> JSON {state, since, data}
    ns:takers:idle               zset  available taker ids scored by "available since" ms
    ns:consoles:<taker>          zset  console session ids scored by "counts until" ms
    ns:drafts:<taker>:<call>     string JSON form draft, with a TTL
    ns:health:<component>:<node> string JSON health record, with a TTL
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from intake.live.connection import LiveStore, dumps, from_ms, ms, text
from routing.acd import TakerState


class ActiveCalls(LiveStore):
    """Calls on the line on any node, for every node's consoles."""

    @property
    def _active_key(self) -> str:
        return self.conn.key("calls", "active")

    async def put_active_call(self, call_id: str, summary: dict[str, Any]) -> None:
        await self.conn.call("put active call", self.redis.hset(self._active_key, call_id, dumps(summary)))

    async def remove_active_call(self, call_id: str) -> None:
        await self.conn.call("remove active call", self.redis.hdel(self._active_key, call_id))

    async def active_calls(self) -> list[dict[str, Any]]:
        raw = await self.conn.call("list active calls", self.redis.hgetall(self._active_key))
        return [json.loads(v) for _, v in sorted(raw.items())]

    async def active_call(self, call_id: str) -> dict[str, Any] | None:
        raw = await self.conn.call("get active call", self.redis.hget(self._active_key, call_id))
        return json.loads(raw) if raw is not None else None


@dataclass(frozen=True, slots=True)
class LiveTaker:
    """A call taker's state as the shared record says (one record of :meth:`TakerStates.taker_states`).

    The one reading of that record: a state nobody knows (a newer node, a damaged record) or a taker with no
    record reads as offline, never as free; an unreadable ``since`` reads as None (idle longest)."""

    state: TakerState
    since: datetime | None = None
    call_id: str | None = None
    offered: bool = False  # the call is offered to the taker, not taken yet
    reason: str = ""

    @classmethod
    def of(cls, record: Mapping[str, object] | None) -> LiveTaker:
        record = record or {}
        try:
            state = TakerState(str(record.get("state", TakerState.OFFLINE.value)))
        except ValueError:
            state = TakerState.OFFLINE
        try:
            since: datetime | None = datetime.fromisoformat(str(record["since"]))
        except (KeyError, ValueError):
            since = None
        call_id = record.get("call_id")
        return cls(
            state=state,
            since=since,
            call_id=str(call_id) if call_id else None,
            offered=bool(record.get("offered")),
            reason=str(record.get("reason") or ""),
        )

    @property
    def since_iso(self) -> str | None:
        return self.since.isoformat() if self.since is not None else None


class TakerStates(LiveStore):
    """Call takers' states; the available ones indexed by how long they have been idle."""

    @property
    def _takers_key(self) -> str:
        return self.conn.key("takers")

    @property
    def _idle_key(self) -> str:
        return self.conn.key("takers", "idle")

    async def set_taker_state(
        self, taker_id: str, state: str, since: datetime, data: dict[str, Any] | None = None
    ) -> None:
        """Record a call taker's state; "available" ones are also indexed by how long they have been idle."""
        record = dumps({"state": state, "since_ms": ms(since), "data": dict(data or {})})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._takers_key, taker_id, record)
            if state == "available":
                pipe.zadd(self._idle_key, {taker_id: ms(since)})
            else:
                pipe.zrem(self._idle_key, taker_id)
            await self.conn.call("set call-taker state", pipe.execute())

    async def taker_states(self) -> dict[str, dict[str, Any]]:
        """taker id -> {**data, "state": ..., "since": ISO 8601 UTC}."""
        raw = await self.conn.call("read call-taker states", self.redis.hgetall(self._takers_key))
        out: dict[str, dict[str, Any]] = {}
        for key, value in raw.items():
            record = json.loads(value)
            out[text(key)] = {
                **record.get("data", {}),
                "state": record["state"],
                "since": from_ms(int(record["since_ms"])).isoformat(),
            }
        return out

    async def live_takers(self) -> dict[str, LiveTaker]:
        """taker id -> their state, read by :meth:`LiveTaker.of`."""
        return {taker_id: LiveTaker.of(record) for taker_id, record in (await self.taker_states()).items()}

    async def idle_takers(self) -> list[tuple[str, datetime]]:
        """Available call takers, longest idle first, with the time they became available."""
        raw = await self.conn.call(
            "read idle call takers", self.redis.zrange(self._idle_key, 0, -1, withscores=True)
        )
        return [(text(member), from_ms(int(score))) for member, score in raw]

    async def remove_taker(self, taker_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._takers_key, taker_id)
            pipe.zrem(self._idle_key, taker_id)
            await self.conn.call("remove call taker", pipe.execute())


class ConsolePresence(LiveStore):
    """Which call takers have a console open (on any node), and what they typed and have not saved."""

    def _consoles_key(self, taker_id: str) -> str:
        return self.conn.key("consoles", taker_id)

    def _draft_key(self, taker_id: str, call_id: str) -> str:
        return self.conn.key("drafts", taker_id, call_id)

    async def console_seen(self, taker_id: str, session_id: str, ttl_ms: int) -> None:
        """A call taker's console session is connected (any node); it counts until ``ttl_ms`` from now."""
        key = self._consoles_key(taker_id)
        now = ms(datetime.now(UTC))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {session_id: now + int(ttl_ms)})
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.pexpire(key, int(ttl_ms) * 2)
            await self.conn.call("record console presence", pipe.execute())

    async def console_gone(self, taker_id: str, session_id: str) -> None:
        await self.conn.call(
            "remove console presence", self.redis.zrem(self._consoles_key(taker_id), session_id)
        )

    async def consoles_open(self, taker_id: str) -> int:
        """How many console sessions of ``taker_id`` are connected now, on every node."""
        now = ms(datetime.now(UTC))
        return int(
            await self.conn.call(
                "read console presence", self.redis.zcount(self._consoles_key(taker_id), now, "+inf")
            )
        )

    async def put_console_draft(
        self, taker_id: str, call_id: str, values: dict[str, Any], ttl_ms: int
    ) -> None:
        """What a call taker typed into the incident form and has not saved: any console, any node gets it."""
        await self.conn.call(
            "write form draft",
            self.redis.set(self._draft_key(taker_id, call_id), json.dumps(values), px=int(ttl_ms)),
        )

    async def console_draft(self, taker_id: str, call_id: str) -> dict[str, Any] | None:
        raw = await self.conn.call("read form draft", self.redis.get(self._draft_key(taker_id, call_id)))
        return json.loads(raw) if raw is not None else None

    async def drop_console_draft(self, taker_id: str, call_id: str) -> None:
        await self.conn.call("drop form draft", self.redis.delete(self._draft_key(taker_id, call_id)))


class NodeHealth(LiveStore):
    """Each node's own view of its components (e.g. its transcription), expiring with the node."""

    async def put_node_health(self, component: str, node: str, data: dict[str, Any], ttl_ms: int) -> None:
        key = self.conn.key("health", component, node)
        await self.conn.call("write node health", self.redis.set(key, dumps(data), px=int(ttl_ms)))

    async def node_health(self, component: str) -> dict[str, dict[str, Any]]:
        """node -> the last health record of ``component`` every live node wrote."""
        prefix = self.conn.key("health", component) + ":"
        out: dict[str, dict[str, Any]] = {}
        keys = await self.conn.keys(prefix + "*", "read node health")
        if not keys:
            return out
        values = await self.conn.call("read node health", self.redis.mget(keys))
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                out[key[len(prefix) :]] = json.loads(value)
        return out
