"""What the intake services need from their collaborators, as structural types.

The concrete classes live in :mod:`intake.storage` (database), :mod:`intake.live` (Redis),
:mod:`intake.bus`, :mod:`intake.desks`, :mod:`intake.incidents`, :mod:`transcription.service` and
:mod:`telephony`; the composition root (:mod:`intake.app`) plugs them in. Each port is the slice one
collaborator uses, so a unit test builds that collaborator with small fakes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from intake.bus import LiveEvent
    from intake.calls.session import CallSession
    from intake.desks import Offer
    from intake.domain import (
        Call,
        CallState,
        CallTaker,
        Incident,
        IncidentStatus,
        Location,
        TimelineEntry,
        TranscriptSegment,
    )
    from intake.live import LiveTaker, QueueEntry
    from intake.storage.mapping import User, Webhook, WebhookDelivery
    from routing.acd import TakerState
    from routing.types import TriageDecision, TriageInput
    from routing.vocabulary import Agency, DeskCode, IncidentType
    from transcription.health import RecognitionStatus

JsonObject = dict[str, object]


# --------------------------------------------------------------------------------------- time


class Clock(Protocol):
    """Wall time for records, monotonic time for durations (offers, media freshness, deadlines)."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


# ------------------------------------------------------------------------------- transcription


class FlushDone(Protocol):
    """Set when a closed leg's last words are decoded (a ``threading.Event``)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Transcriber(Protocol):
    def open_leg(
        self,
        call_ref: str,
        leg: str,
        sample_rate: int,
        language_hint: str | None = None,
        country_hint: str | None = None,
    ) -> None: ...

    def feed(self, call_ref: str, leg: str, pcm: bytes) -> object: ...

    def close_leg(self, call_ref: str, leg: str) -> FlushDone: ...

    def backlog_s(self, call_ref: str, leg: str) -> float:
        """Seconds of audio queued for the leg and not decoded yet."""
        ...

    def processed_s(self, call_ref: str, leg: str) -> float:
        """Seconds of the leg's audio the decoder has consumed: grows while it makes progress."""
        ...

    def set_leg_queue(
        self,
        call_ref: str,
        leg: str,
        waiting: bool,
        priority: int = 3,
        waiting_since: float | None = None,
        triaged: bool | None = None,
    ) -> None:
        """Where the caller is (waiting in a queue with its priority, or with a call taker) and whether
        triage has judged them from their own words (None: unchanged): recognition capacity goes to waiting
        callers not yet heard first."""


class Recorder(Protocol):
    """Voice logging (:class:`intake.recording.CallRecorder`): called on the event loop, never blocks."""

    def begin(self, call_id: str) -> None: ...

    def feed(self, call_id: str, leg: str, pcm: bytes, seq: int) -> None: ...

    def end(self, call_id: str, at: datetime | None = None) -> None: ...


class Triager(Protocol):
    """Triage (:class:`routing.triage.Triage`): pure and quick, called on the event loop."""

    def decide(self, inp: TriageInput) -> TriageDecision: ...


# ---------------------------------------------------------------------------------- telephony


class CallControl(Protocol):
    """Commands to whichever adapter holds a call (SIP endpoint in standalone mode, AMI bridge in PBX mode)."""

    async def play_prompt(self, call_ref: str, pcm: bytes, sample_rate: int, loop: bool = True) -> None: ...

    async def connect_to_taker(self, call_ref: str, taker_uri: str, priority: int) -> None: ...

    async def hangup(self, call_ref: str) -> None: ...


class PbxQueueControl(Protocol):
    """What only a PBX adapter can do (:class:`intake.pbx.PbxCallControl`): its own queues and media fork."""

    async def start_media_fork(self, call_ref: str) -> None: ...

    async def move_to_desk(self, call_ref: str, desk: DeskCode, priority: int, front: bool) -> None: ...

    async def set_priority(self, call_ref: str, desk: DeskCode, priority: int, front: bool) -> None: ...


# ------------------------------------------------------------------------------------ storage


class CallReader(Protocol):
    def get_call(self, call_id: str) -> Call: ...

    def find_call_by_ref(self, call_ref: str) -> Call | None: ...


class CallWriter(Protocol):
    def save_call(self, call: Call) -> None: ...

    def append_transcript(self, call_id: str, segment: TranscriptSegment) -> int: ...

    def settle_refused_attempts(self, call_ref: str, taken_as: str, at: datetime) -> list[Call]: ...


class CallStore(CallReader, CallWriter, Protocol):
    """The call records (:class:`intake.storage.repository.Repository`), blocking: run off the loop."""

    def calls_in_states(self, states: Iterable[CallState]) -> list[Call]: ...


class CallListing(Protocol):
    """Stored calls, filtered and paged (:meth:`intake.storage.calls.CallStore.list_calls`)."""

    def list_calls(
        self,
        state: CallState | str | Collection[CallState | str] | None = None,
        desk: DeskCode | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        abandoned_uncalled: bool = False,
        limit: int = 50,
        offset: int = 0,
        with_transcript: bool = False,
        scope_desks: Collection[str] | None = None,
        scope_taker: str | None = None,
    ) -> tuple[list[Call], int]: ...


class TakerRecords(Protocol):
    """The call takers' stored records (who they are, desks, languages, phone)."""

    def upsert_taker(self, taker: CallTaker) -> None: ...

    def get_taker(self, taker_id: str) -> CallTaker: ...

    def list_takers(self) -> list[CallTaker]: ...


class TakingRecords(CallListing, Protocol):
    """What taking calls reads (:class:`intake.taking.CallTakingService`)."""

    def get_taker(self, taker_id: str) -> CallTaker: ...


class IncidentReader(Protocol):
    def get_incident(self, incident_id: str) -> Incident: ...


class TimelineWriter(Protocol):
    def append_timeline(
        self,
        incident_id: str,
        actor: str,
        action: str,
        data: Mapping[str, object] | None = None,
        at: datetime | None = None,
    ) -> TimelineEntry: ...


class ReportRecords(CallListing, IncidentReader, TimelineWriter, Protocol):
    """What statistics and follow-ups read and write (:class:`intake.reports.ReportService`)."""

    def get_call(self, call_id: str) -> Call: ...

    def mark_called_back(self, call_id: str, by: str, at: datetime | None = None) -> Call: ...

    def list_incidents(
        self,
        status: IncidentStatus | str | Collection[IncidentStatus | str] | None = None,
        agency: Agency | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
        with_timeline: bool = False,
    ) -> tuple[list[Incident], int]: ...


class ConsoleRecords(TimelineWriter, Protocol):
    """What a console's restore reads from the database, and where a replay is put on record."""

    def calls_in_states(self, states: Iterable[CallState]) -> list[Call]: ...


class AdminRecords(Protocol):
    """Stored users and webhooks (:class:`intake.admin.AdminService`)."""

    def create_user(self, username: str, password_hash: str, role: str, active: bool = True) -> User: ...

    def get_user(self, username: str) -> User | None: ...

    def list_users(self) -> list[User]: ...

    def update_user(
        self,
        username: str,
        *,
        password_hash: str | None = None,
        role: str | None = None,
        active: bool | None = None,
    ) -> User: ...

    def revoke_tokens(self, username: str) -> User: ...

    def create_webhook(
        self, url: str, secret: str, events: Iterable[str], active: bool = True
    ) -> Webhook: ...

    def list_webhooks(self, active_only: bool = False) -> list[Webhook]: ...

    def delete_webhook(self, webhook_id: int) -> None: ...

    def list_deliveries(
        self, webhook_id: int | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[WebhookDelivery]: ...


class RecentCalls(Protocol):
    """Calls offered recently (to match an AML SMS to its call)."""

    def get_call(self, call_id: str) -> Call: ...

    def list_calls(self, *, since: datetime | None = None, limit: int = 50) -> tuple[list[Call], int]: ...


class Journal(Protocol):
    """The node-local journal of call records written while the database is away."""

    def record(self, call: Call) -> None: ...

    def forget(self, call_id: str) -> None: ...

    def pending(self) -> list[Call]: ...

    def drain(self, repo: CallWriter) -> tuple[int, int]: ...


# --------------------------------------------------------------------------------- live state


class Publisher(Protocol):
    """The live event bus (:class:`intake.bus.EventBus`)."""

    async def publish(self, event: LiveEvent) -> None: ...


class ActiveCalls(Protocol):
    """Live calls listed in Redis for every node's consoles."""

    async def put_active_call(self, call_id: str, summary: dict[str, object]) -> None: ...

    async def remove_active_call(self, call_id: str) -> None: ...


class NodeChannel(Protocol):
    """Commands between nodes (Redis pub/sub) and their replies (a per-request list)."""

    async def publish(self, topic: str, event: dict[str, object]) -> None: ...

    def subscribe(self, topic: str) -> AsyncIterator[JsonObject]: ...

    async def subscriber_count(self, topic: str) -> int: ...

    async def send_reply(self, reply_to: str, reply: dict[str, object], ttl_ms: int) -> None: ...

    async def wait_reply(self, reply_to: str, timeout_s: float) -> JsonObject | None: ...


class Leases(Protocol):
    async def acquire_lease(self, name: str, holder: str, ttl_ms: int) -> bool: ...

    async def lease_holder(self, name: str) -> str | None: ...


class ClusterState(ActiveCalls, Leases, Protocol):
    """What cluster membership reads and writes in Redis."""

    async def subscriber_count(self, topic: str) -> int: ...


class TakerStates(Protocol):
    async def taker_states(self) -> dict[str, dict[str, object]]: ...

    async def set_taker_state(
        self, taker_id: str, state: str, since: datetime, data: dict[str, object] | None = None
    ) -> None: ...


class QueueState(Protocol):
    async def queued_desk(self, call_id: str) -> str | None: ...


class LiveTakers(TakerStates, Protocol):
    async def live_takers(self) -> dict[str, LiveTaker]:
        """taker id -> their state, read by :meth:`intake.live.LiveTaker.of`."""
        ...


class DeskState(LiveTakers, QueueState, Protocol):
    """The desk queues and call takers' states in Redis (:class:`intake.live.LiveState`)."""

    async def enqueue(
        self,
        desk: str,
        call_id: str,
        priority: int,
        arrival: datetime,
        front: bool = False,
        data: dict[str, object] | None = None,
    ) -> QueueEntry: ...

    async def dequeue_specific(self, desk: str, call_id: str) -> QueueEntry | None: ...

    async def queue(self, desk: str) -> list[QueueEntry]: ...

    async def reprioritise(
        self, desk: str, call_id: str, priority: int, front: bool | None = None
    ) -> QueueEntry | None: ...

    async def move(
        self, call_id: str, from_desk: str, to_desk: str, priority: int | None = None
    ) -> QueueEntry | None: ...


class ConsoleSessions(Protocol):
    """Which consoles are connected, on any node (:class:`intake.live.ConsolePresence`)."""

    async def console_seen(self, taker_id: str, session_id: str, ttl_ms: int) -> None: ...

    async def console_gone(self, taker_id: str, session_id: str) -> None: ...


class ConsoleState(LiveTakers, ConsoleSessions, Protocol):
    """A call taker's state, console presence and unsaved form input in Redis (:class:`intake.live.LiveState`)."""

    async def put_console_draft(
        self, taker_id: str, call_id: str, values: dict[str, object], ttl_ms: int
    ) -> None: ...

    async def console_draft(self, taker_id: str, call_id: str) -> JsonObject | None: ...

    async def drop_console_draft(self, taker_id: str, call_id: str) -> None: ...


class LiveCalls(ActiveCalls, NodeChannel, Leases, TakerStates, QueueState, Protocol):
    """All of Redis the call service uses (:class:`intake.live.LiveState`)."""


# ---------------------------------------------------------------------------------- services


class Desks(Protocol):
    """Desk queues and call takers (:class:`intake.desks.DeskService`)."""

    on_offer: Callable[[Offer], Awaitable[None]] | None
    on_moved: Callable[[str, DeskCode, DeskCode], Awaitable[None]] | None
    on_reprioritised: Callable[[str, DeskCode, int, bool], Awaitable[None]] | None

    @property
    def offer_timeout_seconds(self) -> float: ...

    @property
    def wrap_up_seconds(self) -> float: ...

    async def enqueue(
        self,
        call_id: str,
        desk: DeskCode,
        priority: int,
        arrival: datetime,
        front: bool,
        data: dict[str, object],
    ) -> None: ...

    async def leave_queue(self, call_id: str, desk: DeskCode | None) -> None: ...

    async def move(
        self, call_id: str, from_desk: DeskCode, to_desk: DeskCode, actor: str, reason: str
    ) -> None: ...

    async def reprioritise(
        self, call_id: str, desk: DeskCode, priority: int, front: bool, actor: str
    ) -> None: ...

    async def set_taker_state(
        self, taker_id: str, target: TakerState, actor: str, reason: str = ""
    ) -> None: ...

    async def start_wrap_up(self, taker_id: str) -> None: ...


class CallsInHand(Protocol):
    """The calls service as a console's restore reads it (:class:`intake.calls.CallService`)."""

    async def get(self, call_id: str) -> Call: ...

    def session_by_id(self, call_id: str) -> CallSession | None: ...

    def current_decision(self, call_id: str) -> TriageDecision | None: ...


class TakingCalls(Protocol):
    """The calls service as taking calls needs it (:class:`intake.calls.CallService`)."""

    async def get(self, call_id: str) -> Call: ...

    async def accept(self, call_id: str, taker_id: str) -> Call: ...

    def live_calls(self) -> list[Call]: ...


class IncidentLookup(Protocol):
    async def get(self, incident_id: str) -> Incident: ...


class IncidentLocations(Protocol):
    async def add_location(self, incident_id: str, location: Location, actor: str) -> Incident: ...


class Incidents(IncidentLookup, IncidentLocations, Protocol):
    """The incident record (:class:`intake.incidents.IncidentService`)."""

    on_changed: Callable[[Incident], Awaitable[None]] | None

    async def open_for_call(self, call: Call, decision: TriageDecision) -> tuple[Incident, bool]: ...

    async def record_triage_update(self, incident_id: str, decision: TriageDecision) -> None: ...

    async def create(
        self,
        actor: str,
        incident_type: IncidentType,
        priority: int,
        agencies: list[Agency],
        location: Location | None = None,
        note: str | None = None,
        call_id: str | None = None,
    ) -> Incident: ...


# ------------------------------------------------------------------------------------ health


class Pingable(Protocol):
    def ping(self) -> bool: ...


class QueuedEntry(Protocol):
    @property
    def arrival(self) -> datetime: ...


class HealthState(Protocol):
    """What health and metrics read from Redis (:class:`intake.live.LiveState`)."""

    async def ping(self) -> bool: ...

    async def node_health(self, component: str) -> dict[str, dict[str, object]]: ...

    async def put_node_health(
        self, component: str, node: str, data: dict[str, object], ttl_ms: int
    ) -> None: ...

    async def queue(self, desk: str) -> Sequence[QueuedEntry]: ...


class TranscriberHealth(Protocol):
    def recognition_status(self) -> RecognitionStatus: ...


class ComponentStatus(Protocol):
    def health(self) -> tuple[bool, str]: ...
