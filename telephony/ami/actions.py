"""Actions sent to Asterisk over the AMI link, and the events that answer them.

An action's own reply (``Response: Success``/``Error``) comes back through
:meth:`telephony.ami.client.AmiConnection.send_action`. Some actions are only done when an *event* arrives
later (a Redirect when ``QueueCallerJoin`` shows the caller in the queue, an async Originate when
``OriginateResponse`` comes): :meth:`AmiActions.expect_event` registers the wait before the action is sent,
so an event that arrives before the reply is not missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from telephony.ami.client import ActionResult, AmiConnection
from telephony.ami.errors import AmiActionError, AmiConnectionError
from telephony.ami.framing import ActionEncodingError, AmiMessage
from telephony.ami.link import AmiLink


@dataclass(frozen=True, slots=True)
class _EventWaiter:
    """Resolves ``future`` with the first event named ``event`` whose fields include ``match``."""

    event: str
    match: tuple[tuple[str, str], ...]
    future: asyncio.Future[AmiMessage]

    def offer(self, msg: AmiMessage) -> None:
        if (
            not self.future.done()
            and msg.event == self.event
            and all(msg.value(k) == v for k, v in self.match)
        ):
            self.future.set_result(msg)


class AmiActions:
    def __init__(self, link: AmiLink) -> None:
        self._link = link
        self._event_waiters: list[_EventWaiter] = []

    def offer(self, msg: AmiMessage) -> None:
        """Every message from Asterisk: resolves the waits it answers."""
        for waiter in self._event_waiters:
            waiter.offer(msg)

    def require_connection(self, action: str) -> AmiConnection:
        conn = self._link.connection
        if conn is None:
            raise AmiConnectionError(f"AMI not connected; {action} not sent ({self._link.status_detail})")
        return conn

    async def run(self, action: str, fields: Sequence[tuple[str, str]]) -> ActionResult:
        """Send ``action`` on the current connection and return its reply (AmiError when it failed)."""
        return await self.send(self.require_connection(action), action, fields)

    async def send(self, conn: AmiConnection, action: str, fields: Sequence[tuple[str, str]]) -> ActionResult:
        try:
            return await conn.send_action(action, fields, timeout=self._link.config.action_timeout_s)
        except ActionEncodingError as exc:
            raise AmiActionError(action, f"refused to send: {exc}") from exc

    def expect_event(self, event: str, *match: tuple[str, str]) -> asyncio.Future[AmiMessage]:
        future: asyncio.Future[AmiMessage] = asyncio.get_running_loop().create_future()
        self._event_waiters.append(_EventWaiter(event, match, future))
        return future

    def forget_waiter(self, future: asyncio.Future[AmiMessage]) -> None:
        self._event_waiters = [w for w in self._event_waiters if w.future is not future]
        future.cancel()
