"""The AMI bridge: keeps a logged-in AMI session to Asterisk, turns its events into telephony events for
intake, and carries out intake's commands (redirect to a desk queue, media fork, queue membership, hangup).

While the link is down Asterisk's dialplan still queues every emergency call by number; the bridge reports
``AdapterStatus(healthy=False)``, reconnects with exponential backoff, and on reconnect resyncs from
``CoreShowChannels`` + ``QueueStatus`` so calls that started (or ended) meanwhile are not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from telephony.ami.client import ActionResult, AmiConnection
from telephony.ami.errors import (
    AmiActionError,
    AmiConnectionError,
    AmiError,
    AmiLoginError,
    AmiTimeoutError,
)
from telephony.ami.framing import DEFAULT_MAX_MESSAGE_BYTES, ActionEncodingError, AmiMessage
from telephony.ami.tracker import FORK_HEADER, FORK_VARIABLE, AmiCallTracker
from telephony.events import AdapterStatus, TelephonyEvent, utc_now
from telephony.ports import EventSink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AmiConfig:
    host: str
    port: int
    username: str
    secret: str
    emergency_context: str = "emergency"
    queue_prefix: str = "desk-"
    fork_endpoint: str = "SIP/intake"
    fork_caller_id: str = "IZS fork <fork>"
    # Dialplan priority a Redirect enters the desk's extension at. The recorded dialplan resets QUEUE_PRIO
    # to 0 at priority 3, so a priority > 0 is applied after the join with QueueChangePriorityCaller.
    redirect_priority: int = 1
    apply_priority_after_join: bool = True
    redirect_join_timeout_s: float = 5.0
    originate_timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    action_timeout_s: float = 5.0
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 3.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    reconnect_jitter: float = 0.1  # +- fraction of each delay so many nodes do not reconnect in lockstep
    # After "Authentication failed" retrying quickly only fills Asterisk's security log: wait this long.
    login_failure_backoff_s: float = 60.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    adapter_name: str = "ami"

    def __post_init__(self) -> None:
        problems = []
        if not self.host:
            problems.append("host is empty")
        if not 0 < self.port < 65536:
            problems.append(f"port {self.port} out of range")
        if not self.username:
            problems.append("username is empty")
        for name in (
            "connect_timeout_s",
            "action_timeout_s",
            "ping_interval_s",
            "ping_timeout_s",
            "reconnect_initial_s",
            "reconnect_max_s",
            "login_failure_backoff_s",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0")
        if not 0 <= self.reconnect_jitter < 1:
            problems.append("reconnect_jitter must be in [0, 1)")
        if problems:
            raise ValueError("invalid AMI config: " + "; ".join(problems))

    def queue_for_desk(self, desk_number: str) -> str:
        return f"{self.queue_prefix}{desk_number}"

    def backoff(self, failures: int) -> float:
        base = min(self.reconnect_max_s, self.reconnect_initial_s * 2.0 ** min(max(0, failures - 1), 30))
        return max(0.0, base * (1 + random.uniform(-self.reconnect_jitter, self.reconnect_jitter)))


@dataclass(frozen=True, slots=True)
class RedirectResult:
    redirect: ActionResult
    queue: str
    priority: int
    priority_applied: bool  # the caller runs in the target queue with the requested priority
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MediaForkResult:
    spied_channel: str
    fork_channel: str  # e.g. "SIP/intake-00000037"
    fork_uniqueid: str
    originate: ActionResult


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


class AmiBridge:
    def __init__(self, config: AmiConfig, sink: EventSink) -> None:
        self.config = config
        self._sink = sink
        self.tracker = AmiCallTracker(
            emergency_context=config.emergency_context, fork_endpoint=config.fork_endpoint
        )
        self._conn: AmiConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        self._healthy: bool | None = None
        self._status_detail = ""
        self.last_error: AmiError | None = None
        self._event_waiters: list[_EventWaiter] = []
        self._resyncing = False
        self._held_events: list[AmiMessage] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start connecting in the background; returns at once (intake runs even while Asterisk is down)."""
        if self._runner is not None:
            return
        self._stopping.clear()
        self._runner = asyncio.create_task(self._run(), name="ami-bridge")

    async def wait_connected(self, timeout: float) -> None:
        """Wait until logged in and resynced; raises the last connect/login error on timeout."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError as exc:
            if self.last_error is not None:
                raise self.last_error from exc
            raise AmiTimeoutError(f"AMI not connected within {timeout} s") from exc

    def channel_for(self, call_ref: str) -> str | None:
        """The Asterisk channel of a call this bridge follows (commands take channels, events carry refs)."""
        call = self.tracker.calls.get(call_ref)
        return call.channel if call is not None else None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def stop(self) -> None:
        self._stopping.set()
        conn = self._conn
        if conn is not None and conn.is_open:
            with contextlib.suppress(AmiError):
                await conn.send_action("Logoff", timeout=1.0)
            await conn.close("bridge stopped")
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        self._connected.clear()
        self._status(False, "AMI bridge stopped")

    # ------------------------------------------------------------------ commands

    async def redirect_to_queue(self, channel: str, desk_number: str, priority: int = 0) -> RedirectResult:
        """Move a caller to desk ``desk_number``'s queue (``<context>,<desk>,<redirect_priority>``) with a
        queue priority (higher is served first)."""
        if not desk_number.isdigit():
            raise AmiActionError("Redirect", f"desk number must be digits, got {desk_number!r}")
        queue = self.config.queue_for_desk(desk_number)
        await self._action(
            "Setvar", [("Channel", channel), ("Variable", "QUEUE_PRIO"), ("Value", str(priority))]
        )
        joined = self._expect_event("QueueCallerJoin", ("Channel", channel), ("Queue", queue))
        self.tracker.note_redirect(channel)
        try:
            redirect = await self._action(
                "Redirect",
                [
                    ("Channel", channel),
                    ("Context", self.config.emergency_context),
                    ("Exten", desk_number),
                    ("Priority", str(self.config.redirect_priority)),
                ],
            )
        except AmiError:
            self.tracker.note_redirect_failed(channel)
            self._forget_waiter(joined)
            raise
        if priority == 0 or not self.config.apply_priority_after_join:
            self._forget_waiter(joined)
            return RedirectResult(redirect, queue, priority, priority_applied=priority == 0)
        try:
            await asyncio.wait_for(asyncio.shield(joined), self.config.redirect_join_timeout_s)
        except TimeoutError:
            self._forget_waiter(joined)
            log.warning(
                "AMI redirect of %s: no QueueCallerJoin %s; priority %d not applied", channel, queue, priority
            )
            return RedirectResult(
                redirect, queue, priority, False, f"caller did not join {queue} within the timeout"
            )
        change = await self._action(
            "QueueChangePriorityCaller",
            [("Queue", queue), ("Caller", channel), ("Priority", str(priority)), ("Immediate", "yes")],
        )
        return RedirectResult(redirect, queue, priority, True, change.message)

    async def originate_media_fork(self, channel: str) -> MediaForkResult:
        """Have Asterisk call the intake SIP endpoint with ChanSpy on ``channel``: the forked audio arrives as
        an INVITE carrying ``X-IZS-Fork-Of: <channel>``. Waits for ``OriginateResponse``."""
        fields = [
            ("Channel", self.config.fork_endpoint),
            ("Application", "ChanSpy"),
            ("Data", f"{channel},qE"),
            ("CallerID", self.config.fork_caller_id),
            ("Async", "true"),
            ("Variable", f"SIPADDHEADER01={FORK_HEADER}: {channel}"),
            ("Variable", f"{FORK_VARIABLE}={channel}"),
        ]
        conn = self._require_connection("Originate")
        # The ActionID is only known once sent; the OriginateResponse also carries the Data we gave it.
        answered = self._expect_event("OriginateResponse", ("Data", f"{channel},qE"))
        try:
            queued = await self._send(conn, "Originate", fields)
            watched: set[asyncio.Future[Any]] = {answered, conn.closed}
            await asyncio.wait(
                watched,
                timeout=self.config.originate_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not answered.done():
                if conn.closed.done():
                    raise AmiConnectionError(
                        f"AMI connection lost before the media fork of {channel} was answered"
                    )
                raise AmiTimeoutError(f"no OriginateResponse for the media fork of {channel}")
            response = answered.result()
        finally:
            self._forget_waiter(answered)
        if response.value("Response").lower() != "success":
            raise AmiActionError(
                "Originate",
                f"media fork of {channel} failed (Reason {response.value('Reason')})",
                queued.action_id,
            )
        fork_channel = response.value("Channel")
        self.tracker.note_fork(fork_channel, channel)
        return MediaForkResult(channel, fork_channel, response.value("Uniqueid"), queued)

    async def queue_add(
        self, queue: str, interface: str, member_name: str, penalty: int = 0, paused: bool = False
    ) -> ActionResult:
        fields = [
            ("Queue", queue),
            ("Interface", interface),
            ("MemberName", member_name),
            ("Penalty", str(penalty)),
        ]
        if paused:
            fields.append(("Paused", "true"))
        return await self._action("QueueAdd", fields)

    async def queue_pause(self, queue: str, interface: str, paused: bool, reason: str = "") -> ActionResult:
        fields = [("Queue", queue), ("Interface", interface), ("Paused", "true" if paused else "false")]
        if reason:
            fields.append(("Reason", reason))
        return await self._action("QueuePause", fields)

    async def queue_remove(self, queue: str, interface: str) -> ActionResult:
        return await self._action("QueueRemove", [("Queue", queue), ("Interface", interface)])

    async def hangup(self, channel: str) -> ActionResult:
        self.tracker.note_hangup(channel)
        try:
            return await self._action("Hangup", [("Channel", channel)])
        except AmiError:
            self.tracker.note_hangup(channel, requested=False)
            raise

    async def ping(self) -> ActionResult:
        return await self._action("Ping", [])

    async def send_action(self, action: str, fields: Sequence[tuple[str, str]] = ()) -> ActionResult:
        """Any other AMI action (``QueueStatus``, ``QueueSummary`` for supervisor views); list actions
        return their events in ``ActionResult.items``."""
        return await self._action(action, fields)

    # ------------------------------------------------------------------ internals: actions

    def _require_connection(self, action: str) -> AmiConnection:
        conn = self._conn
        if conn is None or not conn.is_open or not self._connected.is_set():
            raise AmiConnectionError(f"AMI not connected; {action} not sent ({self._status_detail})")
        return conn

    async def _action(self, action: str, fields: Sequence[tuple[str, str]]) -> ActionResult:
        return await self._send(self._require_connection(action), action, fields)

    async def _send(
        self, conn: AmiConnection, action: str, fields: Sequence[tuple[str, str]]
    ) -> ActionResult:
        try:
            return await conn.send_action(action, fields, timeout=self.config.action_timeout_s)
        except ActionEncodingError as exc:
            raise AmiActionError(action, f"refused to send: {exc}") from exc

    def _expect_event(self, event: str, *match: tuple[str, str]) -> asyncio.Future[AmiMessage]:
        future: asyncio.Future[AmiMessage] = asyncio.get_running_loop().create_future()
        self._event_waiters.append(_EventWaiter(event, match, future))
        return future

    def _forget_waiter(self, future: asyncio.Future[AmiMessage]) -> None:
        self._event_waiters = [w for w in self._event_waiters if w.future is not future]
        future.cancel()

    # ------------------------------------------------------------------ internals: events

    def _emit(self, events: Sequence[TelephonyEvent]) -> None:
        for event in events:
            try:
                self._sink(event)
            except Exception:
                # The sink belongs to intake; its failure must not stop the events of the other calls.
                log.exception("AMI event sink failed on %r", event)

    def _status(self, healthy: bool, detail: str) -> None:
        if self._healthy == healthy and self._status_detail == detail:
            return
        self._healthy, self._status_detail = healthy, detail
        (log.info if healthy else log.warning)("AMI adapter %s: %s", "up" if healthy else "down", detail)
        self._emit([AdapterStatus(self.config.adapter_name, healthy, detail, at=utc_now())])

    def _on_message(self, msg: AmiMessage) -> None:
        for waiter in self._event_waiters:
            waiter.offer(msg)
        if self._resyncing:
            # Applied after the snapshot so a Hangup seen now is not undone by an older snapshot entry.
            self._held_events.append(msg)
            return
        self._feed(msg)

    def _feed(self, msg: AmiMessage) -> None:
        if msg.event == "Shutdown":
            log.warning("Asterisk announced shutdown: %r", msg.as_dict())
        try:
            events = self.tracker.feed(msg)
        except Exception:  # one bad message (or a tracker bug) must never stop the next: logged, skipped
            log.exception("AMI event %r could not be mapped; ignored", msg.as_dict())
            return
        self._emit(events)

    # ------------------------------------------------------------------ internals: connection loop

    async def _run(self) -> None:
        failures = 0
        cfg = self.config
        while not self._stopping.is_set():
            delay: float
            try:
                conn = await AmiConnection.open(
                    cfg.host,
                    cfg.port,
                    self._on_message,
                    timeout=cfg.connect_timeout_s,
                    max_message_bytes=cfg.max_message_bytes,
                )
            except AmiConnectionError as exc:
                failures += 1
                self.last_error = exc
                delay = cfg.backoff(failures)
                self._status(False, f"cannot connect to {cfg.host}:{cfg.port}: {exc}")
            else:
                self._conn = conn
                delay, served = await self._session(conn)
                failures = 0 if served else failures + 1
                if not served:
                    delay = max(delay, cfg.backoff(failures))
            if self._stopping.is_set():
                break
            log.info("AMI reconnecting in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _session(self, conn: AmiConnection) -> tuple[float, bool]:
        """Log in, resync and serve one connection; returns how long to wait before the next attempt and
        whether the session got as far as serving events."""
        cfg = self.config
        # Hold events from the first byte: Asterisk streams them right after the login response, before
        # our snapshot request could even be sent.
        self._resyncing = True
        try:
            await conn.login(cfg.username, cfg.secret, timeout=cfg.action_timeout_s)
        except AmiLoginError as exc:
            self.last_error = exc
            self._status(
                False,
                f"{exc} — check the AMI secret in manager.conf; retrying in {cfg.login_failure_backoff_s:.0f} s",
            )
            await conn.close("login rejected")
            self._release_held()
            return cfg.login_failure_backoff_s, False
        except AmiError as exc:
            self.last_error = exc
            self._status(False, f"AMI login failed: {exc}")
            await conn.close("login failed")
            self._release_held()
            return cfg.backoff(1), False
        try:
            try:
                channels = await conn.send_action("CoreShowChannels", timeout=cfg.action_timeout_s)
                queues = await conn.send_action("QueueStatus", timeout=cfg.action_timeout_s)
            except AmiError as exc:
                self.last_error = exc
                self._status(False, f"AMI resync failed: {exc}")
                await conn.close("resync failed")
                return cfg.backoff(1), False
            self.last_error = None
            self._connected.set()
            self._status(True, f"connected to {cfg.host}:{cfg.port} as {cfg.username}")
            self._emit(self.tracker.resync(channels.items, queues.items))
        finally:
            self._release_held()
        pinger = asyncio.create_task(self._keepalive(conn), name="ami-keepalive")
        try:
            reason = await conn.closed
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
            self._connected.clear()
        if not self._stopping.is_set():
            self.last_error = AmiConnectionError(reason)
            self._status(False, f"AMI connection lost: {reason}")
        return cfg.backoff(1), True

    def _release_held(self) -> None:
        # Events that arrived during login and snapshot are applied after the snapshot, so a Hangup seen
        # meanwhile is not undone by an older snapshot entry.
        self._resyncing = False
        held, self._held_events = self._held_events, []
        for msg in held:
            self._feed(msg)

    async def _keepalive(self, conn: AmiConnection) -> None:
        cfg = self.config
        while conn.is_open:
            await asyncio.sleep(cfg.ping_interval_s)
            try:
                await conn.send_action("Ping", timeout=cfg.ping_timeout_s)
            except AmiTimeoutError:
                # A half-open TCP connection never closes by itself: without this we would wait forever.
                await conn.close(f"no answer to Ping within {cfg.ping_timeout_s} s")
                return
            except AmiConnectionError:
                return
