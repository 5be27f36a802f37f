"""Wire schemas of the API: separate input (``...Create`` / ``...Update``) and output (``...Out``) models.

Domain objects never leave the API directly; :func:`incident_out` and friends map them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from intake.domain import Call, Incident, Location
from intake.views import (
    AgencyAssignmentView,
    AgencyCode,
    CallDecisionView,
    CallerView,
    CallView,
    IncidentView,
    LocationView,
    TimelineEntryView,
    TranscriptSegmentView,
)
from routing.vocabulary import Agency, DeskCode, IncidentType

DeskName = Literal["HZS", "ZZS", "PCR", "112"]
RoleName = Literal["call_taker", "supervisor", "integration", "admin"]


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


# A note must hold a character Python's str.strip() keeps: the pattern spells out, for every regex engine
# (ECMA, Rust, Python), the separators and NEL that Python counts as blank and the others do not.
NON_BLANK_PATTERN = r"[^\s\x00\x1c-\x1f\x85]"

# Published for every free-text input field: NUL characters are no part of valid input (they are dropped
# before validation, so a length limit counts the text without them).
NO_NUL_PATTERN = r"^[^\x00]*$"


def _publish_no_nul(schema: dict[str, Any]) -> None:
    """Say in the OpenAPI document what :class:`Strict` does: text without NUL characters. A field that has
    a pattern of its own already says which characters it takes."""
    for prop in schema.get("properties", {}).values():
        for variant in [prop, *prop.get("anyOf", [])]:
            plain_text = variant.get("type") == "string" and not variant.get("format")
            if plain_text and "pattern" not in variant and "enum" not in variant:
                variant["pattern"] = NO_NUL_PATTERN


def _publish_no_nul_and_something_given(schema: dict[str, Any]) -> None:
    _publish_no_nul(schema)
    schema["minProperties"] = 1


class Strict(BaseModel):
    """Every input body: unknown fields refused; NUL characters dropped from text (no database stores them,
    and they carry nothing a person typed)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_publish_no_nul)

    @model_validator(mode="before")
    @classmethod
    def _drop_nul_characters(cls, data: Any) -> Any:
        return _without_nul(data)


class ErrorOut(BaseModel):
    error: str = Field(description="stable error id, e.g. not_found, forbidden, idempotency_conflict")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


# ------------------------------------------------------------------------------------------- auth


class TokenRequest(Strict):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    role: RoleName
    username: str


class MeOut(BaseModel):
    username: str
    role: RoleName
    taker_id: str | None = None
    desks: list[str] = Field(default_factory=list)
    expires_at: datetime


class UserCreate(Strict):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=1024)
    role: RoleName


class UserUpdate(Strict):
    password: str | None = Field(None, min_length=8, max_length=1024)
    role: RoleName | None = None
    active: bool | None = None


class UserOut(BaseModel):
    username: str
    role: RoleName
    active: bool
    created_at: datetime


# ------------------------------------------------------------------------------------------ values


class LocationIn(Strict):
    municipality: str | None = Field(None, max_length=255)
    part: str | None = Field(None, max_length=255)
    street: str | None = Field(None, max_length=255)
    house_number: str | None = Field(None, max_length=32)
    landmark: str | None = Field(None, max_length=255)
    road: str | None = Field(None, max_length=64)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    radius_m: float | None = Field(None, ge=0, le=1_000_000)


# A call, an incident and their parts are intake's one public representation (intake/views.py), also
# what live events and webhooks carry; the REST answer adds only what a single request carries.
LocationOut = LocationView
CallerOut = CallerView
TranscriptSegmentOut = TranscriptSegmentView
CallDecisionOut = CallDecisionView
AgencyAssignmentOut = AgencyAssignmentView
TimelineEntryOut = TimelineEntryView


def location_out(location: Location | None) -> LocationOut | None:
    return LocationView.of(location)


# ------------------------------------------------------------------------------------------- calls


class RecordingOut(BaseModel):
    """A call's voice recording: state, time line of the legs, gaps, where to fetch it."""

    call_id: str
    status: str  # recording | complete | partial | failed | purged | interrupted | not_recorded
    url: str | None = None
    media_type: str | None = None
    duration_s: float = 0.0
    started_at: datetime | None = None
    legs: dict[str, dict[str, float]] = Field(default_factory=dict)
    gaps: list[dict[str, Any]] = Field(default_factory=list)
    stored_bytes: int = 0
    detail: str | None = None


class CallOut(CallView):
    """A call as the REST API answers it: :class:`~intake.views.CallView` with the live triage evidence and
    the recording when the request asks for them."""

    triage: dict[str, Any] | None = Field(
        None, description="current triage decision with evidence (live calls)"
    )
    recording: RecordingOut | None = Field(None, description="the call's voice recording (call detail)")


def recording_out(call_id: str, info: Any | None, call_is_live: bool) -> RecordingOut:
    from intake.recording import MEDIA_TYPE, RecordingStatus, recording_status

    status = recording_status(info, call_is_live)
    if info is None:
        return RecordingOut(call_id=call_id, status=status)
    playable = status not in (RecordingStatus.PURGED, RecordingStatus.FAILED)
    return RecordingOut(
        call_id=call_id,
        status=status,
        url=f"/api/calls/{call_id}/recording" if playable else None,
        media_type=MEDIA_TYPE if playable else None,
        duration_s=round(info.duration_s, 2),
        started_at=info.started_at,
        legs=info.legs,
        gaps=info.gaps,
        stored_bytes=info.stored_bytes,
        detail=info.detail,
    )


def call_out(
    call: Call,
    with_transcript: bool = False,
    triage: dict[str, Any] | None = None,
    recording: RecordingOut | None = None,
) -> CallOut:
    return CallOut(**CallView.fields_of(call, with_transcript), triage=triage, recording=recording)


class CallPage(BaseModel):
    items: list[CallOut]
    total: int
    limit: int
    offset: int


class AcceptCall(Strict):
    taker_id: str | None = Field(None, max_length=64, description="supervisors only: accept for this taker")


# --------------------------------------------------------------------------------------- incidents


class IncidentOut(IncidentView):
    """An incident as the REST API answers it: :class:`~intake.views.IncidentView` with the recordings of its
    calls on request."""

    recordings: list[RecordingOut] | None = Field(None, description="voice recordings of the linked calls")


def incident_out(
    incident: Incident, with_timeline: bool = False, recordings: list[RecordingOut] | None = None
) -> IncidentOut:
    return IncidentOut(**IncidentView.fields_of(incident, with_timeline), recordings=recordings)


class IncidentPage(BaseModel):
    items: list[IncidentOut]
    total: int
    limit: int
    offset: int


# Triage's "nothing heard yet" (routing issue 12): a state of the call, never a type a person saves.
NOT_YET_HEARD = "UNKNOWN"


# What a person may save as an incident's type: every type but "not yet heard" (the published schema says
# so, and the validator below refuses it too).
ChosenIncidentType = Annotated[
    IncidentType,
    WithJsonSchema(
        {
            "type": "string",
            "enum": [t.value for t in IncidentType if t.value != NOT_YET_HEARD],
            "title": "IncidentType",
        }
    ),
]


def refuse_not_yet_heard(incident_type: Any) -> None:
    if incident_type is not None and str(getattr(incident_type, "value", incident_type)) == NOT_YET_HEARD:
        raise ValueError("choose the incident type: 'not yet heard' cannot be saved as a type")


class IncidentCreate(Strict):
    incident_type: ChosenIncidentType
    priority: int = Field(ge=1, le=3)
    agencies: list[Agency] = Field(min_length=1, max_length=3)
    location: LocationIn | None = None
    note: str | None = Field(None, max_length=4000)
    call_id: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _a_type_was_chosen(self) -> IncidentCreate:
        refuse_not_yet_heard(self.incident_type)
        return self


class IncidentUpdate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_publish_no_nul_and_something_given)

    incident_type: ChosenIncidentType | None = None
    priority: int | None = Field(None, ge=1, le=3)
    status: Literal["new", "active", "closed"] | None = None
    agencies_add: list[Agency] | None = Field(None, min_length=1, max_length=3)
    agency_status: dict[AgencyCode, Literal["alerted", "acknowledged", "dispatched", "closed"]] | None = None
    location: LocationIn | None = None
    note: str | None = Field(None, min_length=1, max_length=4000, pattern=NON_BLANK_PATTERN)
    tcpr: bool | None = None

    @model_validator(mode="after")
    def _something_given(self) -> IncidentUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        refuse_not_yet_heard(self.incident_type)
        return self

    def changes(self) -> dict[str, Any]:
        out: dict[str, Any] = self.model_dump(exclude_none=True, mode="json")
        return out


class IncidentConfirm(Strict):
    """Accept triage's proposal, optionally corrected."""

    incident_type: ChosenIncidentType | None = None
    priority: int | None = Field(None, ge=1, le=3)
    agencies_add: list[Agency] | None = Field(None, min_length=1, max_length=3)
    location: LocationIn | None = None
    note: str | None = Field(None, min_length=1, max_length=4000, pattern=NON_BLANK_PATTERN)
    tcpr: bool | None = None

    @model_validator(mode="after")
    def _a_type_was_chosen(self) -> IncidentConfirm:
        refuse_not_yet_heard(self.incident_type)
        return self


class LinkCall(Strict):
    call_id: str = Field(min_length=1, max_length=64)
    reason: str = Field("linked by call taker", max_length=500)


class TcprMilestone(Strict):
    milestone: Literal["recognised", "instructions_started", "first_compression", "ems_arrived", "stopped"]
    call_id: str | None = Field(None, max_length=64)
    at: datetime | None = Field(None, description="when it happened (default: now)")


class DuplicateOut(BaseModel):
    incident: IncidentOut
    score: float | None = None
    reason: str = ""


class StreamEventOut(BaseModel):
    id: str = Field(description="stream id: pass as ?after= to continue")
    event: dict[str, Any]


class StreamPage(BaseModel):
    items: list[StreamEventOut]
    last_id: str | None


# ---------------------------------------------------------------------------- desks, queues, takers


class DeskOut(BaseModel):
    code: DeskName
    name: str
    agencies: list[AgencyCode]
    dialled: list[str]


class QueueEntryOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    call_id: str
    priority: int
    front: bool
    arrival: datetime | None
    wait_s: float | None


class QueuesOut(BaseModel):
    desks: dict[str, list[QueueEntryOut]]


class Reprioritise(Strict):
    priority: int = Field(ge=1, le=3)
    front: bool = False


class MoveCall(Strict):
    to_desk: DeskCode
    reason: str = Field("supervisor", max_length=500)


class TakerOut(BaseModel):
    id: str
    name: str
    desks: list[str]
    languages: list[str]
    state: str
    since: str | None = None
    call_id: str | None = None


class TakerStateChange(Strict):
    state: Literal["available", "paused", "offline", "wrap_up", "busy"]
    reason: str = Field("", max_length=500)


# ------------------------------------------------------------------------------------------ reports


class ServiceLevelOut(BaseModel):
    since: datetime
    until: datetime
    threshold_s: float
    offered: int
    answered: int
    answered_within_threshold: int
    abandoned: int
    service_level_percent: float | None
    average_wait_s: float | None
    longest_wait_s: float | None


class SummaryOut(BaseModel):
    service_level: ServiceLevelOut
    per_desk: dict[str, ServiceLevelOut]
    open_incidents_by_agency: dict[str, int]
    abandoned_to_call_back: int
    waiting_now: dict[str, int]


class HealthOut(BaseModel):
    component: str
    healthy: bool
    detail: str = ""
    data: dict[str, Any] = Field(default_factory=dict, description="figures behind the state, if any")


class FormDraft(Strict):
    """The incident form as typed, not saved yet (an empty ``values`` forgets it)."""

    call_id: str = Field(min_length=1, max_length=64)
    values: dict[
        Literal[
            "incident_type",
            "priority",
            "municipality",
            "street",
            "house_number",
            "landmark",
            "note",
            "agencies",
        ],
        Annotated[str, Field(max_length=4000)] | Annotated[list[AgencyCode], Field(max_length=3)],
    ] = Field(default_factory=dict)


class MyWorkOut(BaseModel):
    """A call taker's console state, rebuilt from the server (reload, crash, another PC)."""

    taker_id: str | None
    state: str
    since: str | None = None
    call: CallOut | None = Field(None, description="the call in hand, with transcript, triage, recording")
    partial: str = Field("", description="the caller's words not final yet")
    offer: CallOut | None = Field(None, description="a call offered to this call taker, not taken yet")
    incident: IncidentOut | None = Field(None, description="the incident of the call in hand, with timeline")
    draft: dict[str, Any] | None = Field(None, description="incident form input not saved yet")
    notes: list[str] = Field(default_factory=list, description="what could not be restored, and why")


# ------------------------------------------------------------------------------------------- admin


WebhookEvent = Literal["*", "incident.created", "incident.updated", "incident.linked"]


class WebhookCreate(Strict):
    url: str = Field(
        min_length=8, max_length=2048, pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[!-~]*)?$"
    )
    secret: str = Field(min_length=16, max_length=255)
    events: list[WebhookEvent] = Field(default=["*"], min_length=1, max_length=4)


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    active: bool
    created_at: datetime


class DeliveryOut(BaseModel):
    id: int
    webhook_id: int
    url: str
    event_id: str
    event_type: str
    attempts: int
    status: str
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class AmlIn(Strict):
    """An Advanced Mobile Location SMS as an operator's gateway forwards it (ETSI TS 103 625)."""

    sender: str = Field(min_length=3, max_length=32, description="the caller's number the SMS came from")
    text: str = Field(min_length=1, max_length=1000, description='the SMS text, e.g. A"ML=1;lt=+50.23112;...')
    received_at: datetime | None = Field(None, description="when the gateway received it (default: now)")


class AmlOut(BaseModel):
    accepted: bool = Field(description="false: the message is malformed and was rejected (see reason)")
    reason: str | None = None
    matched: bool = False
    call_id: str | None = None
    position: bool = False
    method: str | None = None
    warnings: list[str] = Field(default_factory=list)


class PlaceOut(BaseModel):
    municipality: str
    part: str | None
    lat: float
    lon: float
