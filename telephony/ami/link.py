"""The AMI link: one logged-in AMI session to Asterisk at a time, kept up for as long as the bridge runs.

Connects, logs in, takes a snapshot (``CoreShowChannels`` + ``QueueStatus``) and serves events until the
connection drops, then reconnects with exponential backoff (a long pause after a rejected secret). Events
that arrive during login and snapshot are held and applied after the snapshot, so a Hangup seen meanwhile
is not undone by an older snapshot entry. Health goes to intake as ``AdapterStatus``.

What the events mean is not decided here: a :class:`LinkListener` (the bridge) gets every message, each
event in order, and the snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from telephony.ami.client import AmiConnection
from telephony.ami.config import AmiConfig
from telephony.ami.errors import AmiConnectionError, AmiError, AmiLoginError, AmiTimeoutError
from telephony.ami.framing import AmiMessage
from telephony.events import AdapterStatus, TelephonyEvent, utc_now
from telephony.ports import EventSink

log = logging.getLogger(__name__)


class LinkListener(Protocol):
    def on_message(self, msg: AmiMessage) -> None:
        """Every message as it arrives, also while held for a resync (replies to actions wait on these)."""

    def on_event(self, msg: AmiMessage) -> None:
        """One event to apply to the call state, in order, never before the snapshot it follows."""

    def on_snapshot(self, channels: Sequence[AmiMessage], queues: Sequence[AmiMessage]) -> None:
        """The state after a (re)login: ``CoreShowChannels`` and ``QueueStatus`` items."""

    def on_resynced(self) -> None:
        """The snapshot and the events held during it are applied; the link serves events now."""


class AmiLink:
    def __init__(self, config: AmiConfig, sink: EventSink, listener: LinkListener) -> None:
        self.config = config
        self._sink = sink
        self._listener = listener
        self._conn: AmiConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        self._healthy: bool | None = None
        self.status_detail = ""
        self.last_error: AmiError | None = None
        self._resyncing = False
        self._held_events: list[AmiMessage] = []
        self._connected_hooks: list[Callable[[], Awaitable[object]]] = []
        self._hook_tasks: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def connection(self) -> AmiConnection | None:
        """The current connection if it is open and resynced, else None."""
        conn = self._conn
        if conn is None or not conn.is_open or not self._connected.is_set():
            return None
        return conn

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._stopping.clear()
        self._runner = asyncio.create_task(self._run(), name="ami-bridge")

    async def wait_connected(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError as exc:
            if self.last_error is not None:
                raise self.last_error from exc
            raise AmiTimeoutError(f"AMI not connected within {timeout} s") from exc

    def add_connected_hook(self, hook: Callable[[], Awaitable[object]]) -> None:
        self._connected_hooks.append(hook)

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
        for task in list(self._hook_tasks):
            task.cancel()
        for task in list(self._hook_tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._hook_tasks.clear()
        self.report(False, "AMI bridge stopped")

    def emit(self, events: Sequence[TelephonyEvent]) -> None:
        for event in events:
            try:
                self._sink(event)
            except Exception:
                # The sink belongs to intake; its failure must not stop the events of the other calls.
                log.exception("AMI event sink failed on %r", event)

    def report(self, healthy: bool, detail: str) -> None:
        if self._healthy == healthy and self.status_detail == detail:
            return
        self._healthy, self.status_detail = healthy, detail
        (log.info if healthy else log.warning)("AMI adapter %s: %s", "up" if healthy else "down", detail)
        self.emit([AdapterStatus(self.config.adapter_name, healthy, detail, at=utc_now())])

    def _on_message(self, msg: AmiMessage) -> None:
        self._listener.on_message(msg)
        if self._resyncing:
            self._held_events.append(msg)
            return
        self._listener.on_event(msg)

    def _release_held(self) -> None:
        self._resyncing = False
        held, self._held_events = self._held_events, []
        for msg in held:
            self._listener.on_event(msg)

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
                self.report(False, f"cannot connect to {cfg.host}:{cfg.port}: {exc}")
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
            self.report(
                False,
                f"{exc} — check the AMI secret in manager.conf; retrying in {cfg.login_failure_backoff_s:.0f} s",
            )
            await conn.close("login rejected")
            self._release_held()
            return cfg.login_failure_backoff_s, False
        except AmiError as exc:
            self.last_error = exc
            self.report(False, f"AMI login failed: {exc}")
            await conn.close("login failed")
            self._release_held()
            return cfg.backoff(1), False
        try:
            try:
                channels = await conn.send_action("CoreShowChannels", timeout=cfg.action_timeout_s)
                queues = await conn.send_action("QueueStatus", timeout=cfg.action_timeout_s)
            except AmiError as exc:
                self.last_error = exc
                self.report(False, f"AMI resync failed: {exc}")
                await conn.close("resync failed")
                return cfg.backoff(1), False
            self.last_error = None
            self._connected.set()
            self.report(True, f"connected to {cfg.host}:{cfg.port} as {cfg.username}")
            self._listener.on_snapshot(channels.items, queues.items)
        finally:
            self._release_held()
        self._listener.on_resynced()
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
            self.report(False, f"AMI connection lost: {reason}")
        return cfg.backoff(1), True

    @staticmethod
    async def _run_hook(hook: Callable[[], Awaitable[object]]) -> None:
        try:
            await hook()
        except Exception:
            # The hook belongs to intake (membership resync); its failure must not stop the AMI session.
            log.exception("AMI connected hook %r failed", hook)

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
