"""The one public representation of a call and an incident: a pydantic family used on every wire.

The REST API (``api/schemas.py`` re-uses these models, adding only what a single REST answer carries: a
call's live triage evidence and recordings), live events, the incident stream, webhooks and the CLI all
dump the same models, so a field means the same thing, under the same name and format, wherever it is
read. Row↔domain mapping for the database is a different concern and lives in
:mod:`intake.storage.mapping`.

Times are ISO 8601 in UTC (pydantic's JSON form, ``...Z``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from intake.domain import Call, CallTriage, Incident, Location, TimelineEntry, TranscriptSegment

AgencyCode = Literal["HZS", "ZZS", "PCR"]


class LocationView(BaseModel):
    source: str
    text: str
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
    at: datetime | None = None

    @classmethod
    def of(cls, location: Location | None) -> LocationView | None:
        if location is None:
            return None
        return cls(
            source=location.source.value,
            text=location.text(),
            lat=location.lat,
            lon=location.lon,
            radius_m=location.radius_m,
            confidence=location.confidence,
            municipality=location.municipality,
            part=location.part,
            street=location.street,
            house_number=location.house_number,
            landmark=location.landmark,
            road=location.road,
            country=location.country,
            at=location.at,
        )


class CallerView(BaseModel):
    raw: str
    e164: str | None
    country: str | None
    line_type: str
    display: str


class TranscriptSegmentView(BaseModel):
    leg: str
    text: str
    start_s: float
    end_s: float
    confidence: float | None = None
    language: str | None = None

    @classmethod
    def of(cls, segment: TranscriptSegment) -> TranscriptSegmentView:
        return cls(
            leg=segment.leg,
            text=segment.text,
            start_s=segment.start_s,
            end_s=segment.end_s,
            confidence=segment.confidence,
            language=segment.language,
        )


class CallDecisionView(BaseModel):
    incident_type: str
    priority: int
    tcpr: bool
    agencies: list[str]
    rules_version: str
    source: str = Field(description='"triage" or "incident" (the linked incident\'s current decision)')
    unsure: bool

    @classmethod
    def of(cls, triage: CallTriage | None) -> CallDecisionView | None:
        if triage is None:
            return None
        return cls(
            incident_type=triage.incident_type,
            priority=triage.priority,
            tcpr=triage.tcpr,
            agencies=list(triage.agencies),
            rules_version=triage.rules_version,
            source=triage.source,
            unsure=triage.unsure,
        )


class CallView(BaseModel):
    id: str
    call_ref: str = Field(description="the telephony adapter's reference (SIP Call-ID, Asterisk Uniqueid)")
    source: str
    dialled: str
    caller: CallerView
    state: str
    offered_at: datetime
    media_answered_at: datetime | None = Field(description="when the intake endpoint picked up")
    answered_at: datetime | None = Field(description="when a call taker picked up")
    ended_at: datetime | None
    end_reason: str | None
    desk: str | None
    taker_id: str | None
    language: str | None
    incident_id: str | None
    priority: int | None
    tcpr: bool
    location: LocationView | None
    node: str | None = Field(description="the intake node that holds the call")
    wait_s: float
    callback_done_at: datetime | None
    callback_by: str | None
    decision: CallDecisionView | None = Field(
        None,
        description="the decision the call is routed and worked with, stored with the call: triage's until "
        "the call has an incident, then the incident's current one (the same as the incident view's)",
    )
    notes: list[str] = Field(
        default_factory=list, description="what happened to the call, e.g. refused bodies"
    )
    transcript: list[TranscriptSegmentView] | None = None

    @classmethod
    def fields_of(cls, call: Call, with_transcript: bool = False) -> dict[str, Any]:
        """The view's field values for ``call`` (subclasses add their own and construct)."""
        return {
            "id": call.id,
            "call_ref": call.call_ref,
            "source": call.source,
            "dialled": call.dialled,
            "caller": CallerView(
                raw=call.caller.raw,
                e164=call.caller.e164,
                country=call.caller.country,
                line_type=call.caller.line_type.value,
                display=call.caller.display,
            ),
            "state": call.state.value,
            "offered_at": call.offered_at,
            "media_answered_at": call.media_answered_at,
            "answered_at": call.answered_at,
            "ended_at": call.ended_at,
            "end_reason": call.end_reason,
            "desk": call.desk.value if call.desk else None,
            "taker_id": call.taker_id,
            "language": call.language,
            "incident_id": call.incident_id,
            "priority": call.priority,
            "tcpr": call.tcpr,
            "location": LocationView.of(call.location),
            "node": call.node,
            "wait_s": round(call.wait_seconds(), 1),
            "callback_done_at": call.callback_done_at,
            "callback_by": call.callback_by,
            "decision": CallDecisionView.of(call.triage),
            "notes": list(call.notes),
            "transcript": [TranscriptSegmentView.of(s) for s in call.transcript] if with_transcript else None,
        }

    @classmethod
    def of(cls, call: Call, with_transcript: bool = False) -> CallView:
        return cls(**cls.fields_of(call, with_transcript))


class AgencyAssignmentView(BaseModel):
    agency: AgencyCode
    status: str
    updated_at: datetime


class TimelineEntryView(BaseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    data: dict[str, Any]

    @classmethod
    def of(cls, entry: TimelineEntry) -> TimelineEntryView:
        return cls(seq=entry.seq, at=entry.at, actor=entry.actor, action=entry.action, data=entry.data)


class IncidentView(BaseModel):
    id: str
    incident_type: str
    priority: int
    status: str
    agencies: list[AgencyAssignmentView]
    location: LocationView | None
    call_ids: list[str]
    notes: list[str]
    tcpr: bool
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    created_by: str
    confirmed_by: str | None
    version: int = Field(description="seq of the newest timeline entry")
    timeline: list[TimelineEntryView] | None = None

    @classmethod
    def fields_of(cls, incident: Incident, with_timeline: bool = False) -> dict[str, Any]:
        """The view's field values for ``incident`` (subclasses add their own and construct)."""
        return {
            "id": incident.id,
            "incident_type": incident.incident_type.value,
            "priority": incident.priority,
            "status": incident.status.value,
            "agencies": [
                AgencyAssignmentView(agency=a.agency.value, status=a.status.value, updated_at=a.updated_at)
                for a in incident.agencies
            ],
            "location": LocationView.of(incident.location),
            "call_ids": list(incident.call_ids),
            "notes": list(incident.notes),
            "tcpr": incident.tcpr,
            "created_at": incident.created_at,
            "updated_at": incident.updated_at,
            "closed_at": incident.closed_at,
            "created_by": incident.created_by,
            "confirmed_by": incident.confirmed_by,
            "version": incident.timeline[-1].seq if incident.timeline else 0,
            "timeline": [TimelineEntryView.of(t) for t in incident.timeline] if with_timeline else None,
        }

    @classmethod
    def of(cls, incident: Incident, with_timeline: bool = False) -> IncidentView:
        return cls(**cls.fields_of(incident, with_timeline))


def call_json(call: Call, with_transcript: bool = False) -> dict[str, Any]:
    """A call as plain JSON (live events, the active-call board): :class:`CallView` dumped."""
    exclude = None if with_transcript else {"transcript"}
    out: dict[str, Any] = CallView.of(call, with_transcript).model_dump(mode="json", exclude=exclude)
    return out


def incident_json(incident: Incident, with_timeline: bool = False) -> dict[str, Any]:
    """An incident as plain JSON (the incident stream, webhooks, the CLI): :class:`IncidentView` dumped."""
    exclude = None if with_timeline else {"timeline"}
    out: dict[str, Any] = IncidentView.of(incident, with_timeline).model_dump(mode="json", exclude=exclude)
    return out


def location_json(location: Location | None) -> dict[str, Any] | None:
    """A location as plain JSON: :class:`LocationView` dumped."""
    view = LocationView.of(location)
    return None if view is None else view.model_dump(mode="json")
