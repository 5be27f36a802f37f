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
from collections.abc import Awaitable, Callable, Sequence
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
from telephony.ami.tracker import FORK_HEADER, FORK_VARIABLE, AmiCallTracker, QueueMemberState
from telephony.events import AdapterStatus, CallEnded, TelephonyEvent, utc_now
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
    # "sip" (chan_sip) or "pjsip" (chan_pjsip): decides the fork endpoint's technology and how the
    # X-IZS-Fork-Of header is added to the fork's INVITE.
    channel_driver: str = "sip"
    fork_endpoint: str = ""  # default: SIP/intake (chan_sip) or PJSIP/intake (chan_pjsip)
    fork_caller_id: str = "IZS fork <fork>"
    # ChanSpy options of the media fork: q quiet, E end with the spied channel, o only the caller's own
    # audio (not the hold music or announcements the caller hears): what transcription needs.
    spy_options: str = "qEo"
    # A fork that ends while its caller is still there is originated again after this many seconds (and
    # again every time it fails, as long as the caller is there).
    fork_retry_s: float = 1.0
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
    # While the PBX is expected up intake must not stay blind long: at most this long between attempts.
    reconnect_max_s: float = 2.0
    reconnect_jitter: float = 0.1  # +- fraction of each delay so many nodes do not reconnect in lockstep
    # After "Authentication failed" retrying quickly only fills Asterisk's security log: wait this long.
    login_failure_backoff_s: float = 60.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    adapter_name: str = "ami"

    def __post_init__(self) -> None:
        problems = []
        if self.channel_driver not in ("sip", "pjsip"):
            problems.append(f"channel_driver must be 'sip' or 'pjsip', got {self.channel_driver!r}")
        if not self.fork_endpoint:
            default = "PJSIP/intake" if self.channel_driver == "pjsip" else "SIP/intake"
            object.__setattr__(self, "fork_endpoint", default)
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
            "fork_retry_s",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0")
        if not 0 <= self.reconnect_jitter < 1:
            problems.append("reconnect_jitter must be in [0, 1)")
        if problems:
            raise ValueError("invalid AMI config: " + "; ".join(problems))

    def queue_for_desk(self, desk_number: str) -> str:
        return f"{self.queue_prefix}{desk_number}"

    def fork_header_variable(self, spied_channel: str) -> str:
        """The Originate ``Variable`` that puts ``X-IZS-Fork-Of: <channel>`` into the fork's INVITE."""
        if self.channel_driver == "pjsip":
            return f"PJSIP_HEADER(add,{FORK_HEADER})={spied_channel}"
        return f"SIPADDHEADER01={FORK_HEADER}: {spied_channel}"

    def backoff(self, failures: int) -> float:
        base = min(self.reconnect_max_s, self.reconnect_initial_s * 2.0 ** min(max(0, failures - 1), 30))
        # The cap holds after the jitter too ("at most every reconnect_max_s"): at the cap nodes still spread
        # out, downwards only.
        jittered = base * (1 + random.uniform(-self.reconnect_jitter, self.reconnect_jitter))
        return min(self.reconnect_max_s, max(0.0, jittered))


@dataclass(frozen=True, slots=True)
class RedirectResult:
    redirect: ActionResult
    queue: str
    priority: int
    priority_applied: bool  # the caller runs in the target queue with the requested priority
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PriorityResult:
    queue: str
    priority: int
    applied: bool
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
        self._forks_wanted: set[str] = set()  # call_refs whose caller audio intake wants forked
        self._fork_tasks: dict[str, asyncio.Task[None]] = {}
        self._connected_hooks: list[Callable[[], Awaitable[object]]] = []
        self._hook_tasks: set[asyncio.Task[None]] = set()

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

    def add_connected_hook(self, hook: Callable[[], Awaitable[object]]) -> None:
        """Run ``hook`` (in the background) after every login + resync, e.g. to put intake's desk
        membership back after a reconnect or an Asterisk restart."""
        self._connected_hooks.append(hook)

    def members(self, queue: str | None = None) -> list[QueueMemberState]:
        return self.tracker.members(queue)

    def is_ready_member(self, queue: str, interface: str) -> bool:
        """Would the PBX ring ``interface`` for a caller in ``queue`` (member, not paused, reachable)?"""
        member = self.tracker.member(queue, interface)
        return member is not None and member.ready

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
        for task in [*self._fork_tasks.values(), *self._hook_tasks]:
            task.cancel()
        for task in [*self._fork_tasks.values(), *self._hook_tasks]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fork_tasks.clear()
        self._hook_tasks.clear()
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
        change = await self._change_priority(channel, queue, priority)
        return RedirectResult(redirect, queue, priority, change.applied, change.detail)

    async def change_priority(self, channel: str, desk_number: str, priority: int) -> PriorityResult:
        """Give a caller waiting in desk ``desk_number``'s queue a new queue priority (higher is served
        first; ``QueueChangePriorityCaller`` with ``Immediate``: the caller moves to its new place now)."""
        return await self._change_priority(channel, self.config.queue_for_desk(desk_number), priority)

    async def _change_priority(self, channel: str, queue: str, priority: int) -> PriorityResult:
        try:
            change = await self._action(
                "QueueChangePriorityCaller",
                [("Queue", queue), ("Caller", channel), ("Priority", str(priority)), ("Immediate", "yes")],
            )
        except AmiActionError as exc:
            # "No such caller": the caller is no longer waiting in that queue. If a taker answered meanwhile
            # (often within milliseconds of joining a desk with a free taker) or the caller left, there is
            # no priority to change and nothing went wrong; only a caller still waiting there is a failure.
            call = self.tracker.call_for_channel(channel)
            if call is None:
                return PriorityResult(queue, priority, False, f"caller {channel} gone before the change")
            if call.taker is not None:
                return PriorityResult(
                    queue, priority, False, f"caller already answered by {call.taker}; no change needed"
                )
            if call.queue != queue:
                return PriorityResult(
                    queue, priority, False, f"caller now waits in {call.queue}, not {queue}"
                )
            raise AmiActionError(exc.action, f"{exc.message} (caller {channel} in {queue})") from exc
        call = self.tracker.call_for_channel(channel)
        if call is not None:
            call.queue_priority = str(priority)
        return PriorityResult(queue, priority, True, change.message)

    async def originate_media_fork(self, channel: str) -> MediaForkResult:
        """Have Asterisk call the intake SIP endpoint with ChanSpy on ``channel``: the forked audio arrives as
        an INVITE carrying ``X-IZS-Fork-Of: <channel>``. Waits for ``OriginateResponse``.

        From then on the bridge keeps the fork up while the caller is there: a fork that ends (its leg hung
        up, the endpoint restarted) is originated again; it never ends the call. A fork that already runs
        for ``channel`` (seen live, or in the snapshot after a reconnect) is not doubled.
        """
        call = self.tracker.call_for_channel(channel)
        if call is not None:
            self._forks_wanted.add(call.call_ref)
        running = self._running_fork(channel)
        if running is not None:
            log.info("media fork of %s already runs on %s; not originated again", channel, running)
            return MediaForkResult(
                channel, running, "", ActionResult("Originate", True, "already running", "")
            )
        return await self._originate_fork(channel)

    def _running_fork(self, channel: str) -> str | None:
        for fork_channel, spied in self.tracker.forks.items():
            if spied == channel:
                return fork_channel
        return None

    async def _originate_fork(self, channel: str) -> MediaForkResult:
        spy_data = f"{channel},{self.config.spy_options}"
        fields = [
            ("Channel", self.config.fork_endpoint),
            ("Application", "ChanSpy"),
            ("Data", spy_data),
            ("CallerID", self.config.fork_caller_id),
            ("Async", "true"),
            ("Variable", self.config.fork_header_variable(channel)),
            ("Variable", f"{FORK_VARIABLE}={channel}"),
        ]
        conn = self._require_connection("Originate")
        # The ActionID is only known once sent; the OriginateResponse also carries the Data we gave it.
        answered = self._expect_event("OriginateResponse", ("Data", spy_data))
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

    def _fork_ended(self, fork_channel: str, spied: str, cause: str) -> None:
        """A media fork's channel hung up. If its caller is still there, fork again (the fork's life is not
        the call's); the caller's own Hangup, decided from the caller's channel only, ends the call."""
        call = self.tracker.call_for_channel(spied) if spied else None
        if call is None or call.call_ref not in self._forks_wanted:
            return
        log.warning(
            "media fork %s of call %s (%s) ended (cause %s) while the caller is still there: forking again",
            fork_channel,
            call.call_ref,
            spied,
            cause or "?",
        )
        self._schedule_refork(call.call_ref)

    def _schedule_refork(self, call_ref: str) -> None:
        task = self._fork_tasks.get(call_ref)
        if task is not None and not task.done():
            return
        self._fork_tasks[call_ref] = asyncio.get_running_loop().create_task(
            self._keep_fork(call_ref), name=f"ami-refork-{call_ref}"
        )

    async def _keep_fork(self, call_ref: str) -> None:
        """Re-originate the fork of ``call_ref`` every ``fork_retry_s`` until one runs or the caller left."""
        try:
            while not self._stopping.is_set():
                await asyncio.sleep(self.config.fork_retry_s)
                call = self.tracker.calls.get(call_ref)
                if call is None or call_ref not in self._forks_wanted:
                    return
                if self._running_fork(call.channel) is not None:
                    return
                if not self.connected:
                    return  # the resync after the reconnect hands every resumed call a fresh fork
                try:
                    result = await self._originate_fork(call.channel)
                except AmiError as exc:
                    log.warning("media fork of call %s not re-established yet: %s", call_ref, exc)
                    continue
                log.info("media fork of call %s re-established on %s", call_ref, result.fork_channel)
                return
        finally:
            if self._fork_tasks.get(call_ref) is asyncio.current_task():
                del self._fork_tasks[call_ref]

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
        fork_spied: str | None = None
        if msg.event == "Hangup":
            fork_spied = self.tracker.forks.get(msg.value("Channel"))
        try:
            events = self.tracker.feed(msg)
        except Exception:  # one bad message (or a tracker bug) must never stop the next: logged, skipped
            log.exception("AMI event %r could not be mapped; ignored", msg.as_dict())
            return
        for event in events:
            if isinstance(event, CallEnded):
                self._forks_wanted.discard(event.call_ref)
        if fork_spied is not None:
            self._fork_ended(msg.value("Channel"), fork_spied, msg.value("Cause"))
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
            resynced = self.tracker.resync(channels.items, queues.items)
            for event in resynced:
                if isinstance(event, CallEnded):
                    self._forks_wanted.discard(event.call_ref)
            self._emit(resynced)
        finally:
            self._release_held()
        for call_ref in sorted(self._forks_wanted):
            call = self.tracker.calls.get(call_ref)
            if call is None:
                self._forks_wanted.discard(call_ref)
            elif self._running_fork(call.channel) is None:
                log.warning(
                    "media fork of call %s ended while the AMI link was down: forking again", call_ref
                )
                self._schedule_refork(call_ref)
        for hook in self._connected_hooks:
            task = asyncio.get_running_loop().create_task(self._run_hook(hook), name="ami-connected-hook")
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)
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

    @staticmethod
    async def _run_hook(hook: Callable[[], Awaitable[object]]) -> None:
        try:
            await hook()
        except Exception:
            # The hook belongs to intake (membership resync); its failure must not stop the AMI session.
            log.exception("AMI connected hook %r failed", hook)

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
