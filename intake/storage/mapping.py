"""Explicit mapping between domain values and storage values (rows, JSON columns)."""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from intake.domain import (
    AgencyAssignment,
    AgencyStatus,
    Call,
    CallerNumber,
    CallState,
    CallTaker,
    CallTriage,
    Incident,
    IncidentStatus,
    LineType,
    Location,
    LocationSource,
    TakerState,
    TimelineEntry,
    TranscriptSegment,
)
from intake.storage.tables import (
    CallRow,
    CallTakerRow,
    IdempotencyKeyRow,
    IncidentAgencyRow,
    IncidentLocationRow,
    IncidentRow,
    IncidentTimelineRow,
    TranscriptSegmentRow,
    UserRow,
    WebhookDeliveryRow,
    WebhookRow,
)
from routing.vocabulary import Agency, DeskCode, IncidentType

LOCATION_FIELDS = (
    "lat",
    "lon",
    "radius_m",
    "confidence",
    "municipality",
    "part",
    "street",
    "house_number",
    "landmark",
    "road",
    "country",
)


def fold(text: str) -> str:
    """Casefold and strip diacritics: 'Chodov, Nádražní' and 'chodov, nadrazni' match the same search."""
    # NUL bytes never occur in stored text (PostgreSQL refuses them), so they never help a search either.
    decomposed = unicodedata.normalize("NFKD", text.replace("\x00", "").casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with LIKE's wildcards escaped (escape char ``\\``)."""
    escaped = fold(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_value(value: Any) -> Any:
    """A JSON-safe form of a domain value, for timeline data (enums by value, datetimes ISO 8601)."""
    if isinstance(value, Location):
        return location_to_json(value)
    if isinstance(value, AgencyAssignment):
        return {
            "agency": value.agency.value,
            "status": value.status.value,
            "updated_at": iso(value.updated_at),
        }
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, str):  # includes StrEnum members
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON (and PostgreSQL's json) has no NaN
    if value is None or isinstance(value, bool | int):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_value(dataclasses.asdict(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)  # anything else is kept readable rather than failing the whole write


def iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def parse_iso(value: str | None) -> datetime | None:
    return as_utc(datetime.fromisoformat(value)) if value else None


# ----------------------------------------------------------------------------------------- locations


def location_to_json(location: Location | None) -> dict[str, Any] | None:
    if location is None:
        return None
    out: dict[str, Any] = {"source": location.source.value, "at": iso(location.at)}
    for name in LOCATION_FIELDS:
        out[name] = json_value(getattr(location, name))
    return out


def location_from_json(data: dict[str, Any] | None) -> Location | None:
    if not data:
        return None
    kwargs: dict[str, Any] = {name: data.get(name) for name in LOCATION_FIELDS}
    at = parse_iso(data.get("at"))
    if at is not None:
        kwargs["at"] = at
    return Location(source=LocationSource(data["source"]), **kwargs)


def location_row(incident_id: str, seq: int, location: Location, recorded_by: str) -> IncidentLocationRow:
    row = IncidentLocationRow(
        incident_id=incident_id,
        seq=seq,
        source=location.source.value,
        at=location.at,
        recorded_by=recorded_by,
    )
    for name in LOCATION_FIELDS:
        setattr(row, name, getattr(location, name))
    return row


def location_from_row(row: IncidentLocationRow) -> Location:
    return Location(
        source=LocationSource(row.source),
        at=row.at,
        **{name: getattr(row, name) for name in LOCATION_FIELDS},
    )


def location_search_text(location: Location | None) -> str:
    if location is None:
        return ""
    return " ".join(
        b
        for b in (location.text(), location.street, location.part, location.municipality, location.landmark)
        if b
    )


# --------------------------------------------------------------------------------------------- calls


def call_values(call: Call, now: datetime) -> dict[str, Any]:
    """Column values of a call row (everything but the transcript)."""
    return {
        "id": call.id,
        "call_ref": call.call_ref,
        "source": call.source,
        "dialled": call.dialled,
        "caller_raw": call.caller.raw,
        "caller_e164": call.caller.e164,
        "caller_country": call.caller.country,
        "caller_line_type": call.caller.line_type.value,
        "caller_valid": call.caller.valid,
        "state": call.state.value,
        "offered_at": call.offered_at,
        "media_answered_at": call.media_answered_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "end_reason": call.end_reason,
        "desk": call.desk.value if call.desk is not None else None,
        "taker_id": call.taker_id,
        "language": call.language,
        "language_confidence": call.language_confidence,
        "incident_id": call.incident_id,
        "priority": call.priority,
        "tcpr": call.tcpr,
        "location": location_to_json(call.location),
        "channel": call.channel,
        "node": call.node,
        "callback_done_at": call.callback_done_at,
        "callback_by": call.callback_by,
        "triage": call_triage_to_json(call.triage),
        "notes": list(call.notes),
        "updated_at": now,
    }


def call_from_row(row: CallRow, segments: list[TranscriptSegmentRow]) -> Call:
    return Call(
        id=row.id,
        call_ref=row.call_ref,
        source=row.source,
        dialled=row.dialled,
        caller=CallerNumber(
            raw=row.caller_raw,
            e164=row.caller_e164,
            country=row.caller_country,
            line_type=LineType(row.caller_line_type),
            valid=row.caller_valid,
        ),
        state=CallState(row.state),
        offered_at=row.offered_at,
        media_answered_at=row.media_answered_at,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
        desk=DeskCode(row.desk) if row.desk is not None else None,
        taker_id=row.taker_id,
        language=row.language,
        language_confidence=row.language_confidence,
        incident_id=row.incident_id,
        priority=row.priority,
        tcpr=row.tcpr,
        location=location_from_json(row.location),
        channel=row.channel,
        node=row.node,
        callback_done_at=row.callback_done_at,
        callback_by=row.callback_by,
        transcript=[segment_from_row(s) for s in segments],
        triage=call_triage_from_json(row.triage),
        notes=[str(n) for n in row.notes or []],
    )


def call_triage_to_json(triage: CallTriage | None) -> dict[str, Any] | None:
    if triage is None:
        return None
    return {
        "incident_type": triage.incident_type,
        "priority": triage.priority,
        "tcpr": triage.tcpr,
        "agencies": list(triage.agencies),
        "rules_version": triage.rules_version,
        "source": triage.source,
        "unsure": triage.unsure,
    }


def call_triage_from_json(value: Any) -> CallTriage | None:
    if not isinstance(value, dict):
        return None
    return CallTriage(
        incident_type=str(value.get("incident_type", "")),
        priority=int(value.get("priority", 2)),
        tcpr=bool(value.get("tcpr", False)),
        agencies=tuple(str(a) for a in value.get("agencies", [])),
        rules_version=str(value.get("rules_version", "")),
        source=str(value.get("source", "triage")),
        unsure=bool(value.get("unsure", False)),
    )


def segment_values(call_id: str, seq: int, segment: TranscriptSegment) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "seq": seq,
        "leg": segment.leg,
        "text": segment.text,
        "text_folded": fold(segment.text),
        "start_s": segment.start_s,
        "end_s": segment.end_s,
        "confidence": segment.confidence,
        "language": segment.language,
        "words": [list(w) for w in segment.words],
    }


def segment_from_row(row: TranscriptSegmentRow) -> TranscriptSegment:
    return TranscriptSegment(
        leg=row.leg,
        text=row.text,
        start_s=row.start_s,
        end_s=row.end_s,
        confidence=row.confidence,
        language=row.language,
        words=tuple((str(w[0]), float(w[1]), float(w[2]), float(w[3])) for w in row.words or ()),
    )


def segment_key(segment: TranscriptSegment) -> tuple[Any, ...]:
    """What makes two transcript segments the same one (a retry, a journal replay)."""
    return (segment.leg, float(segment.start_s), float(segment.end_s), segment.text)


# ------------------------------------------------------------------------------------------ incidents


def agency_from_row(row: IncidentAgencyRow) -> AgencyAssignment:
    return AgencyAssignment(
        agency=Agency(row.agency), status=AgencyStatus(row.status), updated_at=row.updated_at
    )


def timeline_from_row(row: IncidentTimelineRow) -> TimelineEntry:
    return TimelineEntry(
        at=row.at, actor=row.actor, action=row.action, data=dict(row.data or {}), seq=row.seq
    )


def incident_from_rows(
    row: IncidentRow,
    agencies: list[AgencyAssignment],
    locations: list[Location],
    call_ids: list[str],
    notes: list[str],
    timeline: list[TimelineEntry],
) -> Incident:
    """An incident from its row and its child rows (already mapped, each in order)."""
    return Incident(
        id=row.id,
        incident_type=IncidentType(row.incident_type),
        priority=row.priority,
        status=IncidentStatus(row.status),
        agencies=agencies,
        location=locations[-1] if locations else None,
        location_history=locations,
        call_ids=call_ids,
        notes=notes,
        tcpr=row.tcpr,
        created_at=row.created_at,
        updated_at=row.updated_at,
        closed_at=row.closed_at,
        created_by=row.created_by,
        confirmed_by=row.confirmed_by,
        timeline=timeline,
    )


# -------------------------------------------------------------------------------------- call takers


def taker_values(taker: CallTaker, now: datetime) -> dict[str, Any]:
    return {
        "id": taker.id,
        "name": taker.name,
        "desks": [d.value for d in taker.desks],
        "languages": list(taker.languages),
        "state": taker.state.value,
        "state_since": taker.state_since,
        "sip_uri": taker.sip_uri,
        "interface": taker.interface,
        "current_call_id": taker.current_call_id,
        "updated_at": now,
    }


def taker_from_row(row: CallTakerRow) -> CallTaker:
    return CallTaker(
        id=row.id,
        name=row.name,
        desks=tuple(DeskCode(d) for d in row.desks),
        languages=tuple(row.languages),
        state=TakerState(row.state),
        state_since=row.state_since,
        sip_uri=row.sip_uri,
        interface=row.interface,
        current_call_id=row.current_call_id,
    )


# ------------------------------------------------------------------------------ records of the API


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    password_hash: str
    role: str
    active: bool
    created_at: datetime
    token_version: int = 0


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key: str
    method: str
    path: str
    request_hash: str
    response_status: int
    response_body: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Webhook:
    id: int
    url: str
    secret: str
    events: tuple[str, ...]  # event types, or "*" for all
    active: bool
    created_at: datetime

    def wants(self, event_type: str) -> bool:
        return self.active and ("*" in self.events or event_type in self.events)


class DeliveryStatus:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # given up: no more attempts


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: int
    webhook_id: int
    url: str
    secret: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    status: str
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def user_from_row(row: UserRow) -> User:
    return User(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        role=row.role,
        active=row.active,
        created_at=row.created_at,
        token_version=row.token_version or 0,
    )


def idempotency_from_row(row: IdempotencyKeyRow) -> IdempotencyRecord:
    return IdempotencyRecord(
        key=row.key,
        method=row.method,
        path=row.path,
        request_hash=row.request_hash,
        response_status=row.response_status,
        response_body=row.response_body,
        created_at=row.created_at,
    )


def webhook_from_row(row: WebhookRow) -> Webhook:
    return Webhook(
        id=row.id,
        url=row.url,
        secret=row.secret,
        events=tuple(row.events),
        active=row.active,
        created_at=row.created_at,
    )


def delivery_from_row(row: WebhookDeliveryRow, hook: WebhookRow) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        webhook_id=row.webhook_id,
        url=hook.url,
        secret=hook.secret,
        event_id=row.event_id,
        event_type=row.event_type,
        payload=dict(row.payload),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        status=row.status,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )
