"""An incident's timeline and its linked calls, and the in-transaction steps every incident change shares.

Every change to an incident locks the incident row first (:func:`lock_incident`), then appends its
timeline entry with ``seq = last_seq + 1`` in the same transaction (:func:`append_entry`): seqs 1..N
without gaps or losses, however many nodes write at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.domain import AgencyAssignment, Incident, Location, TimelineEntry, utc_now
from intake.errors import NotFound
from intake.storage.core import StoreCore
from intake.storage.mapping import (
    agency_from_row,
    as_utc,
    incident_from_rows,
    json_value,
    location_from_row,
    timeline_from_row,
)
from intake.storage.tables import (
    CallRow,
    IncidentAgencyRow,
    IncidentCallRow,
    IncidentLocationRow,
    IncidentNoteRow,
    IncidentRow,
    IncidentTimelineRow,
)


class TimelineStore(StoreCore):
    """Timeline entries and call links of incidents."""

    def link_call(self, incident_id: str, call_id: str, actor: str, reason: str | None = None) -> Incident:
        """Link a stored call to an incident (timeline "call_linked"); linking twice changes nothing."""

        def work(session: Session) -> Incident:
            row = lock_incident(session, incident_id)
            if link_in_session(session, row, call_id, actor, reason, utc_now()):
                row.updated_at = utc_now()
            session.flush()
            return load_incidents(session, [row], with_timeline=True)[0]

        return self._write(f"link call {call_id} to incident {incident_id}", work)

    def unlink_call(self, incident_id: str, call_id: str, actor: str, reason: str | None = None) -> Incident:
        """Remove a call's link (timeline "call_unlinked"); NotFound when it was not linked."""

        def work(session: Session) -> Incident:
            row = lock_incident(session, incident_id)
            link = session.get(IncidentCallRow, (incident_id, call_id))
            if link is None:
                raise NotFound(
                    f"call {call_id} is not linked to incident {incident_id}",
                    incident_id=incident_id,
                    call_id=call_id,
                )
            session.delete(link)
            call = session.get(CallRow, call_id)
            if call is not None and call.incident_id == incident_id:
                other = session.scalars(
                    select(IncidentCallRow.incident_id)
                    .where(IncidentCallRow.call_id == call_id, IncidentCallRow.incident_id != incident_id)
                    .order_by(IncidentCallRow.linked_at.desc())
                    .limit(1)
                ).first()
                call.incident_id = other
                call.updated_at = utc_now()
            now = utc_now()
            row.updated_at = now
            append_entry(session, row, actor, "call_unlinked", {"call_id": call_id, "reason": reason}, now)
            session.flush()
            return load_incidents(session, [row], with_timeline=True)[0]

        return self._write(f"unlink call {call_id} from incident {incident_id}", work)

    def append_timeline(
        self,
        incident_id: str,
        actor: str,
        action: str,
        data: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> TimelineEntry:
        """Append one entry to an incident's timeline (e.g. "triage_proposed", "agency_alerted")."""

        def work(session: Session) -> TimelineEntry:
            row = lock_incident(session, incident_id)
            when = as_utc(at) if at is not None else utc_now()
            entry = append_entry(session, row, actor, action, json_value(dict(data or {})), when)
            row.updated_at = max(row.updated_at, when)
            return entry

        return self._write(f"append to timeline of incident {incident_id}", work)

    def timeline(self, incident_id: str, after_seq: int = 0) -> list[TimelineEntry]:
        """The timeline entries with seq greater than ``after_seq``, in order."""

        def work(session: Session) -> list[TimelineEntry]:
            if session.get(IncidentRow, incident_id) is None:
                raise NotFound(f"incident {incident_id} does not exist", incident_id=incident_id)
            return [
                timeline_from_row(r)
                for r in session.scalars(
                    select(IncidentTimelineRow)
                    .where(
                        IncidentTimelineRow.incident_id == incident_id, IncidentTimelineRow.seq > after_seq
                    )
                    .order_by(IncidentTimelineRow.seq)
                )
            ]

        return self._read(f"timeline of incident {incident_id}", work)


def lock_incident(session: Session, incident_id: str) -> IncidentRow:
    row = session.execute(
        select(IncidentRow).where(IncidentRow.id == incident_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"incident {incident_id} does not exist", incident_id=incident_id)
    return row


def append_entry(
    session: Session, row: IncidentRow, actor: str, action: str, data: dict[str, Any], at: datetime
) -> TimelineEntry:
    # The caller holds the incident row lock (or created the row), so last_seq + 1 is ours alone.
    row.last_seq += 1
    entry = IncidentTimelineRow(
        incident_id=row.id, seq=row.last_seq, at=at, actor=actor, action=action, data=data
    )
    session.add(entry)
    return timeline_from_row(entry)


def link_in_session(
    session: Session, row: IncidentRow, call_id: str, actor: str, reason: str | None, now: datetime
) -> bool:
    call = session.get(CallRow, call_id)
    if call is None:
        raise NotFound(f"call {call_id} does not exist", call_id=call_id)
    if session.get(IncidentCallRow, (row.id, call_id)) is not None:
        return False
    session.add(
        IncidentCallRow(incident_id=row.id, call_id=call_id, linked_at=now, linked_by=actor, reason=reason)
    )
    call.incident_id = row.id
    call.updated_at = now
    append_entry(session, row, actor, "call_linked", {"call_id": call_id, "reason": reason}, now)
    return True


def load_incidents(session: Session, rows: list[IncidentRow], with_timeline: bool) -> list[Incident]:
    if not rows:
        return []
    ids = [r.id for r in rows]
    agencies: dict[str, list[AgencyAssignment]] = {i: [] for i in ids}
    for a in session.scalars(
        select(IncidentAgencyRow)
        .where(IncidentAgencyRow.incident_id.in_(ids))
        .order_by(IncidentAgencyRow.incident_id, IncidentAgencyRow.position)
    ):
        agencies[a.incident_id].append(agency_from_row(a))
    locations: dict[str, list[Location]] = {i: [] for i in ids}
    for loc in session.scalars(
        select(IncidentLocationRow)
        .where(IncidentLocationRow.incident_id.in_(ids))
        .order_by(IncidentLocationRow.incident_id, IncidentLocationRow.seq)
    ):
        locations[loc.incident_id].append(location_from_row(loc))
    calls: dict[str, list[str]] = {i: [] for i in ids}
    for link in session.scalars(
        select(IncidentCallRow)
        .where(IncidentCallRow.incident_id.in_(ids))
        .order_by(IncidentCallRow.incident_id, IncidentCallRow.linked_at, IncidentCallRow.call_id)
    ):
        calls[link.incident_id].append(link.call_id)
    notes: dict[str, list[str]] = {i: [] for i in ids}
    for note in session.scalars(
        select(IncidentNoteRow)
        .where(IncidentNoteRow.incident_id.in_(ids))
        .order_by(IncidentNoteRow.incident_id, IncidentNoteRow.seq)
    ):
        notes[note.incident_id].append(note.text)
    timelines: dict[str, list[TimelineEntry]] = {i: [] for i in ids}
    if with_timeline:
        for entry in session.scalars(
            select(IncidentTimelineRow)
            .where(IncidentTimelineRow.incident_id.in_(ids))
            .order_by(IncidentTimelineRow.incident_id, IncidentTimelineRow.seq)
        ):
            timelines[entry.incident_id].append(timeline_from_row(entry))
    return [
        incident_from_rows(r, agencies[r.id], locations[r.id], calls[r.id], notes[r.id], timelines[r.id])
        for r in rows
    ]
