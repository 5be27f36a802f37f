"""Plain-JSON views of triage decisions (live events, timeline entries, a call's live triage).

A call, an incident and a location are not converted here: they have one representation,
:mod:`intake.views` (``CallView``/``call_json``, ``IncidentView``/``incident_json``, ``LocationView``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from routing.types import Evidence, Scored, SpokenLocation, TriageDecision


def evidence_json(evidence: tuple[Evidence, ...]) -> list[dict[str, Any]]:
    return [
        {"rule": e.rule, "words": list(e.words), "weight": e.weight, "span": e.span, "negated": e.negated}
        for e in evidence
    ]


def _scored(item: Scored[Any]) -> dict[str, Any]:
    value = item.value.value if hasattr(item.value, "value") else item.value
    return {"value": value, "confidence": round(item.confidence, 3), "evidence": evidence_json(item.evidence)}


def spoken_location_json(location: SpokenLocation | None) -> dict[str, Any] | None:
    if location is None:
        return None
    out = {k: v for k, v in asdict(location).items() if k != "evidence"}
    out["evidence"] = evidence_json(location.evidence)
    return out


def decision_json(decision: TriageDecision) -> dict[str, Any]:
    return {
        "agencies": [_scored(a) for a in decision.agencies],
        "incident_type": _scored(decision.incident_type),
        "priority": _scored(decision.priority),
        "tcpr": _scored(decision.tcpr),
        "location": spoken_location_json(decision.location),
        "desk": decision.desk.value,
        "alternatives": [_scored(a) for a in decision.alternatives],
        "unsure": decision.unsure,
        "rules_version": decision.rules_version,
        "notes": list(decision.notes),
    }


def decision_summary(decision: TriageDecision) -> dict[str, Any]:
    """The facts of a decision without evidence: what changed-detection and the timeline compare."""
    return {
        "agencies": [a.value.value for a in decision.agencies],
        "incident_type": decision.incident_type.value.value,
        "priority": decision.priority.value,
        "tcpr": decision.tcpr.value,
        "desk": decision.desk.value,
        "municipality": decision.location.municipality if decision.location else None,
        "unsure": decision.unsure,
    }
