"""Live events over WebSocket (``/api/live``), filtered by what the caller's role may see.

The client authenticates with its first message, ``{"type": "auth", "token": "<bearer token>"}``, sent
within :data:`AUTH_TIMEOUT_S` of opening: a token in the URL would end up in proxy and server logs and
is refused. An open socket is closed (1008) when its token expires, and when the user's tokens are revoked
(disabled, password changed, logged out): the ``user.revoked`` bus event makes every node re-check its
sockets of that user at once, and every socket is re-checked every :data:`REVALIDATE_S` in case that event
was missed.

Every API worker subscribes to the centre's event bus, which relays through Redis pub/sub, so a client
connected to any worker of any node sees events published anywhere. A client that falls behind loses the
oldest events (the bus bounds each subscriber) and resyncs over REST; it is told so by a ``resync`` frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from api.auth import Principal, Role
from intake.bus import LiveEvent
from intake.errors import IzsError
from intake.taking import CallTakingService

log = logging.getLogger(__name__)

CALL_SCOPED_PREFIXES = ("call.", "transcript.", "triage.", "language.", "location.", "queue.")
# Bus events for the nodes themselves, never forwarded to a client.
INTERNAL_EVENTS = frozenset({"user.revoked"})
AUTH_TIMEOUT_S = 5.0
REVALIDATE_S = 15.0
WS_POLICY_VIOLATION = 1008


@dataclass(frozen=True, slots=True)
class Audience:
    """What one connected client may see."""

    role: Role
    taker_id: str | None = None
    desks: frozenset[str] = frozenset()

    def may_read_call(self, desk: str | None, taker_id: str | None, awaiting_callback: bool) -> bool:
        """The one rule for reading a call (REST and live socket): supervisors and admins read every call;
        a call taker reads the calls of their desks, the calls offered to or taken by them, and the calls
        waiting to be called back (calling back a lost caller is everybody's duty); integrations read
        incidents, not calls."""
        if self.role in (Role.SUPERVISOR, Role.ADMIN):
            return True
        if self.role is not Role.CALL_TAKER:
            return False
        if awaiting_callback:
            return True
        if self.taker_id is not None and taker_id == self.taker_id:
            return True
        return desk is not None and desk in self.desks

    def may_see(self, event: LiveEvent) -> bool:
        if event.type in INTERNAL_EVENTS:
            return False
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
            return self.may_read_call(event.desk, event.taker_id, event.type == "call.abandoned")
        return False


async def audience_for(taking: CallTakingService, principal: Principal) -> Audience:
    """What ``principal`` may see: a call taker's desks come from their call-taker record."""
    if principal.role is not Role.CALL_TAKER:
        return Audience(role=principal.role)
    taker = await taking.taker_of(principal.username)
    if taker is None:
        return Audience(principal.role, principal.username, frozenset())
    return Audience(principal.role, taker.id, frozenset(d.value for d in taker.desks))


async def receive_token(websocket: WebSocket) -> str | None:
    """The token of the client's first message (``{"type": "auth", "token": ...}``), or None when the
    client sends something else or nothing within :data:`AUTH_TIMEOUT_S`."""
    try:
        async with asyncio.timeout(AUTH_TIMEOUT_S):
            raw = await websocket.receive_text()
        message = json.loads(raw)
    except (TimeoutError, ValueError, KeyError, WebSocketDisconnect, RuntimeError):
        return None
    if not isinstance(message, dict) or message.get("type") != "auth":
        return None
    token = message.get("token")
    return token if isinstance(token, str) and token else None


async def serve_live(
    websocket: WebSocket,
    principal: Principal,
    audience: Audience,
    subscribe: Callable[[], object],
    revalidate: Callable[[], Awaitable[None]],
    now: Callable[[], float] = time.time,
) -> None:
    """Forward bus events the audience may see until the client goes away, its token expires or
    ``revalidate`` (raising :class:`~intake.errors.IzsError`) says the token is no longer good. The
    socket is already accepted."""
    events: Any = subscribe()
    # Start listening before saying hello: whatever happens after the client has its hello, it gets.
    first: asyncio.Future[LiveEvent] = asyncio.ensure_future(events.__anext__())
    await asyncio.sleep(0)
    await websocket.send_json(
        {"type": "hello", "data": {"username": principal.username, "role": principal.role.value}}
    )
    recheck = asyncio.Event()

    async def forward() -> None:
        event = await first
        while True:
            if event.type == "user.revoked" and event.data.get("username") == principal.username:
                recheck.set()
            elif audience.may_see(event):
                await websocket.send_text(json.dumps(event.to_json(), default=str))
            event = await events.__anext__()

    async def drain_client() -> None:
        # Clients only send pings; reading is how a disconnect is noticed.
        while True:
            await websocket.receive_text()

    async def guard() -> str:
        """Returns why the socket must close: the token expired or was revoked."""
        while True:
            remaining = principal.expires_at - now()
            if remaining <= 0:
                return "token_expired"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(recheck.wait(), timeout=min(REVALIDATE_S, remaining))
            recheck.clear()
            if principal.expires_at <= now():
                return "token_expired"
            try:
                await revalidate()
            except IzsError as exc:
                if exc.http_status == 401:
                    return exc.error_id
                log.warning("live connection of %s: token not re-checked: %s", principal.username, exc)

    forwarder = asyncio.create_task(forward())
    reader = asyncio.create_task(drain_client())
    guarding = asyncio.create_task(guard())
    try:
        done, _ = await asyncio.wait({forwarder, reader, guarding}, return_when=asyncio.FIRST_COMPLETED)
        if guarding in done and guarding.exception() is None:
            reason = guarding.result()
            log.info("closing the live connection of %s: %s", principal.username, reason)
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(code=WS_POLICY_VIOLATION, reason=reason)
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect | RuntimeError):
                log.warning("live connection of %s ended: %r", principal.username, exc)
    finally:
        pending: tuple[asyncio.Future[Any], ...] = (forwarder, reader, guarding, first)
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
