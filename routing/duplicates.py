"""Duplicate incidents: twenty callers about one fire should make one incident with twenty calls.

`propose_link` compares a new call's triage (type, place, time) with the open incidents and proposes the
best match with its reasons and score. It only proposes: the call taker confirms or rejects the link.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import fuzz

from routing.text import fold
from routing.types import SpokenLocation
from routing.vocabulary import Agency, IncidentType

# Types that describe the same event from different angles ("car burns" vs "crash with smoke").
_FAMILY_BY_PREFIX = (
    ("FIRE_", "fire"),
    ("MED_", "medical"),
    ("POLICE_TRAFFIC", "traffic"),
    ("TRAFFIC_", "traffic"),
    ("POLICE_", "police"),
    ("HAZMAT_", "hazard"),
    ("WEATHER_", "hazard"),
    ("TECH_", "technical"),
)
_COMPATIBLE = {
    frozenset({"fire", "traffic"}),  # a crashed car burning
    frozenset({"fire", "hazard"}),  # fire with a gas leak or chemicals
    frozenset({"traffic", "medical"}),  # a crash reported as an injury
    frozenset({"police", "medical"}),  # an assault reported as an injury
    frozenset({"technical", "hazard"}),
    frozenset({"technical", "traffic"}),
}


def type_family(itype: IncidentType) -> str:
    for prefix, family in _FAMILY_BY_PREFIX:
        if itype.value.startswith(prefix):
            return family
    return "none"


@dataclass(frozen=True, slots=True)
class OpenIncident:
    id: str
    incident_type: IncidentType
    agencies: tuple[Agency, ...]
    created_at: float  # epoch seconds
    municipality: str | None = None
    part: str | None = None
    street: str | None = None
    landmark: str | None = None
    road: str | None = None


@dataclass(frozen=True, slots=True)
class LinkProposal:
    incident_id: str
    score: float  # 0..1
    reasons: tuple[str, ...]


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and fold(a or "").strip() == fold(b or "").strip()


def _similar(a: str | None, b: str | None) -> float:
    if not a or not b:
        return 0.0
    return fuzz.token_set_ratio(fold(a), fold(b)) / 100.0


def _score(
    itype: IncidentType, location: SpokenLocation | None, at: float, incident: OpenIncident, window_s: float
) -> tuple[float, list[str]] | None:
    age = abs(at - incident.created_at)
    if age > window_s:
        return None
    mine, theirs = type_family(itype), type_family(incident.incident_type)
    if mine == "none" or theirs == "none":
        return None
    reasons: list[str] = []
    if itype is incident.incident_type:
        type_score = 1.0
        reasons.append(f"same type {itype.value}")
    elif mine == theirs:
        type_score = 0.8
        reasons.append(f"same family {mine}")
    elif frozenset({mine, theirs}) in _COMPATIBLE:
        type_score = 0.6
        reasons.append(f"related types {itype.value} / {incident.incident_type.value}")
    else:
        return None
    if location is None:
        return None
    place = 0.0
    if _same(location.municipality, incident.municipality):
        place += 0.4
        reasons.append(f"same municipality {incident.municipality}")
    elif location.municipality and incident.municipality:
        return None  # two different towns are two incidents
    if _same(location.part, incident.part):
        place += 0.15
        reasons.append(f"same part {incident.part}")
    if _same(location.street, incident.street):
        place += 0.3
        reasons.append(f"same street {incident.street}")
    elif location.street and incident.street:
        if _similar(location.street, incident.street) < 0.85:
            return None  # different streets of one town: different incidents
        place += 0.2
        reasons.append(f"similar street {location.street} ~ {incident.street}")
    if location.road and incident.road and not _same(location.road, incident.road):
        return None
    if _same(location.road, incident.road):
        place += 0.35
        reasons.append(f"same road {incident.road}")
    landmark_similarity = _similar(location.landmark, incident.landmark)
    if landmark_similarity >= 0.6:
        place += 0.3 * landmark_similarity
        reasons.append(f"similar landmark {location.landmark} ~ {incident.landmark}")
    if place == 0.0:
        return None
    recency = 1.0 - 0.5 * (age / window_s)  # a fresh incident is a likelier match
    reasons.append(f"opened {int(age)} s apart")
    return round(min(1.0, place) * type_score * recency, 3), reasons


def rank_links(
    incident_type: IncidentType,
    location: SpokenLocation | None,
    at: float,
    open_incidents: Iterable[OpenIncident],
    *,
    window_s: float = 1800.0,
    min_score: float = 0.3,
) -> list[LinkProposal]:
    """Every open incident that may report the same event, best first (score, then id for a stable order).

    Needs a compatible type family, the same place (municipality, plus street, road or landmark when said)
    and incidents opened within `window_s` seconds of `at` (either side: nodes' clocks differ, and the
    console asks about an incident that may be older than the candidates).
    """
    ranked: list[LinkProposal] = []
    for incident in open_incidents:
        scored = _score(incident_type, location, at, incident, window_s)
        if scored is None:
            continue
        score, reasons = scored
        if score >= min_score:
            ranked.append(LinkProposal(incident.id, score, tuple(reasons)))
    ranked.sort(key=lambda p: (-p.score, p.incident_id))
    return ranked


def propose_link(
    incident_type: IncidentType,
    location: SpokenLocation | None,
    at: float,
    open_incidents: Iterable[OpenIncident],
    *,
    window_s: float = 1800.0,
    min_score: float = 0.3,
) -> LinkProposal | None:
    """The open incident this call most likely reports again, or None (the best of :func:`rank_links`)."""
    ranked = rank_links(incident_type, location, at, open_incidents, window_s=window_s, min_score=min_score)
    return ranked[0] if ranked else None
