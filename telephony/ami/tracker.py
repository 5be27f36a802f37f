"""The call state machine of the AMI bridge: AMI messages in, wire-independent telephony events out.

Pure: no sockets, no clock of its own (``now`` is injected). :class:`AmiCallTracker` follows the caller
channels in the emergency context by Asterisk ``Uniqueid`` (the ``call_ref``) and decides how each call
ended only when its ``Hangup`` arrives, because the events before it can mislead:

* A ``Redirect`` out of a queue makes app_queue report ``QueueCallerAbandon`` for the old queue although
  the caller is still on the line and about to join another queue. An abandon is therefore only *pending*
  until the hangup, and a later ``QueueCallerJoin`` clears it. A redirect the bridge itself requested
  (:meth:`AmiCallTracker.note_redirect`) also marks the next abandon as ours.
* The media fork the bridge originates (``SIP/intake`` running ``ChanSpy``) is a channel of its own; it is
  recognised by its channel name (the fork endpoint), the ``IZS_FORK_OF``/``X-IZS-Fork-Of`` variables and
  ``ChanSpyStart``, and never becomes a call.

Every :class:`~telephony.events.CallEnded` carries in ``detail`` the events that decided its reason.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from telephony.ami.framing import AmiMessage
from telephony.ami.members import QueueMemberMirror, QueueMemberState
from telephony.events import (
    CallAnswered,
    CallConnected,
    CallEnded,
    CallOffered,
    CallQueued,
    CallSource,
    EndReason,
    TelephonyEvent,
    utc_now,
)

log = logging.getLogger(__name__)

FORK_VARIABLE = "IZS_FORK_OF"
FORK_HEADER = "X-IZS-Fork-Of"
_UNKNOWN = frozenset({"", "<unknown>"})
_STATE_UP = "6"
# Q.850 causes on the caller's own channel that are not a plain "caller went away".
_REJECT_CAUSES = frozenset({"17", "21"})  # user busy, call rejected
_TIMEOUT_CAUSES = frozenset({"18", "19"})  # no user responding, no answer
_ENDED_MEMORY = 4096


def _known(value: str | None) -> str | None:
    return None if value is None or value in _UNKNOWN else value


def parse_duration(value: str | None) -> float | None:
    """``CoreShowChannel`` ``Duration`` (``HH:MM:SS``, hours may exceed 24) in seconds; None if unreadable."""
    if not value:
        return None
    parts = value.strip().split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    hours, minutes, seconds = (int(p) for p in parts)
    return float(hours * 3600 + minutes * 60 + seconds)


def interface_of(channel: str) -> str:
    """``SIP/taker1-00000031`` -> ``SIP/taker1`` (the queue member interface)."""
    base, sep, suffix = channel.rpartition("-")
    return base if sep and suffix and all(c in "0123456789abcdefABCDEF" for c in suffix) else channel


@dataclass(slots=True)
class TrackedCall:
    call_ref: str
    channel: str
    dialled: str
    caller: str
    queue: str | None = None
    queue_priority: str | None = None
    taker: str | None = None
    taker_channel: str | None = None
    answered: bool = False
    abandoned_from: str | None = None  # queue of a QueueCallerAbandon not (yet) followed by a join
    abandon_hold_s: str = ""
    left_queue_unanswered: str | None = None
    agent_complete_reason: str | None = None
    hangup_requested_by: str | None = None  # "caller" / "taker" (HangupRequest from the channel driver)
    hangup_by_intake: bool = False
    redirect_pending: bool = False
    history: list[str] = field(default_factory=list)


def end_reason(call: TrackedCall, cause: str) -> tuple[EndReason, str]:
    """How a call ended, decided at its Hangup from everything seen of it (``cause``: the caller channel's
    Q.850 cause); the second value is the evidence, for ``CallEnded.detail``."""
    if call.taker is not None:
        if call.hangup_by_intake:
            return EndReason.TAKER_HANGUP, "hangup requested by intake over AMI"
        if call.agent_complete_reason == "caller":
            return EndReason.CALLER_HANGUP, "AgentComplete Reason=caller"
        if call.agent_complete_reason == "agent":
            return EndReason.TAKER_HANGUP, f"AgentComplete Reason=agent ({call.taker})"
        if call.hangup_requested_by == "taker":
            return EndReason.TAKER_HANGUP, f"HangupRequest from {call.taker_channel}"
        if call.hangup_requested_by == "caller":
            return EndReason.CALLER_HANGUP, "HangupRequest from the caller's channel"
        return EndReason.CALLER_HANGUP, "connected call ended without AgentComplete/HangupRequest"
    if call.abandoned_from is not None:
        return (
            EndReason.ABANDONED,
            f"QueueCallerAbandon {call.abandoned_from} after {call.abandon_hold_s or '?'} s in queue",
        )
    if call.hangup_by_intake:
        return EndReason.TAKER_HANGUP, "hangup requested by intake over AMI before a call taker answered"
    if cause in _REJECT_CAUSES:
        return EndReason.REJECTED, f"unanswered, cause {cause}"
    if cause in _TIMEOUT_CAUSES:
        return EndReason.TIMEOUT, f"unanswered, cause {cause}"
    if call.left_queue_unanswered is not None and call.hangup_requested_by is None:
        return EndReason.TIMEOUT, f"left {call.left_queue_unanswered} unanswered (queue timeout)"
    return EndReason.ABANDONED, "caller hung up before a call taker answered"


class AmiCallTracker:
    def __init__(
        self,
        *,
        emergency_context: str = "emergency",
        fork_endpoint: str = "SIP/intake",
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.emergency_context = emergency_context
        self.fork_endpoint = fork_endpoint
        self._now = now
        self._calls: dict[str, TrackedCall] = {}
        self._by_channel: dict[str, str] = {}
        self._forks: dict[str, str] = {}  # fork channel -> spied caller channel ("" until known)
        self._ended: OrderedDict[str, None] = OrderedDict()
        self.queue_members = QueueMemberMirror()

    # ------------------------------------------------------------------ queries

    @property
    def calls(self) -> dict[str, TrackedCall]:
        return dict(self._calls)

    @property
    def forks(self) -> dict[str, str]:
        """Media-fork channels seen, mapped to the caller channel they spy on."""
        return dict(self._forks)

    def members(self, queue: str | None = None) -> list[QueueMemberState]:
        """Queue members as last reported by the PBX (all queues, or one)."""
        return self.queue_members.members(queue)

    def member(self, queue: str, interface: str) -> QueueMemberState | None:
        return self.queue_members.member(queue, interface)

    def call_for_channel(self, channel: str) -> TrackedCall | None:
        ref = self._by_channel.get(channel)
        return self._calls.get(ref) if ref else None

    def is_fork_channel(self, channel: str) -> bool:
        return channel in self._forks or channel.startswith(self.fork_endpoint + "-")

    # ------------------------------------------------------------------ notes from the bridge's own actions

    def note_redirect(self, channel: str) -> None:
        call = self.call_for_channel(channel)
        if call is not None:
            call.redirect_pending = True
            call.history.append("Redirect requested by intake")

    def note_redirect_failed(self, channel: str) -> None:
        call = self.call_for_channel(channel)
        if call is not None:
            call.redirect_pending = False

    def note_hangup(self, channel: str, requested: bool = True) -> None:
        call = self.call_for_channel(channel)
        if call is not None:
            call.hangup_by_intake = requested

    def note_fork(self, fork_channel: str, spied_channel: str) -> None:
        self._forks[fork_channel] = spied_channel

    def note_action(self, action: AmiMessage) -> None:
        """Let the tracker see an action the client sent (recorded sessions, or a client other than ours)."""
        name = (action.get("Action") or "").lower()
        channel = action.value("Channel")
        if name == "redirect":
            self.note_redirect(channel)
        elif name == "hangup":
            self.note_hangup(channel)

    # ------------------------------------------------------------------ live events

    def feed(self, msg: AmiMessage) -> list[TelephonyEvent]:
        name = msg.event
        if name is None:
            return []
        handler = getattr(self, "_on_" + name.lower(), None)
        out: list[TelephonyEvent] = []
        uniqueid = msg.get("Uniqueid")
        channel = msg.value("Channel")
        if (
            uniqueid
            and uniqueid not in self._calls
            and uniqueid not in self._ended
            and msg.get("Context") == self.emergency_context
            and name not in ("Newchannel", "CoreShowChannel")
            and not self.is_fork_channel(channel)
        ):
            # We did not see this channel's Newchannel (we connected mid-call): offer it now rather than lose it.
            out.extend(self._offer(msg, history=f"first seen in {name}"))
        if handler is not None:
            out.extend(handler(msg))
        return out

    def _offer(self, msg: AmiMessage, history: str, at: datetime | None = None) -> list[TelephonyEvent]:
        uniqueid = msg.value("Uniqueid")
        channel = msg.value("Channel")
        exten = msg.value("Exten")
        call = TrackedCall(
            call_ref=uniqueid,
            channel=channel,
            dialled=exten if exten not in ("", "s") else "",
            caller=_known(msg.get("CallerIDNum")) or "",
        )
        call.history.append(history)
        self._calls[uniqueid] = call
        self._by_channel[channel] = uniqueid
        headers = {"Uniqueid": uniqueid}
        if linked := msg.get("Linkedid"):
            headers["Linkedid"] = linked
        return [
            CallOffered(
                call_ref=uniqueid,
                dialled=call.dialled,
                caller=call.caller,
                source=CallSource.AMI,
                at=at or self._now(),
                channel=channel,
                caller_name=_known(msg.get("CallerIDName")),
                headers=headers,
            )
        ]

    def _tracked(self, msg: AmiMessage) -> TrackedCall | None:
        uniqueid = msg.get("Uniqueid")
        if uniqueid and uniqueid in self._calls:
            return self._calls[uniqueid]
        return None

    def _on_newchannel(self, msg: AmiMessage) -> list[TelephonyEvent]:
        channel = msg.value("Channel")
        uniqueid = msg.value("Uniqueid")
        if self.is_fork_channel(channel):
            self._forks.setdefault(channel, "")
            log.info("AMI media fork channel %s (%s) is not a call", channel, uniqueid)
            return []
        if msg.get("Context") != self.emergency_context or not uniqueid:
            return []
        if uniqueid in self._calls or uniqueid in self._ended:
            return []
        return self._offer(msg, history="Newchannel")

    def _on_varset(self, msg: AmiMessage) -> list[TelephonyEvent]:
        variable = msg.value("Variable")
        value = msg.value("Value")
        channel = msg.value("Channel")
        if variable == FORK_VARIABLE or (
            variable.upper().startswith("SIPADDHEADER") and value.startswith(FORK_HEADER + ":")
        ):
            spied = value.split(":", 1)[1].strip() if variable != FORK_VARIABLE else value
            self._forks[channel] = spied
            return []
        call = self._tracked(msg)
        if call is None:
            return []
        if variable == "QUEUE_PRIO":
            call.queue_priority = value
        elif variable.lstrip("_") == "IZS_DIALLED" and not call.dialled:
            call.dialled = value
        return []

    def _on_chanspystart(self, msg: AmiMessage) -> list[TelephonyEvent]:
        self._forks[msg.value("SpyerChannel")] = msg.value("SpyeeChannel")
        return []

    def _on_originateresponse(self, msg: AmiMessage) -> list[TelephonyEvent]:
        channel = msg.value("Channel")
        if channel and self.is_fork_channel(channel):
            self._forks.setdefault(channel, "")
        return []

    def _on_newstate(self, msg: AmiMessage) -> list[TelephonyEvent]:
        call = self._tracked(msg)
        if call is None or call.answered:
            return []
        if msg.get("ChannelState") == _STATE_UP or msg.get("ChannelStateDesc") == "Up":
            call.answered = True
            return [CallAnswered(call.call_ref, at=self._now(), by=call.taker or "pbx")]
        return []

    def _on_queuecallerjoin(self, msg: AmiMessage) -> list[TelephonyEvent]:
        call = self._tracked(msg)
        if call is None:
            return []
        queue = msg.value("Queue")
        if call.abandoned_from is not None:
            call.history.append(f"QueueCallerAbandon {call.abandoned_from} voided by QueueCallerJoin {queue}")
        call.abandoned_from = None
        call.left_queue_unanswered = None
        call.redirect_pending = False  # the redirect has landed; a later abandon is a real one
        call.queue = queue
        call.history.append(f"QueueCallerJoin {queue}")
        position = msg.get("Position")
        return [
            CallQueued(
                call.call_ref,
                queue=queue,
                position=int(position) if position and position.isdigit() else None,
                at=self._now(),
            )
        ]

    def _on_queuecallerabandon(self, msg: AmiMessage) -> list[TelephonyEvent]:
        call = self._tracked(msg)
        if call is None:
            return []
        queue = msg.value("Queue")
        if call.redirect_pending:
            # app_queue reports our own Redirect out of the queue as an abandon.
            call.redirect_pending = False
            call.history.append(f"QueueCallerAbandon {queue} caused by intake's Redirect, ignored")
            return []
        call.abandoned_from = queue
        call.abandon_hold_s = msg.value("HoldTime")
        call.history.append(f"QueueCallerAbandon {queue} after {call.abandon_hold_s or '?'} s")
        return []

    def _on_queuecallerleave(self, msg: AmiMessage) -> list[TelephonyEvent]:
        call = self._tracked(msg)
        if call is not None and call.taker is None:
            call.left_queue_unanswered = msg.value("Queue")
        return []

    def _on_agentconnect(self, msg: AmiMessage) -> list[TelephonyEvent]:
        call = self._tracked(msg)
        if call is None:
            return []
        interface = msg.value("Interface")
        taker = msg.get("MemberName") or interface or interface_of(msg.value("DestChannel"))
        call.taker = taker
        call.taker_channel = msg.get("DestChannel")
        call.abandoned_from = None
        call.left_queue_unanswered = None
        call.redirect_pending = False
        call.agent_complete_reason = None
        call.history.append(f"AgentConnect {msg.value('Queue')} {taker}")
        return [CallConnected(call.call_ref, taker=taker, at=self._now())]

    def _on_agentcomplete(self, msg: AmiMessage) -> list[TelephonyEvent]:
        call = self._tracked(msg)
        if call is not None:
            call.agent_complete_reason = msg.value("Reason").lower()
            call.history.append(f"AgentComplete Reason={call.agent_complete_reason}")
        return []

    def _on_hanguprequest(self, msg: AmiMessage) -> list[TelephonyEvent]:
        channel = msg.value("Channel")
        call = self.call_for_channel(channel)
        if call is not None:
            call.hangup_requested_by = call.hangup_requested_by or "caller"
            call.history.append("HangupRequest from the caller's channel")
            return []
        for call in self._calls.values():
            if call.taker_channel == channel:
                call.hangup_requested_by = call.hangup_requested_by or "taker"
                call.history.append(f"HangupRequest from the taker's channel {channel}")
        return []

    def _on_rename(self, msg: AmiMessage) -> list[TelephonyEvent]:
        # Masquerades (transfers, pickups) rename channels; commands must use the current name.
        old, new = msg.value("Channel"), msg.value("Newname")
        if old in self._forks:
            self._forks[new] = self._forks.pop(old)
        ref = self._by_channel.pop(old, None)
        if ref is not None and new:
            self._by_channel[new] = ref
            self._calls[ref].channel = new
            self._calls[ref].history.append(f"Rename {old} -> {new}")
        return []

    def _on_queuemember(self, msg: AmiMessage) -> list[TelephonyEvent]:
        self.queue_members.apply(msg)
        return []

    _on_queuememberadded = _on_queuemember
    _on_queuememberstatus = _on_queuemember
    _on_queuememberpause = _on_queuemember
    _on_queuememberpaused = _on_queuemember  # Asterisk < 12 name

    def _on_queuememberremoved(self, msg: AmiMessage) -> list[TelephonyEvent]:
        self.queue_members.remove(msg)
        return []

    def _on_hangup(self, msg: AmiMessage) -> list[TelephonyEvent]:
        channel = msg.value("Channel")
        if channel in self._forks:
            del self._forks[channel]
            return []
        call = self._tracked(msg)
        if call is None:
            return []
        cause = msg.value("Cause")
        cause_txt = msg.value("Cause-txt")
        reason, why = end_reason(call, cause)
        detail = f"{why}; Hangup cause {cause or '?'} ({cause_txt or 'no text'})"
        return [self._end(call, reason, detail)]

    def _end(self, call: TrackedCall, reason: EndReason, detail: str) -> CallEnded:
        self._calls.pop(call.call_ref, None)
        if self._by_channel.get(call.channel) == call.call_ref:
            del self._by_channel[call.channel]
        self._ended[call.call_ref] = None
        while len(self._ended) > _ENDED_MEMORY:
            self._ended.popitem(last=False)
        return CallEnded(call.call_ref, reason, at=self._now(), detail=detail)

    # ------------------------------------------------------------------ resync after (re)connect

    def resync(
        self, channels: Iterable[AmiMessage], queue_status: Iterable[AmiMessage] = ()
    ) -> list[TelephonyEvent]:
        """Reconcile with a ``CoreShowChannels`` / ``QueueStatus`` snapshot taken after (re)connecting.

        Calls that appeared while the link was down are offered (and queued / connected as the snapshot
        shows); calls we tracked that are gone ended while we were away: the ones nobody had answered are
        reported ABANDONED so they get called back, answered ones ERROR (who hung up is unknown).
        """
        live = {m.value("Uniqueid"): m for m in channels if m.get("Uniqueid")}
        now = self._now()

        def created(m: AmiMessage) -> datetime | None:
            # The channel's real creation time, so waits count from the call's arrival, not our reconnect.
            seconds = parse_duration(m.get("Duration"))
            return now - timedelta(seconds=seconds) if seconds is not None else None

        entries: dict[str, AmiMessage] = {}
        queue_status = list(queue_status)
        if any(m.event in ("QueueParams", "QueueMember") for m in queue_status):
            self.queue_members.clear()  # membership may have changed while we were away (Asterisk restart)
        for m in queue_status:
            if m.event == "QueueMember":
                self.queue_members.apply(m)
            elif m.event == "QueueEntry" or m.event is None:
                entries[m.value("Uniqueid") or m.value("Channel")] = m
        bridges: dict[str, list[AmiMessage]] = {}
        for m in live.values():
            if bridge := m.get("BridgeId"):
                bridges.setdefault(bridge, []).append(m)
        out: list[TelephonyEvent] = []
        for ref, call in list(self._calls.items()):
            if ref in live:
                continue
            if call.taker is None:
                reason, why = EndReason.ABANDONED, "unanswered call ended while the AMI link was down"
            else:
                reason, why = (
                    EndReason.ERROR,
                    "answered call ended while the AMI link was down; who hung up is unknown",
                )
            out.append(self._end(call, reason, why + " (absent from CoreShowChannels after reconnect)"))
        for ref, m in live.items():
            channel = m.value("Channel")
            if self.is_fork_channel(channel):
                spied = ""
                if m.value("Application").lower() == "chanspy":
                    spied = m.value("ApplicationData").split(",", 1)[0]
                self._forks[channel] = spied or self._forks.get(channel, "")
                continue
            known = self._calls.get(ref)
            if known is None:
                if m.get("Context") != self.emergency_context or ref in self._ended:
                    continue
                out.extend(self._offer(m, history="found by CoreShowChannels after reconnect", at=created(m)))
                known = self._calls[ref]
            call = known
            entry = entries.get(ref) or entries.get(channel)
            if entry is not None and call.taker is None and call.queue != entry.get("Queue"):
                call.queue = entry.value("Queue")
                position = entry.get("Position")
                out.append(
                    CallQueued(
                        ref,
                        queue=call.queue,
                        position=int(position) if position and position.isdigit() else None,
                        at=self._now(),
                    )
                )
            peers = (
                [p for p in bridges.get(m.value("BridgeId"), []) if p is not m] if m.get("BridgeId") else []
            )
            if call.taker is None and peers:
                taker_channel = peers[0].value("Channel")
                interface = interface_of(taker_channel)
                call.taker = self.queue_members.name_of(interface)
                call.taker_channel = taker_channel
                call.abandoned_from = None
                # The taker's channel was created when the queue rang the phone: the call was answered no
                # earlier than that (the best the snapshot tells).
                out.append(CallConnected(ref, taker=call.taker, at=created(peers[0]) or now))
            if not call.answered and m.get("ChannelState") == _STATE_UP:
                call.answered = True
                out.append(CallAnswered(ref, at=self._now(), by=call.taker or "pbx"))
        return out
