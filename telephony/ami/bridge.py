"""The AMI bridge: keeps a logged-in AMI session to Asterisk, turns its events into telephony events for
intake, and carries out intake's commands (redirect to a desk queue, media fork, queue membership, hangup).

While the link is down Asterisk's dialplan still queues every emergency call by number; the bridge reports
``AdapterStatus(healthy=False)``, reconnects with exponential backoff, and on reconnect resyncs from
``CoreShowChannels`` + ``QueueStatus`` so calls that started (or ended) meanwhile are not lost.

The bridge is the facade intake talks to (:class:`intake.pbx.PbxBridge`); the work is done by its parts:

- :class:`~telephony.ami.link.AmiLink` — connection, login, snapshot, keepalive, reconnect loop, health;
- :class:`~telephony.ami.actions.AmiActions` — actions sent to Asterisk and the events that answer them;
- :class:`~telephony.ami.queues.QueueCommands` — desk queues: redirect, priority, membership;
- :class:`~telephony.ami.forks.MediaForks` — the caller-audio fork and keeping it up;
- :class:`~telephony.ami.tracker.AmiCallTracker` — the pure state machine from AMI events to call events.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from telephony.ami.actions import AmiActions
from telephony.ami.client import ActionResult
from telephony.ami.config import AmiConfig, MediaForkResult, PriorityResult, RedirectResult
from telephony.ami.errors import AmiError
from telephony.ami.forks import MediaForks
from telephony.ami.framing import AmiMessage
from telephony.ami.link import AmiLink
from telephony.ami.members import QueueMemberState
from telephony.ami.queues import QueueCommands
from telephony.ami.tracker import AmiCallTracker
from telephony.events import CallEnded, TelephonyEvent
from telephony.ports import EventSink

__all__ = ["AmiBridge", "AmiConfig", "MediaForkResult", "PriorityResult", "RedirectResult"]

log = logging.getLogger(__name__)


class AmiBridge:
    def __init__(self, config: AmiConfig, sink: EventSink) -> None:
        self.config = config
        self.tracker = AmiCallTracker(
            emergency_context=config.emergency_context, fork_endpoint=config.fork_endpoint
        )
        self.link = AmiLink(config, sink, self)
        self.actions = AmiActions(self.link)
        self.queues = QueueCommands(config, self.tracker, self.actions)
        self.forks = MediaForks(config, self.tracker, self.actions, self.link)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start connecting in the background; returns at once (intake runs even while Asterisk is down)."""
        await self.link.start()

    async def wait_connected(self, timeout: float) -> None:
        """Wait until logged in and resynced; raises the last connect/login error on timeout."""
        await self.link.wait_connected(timeout)

    async def stop(self) -> None:
        await self.link.stop()
        await self.forks.stop()

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def last_error(self) -> AmiError | None:
        return self.link.last_error

    def add_connected_hook(self, hook: Callable[[], Awaitable[object]]) -> None:
        """Run ``hook`` (in the background) after every login + resync, e.g. to put intake's desk
        membership back after a reconnect or an Asterisk restart."""
        self.link.add_connected_hook(hook)

    def channel_for(self, call_ref: str) -> str | None:
        """The Asterisk channel of a call this bridge follows (commands take channels, events carry refs)."""
        call = self.tracker.calls.get(call_ref)
        return call.channel if call is not None else None

    # ------------------------------------------------------------------ commands

    async def redirect_to_queue(self, channel: str, desk_number: str, priority: int = 0) -> RedirectResult:
        return await self.queues.redirect_to_queue(channel, desk_number, priority)

    async def change_priority(self, channel: str, desk_number: str, priority: int) -> PriorityResult:
        return await self.queues.change_priority(channel, desk_number, priority)

    async def queue_add(
        self, queue: str, interface: str, member_name: str, penalty: int = 0, paused: bool = False
    ) -> ActionResult:
        return await self.queues.queue_add(queue, interface, member_name, penalty, paused)

    async def queue_pause(self, queue: str, interface: str, paused: bool, reason: str = "") -> ActionResult:
        return await self.queues.queue_pause(queue, interface, paused, reason)

    async def queue_remove(self, queue: str, interface: str) -> ActionResult:
        return await self.queues.queue_remove(queue, interface)

    def members(self, queue: str | None = None) -> list[QueueMemberState]:
        return self.queues.members(queue)

    def is_ready_member(self, queue: str, interface: str) -> bool:
        return self.queues.is_ready_member(queue, interface)

    async def originate_media_fork(self, channel: str) -> MediaForkResult:
        return await self.forks.originate(channel)

    async def hangup(self, channel: str) -> ActionResult:
        self.tracker.note_hangup(channel)
        try:
            return await self.actions.run("Hangup", [("Channel", channel)])
        except AmiError:
            self.tracker.note_hangup(channel, requested=False)
            raise

    async def ping(self) -> ActionResult:
        return await self.actions.run("Ping", [])

    async def send_action(self, action: str, fields: Sequence[tuple[str, str]] = ()) -> ActionResult:
        """Any other AMI action (``QueueStatus``, ``QueueSummary`` for supervisor views); list actions
        return their events in ``ActionResult.items``."""
        return await self.actions.run(action, fields)

    # ------------------------------------------------------------------ what the link delivers

    def on_message(self, msg: AmiMessage) -> None:
        self.actions.offer(msg)

    def on_event(self, msg: AmiMessage) -> None:
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
        self._calls_ended(events)
        if fork_spied is not None:
            self.forks.fork_hung_up(msg.value("Channel"), fork_spied, msg.value("Cause"))
        self.link.emit(events)

    def on_snapshot(self, channels: Sequence[AmiMessage], queues: Sequence[AmiMessage]) -> None:
        resynced = self.tracker.resync(channels, queues)
        self._calls_ended(resynced)
        self.link.emit(resynced)

    def on_resynced(self) -> None:
        self.forks.resume()

    def _calls_ended(self, events: Sequence[TelephonyEvent]) -> None:
        for event in events:
            if isinstance(event, CallEnded):
                self.forks.call_ended(event.call_ref)
