"""Live, shared state on Redis: active calls, desk queues, call-taker states, the incident event stream,
pub/sub for consoles and leases for leader-only duties.

Several intake nodes share one Redis, so everything that must not happen twice is one atomic step in
Redis (a Lua script or MULTI): two nodes never claim the same queued call, a lease has one holder.
redis-py errors surface as :class:`~intake.errors.LiveStateError` (the cause chained); callers degrade
(the database holds the truth, queues can be rebuilt from it with :func:`queue_entries_from_calls`).

Key layout (``ns`` = namespace, default ``izs``); one Redis (not Cluster) is assumed, scripts touch
keys of several desks:

    ns:calls:active          hash   call id -> JSON summary
    ns:queue:<desk>          zset   call id scored by (priority, front flag, arrival ms)
    ns:queue:<desk>:entries  hash   call id -> JSON queue entry
    ns:queued                hash   call id -> desk it waits on (one queue at a time)
    ns:queues                set    desks that have had a queue
    ns:takers                hash   taker id -> JSON {state, since, data}
    ns:takers:idle           zset   available taker ids scored by "available since" ms
    ns:incidents             stream incident events (field "event" = JSON), MAXLEN ~ bounded
    ns:lease:<name>          string holder of a lease, with a TTL
    ns:pub:<topic>           pub/sub channel
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError, ResponseError

from intake.domain import Call, CallState, utc_now
from intake.errors import LiveStateError
from routing import acd

log = logging.getLogger(__name__)

# Queue score = rank * RANK_STEP + arrival ms; rank = 0 for the front, else the priority. Arrival ms
# (~1.8e12 today) stays below RANK_STEP until the year 2286; the score stays an exact double (< 2**53)
# for priorities up to 99.
RANK_STEP = 10**13
MAX_PRIORITY = 99
DEFAULT_STREAM_MAXLEN = 100_000

_ENQUEUE = """
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old and old ~= ARGV[4] then
  redis.call('ZREM', ARGV[5] .. old, ARGV[1])
  redis.call('HDEL', ARGV[5] .. old .. ':entries', ARGV[1])
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('SADD', KEYS[4], ARGV[4])
return 1
"""

# Pop the head of a desk queue: ZPOPMIN and the bookkeeping in one step, so one claimer wins.
_CLAIM_NEXT = """
local popped = redis.call('ZPOPMIN', KEYS[1])
if #popped == 0 then return false end
local id = popped[1]
local entry = redis.call('HGET', KEYS[2], id)
redis.call('HDEL', KEYS[2], id)
if redis.call('HGET', KEYS[3], id) == ARGV[1] then redis.call('HDEL', KEYS[3], id) end
return {id, entry or ''}
"""

_DEQUEUE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
local entry = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[3], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[3], ARGV[1]) end
return entry or ''
"""

# Compare-and-swap of one queue entry (reprioritise, move): applies only if the entry is unchanged since
# the caller read it; returns 0 if the call left the queue, -1 if the entry changed (caller retries).
_REPLACE = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[5])
redis.call('SADD', KEYS[6], ARGV[5])
return 1
"""

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


def connect_redis(url: str, *, timeout_s: float = 5.0, connect_timeout_s: float = 2.0) -> aioredis.Redis:
    """A redis-py asyncio client tuned for live state: fail within seconds when Redis is gone (redis-py's
    default retries for ~10 s per command), so the call path degrades instead of hanging.

    ``timeout_s`` must exceed any ``block_ms`` given to :meth:`LiveState.read_group`.
    """
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=connect_timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.02), 2),
        health_check_interval=15,
    )


def _ms(at: datetime) -> int:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def queue_rank(priority: int, front: bool) -> int:
    """Queue order before arrival, by routing's ACD rule (:func:`routing.acd.queue_rank`): the front
    (T-CPR, trapped people) before everything, then priority 1 before 2 before 3."""
    if not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"queue priority must be 0-{MAX_PRIORITY}, not {priority!r}")
    return acd.queue_rank(priority, front)


def queue_score(priority: int, front: bool, arrival: datetime) -> int:
    return queue_rank(priority, front) * RANK_STEP + _ms(arrival)


@dataclass(frozen=True, slots=True)
class QueueEntry:
    call_id: str
    desk: str
    priority: int
    front: bool
    arrival: datetime
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def sort_key(self) -> tuple[int, int]:
        """(rank, arrival ms): smaller is served first."""
        return (queue_rank(self.priority, self.front), _ms(self.arrival))

    @property
    def score(self) -> int:
        return queue_score(self.priority, self.front, self.arrival)

    def wait_seconds(self, now: datetime | None = None) -> float:
        return max(0.0, ((now or utc_now()) - self.arrival).total_seconds())

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "desk": self.desk,
            "priority": self.priority,
            "front": self.front,
            "arrival_ms": _ms(self.arrival),
            "data": self.data,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> QueueEntry:
        return cls(
            call_id=str(raw["call_id"]),
            desk=str(raw["desk"]),
            priority=int(raw["priority"]),
            front=bool(raw["front"]),
            arrival=_from_ms(int(raw["arrival_ms"])),
            data=dict(raw.get("data") or {}),
        )

    def _encoded(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One incident event from the stream; ``id`` is the Redis stream id (also the event's cursor)."""

    id: str
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class QueueRebuild:
    """One enqueue to do when rebuilding Redis desk queues from the database."""

    desk: str
    call_id: str
    priority: int
    arrival: datetime
    front: bool
    data: dict[str, Any]


def queue_entries_from_calls(calls: Iterable[Call], default_priority: int = 2) -> list[QueueRebuild]:
    """Which calls belong in which desk queue, from the durable call records alone (pure function).

    After Redis lost its data, feed it the calls in state QUEUED (``Repository.calls_in_states``) and pass
    the result to :meth:`LiveState.rebuild_queues`. A queued call without a desk cannot be placed and is
    left out (log it); a call without a priority yet gets ``default_priority``. Arrival is the time the
    call was offered, so rebuilt queues keep their order.
    """
    out = []
    for call in calls:
        if call.state is not CallState.QUEUED or call.desk is None:
            continue
        out.append(
            QueueRebuild(
                desk=call.desk.value,
                call_id=call.id,
                priority=call.priority if call.priority is not None else default_priority,
                arrival=call.offered_at,
                front=call.tcpr,
                data={"language": call.language, "rebuilt": True, "source": call.source},
            )
        )
    out.sort(key=lambda r: (r.desk, queue_score(r.priority, r.front, r.arrival)))
    return out


class LiveState:
    """Async access to the live state in one Redis, under one key namespace."""

    def __init__(
        self,
        redis_client: aioredis.Redis,
        namespace: str = "izs",
        stream_maxlen: int = DEFAULT_STREAM_MAXLEN,
    ) -> None:
        self.redis = redis_client
        self.ns = namespace
        self.stream_maxlen = stream_maxlen
        self.stream_key = f"{namespace}:incidents"
        self._active_key = f"{namespace}:calls:active"
        self._queued_key = f"{namespace}:queued"
        self._queues_key = f"{namespace}:queues"
        self._takers_key = f"{namespace}:takers"
        self._idle_key = f"{namespace}:takers:idle"
        self._epoch_key = f"{namespace}:epoch"
        self._enqueue = redis_client.register_script(_ENQUEUE)
        self._claim_next = redis_client.register_script(_CLAIM_NEXT)
        self._dequeue = redis_client.register_script(_DEQUEUE)
        self._replace = redis_client.register_script(_REPLACE)
        self._acquire = redis_client.register_script(_ACQUIRE_LEASE)
        self._renew = redis_client.register_script(_RENEW_LEASE)
        self._release = redis_client.register_script(_RELEASE_LEASE)

    async def _call(self, what: str, awaitable: Awaitable[Any] | Any) -> Any:
        try:
            return await awaitable
        except RedisError as exc:
            raise LiveStateError(f"Redis: {what} failed: {exc}", operation=what) from exc

    async def ping(self) -> bool:
        """True when Redis answers; LiveStateError otherwise."""
        return bool(await self._call("ping", self.redis.ping()))

    # --------------------------------------------------------------------------------- active calls

    async def put_active_call(self, call_id: str, summary: dict[str, Any]) -> None:
        encoded = json.dumps(summary, default=str)
        await self._call("put active call", self.redis.hset(self._active_key, call_id, encoded))

    async def remove_active_call(self, call_id: str) -> None:
        await self._call("remove active call", self.redis.hdel(self._active_key, call_id))

    async def active_calls(self) -> list[dict[str, Any]]:
        raw = await self._call("list active calls", self.redis.hgetall(self._active_key))
        return [json.loads(v) for _, v in sorted(raw.items())]

    async def active_call(self, call_id: str) -> dict[str, Any] | None:
        raw = await self._call("get active call", self.redis.hget(self._active_key, call_id))
        return json.loads(raw) if raw is not None else None

    # ----------------------------------------------------------------------------------- desk queues

    def _queue_key(self, desk: str) -> str:
        return f"{self.ns}:queue:{desk}"

    def _entries_key(self, desk: str) -> str:
        return f"{self.ns}:queue:{desk}:entries"

    async def enqueue(
        self,
        desk: str,
        call_id: str,
        priority: int,
        arrival: datetime,
        front: bool = False,
        data: dict[str, Any] | None = None,
    ) -> QueueEntry:
        """Put a call in a desk queue (or update its place). A call waits in one queue only: enqueueing it
        on another desk takes it out of the old one. Idempotent for the same values."""
        entry = QueueEntry(call_id, desk, priority, front, arrival, dict(data or {}))
        score = queue_score(priority, front, arrival)
        await self._call(
            "enqueue",
            self._enqueue(
                keys=[self._queue_key(desk), self._entries_key(desk), self._queued_key, self._queues_key],
                args=[call_id, str(score), entry._encoded(), desk, f"{self.ns}:queue:"],
            ),
        )
        return entry

    async def requeue(
        self,
        desk: str,
        call_id: str,
        priority: int,
        arrival: datetime,
        front: bool = False,
        data: dict[str, Any] | None = None,
    ) -> QueueEntry:
        """Put a claimed call back (the offer to a call taker failed), keeping its original arrival so it
        does not lose its place."""
        return await self.enqueue(desk, call_id, priority, arrival, front=front, data=data)

    async def claim_next(self, desk: str, taker_id: str) -> str | None:
        """Atomically take the head of a desk queue for a call taker; None when the queue is empty."""
        entry = await self.claim_next_entry(desk, taker_id)
        return entry.call_id if entry is not None else None

    async def claim_next_entry(self, desk: str, taker_id: str) -> QueueEntry | None:
        result = await self._call(
            "claim next call",
            self._claim_next(
                keys=[self._queue_key(desk), self._entries_key(desk), self._queued_key], args=[desk]
            ),
        )
        if not result:
            return None
        call_id, raw = _text(result[0]), result[1]
        log.info("desk %s: call %s claimed for call taker %s", desk, call_id, taker_id)
        return self._entry(desk, call_id, raw)

    async def dequeue_specific(self, desk: str, call_id: str) -> QueueEntry | None:
        """Take one call out of a desk queue (answered by hand, abandoned, picked by a call taker).
        Returns the entry if this caller removed it, None if it was not (or no longer) there; like
        :meth:`claim_next`, only one of several concurrent callers gets it."""
        raw = await self._call(
            "dequeue call",
            self._dequeue(
                keys=[self._queue_key(desk), self._entries_key(desk), self._queued_key], args=[call_id, desk]
            ),
        )
        if raw is None:
            return None
        return self._entry(desk, call_id, raw)

    async def queue(self, desk: str) -> list[QueueEntry]:
        """A desk queue in serving order: front (T-CPR, trapped), then priority, then arrival."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrange(self._queue_key(desk), 0, -1)
            pipe.hgetall(self._entries_key(desk))
            ids, entries = await self._call("read queue", pipe.execute())
        by_id = {_text(k): v for k, v in entries.items()}
        return [self._entry(desk, _text(i), by_id.get(_text(i), "")) for i in ids]

    async def queue_length(self, desk: str) -> int:
        return int(await self._call("queue length", self.redis.zcard(self._queue_key(desk))))

    async def queued_desk(self, call_id: str) -> str | None:
        """The desk a call currently waits on, if it waits."""
        raw = await self._call("find queued call", self.redis.hget(self._queued_key, call_id))
        return _text(raw) if raw is not None else None

    async def all_queues(self) -> dict[str, list[QueueEntry]]:
        desks = await self._call("list queues", self.redis.smembers(self._queues_key))
        return {desk: await self.queue(desk) for desk in sorted(_text(d) for d in desks)}

    async def reprioritise(
        self, desk: str, call_id: str, priority: int, front: bool | None = None
    ) -> QueueEntry | None:
        """Give a waiting call a new priority (and front flag); it keeps its arrival time. None if the call
        is not in that queue (any more)."""

        def change(entry: QueueEntry) -> QueueEntry:
            return QueueEntry(
                entry.call_id,
                entry.desk,
                priority,
                entry.front if front is None else front,
                entry.arrival,
                entry.data,
            )

        queue_rank(priority, False)  # validates before touching Redis
        return await self._replace_entry(desk, desk, call_id, change)

    async def move(
        self, call_id: str, from_desk: str, to_desk: str, priority: int | None = None
    ) -> QueueEntry | None:
        """Move a waiting call to another desk's queue keeping its arrival time (overflow, transfer).
        None if the call is not waiting on ``from_desk`` (any more)."""

        def change(entry: QueueEntry) -> QueueEntry:
            return QueueEntry(
                entry.call_id,
                to_desk,
                entry.priority if priority is None else priority,
                entry.front,
                entry.arrival,
                entry.data,
            )

        return await self._replace_entry(from_desk, to_desk, call_id, change)

    async def _replace_entry(
        self, from_desk: str, to_desk: str, call_id: str, change: Any
    ) -> QueueEntry | None:
        for _attempt in range(20):
            raw = await self._call(
                "read queue entry",
                self.redis.hget(self._entries_key(from_desk), call_id),
            )
            if raw is None:
                return None
            current = self._entry(from_desk, call_id, raw)
            new: QueueEntry = change(current)
            outcome = await self._call(
                "replace queue entry",
                self._replace(
                    keys=[
                        self._queue_key(from_desk),
                        self._entries_key(from_desk),
                        self._queue_key(to_desk),
                        self._entries_key(to_desk),
                        self._queued_key,
                        self._queues_key,
                    ],
                    args=[call_id, raw, str(new.score), new._encoded(), to_desk],
                ),
            )
            if outcome == 1:
                return new
            if outcome == 0:
                return None
        raise LiveStateError(f"queue entry of call {call_id} keeps changing; gave up", call_id=call_id)

    def _entry(self, desk: str, call_id: str, raw: Any) -> QueueEntry:
        try:
            return QueueEntry.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            # Never drop a waiting call over a damaged entry: serve it as urgent-unknown.
            log.error("queue %s: damaged entry for call %s: %r", desk, call_id, raw)
            return QueueEntry(call_id, desk, 1, False, utc_now(), {"damaged": True})

    async def rebuild_queues(self, rebuilds: Iterable[QueueRebuild]) -> int:
        """Enqueue what :func:`queue_entries_from_calls` computed (idempotent); returns how many."""
        count = 0
        for item in rebuilds:
            await self.enqueue(
                item.desk, item.call_id, item.priority, item.arrival, front=item.front, data=item.data
            )
            count += 1
        return count

    # ----------------------------------------------------------------------------- call-taker states

    async def set_taker_state(
        self, taker_id: str, state: str, since: datetime, data: dict[str, Any] | None = None
    ) -> None:
        """Record a call taker's state; "available" ones are also indexed by how long they have been idle."""
        record = json.dumps({"state": state, "since_ms": _ms(since), "data": dict(data or {})}, default=str)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._takers_key, taker_id, record)
            if state == "available":
                pipe.zadd(self._idle_key, {taker_id: _ms(since)})
            else:
                pipe.zrem(self._idle_key, taker_id)
            await self._call("set call-taker state", pipe.execute())

    async def taker_states(self) -> dict[str, dict[str, Any]]:
        """taker id -> {**data, "state": ..., "since": ISO 8601 UTC}."""
        raw = await self._call("read call-taker states", self.redis.hgetall(self._takers_key))
        out: dict[str, dict[str, Any]] = {}
        for key, value in raw.items():
            record = json.loads(value)
            out[_text(key)] = {
                **record.get("data", {}),
                "state": record["state"],
                "since": _from_ms(int(record["since_ms"])).isoformat(),
            }
        return out

    async def idle_takers(self) -> list[tuple[str, datetime]]:
        """Available call takers, longest idle first, with the time they became available."""
        raw = await self._call(
            "read idle call takers", self.redis.zrange(self._idle_key, 0, -1, withscores=True)
        )
        return [(_text(member), _from_ms(int(score))) for member, score in raw]

    async def remove_taker(self, taker_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._takers_key, taker_id)
            pipe.zrem(self._idle_key, taker_id)
            await self._call("remove call taker", pipe.execute())

    # ------------------------------------------------------------------------- incident event stream

    async def publish_incident_event(self, event: dict[str, Any]) -> str:
        """Append an event to the incident stream; returns its stream id. The stream is trimmed to about
        ``stream_maxlen`` entries (approximate trimming is cheap)."""
        encoded = json.dumps(event, default=str)
        stream_id = await self._call(
            "publish incident event",
            self.redis.xadd(self.stream_key, {"event": encoded}, maxlen=self.stream_maxlen, approximate=True),
        )
        return _text(stream_id)

    async def ensure_group(self, group: str, start_id: str = "0") -> None:
        """Create a consumer group (idempotent). ``start_id="0"``: the group starts with every event still
        in the stream; ``"$"``: only new ones."""
        try:
            await self.redis.xgroup_create(self.stream_key, group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise LiveStateError(f"Redis: create consumer group {group} failed: {exc}") from exc
        except RedisError as exc:
            raise LiveStateError(f"Redis: create consumer group {group} failed: {exc}") from exc

    async def read_group(
        self, group: str, consumer: str, count: int = 10, block_ms: int | None = None
    ) -> list[StreamMessage]:
        """New events for this consumer of the group (XREADGROUP ``>``); they stay pending until
        :meth:`ack`. ``block_ms`` waits that long for something new (None: do not wait)."""
        raw = await self._call(
            "read consumer group",
            self.redis.xreadgroup(group, consumer, {self.stream_key: ">"}, count=count, block=block_ms),
        )
        return _stream_messages(raw)

    async def read_own_pending(self, group: str, consumer: str, count: int = 100) -> list[StreamMessage]:
        """Events delivered to this consumer and not yet acknowledged (resume after a restart)."""
        raw = await self._call(
            "read own pending",
            self.redis.xreadgroup(group, consumer, {self.stream_key: "0"}, count=count),
        )
        return _stream_messages(raw)

    async def ack(self, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(await self._call("ack", self.redis.xack(self.stream_key, group, *ids)))

    async def pending(self, group: str) -> dict[str, Any]:
        """Summary of unacknowledged events: count, smallest/greatest id, per-consumer counts."""
        raw = await self._call("read pending", self.redis.xpending(self.stream_key, group))
        return {
            "pending": int(raw["pending"]),
            "min": _text(raw["min"]) if raw["min"] is not None else None,
            "max": _text(raw["max"]) if raw["max"] is not None else None,
            "consumers": {_text(c["name"]): int(c["pending"]) for c in raw["consumers"]},
        }

    async def claim_stale(
        self, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[StreamMessage]:
        """Take over events another consumer got but did not acknowledge within ``min_idle_ms``
        (it died): XAUTOCLAIM over the whole pending list. This is what makes delivery at-least-once."""
        claimed: list[StreamMessage] = []
        cursor = "0-0"
        while len(claimed) < count:
            raw = await self._call(
                "claim stale events",
                self.redis.xautoclaim(
                    self.stream_key, group, consumer, min_idle_ms, start_id=cursor, count=count - len(claimed)
                ),
            )
            cursor = _text(raw[0])
            claimed.extend(_stream_messages([[self.stream_key, raw[1]]]))
            if cursor == "0-0":
                break
        return claimed

    async def replay(
        self, from_id: str = "-", count: int = 1000, exclusive: bool = False
    ) -> list[StreamMessage]:
        """Events from ``from_id`` on, oldest first, regardless of groups (an integration catching up).
        ``exclusive=True`` starts after ``from_id`` (pass the last id you processed)."""
        start = f"({from_id}" if exclusive and from_id not in ("-", "+") else from_id
        raw = await self._call("replay stream", self.redis.xrange(self.stream_key, min=start, count=count))
        return _stream_messages([[self.stream_key, raw]])

    async def stream_length(self) -> int:
        return int(await self._call("stream length", self.redis.xlen(self.stream_key)))

    # ----------------------------------------------------------------------------------- pub/sub

    def _channel(self, topic: str) -> str:
        return f"{self.ns}:pub:{topic}"

    async def publish(self, topic: str, event: dict[str, Any]) -> None:
        """Publish a JSON event to every subscriber of ``topic`` on every node (fire and forget: pub/sub
        keeps nothing for subscribers that are not connected)."""
        encoded = json.dumps(event, default=str)
        await self._call("publish", self.redis.publish(self._channel(topic), encoded))

    async def subscriber_count(self, topic: str) -> int:
        raw = await self._call("count subscribers", self.redis.pubsub_numsub(self._channel(topic)))
        return int(raw[0][1]) if raw else 0

    async def subscribe(
        self, topic: str, ready: asyncio.Event | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Events published on ``topic`` from now on, as they come (``ready`` is set once subscribed).
        Raises LiveStateError when the connection is lost; subscribe again to resume (pub/sub does not
        replay: consoles resync over REST, integrations use the stream)."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            try:
                await pubsub.subscribe(self._channel(topic))
            except RedisError as exc:
                raise LiveStateError(f"Redis: subscribe to {topic} failed: {exc}") from exc
            if ready is not None:
                ready.set()
            while True:
                try:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                except RedisError as exc:
                    raise LiveStateError(f"Redis: subscription to {topic} lost: {exc}") from exc
                if message is None or message.get("type") != "message":
                    continue
                try:
                    yield json.loads(message["data"])
                except ValueError:
                    log.warning("dropping a malformed message on %s: %r", topic, message["data"])
        finally:
            try:
                await pubsub.aclose()
            except RedisError as exc:
                log.debug("closing subscription to %s: %s", topic, exc)

    # ------------------------------------------------------------------------ replies to node commands

    def _reply_key(self, reply_to: str) -> str:
        return f"{self.ns}:reply:{reply_to}"

    async def send_reply(self, reply_to: str, reply: dict[str, Any], ttl_ms: int) -> None:
        """Answer a node command on its own list (kept ``ttl_ms`` for a requester that waits no longer)."""
        key = self._reply_key(reply_to)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(reply, default=str))
            pipe.pexpire(key, int(ttl_ms))
            await self._call("send reply", pipe.execute())

    async def wait_reply(self, reply_to: str, timeout_s: float) -> dict[str, Any] | None:
        """The answer to a node command, or None when none came within ``timeout_s``. Blocks in slices of at
        most a second so no single Redis command outlives the connection's socket timeout."""
        key = self._reply_key(reply_to)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (remaining := deadline - loop.time()) > 0:
            popped = await self._call("wait for reply", self.redis.blpop([key], timeout=min(1.0, remaining)))
            if popped is None:
                continue
            try:
                reply = json.loads(popped[1])
            except ValueError:
                log.warning("dropping a malformed reply on %s: %r", reply_to, popped[1])
                continue
            return reply if isinstance(reply, dict) else None
        return None

    # ------------------------------------------------------------------------------------- leases

    def _lease_key(self, name: str) -> str:
        return f"{self.ns}:lease:{name}"

    async def acquire_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Take the lease if free (or already ours, which renews it). True if ``holder`` holds it now."""
        result = await self._call(
            "acquire lease", self._acquire(keys=[self._lease_key(name)], args=[holder, str(int(ttl_ms))])
        )
        return bool(result)

    async def renew_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Extend the lease only if ``holder`` still holds it; False means it was lost (stop leader work)."""
        result = await self._call(
            "renew lease", self._renew(keys=[self._lease_key(name)], args=[holder, str(int(ttl_ms))])
        )
        return bool(result)

    async def release_lease(self, name: str, holder: str) -> bool:
        result = await self._call("release lease", self._release(keys=[self._lease_key(name)], args=[holder]))
        return bool(result)

    async def lease_holder(self, name: str) -> str | None:
        raw = await self._call("read lease", self.redis.get(self._lease_key(name)))
        return _text(raw) if raw is not None else None

    # ------------------------------------------------------------- console presence, node health

    def _consoles_key(self, taker_id: str) -> str:
        return f"{self.ns}:consoles:{taker_id}"

    async def console_seen(self, taker_id: str, session_id: str, ttl_ms: int) -> None:
        """A call taker's console session is connected (any node); it counts until ``ttl_ms`` from now."""
        key = self._consoles_key(taker_id)
        now = _ms(datetime.now(UTC))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {session_id: now + int(ttl_ms)})
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.pexpire(key, int(ttl_ms) * 2)
            await self._call("record console presence", pipe.execute())

    async def console_gone(self, taker_id: str, session_id: str) -> None:
        await self._call("remove console presence", self.redis.zrem(self._consoles_key(taker_id), session_id))

    async def consoles_open(self, taker_id: str) -> int:
        """How many console sessions of ``taker_id`` are connected now, on every node."""
        now = _ms(datetime.now(UTC))
        return int(
            await self._call(
                "read console presence", self.redis.zcount(self._consoles_key(taker_id), now, "+inf")
            )
        )

    async def put_console_draft(
        self, taker_id: str, call_id: str, values: dict[str, Any], ttl_ms: int
    ) -> None:
        """What a call taker typed into the incident form and has not saved: any console, any node gets it."""
        key = f"{self.ns}:drafts:{taker_id}:{call_id}"
        await self._call("write form draft", self.redis.set(key, json.dumps(values), px=int(ttl_ms)))

    async def console_draft(self, taker_id: str, call_id: str) -> dict[str, Any] | None:
        raw = await self._call("read form draft", self.redis.get(f"{self.ns}:drafts:{taker_id}:{call_id}"))
        return json.loads(raw) if raw is not None else None

    async def drop_console_draft(self, taker_id: str, call_id: str) -> None:
        await self._call("drop form draft", self.redis.delete(f"{self.ns}:drafts:{taker_id}:{call_id}"))

    async def put_node_health(self, component: str, node: str, data: dict[str, Any], ttl_ms: int) -> None:
        """A node's own view of one of its components (e.g. its transcription), expiring with the node."""
        key = f"{self.ns}:health:{component}:{node}"
        await self._call(
            "write node health", self.redis.set(key, json.dumps(data, default=str), px=int(ttl_ms))
        )

    async def node_health(self, component: str) -> dict[str, dict[str, Any]]:
        """node -> the last health record of ``component`` every live node wrote."""
        prefix = f"{self.ns}:health:{component}:"
        out: dict[str, dict[str, Any]] = {}
        try:
            keys = [k async for k in self.redis.scan_iter(match=prefix + "*", count=100)]
        except RedisError as exc:
            raise LiveStateError(f"Redis: read node health failed: {exc}", operation="node health") from exc
        if not keys:
            return out
        values = await self._call("read node health", self.redis.mget(keys))
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                out[_text(key)[len(prefix) :]] = json.loads(value)
        return out

    # ----------------------------------------------------------------------------------- upkeep

    async def snapshot(self) -> dict[str, Any]:
        """Everything live, as plain JSON (persistence checks, diagnostics)."""
        prefix = f"{self.ns}:lease:"
        try:
            lease_names = sorted(
                [_text(k)[len(prefix) :] async for k in self.redis.scan_iter(match=f"{prefix}*")]
            )
        except RedisError as exc:
            raise LiveStateError(f"Redis: list leases failed: {exc}") from exc
        queues = await self.all_queues()
        return {
            "active_calls": await self.active_calls(),
            "queues": {desk: [e.to_json() for e in entries] for desk, entries in queues.items()},
            "takers": await self.taker_states(),
            "idle_takers": [(t, at.isoformat()) for t, at in await self.idle_takers()],
            "stream_length": await self.stream_length(),
            "leases": {name: await self.lease_holder(name) for name in lease_names},
            "epoch": await self._call("read epoch", self.redis.get(self._epoch_key)),
        }

    async def ensure_epoch(self) -> bool:
        """Mark this Redis as holding our live state; True if the mark was missing, i.e. Redis is new or
        lost its data (flushed, replaced, restored without AOF). The app then rebuilds the desk queues from
        the database (:func:`queue_entries_from_calls` + :meth:`rebuild_queues`); with a new Redis that
        rebuild simply finds nothing to do. Only one of several nodes starting together gets True."""
        created = await self._call(
            "set epoch", self.redis.set(self._epoch_key, utc_now().isoformat(), nx=True)
        )
        return bool(created)

    async def clear(self) -> int:
        """Delete every key of this namespace (tests, or a deliberate reset); returns how many."""
        deleted = 0
        try:
            batch: list[Any] = []
            async for key in self.redis.scan_iter(match=f"{self.ns}:*", count=500):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(await self.redis.delete(*batch))
                    batch = []
            if batch:
                deleted += int(await self.redis.delete(*batch))
        except RedisError as exc:
            raise LiveStateError(f"Redis: clear namespace {self.ns} failed: {exc}") from exc
        return deleted


def _stream_messages(raw: Any) -> list[StreamMessage]:
    out: list[StreamMessage] = []
    for _stream, entries in raw or []:
        for entry_id, fields in entries:
            if fields is None:  # deleted by trimming while pending
                continue
            decoded = {_text(k): v for k, v in fields.items()}
            try:
                event = json.loads(decoded.get("event", "{}"))
            except ValueError:
                event = {"malformed": _text(decoded.get("event", ""))}
            out.append(StreamMessage(id=_text(entry_id), event=event))
    return out
