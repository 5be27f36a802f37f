"""Live events for consoles and integrations.

Every state change becomes one :class:`LiveEvent`, published on Redis pub/sub so that every API worker
on every node forwards it to its connected consoles. When Redis is down the event still reaches the
subscribers in this process (consoles connected here keep working) and the bus reports itself degraded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from intake.domain import utc_now
from intake.errors import LiveStateError

log = logging.getLogger(__name__)

CHANNEL = "events"

# Which live events exist. The API's role rules refer to these names.
EVENT_TYPES = frozenset(
    {
        "call.offered",
        "call.queued",
        "call.offered_to_taker",
        "call.connected",
        "call.ended",
        "call.abandoned",
        "call.updated",
        "transcript.partial",
        "transcript.final",
        "language.detected",
        "triage.updated",
        "queue.changed",
        "taker.state",
        "incident.created",
        "incident.updated",
        "incident.linked",
        "location.updated",
        "component.health",
        "user.revoked",  # a user's tokens were revoked: nodes re-check that user's open sockets
    }
)


@dataclass(frozen=True, slots=True)
class LiveEvent:
    type: str
    data: dict[str, Any]
    call_id: str | None = None
    incident_id: str | None = None
    desk: str | None = None
    taker_id: str | None = None
    at: datetime = field(default_factory=utc_now)
    node: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LiveEvent:
        return cls(
            type=str(raw["type"]),
            data=dict(raw.get("data") or {}),
            call_id=raw.get("call_id"),
            incident_id=raw.get("incident_id"),
            desk=raw.get("desk"),
            taker_id=raw.get("taker_id"),
            at=datetime.fromisoformat(raw["at"]) if raw.get("at") else utc_now(),
            node=raw.get("node"),
        )


class PubSub(Protocol):
    async def publish(self, topic: str, event: dict[str, Any]) -> None: ...

    def subscribe(self, topic: str) -> AsyncIterator[dict[str, Any]]: ...


class EventBus:
    def __init__(
        self, pubsub: PubSub | None, node: str, on_degraded: Callable[[str], None] | None = None
    ) -> None:
        self._pubsub = pubsub
        self._node = node
        self._local: set[asyncio.Queue[LiveEvent]] = set()
        self._on_degraded = on_degraded
        self._relay_task: asyncio.Task[None] | None = None
        self.degraded_reason: str | None = None
        self._stopping = False

    async def start(self) -> None:
        if self._pubsub is not None:
            self._relay_task = asyncio.create_task(self._relay(), name="event-bus-relay")

    async def stop(self) -> None:
        self._stopping = True
        if self._relay_task is not None:
            self._relay_task.cancel()
            # A cancellation swallowed inside redis-py must not hang shutdown.
            await asyncio.wait([self._relay_task], timeout=5.0)

    async def publish(self, event: LiveEvent) -> None:
        if event.type not in EVENT_TYPES:
            raise ValueError(f"unknown live event type {event.type!r}")
        if event.node is None:
            event = LiveEvent(**{**_fields(event), "node": self._node})
        # This node's subscribers get the event at once, whatever Redis does; other nodes through Redis.
        self._fan_out(event)
        if self._stopping:
            # Shutting down: the centre closes its own Redis next; an adapter's last status (endpoint
            # stopped) is for local subscribers only and is no sign of a degraded bus.
            log.debug("event %s not relayed: event bus stopping", event.type)
            return
        if self._pubsub is not None:
            try:
                await self._pubsub.publish(CHANNEL, event.to_json())
                self.recovered()
            except LiveStateError as exc:
                self._degrade(f"Redis pub/sub unavailable: {exc}")

    async def subscribe(self) -> AsyncIterator[LiveEvent]:
        queue: asyncio.Queue[LiveEvent] = asyncio.Queue(maxsize=2000)
        self._local.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._local.discard(queue)

    def _fan_out(self, event: LiveEvent) -> None:
        for queue in list(self._local):
            if queue.full():
                # A console that stopped reading must not hold everyone back; it resyncs over REST.
                with suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    def _degrade(self, reason: str) -> None:
        if self._stopping:
            return  # our own Redis going away at shutdown
        if self.degraded_reason is None:
            log.error("event bus degraded: %s", reason)
            self.degraded_reason = reason
            if self._on_degraded is not None:
                self._on_degraded(reason)

    def recovered(self) -> None:
        if self.degraded_reason is not None:
            log.warning("event bus recovered")
        self.degraded_reason = None

    async def _relay(self) -> None:
        assert self._pubsub is not None
        backoff = 0.5
        while not self._stopping:
            try:
                async for raw in self._pubsub.subscribe(CHANNEL):
                    backoff = 0.5
                    self.recovered()
                    try:
                        event = LiveEvent.from_json(raw)
                        if event.node != self._node:  # our own events were delivered when published
                            self._fan_out(event)
                    except (KeyError, ValueError, TypeError) as exc:
                        log.warning("dropping malformed live event %r: %s", raw, exc)
            except LiveStateError as exc:
                self._degrade(f"Redis pub/sub unavailable: {exc}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def _fields(event: LiveEvent) -> dict[str, Any]:
    return {
        "type": event.type,
        "data": event.data,
        "call_id": event.call_id,
        "incident_id": event.incident_id,
        "desk": event.desk,
        "taker_id": event.taker_id,
        "at": event.at,
        "node": event.node,
    }
