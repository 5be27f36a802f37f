"""Desk queues in Redis: who waits on which desk, in serving order, claimed by exactly one call taker.

Every change that must not happen twice is one Lua script (claim, dequeue, move, reprioritise): two nodes
never claim the same queued call, a call waits in one queue only. The database holds the truth; after Redis
lost its data the queues are rebuilt from it (:func:`queue_entries_from_calls` + :meth:`rebuild_queues`).

Keys (``ns`` = namespace):

    ns:queue:<desk>          zset   call id scored by (priority, front flag, arrival ms)
    ns:queue:<desk>:entries  hash   call id -> JSON queue entry
    ns:queued                hash   call id -> desk it waits on (one queue at a time)
    ns:queues                set    desks that have had a queue
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from intake.domain import Call, CallState, utc_now
from intake.errors import LiveStateError
from intake.live.connection import LiveStore, from_ms, ms, text
from routing import acd

log = logging.getLogger(__name__)

# Queue score = rank * RANK_STEP + arrival ms; rank = 0 for the front, else the priority. Arrival ms
# (~1.8e12 today) stays below RANK_STEP until the year 2286; the score stays an exact double (< 2**53)
# for priorities up to 99.
RANK_STEP = 10**13
MAX_PRIORITY = 99

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


def queue_rank(priority: int, front: bool) -> int:
    """Queue order before arrival, by routing's ACD rule (:func:`routing.acd.queue_rank`): the front
    (T-CPR, trapped people) before everything, then priority 1 before 2 before 3."""
    if not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"queue priority must be 0-{MAX_PRIORITY}, not {priority!r}")
    return acd.queue_rank(priority, front)


def queue_score(priority: int, front: bool, arrival: datetime) -> int:
    return queue_rank(priority, front) * RANK_STEP + ms(arrival)


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
        return (queue_rank(self.priority, self.front), ms(self.arrival))

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
            "arrival_ms": ms(self.arrival),
            "data": self.data,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> QueueEntry:
        return cls(
            call_id=str(raw["call_id"]),
            desk=str(raw["desk"]),
            priority=int(raw["priority"]),
            front=bool(raw["front"]),
            arrival=from_ms(int(raw["arrival_ms"])),
            data=dict(raw.get("data") or {}),
        )

    def _encoded(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True, default=str)


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
    the result to :meth:`DeskQueues.rebuild_queues`. A queued call without a desk cannot be placed and is
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


class DeskQueues(LiveStore):
    """The desk queues of one centre (all nodes share them)."""

    def _queue_key(self, desk: str) -> str:
        return self.conn.key("queue", desk)

    def _entries_key(self, desk: str) -> str:
        return self.conn.key("queue", desk, "entries")

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
        await self.conn.call(
            "enqueue",
            self.conn.script(_ENQUEUE)(
                keys=[
                    self._queue_key(desk),
                    self._entries_key(desk),
                    self.conn.key("queued"),
                    self.conn.key("queues"),
                ],
                args=[call_id, str(score), entry._encoded(), desk, self.conn.key("queue") + ":"],
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
        result = await self.conn.call(
            "claim next call",
            self.conn.script(_CLAIM_NEXT)(
                keys=[self._queue_key(desk), self._entries_key(desk), self.conn.key("queued")], args=[desk]
            ),
        )
        if not result:
            return None
        call_id, raw = text(result[0]), result[1]
        log.info("desk %s: call %s claimed for call taker %s", desk, call_id, taker_id)
        return self._entry(desk, call_id, raw)

    async def dequeue_specific(self, desk: str, call_id: str) -> QueueEntry | None:
        """Take one call out of a desk queue (answered by hand, abandoned, picked by a call taker).
        Returns the entry if this caller removed it, None if it was not (or no longer) there; like
        :meth:`claim_next`, only one of several concurrent callers gets it."""
        raw = await self.conn.call(
            "dequeue call",
            self.conn.script(_DEQUEUE)(
                keys=[self._queue_key(desk), self._entries_key(desk), self.conn.key("queued")],
                args=[call_id, desk],
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
            ids, entries = await self.conn.call("read queue", pipe.execute())
        by_id = {text(k): v for k, v in entries.items()}
        return [self._entry(desk, text(i), by_id.get(text(i), "")) for i in ids]

    async def queue_length(self, desk: str) -> int:
        return int(await self.conn.call("queue length", self.redis.zcard(self._queue_key(desk))))

    async def queued_desk(self, call_id: str) -> str | None:
        """The desk a call currently waits on, if it waits."""
        raw = await self.conn.call("find queued call", self.redis.hget(self.conn.key("queued"), call_id))
        return text(raw) if raw is not None else None

    async def all_queues(self) -> dict[str, list[QueueEntry]]:
        desks = await self.conn.call("list queues", self.redis.smembers(self.conn.key("queues")))
        return {desk: await self.queue(desk) for desk in sorted(text(d) for d in desks)}

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
        self, from_desk: str, to_desk: str, call_id: str, change: Callable[[QueueEntry], QueueEntry]
    ) -> QueueEntry | None:
        for _attempt in range(20):
            raw = await self.conn.call(
                "read queue entry",
                self.redis.hget(self._entries_key(from_desk), call_id),
            )
            if raw is None:
                return None
            current = self._entry(from_desk, call_id, raw)
            new: QueueEntry = change(current)
            outcome = await self.conn.call(
                "replace queue entry",
                self.conn.script(_REPLACE)(
                    keys=[
                        self._queue_key(from_desk),
                        self._entries_key(from_desk),
                        self._queue_key(to_desk),
                        self._entries_key(to_desk),
                        self.conn.key("queued"),
                        self.conn.key("queues"),
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
