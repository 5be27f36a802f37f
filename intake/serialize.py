"""Plain-JSON views of domain values, for live events, the incident stream and timeline entries."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from intake.domain import Call, Incident, Location
from routing.types import Evidence, Scored, SpokenLocation, TriageDecision


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def location_json(location: Location | None) -> dict[str, Any] | None:
    if location is None:
        return None
    out = asdict(location)
    out["source"] = location.source.value
    out["at"] = iso(location.at)
    out["text"] = location.text()
    return out


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


def call_json(call: Call, with_transcript: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": call.id,
        "call_ref": call.call_ref,
        "source": call.source,
        "dialled": call.dialled,
        "caller": {
            "raw": call.caller.raw,
            "e164": call.caller.e164,
            "country": call.caller.country,
            "line_type": call.caller.line_type.value,
            "display": call.caller.display,
        },
        "state": call.state.value,
        "offered_at": iso(call.offered_at),
        "media_answered_at": iso(call.media_answered_at),
        "answered_at": iso(call.answered_at),
        "ended_at": iso(call.ended_at),
        "end_reason": call.end_reason,
        "desk": call.desk.value if call.desk else None,
        "taker_id": call.taker_id,
        "language": call.language,
        "incident_id": call.incident_id,
        "priority": call.priority,
        "tcpr": call.tcpr,
        "location": location_json(call.location),
        "node": call.node,
        "callback_done_at": iso(call.callback_done_at),
        "decision": None if call.triage is None else asdict(call.triage),
        "notes": list(call.notes),
    }
    if with_transcript:
        out["transcript"] = [asdict(s) for s in call.transcript]
    return out


def incident_json(incident: Incident, with_timeline: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": incident.id,
        "incident_type": incident.incident_type.value,
        "priority": incident.priority,
        "status": incident.status.value,
        "agencies": [
            {"agency": a.agency.value, "status": a.status.value, "updated_at": iso(a.updated_at)}
            for a in incident.agencies
        ],
        "location": location_json(incident.location),
        "call_ids": list(incident.call_ids),
        "notes": list(incident.notes),
        "tcpr": incident.tcpr,
        "created_at": iso(incident.created_at),
        "updated_at": iso(incident.updated_at),
        "closed_at": iso(incident.closed_at),
        "created_by": incident.created_by,
        "confirmed_by": incident.confirmed_by,
    }
    if with_timeline:
        out["timeline"] = [
            {"seq": t.seq, "at": iso(t.at), "actor": t.actor, "action": t.action, "data": t.data}
            for t in incident.timeline
        ]
    return out
