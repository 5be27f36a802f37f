"""Events between nodes and to the outside: the incident event stream (durable, consumer groups, replay)
and pub/sub (fire and forget, for consoles and commands between nodes) with the replies to node commands.

Keys (``ns`` = namespace):

    ns:incidents       stream incident events (field "event" = JSON), MAXLEN ~ bounded
    ns:pub:<topic>     pub/sub channel
    ns:reply:<id>      list   replies to one node command, with a TTL
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError, ResponseError

from intake.live.connection import LiveRedis, LiveStore, dumps, text

log = logging.getLogger(__name__)

DEFAULT_STREAM_MAXLEN = 100_000


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One incident event from the stream; ``id`` is the Redis stream id (also the event's cursor)."""

    id: str
    event: dict[str, Any]


class IncidentStream(LiveStore):
    """The incident event stream: at-least-once delivery to consumer groups, replay from any point."""

    def __init__(self, conn: LiveRedis, stream_maxlen: int = DEFAULT_STREAM_MAXLEN) -> None:
        super().__init__(conn)
        self.stream_maxlen = stream_maxlen

    @property
    def stream_key(self) -> str:
        return self.conn.key("incidents")

    async def publish_incident_event(self, event: dict[str, Any]) -> str:
        """Append an event to the incident stream; returns its stream id. The stream is trimmed to about
        ``stream_maxlen`` entries (approximate trimming is cheap)."""
        encoded = dumps(event)
        stream_id = await self.conn.call(
            "publish incident event",
            self.redis.xadd(self.stream_key, {"event": encoded}, maxlen=self.stream_maxlen, approximate=True),
        )
        return text(stream_id)

    async def ensure_group(self, group: str, start_id: str = "0") -> None:
        """Create a consumer group (idempotent). ``start_id="0"``: the group starts with every event still
        in the stream; ``"$"``: only new ones."""

        async def create() -> None:
            try:
                await self.redis.xgroup_create(self.stream_key, group, id=start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self.conn.call(f"create consumer group {group}", create())

    async def read_group(
        self, group: str, consumer: str, count: int = 10, block_ms: int | None = None
    ) -> list[StreamMessage]:
        """New events for this consumer of the group (XREADGROUP ``>``); they stay pending until
        :meth:`ack`. ``block_ms`` waits that long for something new (None: do not wait)."""
        raw = await self.conn.call(
            "read consumer group",
            self.redis.xreadgroup(group, consumer, {self.stream_key: ">"}, count=count, block=block_ms),
        )
        return _stream_messages(raw)

    async def read_own_pending(self, group: str, consumer: str, count: int = 100) -> list[StreamMessage]:
        """Events delivered to this consumer and not yet acknowledged (resume after a restart)."""
        raw = await self.conn.call(
            "read own pending",
            self.redis.xreadgroup(group, consumer, {self.stream_key: "0"}, count=count),
        )
        return _stream_messages(raw)

    async def ack(self, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(await self.conn.call("ack", self.redis.xack(self.stream_key, group, *ids)))

    async def pending(self, group: str) -> dict[str, Any]:
        """Summary of unacknowledged events: count, smallest/greatest id, per-consumer counts."""
        raw = await self.conn.call("read pending", self.redis.xpending(self.stream_key, group))
        return {
            "pending": int(raw["pending"]),
            "min": text(raw["min"]) if raw["min"] is not None else None,
            "max": text(raw["max"]) if raw["max"] is not None else None,
            "consumers": {text(c["name"]): int(c["pending"]) for c in raw["consumers"]},
        }

    async def claim_stale(
        self, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[StreamMessage]:
        """Take over events another consumer got but did not acknowledge within ``min_idle_ms``
        (it died): XAUTOCLAIM over the whole pending list. This is what makes delivery at-least-once."""
        claimed: list[StreamMessage] = []
        cursor = "0-0"
        while len(claimed) < count:
            raw = await self.conn.call(
                "claim stale events",
                self.redis.xautoclaim(
                    self.stream_key, group, consumer, min_idle_ms, start_id=cursor, count=count - len(claimed)
                ),
            )
            cursor = text(raw[0])
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
        raw = await self.conn.call(
            "replay stream", self.redis.xrange(self.stream_key, min=start, count=count)
        )
        return _stream_messages([[self.stream_key, raw]])

    async def stream_length(self) -> int:
        return int(await self.conn.call("stream length", self.redis.xlen(self.stream_key)))


class PubSub(LiveStore):
    """Publish to every subscriber of a topic on every node; nothing is kept for absent subscribers."""

    def _channel(self, topic: str) -> str:
        return self.conn.key("pub", topic)

    async def publish(self, topic: str, event: dict[str, Any]) -> None:
        """Publish a JSON event to every subscriber of ``topic`` on every node (fire and forget: pub/sub
        keeps nothing for subscribers that are not connected)."""
        encoded = dumps(event)
        await self.conn.call("publish", self.redis.publish(self._channel(topic), encoded))

    async def subscriber_count(self, topic: str) -> int:
        raw = await self.conn.call("count subscribers", self.redis.pubsub_numsub(self._channel(topic)))
        return int(raw[0][1]) if raw else 0

    async def subscribe(
        self, topic: str, ready: asyncio.Event | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Events published on ``topic`` from now on, as they come (``ready`` is set once subscribed).
        Raises LiveStateError when the connection is lost; subscribe again to resume (pub/sub does not
        replay: consoles resync over REST, integrations use the stream)."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await self.conn.call(f"subscribe to {topic}", pubsub.subscribe(self._channel(topic)))
            if ready is not None:
                ready.set()
            while True:
                message = await self.conn.call(
                    f"subscription to {topic}",
                    pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0),
                )
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


class NodeReplies(LiveStore):
    """Replies to commands between nodes (sent over :class:`PubSub`): one Redis list per request, so the
    requester gets its answer even if it arrives before it starts waiting."""

    def _reply_key(self, reply_to: str) -> str:
        return self.conn.key("reply", reply_to)

    async def send_reply(self, reply_to: str, reply: dict[str, Any], ttl_ms: int) -> None:
        """Answer a node command on its own list (kept ``ttl_ms`` for a requester that waits no longer)."""
        key = self._reply_key(reply_to)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, dumps(reply))
            pipe.pexpire(key, int(ttl_ms))
            await self.conn.call("send reply", pipe.execute())

    async def wait_reply(self, reply_to: str, timeout_s: float) -> dict[str, Any] | None:
        """The answer to a node command, or None when none came within ``timeout_s``. Blocks in slices of at
        most a second so no single Redis command outlives the connection's socket timeout."""
        key = self._reply_key(reply_to)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (remaining := deadline - loop.time()) > 0:
            popped = await self.conn.call(
                "wait for reply", self.redis.blpop([key], timeout=min(1.0, remaining))
            )
            if popped is None:
                continue
            try:
                reply = json.loads(popped[1])
            except ValueError:
                log.warning("dropping a malformed reply on %s: %r", reply_to, popped[1])
                continue
            return reply if isinstance(reply, dict) else None
        return None


def _stream_messages(raw: Any) -> list[StreamMessage]:
    out: list[StreamMessage] = []
    for _stream, entries in raw or []:
        for entry_id, fields in entries:
            if fields is None:  # deleted by trimming while pending
                continue
            decoded = {text(k): v for k, v in fields.items()}
            try:
                event = json.loads(decoded.get("event", "{}"))
            except ValueError:
                event = {"malformed": text(decoded.get("event", ""))}
            out.append(StreamMessage(id=text(entry_id), event=event))
    return out
