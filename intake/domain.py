"""The common domain of the centre: calls, incidents, desks and call takers, as plain typed classes.

No ORM or wire types leak in here: storage maps these to tables (:mod:`intake.storage`), the API to its
own input/output schemas (:mod:`api.schemas`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from intake.errors import IllegalTransition
from routing.acd import TakerState
from routing.vocabulary import DESK_BY_DIALLED, Agency, DeskCode, IncidentType
from telephony.events import utc_now

# ---------------------------------------------------------------------------------------------- calls


class CallState(enum.StrEnum):
    RINGING = "ringing"  # offered to the centre, nobody has it yet
    QUEUED = "queued"  # waiting for a call taker (possibly hearing the prompt and being transcribed)
    CONNECTED = "connected"  # a call taker is talking to the caller
    ENDED = "ended"
    ABANDONED = "abandoned"  # the caller hung up before a call taker answered: call back


CALL_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.RINGING: frozenset(
        {CallState.QUEUED, CallState.CONNECTED, CallState.ABANDONED, CallState.ENDED}
    ),
    # A queued call can only end by the caller giving up (abandoned) or by reaching a call taker.
    CallState.QUEUED: frozenset({CallState.CONNECTED, CallState.ABANDONED}),
    # Back to QUEUED is a transfer to another desk.
    CallState.CONNECTED: frozenset({CallState.ENDED, CallState.QUEUED}),
    CallState.ENDED: frozenset(),
    CallState.ABANDONED: frozenset(),
}

TERMINAL_CALL_STATES = frozenset({CallState.ENDED, CallState.ABANDONED})


# What networks and PBXs put in the caller id when the number is not presented.
WITHHELD_CALLER_IDS = frozenset(
    {"", "anonymous", "unknown", "unavailable", "restricted", "<unknown>", "private"}
)


class LineType(enum.StrEnum):
    MOBILE = "mobile"
    FIXED = "fixed_line"
    FIXED_OR_MOBILE = "fixed_line_or_mobile"
    VOIP = "voip"
    OTHER = "other"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CallerNumber:
    raw: str
    e164: str | None = None  # None when the number is withheld or unparseable
    country: str | None = None  # ISO 3166-1 alpha-2
    line_type: LineType = LineType.UNKNOWN
    valid: bool = False

    @property
    def withheld(self) -> bool:
        return self.e164 is None and self.raw.lower() in WITHHELD_CALLER_IDS

    @property
    def display(self) -> str:
        if self.withheld:
            return "withheld"
        return self.e164 or self.raw


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    leg: str  # "caller" / "taker"
    text: str
    start_s: float
    end_s: float
    confidence: float | None = None
    language: str | None = None
    words: tuple[tuple[str, float, float, float], ...] = ()  # (word, start, end, confidence)


class LocationSource(enum.StrEnum):
    AML_GNSS = "aml-gnss"
    ECALL = "ecall"
    PIDF_LO = "pidf-lo"
    AML_CELL = "aml-cell"
    AML_WIFI = "aml-wifi"
    SPOKEN = "spoken"
    CALLER_COUNTRY = "caller-country"
    CALL_TAKER = "call-taker"  # typed in by a human: overrides everything


@dataclass(frozen=True, slots=True)
class Location:
    source: LocationSource
    lat: float | None = None
    lon: float | None = None
    radius_m: float | None = None
    confidence: float | None = None
    municipality: str | None = None
    part: str | None = None
    street: str | None = None
    house_number: str | None = None
    landmark: str | None = None
    road: str | None = None
    country: str | None = None
    at: datetime = field(default_factory=utc_now)

    def text(self) -> str:
        bits = [
            " ".join(b for b in (self.street, self.house_number) if b),
            self.part if self.part and self.part != self.municipality else None,
            self.municipality,
            self.road,
            self.landmark,
        ]
        return ", ".join(b for b in bits if b) or (
            f"{self.lat:.5f}, {self.lon:.5f}" if self.lat is not None and self.lon is not None else ""
        )


@dataclass(frozen=True, slots=True)
class CallTriage:
    """The decision a call is routed and worked with: what triage decided (rules/model version kept, so the
    decision stays explainable), replaced by the incident's current decision once the call has one, so the
    call record and its incident never tell two different emergencies."""

    incident_type: str
    priority: int
    tcpr: bool
    agencies: tuple[str, ...]
    rules_version: str = ""
    source: str = "triage"  # "triage": triage's own decision; "incident": the linked incident's
    unsure: bool = False


def settled_by_retry(taken_as: str) -> str:
    """Who "called back" a refused attempt whose same INVITE was then taken as call ``taken_as``."""
    return f"intake: the same INVITE was taken as call {taken_as}"


@dataclass(slots=True)
class Call:
    id: str
    call_ref: str  # the adapter's reference (SIP Call-ID, Asterisk Uniqueid)
    source: str  # "sip" / "ami"
    dialled: str
    caller: CallerNumber
    state: CallState = CallState.RINGING
    offered_at: datetime = field(default_factory=utc_now)
    media_answered_at: datetime | None = None  # the endpoint picked up (prompt, recording)
    answered_at: datetime | None = None  # a call taker picked up
    ended_at: datetime | None = None
    end_reason: str | None = None
    desk: DeskCode | None = None
    taker_id: str | None = None
    language: str | None = None
    language_confidence: float | None = None
    incident_id: str | None = None
    priority: int | None = None
    tcpr: bool = False
    location: Location | None = None
    channel: str | None = None
    node: str | None = None  # intake node holding the media
    callback_done_at: datetime | None = None
    callback_by: str | None = None
    transcript: list[TranscriptSegment] = field(default_factory=list)
    triage: CallTriage | None = None
    # What happened to the call that a person must be able to read later ("location body refused: ...").
    notes: list[str] = field(default_factory=list)

    def transition(self, target: CallState, at: datetime | None = None) -> None:
        if target not in CALL_TRANSITIONS[self.state]:
            raise IllegalTransition(
                f"call {self.id}: {self.state.value} -> {target.value} is not allowed",
                call_id=self.id,
                current=self.state.value,
                target=target.value,
            )
        at = at or utc_now()
        self.state = target
        if target is CallState.CONNECTED and self.answered_at is None:
            self.answered_at = at
        if target in TERMINAL_CALL_STATES:
            self.ended_at = at

    @property
    def is_live(self) -> bool:
        return self.state not in TERMINAL_CALL_STATES

    @property
    def may_be_called_back(self) -> bool:
        """Only a caller nobody talked to is called back: abandoned, or ended without a call taker."""
        if self.state is CallState.ABANDONED:
            return True
        return self.state is CallState.ENDED and self.answered_at is None

    def wait_seconds(self, now: datetime | None = None) -> float:
        end = self.answered_at or self.ended_at or now or utc_now()
        return max(0.0, (end - self.offered_at).total_seconds())


# ------------------------------------------------------------------------------------------ incidents


class IncidentStatus(enum.StrEnum):
    NEW = "new"
    ACTIVE = "active"
    CLOSED = "closed"


INCIDENT_TRANSITIONS: dict[IncidentStatus, frozenset[IncidentStatus]] = {
    IncidentStatus.NEW: frozenset({IncidentStatus.ACTIVE, IncidentStatus.CLOSED}),
    IncidentStatus.ACTIVE: frozenset({IncidentStatus.CLOSED}),
    IncidentStatus.CLOSED: frozenset({IncidentStatus.ACTIVE}),  # reopened
}


class AgencyStatus(enum.StrEnum):
    ALERTED = "alerted"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    CLOSED = "closed"


AGENCY_STATUS_ORDER = (
    AgencyStatus.ALERTED,
    AgencyStatus.ACKNOWLEDGED,
    AgencyStatus.DISPATCHED,
    AgencyStatus.CLOSED,
)


@dataclass(slots=True)
class AgencyAssignment:
    agency: Agency
    status: AgencyStatus = AgencyStatus.ALERTED
    updated_at: datetime = field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One append-only line of an incident's history: who did what, when."""

    at: datetime
    actor: str  # "triage", "system", a user name, an integration's name
    action: str  # "created", "triage_proposed", "type_changed", "call_linked", "note_added", ...
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # position in the timeline, assigned by storage


@dataclass(slots=True)
class Incident:
    id: str  # readable, unique per year: KVK-2026-000123
    incident_type: IncidentType
    priority: int
    status: IncidentStatus = IncidentStatus.NEW
    agencies: list[AgencyAssignment] = field(default_factory=list)
    location: Location | None = None
    location_history: list[Location] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tcpr: bool = False
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    closed_at: datetime | None = None
    created_by: str = "triage"
    confirmed_by: str | None = None  # the call taker who confirmed or corrected triage's proposal
    timeline: list[TimelineEntry] = field(default_factory=list)

    @property
    def agency_codes(self) -> list[Agency]:
        return [a.agency for a in self.agencies]


def check_priority(priority: int) -> int:
    if priority not in (1, 2, 3):
        raise ValueError(f"priority must be 1, 2 or 3, not {priority!r}")
    return priority


# ------------------------------------------------------------------------------- desks and call takers


@dataclass(frozen=True, slots=True)
class Desk:
    code: DeskCode
    name: str
    agencies: tuple[Agency, ...]
    dialled: tuple[str, ...]


def _dialled(desk: DeskCode) -> tuple[str, ...]:
    return tuple(number for number, d in DESK_BY_DIALLED.items() if d is desk)


DESKS: tuple[Desk, ...] = (
    Desk(DeskCode.HZS, "Hasičský záchranný sbor", (Agency.HZS,), _dialled(DeskCode.HZS)),
    Desk(DeskCode.ZZS, "Zdravotnická záchranná služba", (Agency.ZZS,), _dialled(DeskCode.ZZS)),
    Desk(DeskCode.PCR, "Policie ČR", (Agency.PCR,), _dialled(DeskCode.PCR)),
    Desk(DeskCode.D112, "Linka 112", (Agency.HZS, Agency.ZZS, Agency.PCR), _dialled(DeskCode.D112)),
)


@dataclass(slots=True)
class CallTaker:
    id: str
    name: str
    desks: tuple[DeskCode, ...]
    languages: tuple[str, ...] = ("cs",)
    state: TakerState = TakerState.OFFLINE
    state_since: datetime = field(default_factory=utc_now)
    sip_uri: str | None = None  # standalone mode: the endpoint calls this phone
    interface: str | None = None  # PBX mode: Asterisk interface, e.g. SIP/taker1
    current_call_id: str | None = None
