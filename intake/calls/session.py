"""A call's working state on the node that holds its media, the registry of those calls, and the small
pure rules every collaborator of the call service shares."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from intake.domain import Call, CallTriage, Location, TranscriptSegment
from intake.ports import Clock, FlushDone
from routing.acd import is_front
from routing.types import Scored, TriageDecision
from routing.vocabulary import Agency, DeskCode, IncidentType
from telephony.events import TelephonyEvent
from transcription.events import TranscriptEvent, TranscriptFinal

log = logging.getLogger(__name__)

# How long an ended call waits for its last transcript segments: as long as the decoder makes progress (no
# progress for FLUSH_STALL_S gives up), at most FLUSH_BASE_S plus FLUSH_PER_BACKLOG_S per second of audio the
# decoder still held when the call ended. A final that comes even later is still stored (late finals).
FLUSH_STALL_S = 10.0
FLUSH_BASE_S = 20.0
FLUSH_PER_BACKLOG_S = 3.0
RECENT_REFS = 2000  # ended calls remembered by call_ref, for transcript segments that arrive after them

Pending = tuple[FlushDone, Callable[[], float]]


def wait_flushed(
    pending: Sequence[Pending],
    backlog_s: float,
    clock: Clock,
    stall_s: float = FLUSH_STALL_S,
    base_s: float = FLUSH_BASE_S,
    per_backlog_s: float = FLUSH_PER_BACKLOG_S,
) -> bool:
    """Wait for every (flush event, progress reading) pair: as long as some progress reading grows within
    ``stall_s``, bounded by ``base_s + per_backlog_s * backlog_s`` in all (``clock``'s monotonic time).
    True when all flushed. Blocking: run it in a thread."""
    start = clock.monotonic()
    limit = start + base_s + per_backlog_s * max(0.0, backlog_s)
    last_progress = [progress() for _, progress in pending]
    last_change = start
    while True:
        waiting = [i for i, (event, _) in enumerate(pending) if not event.is_set()]
        if not waiting:
            return True
        now = clock.monotonic()
        if now >= limit or now - last_change >= stall_s:
            return False
        pending[waiting[0]][0].wait(min(0.5, max(0.0, limit - now)))
        for i, (_, progress) in enumerate(pending):
            reading = progress()
            if reading != last_progress[i]:
                last_progress[i], last_change = reading, clock.monotonic()


def new_call_id() -> str:
    return uuid.uuid4().hex


def urgent_front(decision: TriageDecision | None) -> bool:
    """Suspected cardiac arrest or people trapped: the front of the queue (routing's ACD rule)."""
    return decision is not None and is_front(decision)


def media_lease(call_id: str) -> str:
    """The Redis lease a node renews while a call's media still arrives."""
    return f"media:{call_id}"


def segment_of(event: TranscriptFinal) -> TranscriptSegment:
    return TranscriptSegment(
        leg=event.leg,
        text=event.text,
        start_s=event.start_s,
        end_s=event.end_s,
        confidence=event.confidence,
        language=event.language,
        words=tuple((w.text, w.start_s, w.end_s, w.confidence) for w in event.words),
    )


def call_triage_from_decision(decision: TriageDecision) -> CallTriage:
    """What triage decided, in the form the call record keeps."""
    return CallTriage(
        incident_type=decision.incident_type.value.value,
        priority=decision.priority.value,
        tcpr=decision.tcpr.value,
        agencies=tuple(a.value.value for a in decision.agencies),
        rules_version=decision.rules_version,
        source="triage",
        unsure=decision.unsure,
    )


def sticky_decision_from_record(call: Call) -> TriageDecision | None:
    """The decision a call was worked with, rebuilt from its stored record (migration 0002 keeps it), so
    the sticky rules (routing.safety.carry_forward: suspected cardiac arrest stays raised, the priority is
    never lowered during a call) hold when another node or a restarted process takes the call over. The
    record already follows the incident, so a call taker's own correction there is what is carried."""
    stored = call.triage
    if stored is None:
        return None
    try:
        incident_type = IncidentType(stored.incident_type)
    except ValueError:
        incident_type = IncidentType.UNKNOWN
    agencies = tuple(Scored(Agency(a), 1.0) for a in stored.agencies if a in Agency.__members__.values())
    return TriageDecision(
        agencies=agencies,
        incident_type=Scored(incident_type, 1.0),
        priority=Scored(stored.priority, 1.0),
        tcpr=Scored(stored.tcpr, 1.0),
        location=None,
        desk=call.desk or DeskCode.D112,
        unsure=stored.unsure,
        rules_version=stored.rules_version,
        notes=("restored from the stored call record",),
    )


@dataclass
class CallSession:
    """Per-call working state on the node that holds the call's media. A cache of the database record,
    never the only copy of anything that matters."""

    call: Call
    inbox: asyncio.Queue[TelephonyEvent | TranscriptEvent] = field(default_factory=asyncio.Queue)
    finals: list[str] = field(default_factory=list)
    partial: str = ""
    decision: TriageDecision | None = None
    # updated_at of the incident the call last followed: an older read of it (a retriage that read the
    # incident before a call taker's correction landed) never overwrites what the call already shows.
    incident_seen_at: datetime | None = None
    last_partial_sent: float | None = None  # monotonic time of the last partial published
    speech_s: float = 0.0
    worker: asyncio.Task[None] | None = None
    legs_open: set[str] = field(default_factory=set)
    flushing: list[Pending] = field(default_factory=list)  # close_leg() completions: finals still to come
    flush_backlog_s: float = 0.0
    offered_at: float | None = None  # monotonic time the call was offered to call.taker_id
    no_transcript: bool = False
    last_media_at: float | None = None  # monotonic time of the caller's last audio frame
    end_pending: bool = False  # the adapter has already ended the call (its CallEnded waits in the inbox)
    locations: list[Location] = field(default_factory=list)  # every position reported, in arrival order

    @property
    def caller_text(self) -> str:
        return " ".join([*self.finals, self.partial]).strip()

    def deliver(self, event: TelephonyEvent | TranscriptEvent) -> None:
        """Into the call's ordered stream of events (handled by its worker)."""
        self.inbox.put_nowait(event)


class SessionRegistry:
    """The calls this node holds, found by call_ref, call id or an alias (media fork, PBX channel); and the
    call_refs of calls already let go, so a late transcript segment still finds its call."""

    def __init__(self) -> None:
        self._sessions: dict[str, CallSession] = {}  # by call_ref
        self._refs_by_id: dict[str, str] = {}
        self._aliases: dict[str, str] = {}  # media-fork call_ref / channel -> the call's call_ref
        self.fork_refs: set[str] = set()  # call_refs of media-fork legs (PBX mode)
        # call_ref (and media-fork aliases) -> call id of calls already let go
        self.recent_refs: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[CallSession]:
        return list(self._sessions.values())

    def by_ref(self, call_ref: str) -> CallSession | None:
        return self._sessions.get(self.resolve(call_ref))

    def by_id(self, call_id: str) -> CallSession | None:
        ref = self._refs_by_id.get(call_id)
        return self._sessions.get(ref) if ref else None

    def holds(self, call_id: str) -> bool:
        return call_id in self._refs_by_id

    def resolve(self, call_ref: str) -> str:
        return self._aliases.get(call_ref, call_ref)

    def add(self, session: CallSession) -> None:
        call = session.call
        self._sessions[call.call_ref] = session
        self._refs_by_id[call.id] = call.call_ref
        if call.channel:
            self._aliases[call.channel] = call.call_ref

    def rekey(self, session: CallSession, old_id: str) -> None:
        """The session now works an earlier record of the same call (resumed): found by that record's id."""
        self._refs_by_id.pop(old_id, None)
        self._refs_by_id[session.call.id] = session.call.call_ref

    def add_fork(self, fork_ref: str, of_ref: str) -> None:
        self._aliases[fork_ref] = self._aliases.get(of_ref, of_ref)
        self.fork_refs.add(fork_ref)

    def end_fork(self, fork_ref: str) -> str | None:
        self.fork_refs.discard(fork_ref)
        return self._aliases.pop(fork_ref, None)

    def forget(self, session: CallSession) -> None:
        call = session.call
        self._sessions.pop(call.call_ref, None)
        self._refs_by_id.pop(call.id, None)
        self._remember_ended(call.call_ref, call.id)
        for alias, ref in list(self._aliases.items()):
            if ref == call.call_ref:
                del self._aliases[alias]
                self._remember_ended(alias, call.id)

    def _remember_ended(self, call_ref: str, call_id: str) -> None:
        self.recent_refs[call_ref] = call_id
        while len(self.recent_refs) > RECENT_REFS:
            del self.recent_refs[next(iter(self.recent_refs))]


class BackgroundTasks:
    """Work started from a callback that must not wait for it (ringing a phone, a wrap-up timer), kept
    referenced until done and cancelled at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[None]] = set()

    def start(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def pending(self) -> list[asyncio.Future[None]]:
        return list(self._tasks)
