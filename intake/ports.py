"""What the intake services need from their collaborators, as structural types.

The concrete classes live in :mod:`intake.storage` (database), :mod:`intake.live` (Redis),
:mod:`intake.bus`, :mod:`intake.desks`, :mod:`intake.incidents`, :mod:`transcription.service` and
:mod:`telephony`; the composition root (:mod:`intake.app`) plugs them in. Each port is the slice one
collaborator uses, so a unit test builds that collaborator with small fakes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from intake.bus import LiveEvent
    from intake.desks import Offer
    from intake.domain import Call, CallState, Incident, Location, TranscriptSegment
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


class CallStore(CallReader, CallWriter, Protocol):
    """The call records (:class:`intake.storage.repository.Repository`), blocking: run off the loop."""

    def calls_in_states(self, states: Iterable[CallState]) -> list[Call]: ...


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


class IncidentLocations(Protocol):
    async def add_location(self, incident_id: str, location: Location, actor: str) -> Incident: ...


class Incidents(IncidentLocations, Protocol):
    """The incident record (:class:`intake.incidents.IncidentService`)."""

    on_changed: Callable[[Incident], Awaitable[None]] | None

    async def get(self, incident_id: str) -> Incident: ...

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
