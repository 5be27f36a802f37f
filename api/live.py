"""Live events over WebSocket (``/api/live?token=...``), filtered by what the caller's role may see.

Every API worker subscribes to the centre's event bus, which relays through Redis pub/sub, so a client
connected to any worker of any node sees events published anywhere. A client that falls behind loses the
oldest events (the bus bounds each subscriber) and resyncs over REST; it is told so by a ``resync`` frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from api.auth import Principal, Role
from intake.bus import LiveEvent

log = logging.getLogger(__name__)

CALL_SCOPED_PREFIXES = ("call.", "transcript.", "triage.", "language.", "location.", "queue.")


@dataclass(frozen=True, slots=True)
class Audience:
    """What one connected client may see."""

    role: Role
    taker_id: str | None = None
    desks: frozenset[str] = frozenset()

    def may_see(self, event: LiveEvent) -> bool:
        if self.role in (Role.SUPERVISOR, Role.ADMIN):
            return True
        if event.type.startswith("incident."):
            return True
        if self.role is Role.INTEGRATION:
            return False
        # call taker
        if event.type == "component.health":
            return True
        if event.type == "taker.state":
            return event.taker_id == self.taker_id
        if event.type.startswith(CALL_SCOPED_PREFIXES):
            if self.taker_id is not None and event.taker_id == self.taker_id:
                return True
            return event.desk is not None and event.desk in self.desks
        return False


async def serve_live(
    websocket: WebSocket,
    principal: Principal,
    audience: Audience,
    subscribe: Callable[[], object],
) -> None:
    """Forward bus events the audience may see until the client goes away."""
    await websocket.accept()
    events: Any = subscribe()
    # Start listening before saying hello: whatever happens after the client has its hello, it gets.
    first: asyncio.Future[LiveEvent] = asyncio.ensure_future(events.__anext__())
    await asyncio.sleep(0)
    await websocket.send_json(
        {"type": "hello", "data": {"username": principal.username, "role": principal.role.value}}
    )

    async def forward() -> None:
        event = await first
        while True:
            if audience.may_see(event):
                await websocket.send_text(json.dumps(event.to_json(), default=str))
            event = await events.__anext__()

    async def drain_client() -> None:
        # Clients only send pings; reading is how a disconnect is noticed.
        while True:
            await websocket.receive_text()

    forwarder = asyncio.create_task(forward())
    reader = asyncio.create_task(drain_client())
    try:
        done, _ = await asyncio.wait({forwarder, reader}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect | RuntimeError):
                log.warning("live connection of %s ended: %r", principal.username, exc)
    finally:
        pending: tuple[asyncio.Future[Any], ...] = (forwarder, reader, first)
        for future in pending:
            future.cancel()
        for future in pending:
            with contextlib.suppress(
                asyncio.CancelledError, WebSocketDisconnect, RuntimeError, StopAsyncIteration
            ):
                await future
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError):
                await aclose()
