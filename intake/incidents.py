"""The common incident record: opened from triage, linked across calls, confirmed or corrected by people.

Every change goes through the repository, which appends a timeline entry in the same transaction; every
change is then announced on the live bus (consoles) and on the incident stream (integrations).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from intake.bus import EventBus, LiveEvent
from intake.domain import AgencyStatus, Call, Incident, IncidentStatus, Location, LocationSource, utc_now
from intake.errors import LiveStateError, ValidationFailed
from intake.location import PlaceGazetteer, location_from_spoken
from intake.serialize import decision_json, decision_summary
from intake.views import incident_json
from routing.duplicates import LinkProposal, OpenIncident, propose_link, rank_links
from routing.types import SpokenLocation, TriageDecision
from routing.vocabulary import Agency, IncidentType

log = logging.getLogger(__name__)

# Fields a person may change on an incident, and how each is checked.
EDITABLE_FIELDS = frozenset(
    {"incident_type", "priority", "status", "agencies_add", "agency_status", "location", "note", "tcpr"}
)


@dataclass(frozen=True, slots=True)
class DuplicateProposal:
    incident_id: str
    score: float
    reason: str
    auto_link: bool  # strong enough to link without asking; the call taker can still unlink


def open_incident(incident: Incident) -> OpenIncident:
    """An incident as routing's duplicate rule sees it."""
    where = incident.location
    return OpenIncident(
        id=incident.id,
        incident_type=incident.incident_type,
        agencies=tuple(incident.agency_codes),
        created_at=incident.created_at.timestamp(),
        municipality=where.municipality if where else None,
        part=where.part if where else None,
        street=where.street if where else None,
        landmark=where.landmark if where else None,
        road=where.road if where else None,
    )


def spoken_location(where: Location | None) -> SpokenLocation | None:
    """An incident's place in the terms routing's duplicate rule compares."""
    if where is None:
        return None
    return SpokenLocation(
        municipality=where.municipality,
        part=where.part,
        street=where.street,
        house_number=where.house_number,
        landmark=where.landmark,
        road=where.road,
    )


class DuplicateFinder:
    """Applies routing's duplicate rule to the open incidents of the database.

    A match at or above ``auto_link_score`` links the call at once (twenty callers about one fire become one
    incident without twenty clicks); a weaker one is only proposed to the call taker.
    """

    def __init__(self, window: timedelta, auto_link_score: float = 0.5) -> None:
        self._window = window
        self._auto = auto_link_score

    def __call__(
        self, call: Call, decision: TriageDecision, candidates: list[Incident]
    ) -> DuplicateProposal | None:
        open_incidents = [open_incident(i) for i in candidates if i.status is not IncidentStatus.CLOSED]
        proposal = propose_link(
            decision.incident_type.value,
            decision.location,
            utc_now().timestamp(),
            open_incidents,
            window_s=self._window.total_seconds(),
        )
        if proposal is None:
            return None
        return DuplicateProposal(
            incident_id=proposal.incident_id,
            score=proposal.score,
            reason="; ".join(proposal.reasons),
            auto_link=proposal.score >= self._auto,
        )


class IncidentService:
    def __init__(
        self,
        repo: Any,
        live: Any | None,
        bus: EventBus,
        region: str,
        duplicate_window: timedelta,
        duplicate_finder: Any | None = None,
        places: PlaceGazetteer | None = None,
    ) -> None:
        self._places = places
        self._repo = repo
        self._live = live
        self._bus = bus
        self._region = region
        self._window = duplicate_window
        self._find_duplicate = duplicate_finder
        # Weak duplicate matches, shown to the call taker beside the new incident (never only in memory:
        # the proposal is also written on the new incident's timeline).
        self.last_proposal: dict[str, DuplicateProposal] = {}
        # Told after every change of an incident, so its calls' records follow it (set by CallService).
        self.on_changed: Callable[[Incident], Awaitable[None]] | None = None

    # ---------------------------------------------------------------------------------------- reads

    async def get(self, incident_id: str) -> Incident:
        incident: Incident = await asyncio.to_thread(self._repo.get_incident, incident_id)
        return incident

    async def search(self, **filters: Any) -> tuple[list[Incident], int]:
        result: tuple[list[Incident], int] = await asyncio.to_thread(self._repo.list_incidents, **filters)
        return result

    async def open_incidents(self) -> list[Incident]:
        since = utc_now() - self._window
        result: list[Incident] = await asyncio.to_thread(self._repo.open_incidents, since)
        return result

    async def duplicates_of(self, incident_id: str) -> list[tuple[Incident, LinkProposal]]:
        """Open incidents that may report the same event as this one, best first: the same rule (routing's
        :func:`~routing.duplicates.rank_links`) that links calls automatically, so the console never
        contradicts the auto-link. A proposal only: a person decides whether to link."""
        incident = await self.get(incident_id)
        others = {i.id: i for i in await self.open_incidents() if i.id != incident.id}
        ranked = rank_links(
            incident.incident_type,
            spoken_location(incident.location),
            incident.created_at.timestamp(),
            [open_incident(i) for i in others.values() if i.status is not IncidentStatus.CLOSED],
            window_s=self._window.total_seconds(),
        )
        return [(others[p.incident_id], p) for p in ranked]

    # ------------------------------------------------------------------------------ from triage

    async def open_for_call(self, call: Call, decision: TriageDecision) -> tuple[Incident, bool]:
        """Give a call its incident: link it to an open one about the same event, or open a new one.

        Returns the incident and whether the call was linked to an existing incident.
        """
        if self._find_duplicate is not None:
            candidates = await self.open_incidents()
            proposal = self._find_duplicate(call, decision, candidates)
            if proposal is not None and proposal.auto_link:
                incident = await self.link_call(
                    proposal.incident_id,
                    call.id,
                    actor="triage",
                    reason=proposal.reason,
                    score=proposal.score,
                )
                return incident, True
        incident = await asyncio.to_thread(
            self._repo.create_incident,
            self._region,
            decision.incident_type.value,
            decision.priority.value,
            [a.value for a in decision.agencies],
            self._spoken(decision) or call.location,
            decision.tcpr.value,
            "triage",
            {"call_id": call.id, "triage": decision_json(decision)},
        )
        await asyncio.to_thread(self._repo.link_call, incident.id, call.id, "triage", "first call")
        proposal = self.last_proposal.pop(call.id, None)
        if proposal is not None:
            await asyncio.to_thread(
                self._repo.append_timeline,
                incident.id,
                "triage",
                "duplicate_proposed",
                {"incident_id": proposal.incident_id, "score": proposal.score, "reason": proposal.reason},
            )
        incident = await self.get(incident.id)
        extra: dict[str, Any] = {"call_id": call.id}
        if proposal is not None:
            # Shown to the call taker beside the new incident: link it with one click, or leave it.
            extra["duplicate_proposal"] = {
                "incident_id": proposal.incident_id,
                "score": proposal.score,
                "reason": proposal.reason,
            }
        await self._announce("incident.created", incident, extra)
        return incident, False

    async def record_triage_update(self, incident_id: str, decision: TriageDecision) -> None:
        """Triage changed its mind while the caller spoke: keep the proposal on the timeline, change nothing
        a person has already confirmed."""
        await asyncio.to_thread(
            self._repo.append_timeline, incident_id, "triage", "triage_proposed", decision_json(decision)
        )
        incident = await self.get(incident_id)
        if incident.confirmed_by is None and incident.status is IncidentStatus.NEW:
            changes: dict[str, Any] = {}
            summary = decision_summary(decision)
            if summary["incident_type"] != incident.incident_type.value:
                changes["incident_type"] = decision.incident_type.value
            if summary["priority"] != incident.priority:
                changes["priority"] = decision.priority.value
            if summary["tcpr"] and not incident.tcpr:
                changes["tcpr"] = True
            missing = [a.value for a in decision.agencies if a.value not in incident.agency_codes]
            if missing:
                changes["agencies_add"] = missing
            location = self._spoken(decision)
            if (
                location is not None
                and (incident.location is None or incident.location.source is LocationSource.SPOKEN)
                and (incident.location is None or incident.location.text() != location.text())
            ):
                changes["location"] = location
            if changes:
                incident = await asyncio.to_thread(
                    self._repo.update_incident, incident_id, "triage", "triage_updated", changes
                )
                await self._announce("incident.updated", incident, {"by": "triage"})

    # ----------------------------------------------------------------------------- people's changes

    async def confirm(
        self, incident_id: str, actor: str, corrections: dict[str, Any] | None = None
    ) -> Incident:
        """The call taker accepts triage's proposal, possibly corrected. The timeline keeps what triage
        proposed beside what the person decided: that is the data to improve triage."""
        corrections = self._check_changes(corrections or {})
        before = await self.get(incident_id)
        proposed = {
            "incident_type": before.incident_type.value,
            "priority": before.priority,
            "agencies": [a.value for a in before.agency_codes],
            "tcpr": before.tcpr,
        }
        changes = dict(corrections)
        changes["confirmed_by"] = actor
        if before.status is IncidentStatus.NEW:
            changes["status"] = IncidentStatus.ACTIVE
        action = "triage_corrected" if corrections else "triage_confirmed"
        incident = await asyncio.to_thread(
            self._repo.update_incident,
            incident_id,
            actor,
            action,
            changes,
        )
        await asyncio.to_thread(
            self._repo.append_timeline,
            incident_id,
            actor,
            "triage_review",
            {"proposed": proposed, "corrections": _jsonable(corrections)},
        )
        incident = await self.get(incident_id)
        await self._announce("incident.updated", incident, {"by": actor, "action": action})
        return incident

    async def update(self, incident_id: str, actor: str, changes: dict[str, Any]) -> Incident:
        changes = self._check_changes(changes)
        if not changes:
            raise ValidationFailed("no change given", fields=sorted(EDITABLE_FIELDS))
        incident = await asyncio.to_thread(self._repo.update_incident, incident_id, actor, "updated", changes)
        await self._announce("incident.updated", incident, {"by": actor})
        return incident

    async def create(
        self,
        actor: str,
        incident_type: IncidentType,
        priority: int,
        agencies: list[Agency],
        location: Location | None = None,
        note: str | None = None,
        call_id: str | None = None,
    ) -> Incident:
        """A call taker opens an incident by hand (or an integration does)."""
        incident = await asyncio.to_thread(
            self._repo.create_incident,
            self._region,
            incident_type,
            priority,
            agencies,
            location,
            False,
            actor,
            {"manual": True},
        )
        if note:
            incident = await asyncio.to_thread(
                self._repo.update_incident, incident.id, actor, "note_added", {"note": note}
            )
        if call_id:
            await asyncio.to_thread(self._repo.link_call, incident.id, call_id, actor, "opened by call taker")
        incident = await self.get(incident.id)
        await self._announce("incident.created", incident, {"by": actor})
        return incident

    async def add_location(self, incident_id: str, location: Location, actor: str) -> Incident:
        """A better position for the incident; the repository keeps the previous ones in its history."""
        incident = await asyncio.to_thread(
            self._repo.update_incident, incident_id, actor, "location_updated", {"location": location}
        )
        await self._announce("incident.updated", incident, {"by": actor, "location": location})
        return incident

    async def link_call(
        self, incident_id: str, call_id: str, actor: str, reason: str, score: float | None = None
    ) -> Incident:
        await asyncio.to_thread(self._repo.link_call, incident_id, call_id, actor, reason)
        incident = await self.get(incident_id)
        await self._announce(
            "incident.linked", incident, {"call_id": call_id, "reason": reason, "score": score}
        )
        return incident

    async def unlink_call(self, incident_id: str, call_id: str, actor: str, reason: str) -> Incident:
        await asyncio.to_thread(self._repo.unlink_call, incident_id, call_id, actor, reason)
        incident = await self.get(incident_id)
        await self._announce("incident.updated", incident, {"by": actor, "unlinked": call_id})
        return incident

    def _spoken(self, decision: TriageDecision) -> Location | None:
        if decision.location is None:
            return None
        return location_from_spoken(decision.location, utc_now(), self._places)

    async def _announce(self, kind: str, incident: Incident, extra: dict[str, Any]) -> None:
        if self.on_changed is not None:
            await self.on_changed(incident)
        body = incident_json(incident)
        await self._bus.publish(LiveEvent(kind, {**body, **_jsonable(extra)}, incident_id=incident.id))
        if self._live is not None:
            try:
                await self._live.publish_incident_event({"type": kind, "incident": body, **_jsonable(extra)})
            except LiveStateError as exc:
                # The database holds the truth; integrators replay from it (and from the stream once back).
                log.error("incident stream unavailable, %s %s not streamed: %s", kind, incident.id, exc)

    @staticmethod
    def _check_changes(changes: dict[str, Any]) -> dict[str, Any]:
        unknown = set(changes) - EDITABLE_FIELDS
        if unknown:
            raise ValidationFailed(f"cannot change {', '.join(sorted(unknown))}", fields=sorted(unknown))
        out: dict[str, Any] = {}
        for key, value in changes.items():
            try:
                if key == "incident_type":
                    out[key] = IncidentType(value)
                elif key == "priority":
                    if int(value) not in (1, 2, 3):
                        raise ValueError("priority must be 1, 2 or 3")
                    out[key] = int(value)
                elif key == "status":
                    out[key] = IncidentStatus(value)
                elif key == "agencies_add":
                    out[key] = [Agency(a) for a in value]
                elif key == "agency_status":
                    out[key] = {Agency(a): AgencyStatus(s) for a, s in dict(value).items()}
                elif key == "location":
                    location = value if isinstance(value, Location) else taker_location(value)
                    if location is not None:
                        out[key] = location
                elif key == "note":
                    text = str(value).strip()
                    if not text:
                        raise ValueError("note is empty")
                    out[key] = text
                elif key == "tcpr":
                    out[key] = bool(value)
            except (ValueError, TypeError) as exc:
                raise ValidationFailed(f"{key}: {exc}", field=key) from exc
        return out


TAKER_LOCATION_FIELDS = frozenset(
    {"municipality", "part", "street", "house_number", "landmark", "road", "lat", "lon", "radius_m"}
)


def taker_location(value: Mapping[str, object] | None) -> Location | None:
    """A place a person typed (the incident form, the REST API): the fields given, with the certainty of
    a person who asked; None when nothing was given (an empty place changes nothing)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("location must be an object")
    fields: dict[str, Any] = {
        k: v for k, v in value.items() if k in TAKER_LOCATION_FIELDS and v not in (None, "")
    }
    if not fields:
        return None
    return Location(source=LocationSource.CALL_TAKER, confidence=1.0, **fields)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(getattr(k, "value", k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Location):
        return {"source": value.source.value, "text": value.text()}
    return getattr(value, "value", value)
