"""Plain values triage takes and returns. Every decision carries the words and the rule behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from routing.vocabulary import Agency, DeskCode, IncidentType

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why triage decided something: the rule (from the protocol data files) and the words that fired it."""

    rule: str  # e.g. "type.MED_CARDIAC_ARREST.not_breathing"
    words: tuple[str, ...]  # the words of the transcript that matched, as spoken
    weight: float = 1.0
    span: tuple[int, int] | None = None  # character offsets in the transcript, for highlighting
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Scored(Generic[T]):
    value: T
    confidence: float  # 0..1
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True, slots=True)
class SpokenLocation:
    municipality: str | None = None
    part: str | None = None  # část obce
    street: str | None = None
    house_number: str | None = None
    landmark: str | None = None
    road: str | None = None  # "D6", "I/6"
    road_km: str | None = None
    postal_code: str | None = None
    confidence: float = 0.0
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True, slots=True)
class TriageInput:
    dialled: str
    caller_number: str | None = None
    caller_country: str | None = None  # ISO 3166 alpha-2 from the caller number
    language: str = "cs"
    transcript: str = ""  # caller's words so far (finals, then the current partial)
    is_final: bool = False
    speech_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class TriageDecision:
    agencies: tuple[Scored[Agency], ...]  # primary first
    incident_type: Scored[IncidentType]
    priority: Scored[int]  # 1 immediate threat to life, 2 urgent, 3 non-urgent
    tcpr: Scored[bool]  # suspected cardiac arrest: start telephone CPR
    location: SpokenLocation | None
    desk: DeskCode
    alternatives: tuple[Scored[IncidentType], ...] = ()  # next candidates, shown when unsure
    unsure: bool = False  # nothing reliable heard: routed by dialled number
    rules_version: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def primary_agency(self) -> Agency | None:
        return self.agencies[0].value if self.agencies else None
