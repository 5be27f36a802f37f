"""A small asyncio AMI client: one TCP connection, actions matched to responses by ActionID.

It does not reconnect by itself; :class:`telephony.ami.bridge.AmiBridge` owns the reconnect policy. Actions
are never queued across connections: an action sent while the link is down fails at once, so a stale
Redirect or Hangup is never replayed minutes later on a call that has moved on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from telephony.ami.errors import AmiActionError, AmiConnectionError, AmiLoginError, AmiTimeoutError
from telephony.ami.framing import DEFAULT_MAX_MESSAGE_BYTES, AmiMessage, encode_action, parse_frames

log = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
_SUCCESS = frozenset({"success", "follows", "goodbye"})


@dataclass(frozen=True, slots=True)
class ActionResult:
    """An action's answer as plain values. ``items`` holds the events of list actions
    (``CoreShowChannels``, ``QueueStatus``, ...), without the closing ``...Complete`` event."""

    action: str
    success: bool
    message: str
    action_id: str
    fields: dict[str, str] = field(default_factory=dict)
    items: tuple[AmiMessage, ...] = ()
    output: tuple[str, ...] = ()  # "Output" lines (Command; "Response: Follows" bodies of old Asterisk)


@dataclass(slots=True)
class _Pending:
    action: str
    future: asyncio.Future[ActionResult]
    response: AmiMessage | None = None
    items: list[AmiMessage] = field(default_factory=list)


def _result(action: str, response: AmiMessage, items: Sequence[AmiMessage] = ()) -> ActionResult:
    return ActionResult(
        action=action,
        success=(response.response or "").strip().lower() in _SUCCESS,
        message=response.value("Message"),
        action_id=response.value("ActionID"),
        fields=response.as_dict(),
        items=tuple(items),
        output=tuple(response.get_all("Output")),
    )


class AmiConnection:
    """One logged-in (or logging-in) AMI session over a stream pair."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_event: Callable[[AmiMessage], None],
        *,
        action_id_prefix: str = "izs",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_event = on_event
        self._max_message_bytes = max_message_bytes
        self._ids = (f"{action_id_prefix}-{n}" for n in itertools.count(1))
        self._pending: dict[str, _Pending] = {}
        self._write_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        self.banner: asyncio.Future[str] = loop.create_future()
        self.closed: asyncio.Future[str] = loop.create_future()
        self._reader_task = asyncio.create_task(self._read_loop(), name="ami-reader")

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        on_event: Callable[[AmiMessage], None],
        *,
        timeout: float = 5.0,
        action_id_prefix: str = "izs",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> AmiConnection:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            raise AmiConnectionError(f"cannot connect to AMI at {host}:{port}: {exc!r}") from exc
        conn = cls(
            reader, writer, on_event, action_id_prefix=action_id_prefix, max_message_bytes=max_message_bytes
        )
        try:
            banner = await asyncio.wait_for(asyncio.shield(conn.banner), timeout)
        except TimeoutError as exc:
            await conn.close()
            raise AmiConnectionError(f"{host}:{port} sent no AMI banner within {timeout} s") from exc
        log.info("AMI connected to %s:%d (%s)", host, port, banner)
        return conn

    @property
    def is_open(self) -> bool:
        return not self.closed.done()

    async def login(self, username: str, secret: str, timeout: float = 5.0) -> ActionResult:
        try:
            return await self.send_action(
                "Login", [("Username", username), ("Secret", secret)], timeout=timeout
            )
        except AmiActionError as exc:
            raise AmiLoginError(f"AMI login as {username!r} rejected: {exc.message}") from exc

    async def send_action(
        self,
        action: str,
        fields: Sequence[tuple[str, str]] = (),
        *,
        timeout: float = 5.0,
    ) -> ActionResult:
        """Send one action and wait for its answer; ``Response: Error`` raises :class:`AmiActionError`."""
        if not self.is_open:
            raise AmiConnectionError(f"AMI connection closed ({self.closed.result()}); {action} not sent")
        action_id = next(self._ids)
        wire = encode_action([("Action", action), *fields, ("ActionID", action_id)])
        pending = _Pending(action, asyncio.get_running_loop().create_future())
        self._pending[action_id] = pending
        try:
            async with self._write_lock:
                self._writer.write(wire)
                await self._writer.drain()
            result = await asyncio.wait_for(asyncio.shield(pending.future), timeout)
        except TimeoutError as exc:  # before OSError: TimeoutError is one of its subclasses
            raise AmiTimeoutError(f"AMI {action} ({action_id}) got no answer within {timeout} s") from exc
        except (ConnectionError, OSError) as exc:
            raise AmiConnectionError(f"AMI connection failed while sending {action}: {exc!r}") from exc
        finally:
            self._pending.pop(action_id, None)
        if not result.success:
            raise AmiActionError(action, result.message or "error without message", action_id)
        return result

    async def close(self, reason: str = "closed by us") -> None:
        self._mark_closed(reason)
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
        if self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task

    def _mark_closed(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
        if not self.banner.done():
            self.banner.set_exception(AmiConnectionError(reason))
            self.banner.exception()  # retrieved: a missing banner is reported by open()
        for action_id, pending in list(self._pending.items()):
            if not pending.future.done():
                pending.future.set_exception(AmiConnectionError(f"{reason} before {pending.action} answered"))
                pending.future.exception()
            self._pending.pop(action_id, None)

    async def _read_loop(self) -> None:
        buffer = b""
        reason = "connection closed by Asterisk"
        try:
            while True:
                chunk = await self._reader.read(_READ_CHUNK)
                if not chunk:
                    break
                messages, buffer = parse_frames(buffer + chunk, max_message_bytes=self._max_message_bytes)
                for msg in messages:
                    self._dispatch(msg)
        except (ConnectionError, OSError) as exc:
            reason = f"connection error: {exc!r}"
        finally:
            if buffer:
                log.warning("AMI connection ended inside a message; %d bytes dropped", len(buffer))
            self._mark_closed(reason)
            self._writer.close()

    def _dispatch(self, msg: AmiMessage) -> None:
        if msg.is_banner:
            if not self.banner.done():
                self.banner.set_result(msg.fields[0][1])
            return
        action_id = msg.action_id
        pending = self._pending.get(action_id) if action_id else None
        if msg.response is not None:
            if pending is None:
                log.debug("AMI response for no pending action: %r", msg.as_dict())
                return
            if msg.value("EventList").lower() == "start" and msg.response.lower() == "success":
                pending.response = msg  # the list items follow as events with our ActionID
                return
            if not pending.future.done():
                pending.future.set_result(_result(pending.action, msg))
            return
        if pending is not None and pending.response is not None:
            if msg.value("EventList").lower() == "complete" or (msg.event or "").endswith("Complete"):
                if not pending.future.done():
                    pending.future.set_result(_result(pending.action, pending.response, pending.items))
            else:
                pending.items.append(msg)
            return
        self._on_event(msg)
