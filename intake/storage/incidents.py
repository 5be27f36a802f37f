"""Storage of incidents: readable ids, the changes a call taker makes, searches (the incident aggregate).

Concurrency (several intake nodes share one database):

* readable incident ids come from ``incident_counters`` through an upsert whose row lock is held until
  commit (PostgreSQL), or inside a ``BEGIN IMMEDIATE`` write transaction (SQLite): no duplicates, no gaps;
* every change to an incident locks the incident row first (``SELECT … FOR UPDATE``), then appends its
  timeline entry with ``seq = last_seq + 1`` in the same transaction (:mod:`intake.storage.timeline`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from intake.domain import (
    INCIDENT_TRANSITIONS,
    AgencyStatus,
    Incident,
    IncidentStatus,
    Location,
    check_priority,
    utc_now,
)
from intake.errors import Conflict, IllegalTransition, NotFound, ValidationFailed
from intake.storage.core import StoreCore, escape_like, page
from intake.storage.mapping import (
    as_utc,
    fold,
    json_value,
    like_pattern,
    location_from_json,
    location_from_row,
    location_row,
    location_search_text,
    location_to_json,
)
from intake.storage.tables import (
    IncidentAgencyRow,
    IncidentCounterRow,
    IncidentLocationRow,
    IncidentNoteRow,
    IncidentRow,
)
from intake.storage.timeline import append_entry, link_in_session, load_incidents, lock_incident
from routing.vocabulary import Agency, IncidentType

REGION_PATTERN = re.compile(r"^[A-Z0-9]{1,8}$")
OPEN_STATUSES = (IncidentStatus.NEW.value, IncidentStatus.ACTIVE.value)

# The changes update_incident understands (keys of its ``changes`` argument).
INCIDENT_CHANGE_KEYS = frozenset(
    {
        "incident_type",
        "priority",
        "status",
        "tcpr",
        "agencies_add",
        "agencies_remove",
        "agency_status",
        "location",
        "note",
        "confirmed_by",
    }
)


def incident_version(incident: Incident) -> int:
    """The optimistic version of an incident: the seq of its newest timeline entry."""
    return incident.timeline[-1].seq if incident.timeline else 0


class IncidentStore(StoreCore):
    """Incidents: opened with the next readable id, changed with a before/after timeline entry, searched."""

    def create_incident(
        self,
        region: str,
        incident_type: IncidentType | str,
        priority: int,
        agencies: Iterable[Agency | str],
        location: Location | None,
        tcpr: bool,
        actor: str,
        data: Mapping[str, Any] | None = None,
        *,
        call_ids: Iterable[str] = (),
        at: datetime | None = None,
    ) -> Incident:
        """Open an incident with the next readable id ``REGION-YEAR-NNNNNN`` (UTC year).

        In the same transaction: the "created" timeline entry (seq 1, with ``data`` merged in), the first
        location of its history and a "call_linked" entry per call in ``call_ids``.
        """
        region = region.strip().upper()
        if not REGION_PATTERN.match(region):
            raise ValidationFailed(
                f"region code must be 1-8 letters or digits, not {region!r}", region=region
            )
        try:
            incident_type = IncidentType(incident_type)
            check_priority(priority)
            agency_list = list(dict.fromkeys(Agency(a) for a in agencies))
        except ValueError as exc:
            raise ValidationFailed(str(exc)) from exc
        created_at = as_utc(at) if at is not None else utc_now()
        links = list(dict.fromkeys(call_ids))

        def work(session: Session) -> Incident:
            number = self._next_incident_number(session, region, created_at.year)
            incident_id = f"{region}-{created_at.year}-{number:06d}"
            search = " ".join(
                [
                    incident_id,
                    incident_type.value,
                    location_search_text(location),
                    *(a.value for a in agency_list),
                ]
            )
            incident = IncidentRow(
                id=incident_id,
                region=region,
                year=created_at.year,
                number=number,
                incident_type=incident_type.value,
                priority=priority,
                status=IncidentStatus.NEW.value,
                tcpr=tcpr,
                created_at=created_at,
                updated_at=created_at,
                closed_at=None,
                created_by=actor,
                confirmed_by=None,
                last_seq=0,
                search_folded=fold(search),
            )
            session.add(incident)
            session.flush()
            for position, agency in enumerate(agency_list):
                session.add(
                    IncidentAgencyRow(
                        incident_id=incident_id,
                        agency=agency.value,
                        position=position,
                        status=AgencyStatus.ALERTED.value,
                        updated_at=created_at,
                    )
                )
            if location is not None:
                session.add(location_row(incident_id, 1, location, actor))
            created = {
                "incident_type": incident_type.value,
                "priority": priority,
                "agencies": [a.value for a in agency_list],
                "location": location_to_json(location),
                "tcpr": tcpr,
            }
            created.update(json_value(dict(data or {})))
            append_entry(session, incident, actor, "created", created, created_at)
            for call_id in links:
                link_in_session(session, incident, call_id, actor, None, created_at)
            session.flush()
            return load_incidents(session, [incident], with_timeline=True)[0]

        return self._write("create incident", work)

    def _next_incident_number(self, session: Session, region: str, year: int) -> int:
        # The upsert's row lock is held until commit, so concurrent creators queue here and every
        # committed incident got a distinct number; a rolled-back one gives its number back.
        stmt = (
            self._insert(IncidentCounterRow)
            .values(region=region, year=year, last_number=1)
            .on_conflict_do_update(
                index_elements=["region", "year"],
                set_={"last_number": IncidentCounterRow.last_number + 1},
            )
            .returning(IncidentCounterRow.last_number)
        )
        return int(session.execute(stmt).scalar_one())

    def get_incident(self, incident_id: str) -> Incident:
        """An incident with agencies, location history, linked call ids, notes and its full timeline."""

        def work(session: Session) -> Incident:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise NotFound(f"incident {incident_id} does not exist", incident_id=incident_id)
            return load_incidents(session, [row], with_timeline=True)[0]

        return self._read(f"get incident {incident_id}", work)

    def list_incidents(
        self,
        status: IncidentStatus | str | Collection[IncidentStatus | str] | None = None,
        agency: Agency | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
        with_timeline: bool = False,
    ) -> tuple[list[Incident], int]:
        """Incidents newest first (by created_at) and the total matching; timelines only on request.

        ``text`` matches id, type, agencies, every location and note, ignoring case and diacritics.
        """
        conditions: list[Any] = []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            conditions.append(IncidentRow.status.in_([IncidentStatus(s).value for s in statuses]))
        if agency is not None:
            conditions.append(
                exists().where(
                    IncidentAgencyRow.incident_id == IncidentRow.id,
                    IncidentAgencyRow.agency == Agency(agency).value,
                )
            )
        if since is not None:
            conditions.append(IncidentRow.created_at >= as_utc(since))
        if until is not None:
            conditions.append(IncidentRow.created_at < as_utc(until))
        if text:
            conditions.append(escape_like(IncidentRow.search_folded, like_pattern(text)))
        limit, offset = page(limit, offset)

        def work(session: Session) -> tuple[list[Incident], int]:
            total = session.scalar(select(func.count()).select_from(IncidentRow).where(*conditions)) or 0
            query = (
                select(IncidentRow)
                .where(*conditions)
                .order_by(IncidentRow.created_at.desc(), IncidentRow.id.desc())
                .limit(limit)
                .offset(offset)
            )
            rows = list(session.scalars(query))
            return load_incidents(session, rows, with_timeline=with_timeline), total

        return self._read("list incidents", work)

    def open_incidents(self, since: datetime, with_timeline: bool = False) -> list[Incident]:
        """Incidents not closed and changed at or after ``since`` (creation counts), newest first:
        the candidates duplicate detection compares a new call against."""

        def work(session: Session) -> list[Incident]:
            rows = list(
                session.scalars(
                    select(IncidentRow)
                    .where(IncidentRow.status.in_(OPEN_STATUSES), IncidentRow.updated_at >= as_utc(since))
                    .order_by(IncidentRow.created_at.desc())
                )
            )
            return load_incidents(session, rows, with_timeline=with_timeline)

        return self._read("list open incidents", work)

    def update_incident(
        self,
        incident_id: str,
        actor: str,
        action: str,
        changes: Mapping[str, Any],
        expected_version: int | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Incident:
        """Apply ``changes`` and append one timeline entry ``action`` with the before/after values.

        Keys of ``changes`` (see INCIDENT_CHANGE_KEYS): ``incident_type``, ``priority`` (1-3),
        ``status`` (checked against INCIDENT_TRANSITIONS; IllegalTransition otherwise), ``tcpr``,
        ``agencies_add`` (list), ``agencies_remove`` (list), ``agency_status`` ({agency: AgencyStatus}),
        ``location`` (a Location; the old one stays in the history), ``note`` (text, author = actor),
        ``confirmed_by``. ``expected_version`` is the seq of the newest timeline entry the caller saw
        (:func:`incident_version`); a different current version raises Conflict. ``data`` is merged into the
        timeline entry's data.
        """
        unknown = set(changes) - INCIDENT_CHANGE_KEYS
        if unknown:
            raise ValidationFailed(
                f"unknown incident changes: {', '.join(sorted(unknown))}", fields=sorted(unknown)
            )

        def work(session: Session) -> Incident:
            row = lock_incident(session, incident_id)
            if expected_version is not None and row.last_seq != expected_version:
                raise Conflict(
                    f"incident {incident_id} changed meanwhile (version {row.last_seq}, expected {expected_version})",
                    incident_id=incident_id,
                    current_version=row.last_seq,
                    expected_version=expected_version,
                )
            now = utc_now()
            before: dict[str, Any] = {}
            after: dict[str, Any] = {}
            try:
                self._apply_changes(session, row, actor, changes, before, after, now)
            except ValueError as exc:
                raise ValidationFailed(str(exc), incident_id=incident_id) from exc
            entry_data: dict[str, Any] = {"before": json_value(before), "after": json_value(after)}
            entry_data.update(json_value(dict(data or {})))
            row.updated_at = now
            append_entry(session, row, actor, action, entry_data, now)
            session.flush()
            return load_incidents(session, [row], with_timeline=True)[0]

        return self._write(f"update incident {incident_id}", work)

    def _apply_changes(
        self,
        session: Session,
        row: IncidentRow,
        actor: str,
        changes: Mapping[str, Any],
        before: dict[str, Any],
        after: dict[str, Any],
        now: datetime,
    ) -> None:
        if "incident_type" in changes:
            new_type = IncidentType(changes["incident_type"])
            before["incident_type"], after["incident_type"] = row.incident_type, new_type.value
            row.incident_type = new_type.value
            row.search_folded += " " + fold(new_type.value)
        if "priority" in changes:
            new_priority = check_priority(int(changes["priority"]))
            before["priority"], after["priority"] = row.priority, new_priority
            row.priority = new_priority
        if "tcpr" in changes:
            before["tcpr"], after["tcpr"] = row.tcpr, bool(changes["tcpr"])
            row.tcpr = bool(changes["tcpr"])
        if "confirmed_by" in changes:
            before["confirmed_by"], after["confirmed_by"] = row.confirmed_by, changes["confirmed_by"]
            row.confirmed_by = changes["confirmed_by"]
        if "status" in changes:
            current = IncidentStatus(row.status)
            target = IncidentStatus(changes["status"])
            if target is not current and target not in INCIDENT_TRANSITIONS[current]:
                raise IllegalTransition(
                    f"incident {row.id}: {current.value} -> {target.value} is not allowed",
                    incident_id=row.id,
                    current=current.value,
                    target=target.value,
                )
            before["status"], after["status"] = current.value, target.value
            row.status = target.value
            if target is IncidentStatus.CLOSED and current is not IncidentStatus.CLOSED:
                row.closed_at = now
            elif target is not IncidentStatus.CLOSED:
                row.closed_at = None
        if any(k in changes for k in ("agencies_add", "agencies_remove", "agency_status")):
            self._change_agencies(session, row, changes, before, after, now)
        if "location" in changes:
            new_location = changes["location"]
            if isinstance(new_location, dict):
                new_location = location_from_json(new_location)
            if not isinstance(new_location, Location):
                raise ValueError("location must be a Location")
            previous = session.scalars(
                select(IncidentLocationRow)
                .where(IncidentLocationRow.incident_id == row.id)
                .order_by(IncidentLocationRow.seq.desc())
                .limit(1)
            ).first()
            before["location"] = location_from_row(previous) if previous is not None else None
            after["location"] = new_location
            session.add(location_row(row.id, (previous.seq if previous else 0) + 1, new_location, actor))
            row.search_folded += " " + fold(location_search_text(new_location))
        if "note" in changes:
            note = str(changes["note"]).strip()
            if not note:
                raise ValueError("a note must not be empty")
            last_note = session.scalar(
                select(func.coalesce(func.max(IncidentNoteRow.seq), 0)).where(
                    IncidentNoteRow.incident_id == row.id
                )
            )
            session.add(
                IncidentNoteRow(incident_id=row.id, seq=(last_note or 0) + 1, at=now, author=actor, text=note)
            )
            after["note"] = note
            row.search_folded += " " + fold(note)

    def _change_agencies(
        self,
        session: Session,
        row: IncidentRow,
        changes: Mapping[str, Any],
        before: dict[str, Any],
        after: dict[str, Any],
        now: datetime,
    ) -> None:
        assigned = {
            a.agency: a
            for a in session.scalars(
                select(IncidentAgencyRow)
                .where(IncidentAgencyRow.incident_id == row.id)
                .order_by(IncidentAgencyRow.position)
            )
        }
        before["agencies"] = {code: a.status for code, a in assigned.items()}
        next_position = max((a.position for a in assigned.values()), default=-1) + 1
        for agency in changes.get("agencies_add") or ():
            code = Agency(agency).value
            if code not in assigned:
                new = IncidentAgencyRow(
                    incident_id=row.id,
                    agency=code,
                    position=next_position,
                    status=AgencyStatus.ALERTED.value,
                    updated_at=now,
                )
                next_position += 1
                session.add(new)
                assigned[code] = new
                row.search_folded += " " + fold(code)
        for agency in changes.get("agencies_remove") or ():
            code = Agency(agency).value
            removed = assigned.pop(code, None)
            if removed is not None:
                session.delete(removed)
        for agency, status in dict(changes.get("agency_status") or {}).items():
            code = Agency(agency).value
            if code not in assigned:
                raise Conflict(f"incident {row.id} has no {code} assignment", incident_id=row.id, agency=code)
            assigned[code].status = AgencyStatus(status).value
            assigned[code].updated_at = now
        after["agencies"] = {code: a.status for code, a in assigned.items()}
