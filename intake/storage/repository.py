"""The repository: every durable read and write of izs-intake, one database transaction per method.

Methods are synchronous (SQLAlchemy sessions are); async callers run them with ``asyncio.to_thread``.
Database failures surface as :class:`~intake.errors.StorageError` (the cause chained), missing things as
:class:`~intake.errors.NotFound`, contradictions as :class:`~intake.errors.Conflict`.

Concurrency (several intake nodes share one database):

* readable incident ids come from ``incident_counters`` through an upsert whose row lock is held until
  commit (PostgreSQL), or inside a ``BEGIN IMMEDIATE`` write transaction (SQLite): no duplicates, no gaps;
* every change to an incident locks the incident row first (``SELECT … FOR UPDATE``), then appends its
  timeline entry with ``seq = last_seq + 1`` in the same transaction: seqs 1..N without gaps or losses;
* deadlocks and serialization failures (and SQLite's "database is locked") are retried a few times.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, delete, exists, false, func, or_, select
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from intake.domain import (
    INCIDENT_TRANSITIONS,
    AgencyAssignment,
    AgencyStatus,
    Call,
    CallState,
    CallTaker,
    Incident,
    IncidentStatus,
    Location,
    TimelineEntry,
    TranscriptSegment,
    check_priority,
    utc_now,
)
from intake.errors import (
    Conflict,
    IllegalTransition,
    IzsError,
    NotForCallback,
    NotFound,
    StorageError,
    ValidationFailed,
)
from intake.storage.database import Database
from intake.storage.mapping import (
    DeliveryStatus,
    IdempotencyRecord,
    User,
    Webhook,
    WebhookDelivery,
    agency_from_row,
    as_utc,
    call_from_row,
    call_values,
    fold,
    json_value,
    like_pattern,
    location_from_json,
    location_from_row,
    location_row,
    location_search_text,
    location_to_json,
    segment_values,
    taker_from_row,
    taker_values,
    timeline_from_row,
)
from intake.storage.tables import (
    CallRow,
    CallTakerRow,
    IdempotencyKeyRow,
    IncidentAgencyRow,
    IncidentCallRow,
    IncidentCounterRow,
    IncidentLocationRow,
    IncidentNoteRow,
    IncidentRow,
    IncidentTimelineRow,
    TranscriptSegmentRow,
    UserRow,
    WebhookDeliveryRow,
    WebhookRow,
)
from routing.vocabulary import Agency, DeskCode, IncidentType

log = logging.getLogger(__name__)

T = TypeVar("T")

REGION_PATTERN = re.compile(r"^[A-Z0-9]{1,8}$")
OPEN_STATUSES = (IncidentStatus.NEW.value, IncidentStatus.ACTIVE.value)
MAX_PAGE = 1000

# PostgreSQL SQLSTATEs worth retrying: serialization_failure, deadlock_detected, lock_not_available
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03"}
_WRITE_ATTEMPTS = 5

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


def _escape_like(column: Any, pattern: str) -> Any:
    return column.like(pattern, escape="\\")


class Repository:
    """Durable storage of calls, incidents, call takers, users, idempotency keys and webhooks."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._writer = sessionmaker(bind=db.engine, expire_on_commit=False)
        self._reader = sessionmaker(bind=db.reader, expire_on_commit=False)

    # ------------------------------------------------------------------------------------ transactions

    def _write(
        self,
        what: str,
        work: Callable[[Session], T],
        on_integrity_error: Callable[[IntegrityError], IzsError] | None = None,
    ) -> T:
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                with self._writer() as session, session.begin():
                    return work(session)
            except IntegrityError as exc:
                if on_integrity_error is not None:
                    raise on_integrity_error(exc) from exc
                raise StorageError(f"{what}: {exc.orig}", operation=what) from exc
            except DataError as exc:
                # A value the database cannot hold (a NUL byte in an id from a URL): nothing stored matches.
                raise NotFound(f"{what}: no such value ({exc.orig})", operation=what) from exc
            except (OperationalError, DBAPIError) as exc:
                if attempt < _WRITE_ATTEMPTS and self._is_transient(exc):
                    delay = 0.02 * 2**attempt * (0.5 + random.random())
                    log.info(
                        "%s: transient database error, retry %d in %.2fs: %s", what, attempt, delay, exc.orig
                    )
                    time.sleep(delay)
                    continue
                raise StorageError(f"{what}: {exc.orig}", operation=what) from exc
            except SQLAlchemyError as exc:
                raise StorageError(f"{what}: {exc}", operation=what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, what: str, work: Callable[[Session], T]) -> T:
        try:
            with self._reader() as session, session.begin():
                return work(session)
        except DataError as exc:
            # A value the database cannot even hold (PostgreSQL refuses NUL bytes in text): nothing stored
            # can match it. That is the caller's input, not a storage failure.
            raise NotFound(f"{what}: no such value ({exc.orig})", operation=what) from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"{what}: {exc}", operation=what) from exc

    def _is_transient(self, exc: DBAPIError) -> bool:
        if self.db.is_sqlite:
            return "locked" in str(exc.orig) or "busy" in str(exc.orig)
        return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES

    def _insert(self, table: Any) -> Any:
        """A dialect INSERT that supports ON CONFLICT (both SQLite and PostgreSQL spell it the same)."""
        if self.db.is_postgresql:
            return pg_dialect.insert(table)
        return sqlite_dialect.insert(table)

    # ------------------------------------------------------------------------------------------- calls

    def save_call(self, call: Call) -> None:
        """Insert or update a call by id, and append the transcript segments not stored yet.

        ``incident_id`` and the call-back fields are only ever set here, never cleared (link_call,
        unlink_call and mark_called_back own them), so saving a stale copy of a call loses nothing.
        The transcript is append-only and idempotent: a segment already stored (same leg, start, end and
        text, whether it came through here or :meth:`append_transcript`) is never stored twice, so
        saving a call again, or replaying a journal after an outage, loses and duplicates nothing.
        """

        def work(session: Session) -> None:
            values = call_values(call, utc_now())
            stmt = self._insert(CallRow).values(**values)
            updates: dict[str, Any] = {k: v for k, v in values.items() if k != "id"}
            # Set elsewhere (link_call, mark_called_back): a stale in-memory Call must not erase them.
            for sticky in ("incident_id", "callback_done_at", "callback_by"):
                updates[sticky] = func.coalesce(getattr(stmt.excluded, sticky), getattr(CallRow, sticky))
            session.execute(stmt.on_conflict_do_update(index_elements=[CallRow.id], set_=updates))
            if call.transcript:
                # Lock the call row: concurrent transcript writers of one call take turns.
                session.execute(select(CallRow.id).where(CallRow.id == call.id).with_for_update())
                stored, last_seq = self._stored_segments(session, call.id)
                new = []
                for segment in call.transcript:
                    key = _segment_key(segment)
                    if key in stored:
                        continue
                    stored[key] = last_seq = last_seq + 1
                    new.append(segment_values(call.id, last_seq, segment))
                if new:
                    session.execute(self._insert(TranscriptSegmentRow).values(new))

        self._write(f"save call {call.id}", work)

    def append_transcript(self, call_id: str, segment: TranscriptSegment) -> int:
        """Append one transcript segment to a stored call; returns its seq (1-based). Appending the same
        segment again (a retry) returns the seq it already has."""

        def work(session: Session) -> int:
            found = session.execute(
                select(CallRow.id).where(CallRow.id == call_id).with_for_update()
            ).scalar_one_or_none()
            if found is None:
                raise NotFound(f"call {call_id} does not exist", call_id=call_id)
            stored, last_seq = self._stored_segments(session, call_id)
            existing = stored.get(_segment_key(segment))
            if existing is not None:
                return existing
            seq = last_seq + 1
            session.execute(
                self._insert(TranscriptSegmentRow).values(**segment_values(call_id, seq, segment))
            )
            return seq

        return self._write(f"append transcript to call {call_id}", work)

    def _stored_segments(self, session: Session, call_id: str) -> tuple[dict[tuple[Any, ...], int], int]:
        rows = session.execute(
            select(
                TranscriptSegmentRow.seq,
                TranscriptSegmentRow.leg,
                TranscriptSegmentRow.start_s,
                TranscriptSegmentRow.end_s,
                TranscriptSegmentRow.text,
            ).where(TranscriptSegmentRow.call_id == call_id)
        ).all()
        stored = {(leg, start, end, text): seq for seq, leg, start, end, text in rows}
        return stored, max((r[0] for r in rows), default=0)

    def get_call(self, call_id: str) -> Call:
        def work(session: Session) -> Call:
            row = session.get(CallRow, call_id)
            if row is None:
                raise NotFound(f"call {call_id} does not exist", call_id=call_id)
            return self._calls_from_rows(session, [row], with_transcript=True)[0]

        return self._read(f"get call {call_id}", work)

    def find_call_by_ref(self, call_ref: str) -> Call | None:
        """The newest call with this adapter reference (SIP Call-ID, Asterisk Uniqueid), if any."""

        def work(session: Session) -> Call | None:
            row = session.scalars(
                select(CallRow)
                .where(CallRow.call_ref == call_ref)
                .order_by(CallRow.offered_at.desc())
                .limit(1)
            ).first()
            return self._calls_from_rows(session, [row], with_transcript=True)[0] if row else None

        return self._read(f"find call {call_ref}", work)

    def list_calls(
        self,
        state: CallState | str | Collection[CallState | str] | None = None,
        desk: DeskCode | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        abandoned_uncalled: bool = False,
        limit: int = 50,
        offset: int = 0,
        with_transcript: bool = False,
        scope_desks: Collection[str] | None = None,
        scope_taker: str | None = None,
    ) -> tuple[list[Call], int]:
        """Calls newest first (by offered_at) and the total number matching the filters.

        ``since``/``until`` bound offered_at (since inclusive, until exclusive). ``text`` matches the id,
        adapter reference, caller number or transcript, case- and diacritics-insensitively.
        ``abandoned_uncalled`` keeps abandoned calls nobody has called back yet. The transcript is loaded
        only with ``with_transcript`` (lists stay light). ``scope_desks`` (with ``scope_taker``) keeps what a
        call taker may read: calls of those desks, calls of that taker, abandoned calls not yet called back.
        """
        conditions: list[Any] = []
        if scope_desks is not None:
            conditions.append(
                or_(
                    CallRow.desk.in_(list(scope_desks)),
                    CallRow.taker_id == scope_taker if scope_taker is not None else false(),
                    and_(CallRow.state == CallState.ABANDONED.value, CallRow.callback_done_at.is_(None)),
                )
            )
        if state is not None:
            states = [state] if isinstance(state, str) else list(state)
            conditions.append(CallRow.state.in_([CallState(s).value for s in states]))
        if desk is not None:
            conditions.append(CallRow.desk == DeskCode(desk).value)
        if since is not None:
            conditions.append(CallRow.offered_at >= as_utc(since))
        if until is not None:
            conditions.append(CallRow.offered_at < as_utc(until))
        if abandoned_uncalled:
            conditions.append(CallRow.state == CallState.ABANDONED.value)
            conditions.append(CallRow.callback_done_at.is_(None))
        if text:
            pattern = like_pattern(text)
            raw_pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append(
                or_(
                    _escape_like(CallRow.id, raw_pattern),
                    _escape_like(CallRow.call_ref, raw_pattern),
                    _escape_like(CallRow.caller_raw, raw_pattern),
                    _escape_like(CallRow.caller_e164, raw_pattern),
                    exists().where(
                        TranscriptSegmentRow.call_id == CallRow.id,
                        _escape_like(TranscriptSegmentRow.text_folded, pattern),
                    ),
                )
            )
        limit, offset = _page(limit, offset)

        def work(session: Session) -> tuple[list[Call], int]:
            total = session.scalar(select(func.count()).select_from(CallRow).where(*conditions)) or 0
            rows = list(
                session.scalars(
                    select(CallRow)
                    .where(*conditions)
                    .order_by(CallRow.offered_at.desc(), CallRow.id)
                    .limit(limit)
                    .offset(offset)
                )
            )
            return self._calls_from_rows(session, rows, with_transcript=with_transcript), total

        return self._read("list calls", work)

    def calls_in_states(self, states: Iterable[CallState]) -> list[Call]:
        """Every call in one of ``states``, oldest first, without transcripts (e.g. queued calls to rebuild
        Redis desk queues from after Redis lost its data)."""
        values = [CallState(s).value for s in states]

        def work(session: Session) -> list[Call]:
            rows = list(
                session.scalars(select(CallRow).where(CallRow.state.in_(values)).order_by(CallRow.offered_at))
            )
            return self._calls_from_rows(session, rows, with_transcript=False)

        return self._read("list live calls", work)

    def mark_called_back(self, call_id: str, by: str, at: datetime | None = None) -> Call:
        """Record that someone called an abandoned caller back. The first call-back is kept."""

        def work(session: Session) -> Call:
            row = session.execute(
                select(CallRow).where(CallRow.id == call_id).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                raise NotFound(f"call {call_id} does not exist", call_id=call_id)
            call = self._calls_from_rows(session, [row], with_transcript=False)[0]
            if not call.may_be_called_back:
                raise NotForCallback(
                    f"call {call_id} is {call.state.value}"
                    + (" and was answered" if call.answered_at is not None else "")
                    + ": only an abandoned call, or one that ended without a call taker, is called back",
                    call_id=call_id,
                    state=call.state.value,
                )
            if row.callback_done_at is None:
                row.callback_done_at = at or utc_now()
                row.callback_by = by
                row.updated_at = utc_now()
                session.flush()
            return self._calls_from_rows(session, [row], with_transcript=True)[0]

        return self._write(f"mark call {call_id} called back", work)

    def _calls_from_rows(self, session: Session, rows: list[CallRow], with_transcript: bool) -> list[Call]:
        segments: dict[str, list[TranscriptSegmentRow]] = {row.id: [] for row in rows}
        if with_transcript and rows:
            for segment in session.scalars(
                select(TranscriptSegmentRow)
                .where(TranscriptSegmentRow.call_id.in_(list(segments)))
                .order_by(TranscriptSegmentRow.call_id, TranscriptSegmentRow.seq)
            ):
                segments[segment.call_id].append(segment)
        return [call_from_row(row, segments[row.id]) for row in rows]

    # --------------------------------------------------------------------------------------- incidents

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
            self._append(session, incident, actor, "created", created, created_at)
            for call_id in links:
                self._link(session, incident, call_id, actor, None, created_at)
            session.flush()
            return self._incidents_from_rows(session, [incident], with_timeline=True)[0]

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
            return self._incidents_from_rows(session, [row], with_timeline=True)[0]

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
            conditions.append(_escape_like(IncidentRow.search_folded, like_pattern(text)))
        limit, offset = _page(limit, offset)

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
            return self._incidents_from_rows(session, rows, with_timeline=with_timeline), total

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
            return self._incidents_from_rows(session, rows, with_timeline=with_timeline)

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
            row = self._lock_incident(session, incident_id)
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
            self._append(session, row, actor, action, entry_data, now)
            session.flush()
            return self._incidents_from_rows(session, [row], with_timeline=True)[0]

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

    def link_call(self, incident_id: str, call_id: str, actor: str, reason: str | None = None) -> Incident:
        """Link a stored call to an incident (timeline "call_linked"); linking twice changes nothing."""

        def work(session: Session) -> Incident:
            row = self._lock_incident(session, incident_id)
            if self._link(session, row, call_id, actor, reason, utc_now()):
                row.updated_at = utc_now()
            session.flush()
            return self._incidents_from_rows(session, [row], with_timeline=True)[0]

        return self._write(f"link call {call_id} to incident {incident_id}", work)

    def unlink_call(self, incident_id: str, call_id: str, actor: str, reason: str | None = None) -> Incident:
        """Remove a call's link (timeline "call_unlinked"); NotFound when it was not linked."""

        def work(session: Session) -> Incident:
            row = self._lock_incident(session, incident_id)
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
            self._append(session, row, actor, "call_unlinked", {"call_id": call_id, "reason": reason}, now)
            session.flush()
            return self._incidents_from_rows(session, [row], with_timeline=True)[0]

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
            row = self._lock_incident(session, incident_id)
            when = as_utc(at) if at is not None else utc_now()
            entry = self._append(session, row, actor, action, json_value(dict(data or {})), when)
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

    def _lock_incident(self, session: Session, incident_id: str) -> IncidentRow:
        row = session.execute(
            select(IncidentRow).where(IncidentRow.id == incident_id).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"incident {incident_id} does not exist", incident_id=incident_id)
        return row

    def _append(
        self, session: Session, row: IncidentRow, actor: str, action: str, data: dict[str, Any], at: datetime
    ) -> TimelineEntry:
        # The caller holds the incident row lock (or created the row), so last_seq + 1 is ours alone.
        row.last_seq += 1
        entry = IncidentTimelineRow(
            incident_id=row.id, seq=row.last_seq, at=at, actor=actor, action=action, data=data
        )
        session.add(entry)
        return TimelineEntry(at=at, actor=actor, action=action, data=data, seq=row.last_seq)

    def _link(
        self, session: Session, row: IncidentRow, call_id: str, actor: str, reason: str | None, now: datetime
    ) -> bool:
        call = session.get(CallRow, call_id)
        if call is None:
            raise NotFound(f"call {call_id} does not exist", call_id=call_id)
        if session.get(IncidentCallRow, (row.id, call_id)) is not None:
            return False
        session.add(
            IncidentCallRow(
                incident_id=row.id, call_id=call_id, linked_at=now, linked_by=actor, reason=reason
            )
        )
        call.incident_id = row.id
        call.updated_at = now
        self._append(session, row, actor, "call_linked", {"call_id": call_id, "reason": reason}, now)
        return True

    def _incidents_from_rows(
        self, session: Session, rows: list[IncidentRow], with_timeline: bool
    ) -> list[Incident]:
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
            Incident(
                id=r.id,
                incident_type=IncidentType(r.incident_type),
                priority=r.priority,
                status=IncidentStatus(r.status),
                agencies=agencies[r.id],
                location=locations[r.id][-1] if locations[r.id] else None,
                location_history=locations[r.id],
                call_ids=calls[r.id],
                notes=notes[r.id],
                tcpr=r.tcpr,
                created_at=r.created_at,
                updated_at=r.updated_at,
                closed_at=r.closed_at,
                created_by=r.created_by,
                confirmed_by=r.confirmed_by,
                timeline=timelines[r.id],
            )
            for r in rows
        ]

    # ------------------------------------------------------------------------------------- call takers

    def upsert_taker(self, taker: CallTaker) -> None:
        def work(session: Session) -> None:
            values = taker_values(taker, utc_now())
            stmt = self._insert(CallTakerRow).values(**values)
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["id"], set_={k: v for k, v in values.items() if k != "id"}
                )
            )

        self._write(f"save call taker {taker.id}", work)

    def get_taker(self, taker_id: str) -> CallTaker:
        def work(session: Session) -> CallTaker:
            row = session.get(CallTakerRow, taker_id)
            if row is None:
                raise NotFound(f"call taker {taker_id} does not exist", taker_id=taker_id)
            return taker_from_row(row)

        return self._read(f"get call taker {taker_id}", work)

    def list_takers(self) -> list[CallTaker]:
        def work(session: Session) -> list[CallTaker]:
            return [
                taker_from_row(r) for r in session.scalars(select(CallTakerRow).order_by(CallTakerRow.id))
            ]

        return self._read("list call takers", work)

    def delete_taker(self, taker_id: str) -> None:
        def work(session: Session) -> None:
            if session.execute(delete(CallTakerRow).where(CallTakerRow.id == taker_id)).rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"call taker {taker_id} does not exist", taker_id=taker_id)

        self._write(f"delete call taker {taker_id}", work)

    # ------------------------------------------------------------------------------------------- users

    def create_user(self, username: str, password_hash: str, role: str, active: bool = True) -> User:
        """Conflict when the username is taken."""

        def work(session: Session) -> User:
            row = UserRow(
                username=username, password_hash=password_hash, role=role, active=active, created_at=utc_now()
            )
            session.add(row)
            session.flush()
            return _user(row)

        return self._write(
            f"create user {username}",
            work,
            on_integrity_error=lambda exc: Conflict(f"user {username} already exists", username=username),
        )

    def get_user(self, username: str) -> User | None:
        if "\x00" in username:
            return None  # no stored name holds a NUL byte (PostgreSQL text cannot)

        def work(session: Session) -> User | None:
            row = session.scalars(select(UserRow).where(UserRow.username == username)).first()
            return _user(row) if row is not None else None

        return self._read(f"get user {username}", work)

    def list_users(self) -> list[User]:
        def work(session: Session) -> list[User]:
            return [_user(r) for r in session.scalars(select(UserRow).order_by(UserRow.username))]

        return self._read("list users", work)

    def update_user(
        self,
        username: str,
        *,
        password_hash: str | None = None,
        role: str | None = None,
        active: bool | None = None,
    ) -> User:
        """Change a user; a new password, a new role or disabling revokes the user's tokens."""

        def work(session: Session) -> User:
            row = session.scalars(
                select(UserRow).where(UserRow.username == username).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"user {username} does not exist", username=username)
            revoke = password_hash is not None or (role is not None and role != row.role) or active is False
            if password_hash is not None:
                row.password_hash = password_hash
            if role is not None:
                row.role = role
            if active is not None:
                row.active = active
            if revoke:
                row.token_version = (row.token_version or 0) + 1
            session.flush()
            return _user(row)

        return self._write(f"update user {username}", work)

    def revoke_tokens(self, username: str) -> User:
        """Invalidate every token issued to ``username`` so far (logout). NotFound for an unknown user."""

        def work(session: Session) -> User:
            row = session.scalars(
                select(UserRow).where(UserRow.username == username).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"user {username} does not exist", username=username)
            row.token_version = (row.token_version or 0) + 1
            session.flush()
            return _user(row)

        return self._write(f"revoke tokens of {username}", work)

    # ------------------------------------------------------------------------------------- idempotency

    def get_idempotent(self, key: str) -> IdempotencyRecord | None:
        def work(session: Session) -> IdempotencyRecord | None:
            row = session.get(IdempotencyKeyRow, key)
            return _idempotency(row) if row is not None else None

        return self._read("get idempotency key", work)

    def save_idempotent(
        self,
        key: str,
        method: str,
        path: str,
        request_hash: str,
        response_status: int,
        response_body: str,
    ) -> IdempotencyRecord:
        """Store the response to a request with an Idempotency-Key; the first writer wins.

        Returns the stored record: when another node stored the same key first, its record (compare
        ``request_hash`` to tell a replay from a key reused for a different request).
        """

        def work(session: Session) -> IdempotencyRecord:
            stmt = self._insert(IdempotencyKeyRow).values(
                key=key,
                method=method,
                path=path,
                request_hash=request_hash,
                response_status=response_status,
                response_body=response_body,
                created_at=utc_now(),
            )
            session.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
            row = session.get(IdempotencyKeyRow, key)
            assert row is not None
            return _idempotency(row)

        return self._write("save idempotency key", work)

    def purge_idempotent(self, older_than: datetime) -> int:
        def work(session: Session) -> int:
            result = session.execute(
                delete(IdempotencyKeyRow).where(IdempotencyKeyRow.created_at < as_utc(older_than))
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

        return self._write("purge idempotency keys", work)

    # ---------------------------------------------------------------------------------------- webhooks

    def create_webhook(self, url: str, secret: str, events: Iterable[str], active: bool = True) -> Webhook:
        def work(session: Session) -> Webhook:
            row = WebhookRow(url=url, secret=secret, events=list(events), active=active, created_at=utc_now())
            session.add(row)
            session.flush()
            return _webhook(row)

        return self._write("create webhook", work)

    def get_webhook(self, webhook_id: int) -> Webhook:
        def work(session: Session) -> Webhook:
            row = session.get(WebhookRow, webhook_id)
            if row is None:
                raise NotFound(f"webhook {webhook_id} does not exist", webhook_id=webhook_id)
            return _webhook(row)

        return self._read(f"get webhook {webhook_id}", work)

    def list_webhooks(self, active_only: bool = False) -> list[Webhook]:
        def work(session: Session) -> list[Webhook]:
            query = select(WebhookRow).order_by(WebhookRow.id)
            if active_only:
                query = query.where(WebhookRow.active.is_(True))
            return [_webhook(r) for r in session.scalars(query)]

        return self._read("list webhooks", work)

    def update_webhook(
        self,
        webhook_id: int,
        *,
        url: str | None = None,
        secret: str | None = None,
        events: Iterable[str] | None = None,
        active: bool | None = None,
    ) -> Webhook:
        def work(session: Session) -> Webhook:
            row = session.get(WebhookRow, webhook_id, with_for_update=True)
            if row is None:
                raise NotFound(f"webhook {webhook_id} does not exist", webhook_id=webhook_id)
            if url is not None:
                row.url = url
            if secret is not None:
                row.secret = secret
            if events is not None:
                row.events = list(events)
            if active is not None:
                row.active = active
            session.flush()
            return _webhook(row)

        return self._write(f"update webhook {webhook_id}", work)

    def delete_webhook(self, webhook_id: int) -> None:
        """Delete a webhook and its deliveries."""

        def work(session: Session) -> None:
            session.execute(delete(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == webhook_id))
            if session.execute(delete(WebhookRow).where(WebhookRow.id == webhook_id)).rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"webhook {webhook_id} does not exist", webhook_id=webhook_id)

        self._write(f"delete webhook {webhook_id}", work)

    def enqueue_deliveries(
        self, event_id: str, event_type: str, payload: Mapping[str, Any], now: datetime | None = None
    ) -> int:
        """Queue one delivery of an event per active webhook that wants its type; idempotent per
        (webhook, event_id), so replaying the incident stream never double-queues. Returns how many were new."""
        when = as_utc(now) if now is not None else utc_now()
        body = json_value(dict(payload))

        def work(session: Session) -> int:
            hooks = [
                _webhook(r) for r in session.scalars(select(WebhookRow).where(WebhookRow.active.is_(True)))
            ]
            added = 0
            for hook in hooks:
                if not hook.wants(event_type):
                    continue
                stmt = self._insert(WebhookDeliveryRow).values(
                    webhook_id=hook.id,
                    event_id=event_id,
                    event_type=event_type,
                    payload=body,
                    attempts=0,
                    next_attempt_at=when,
                    status=DeliveryStatus.PENDING,
                    last_error=None,
                    created_at=when,
                    delivered_at=None,
                )
                inserted = session.execute(
                    stmt.on_conflict_do_nothing(index_elements=["webhook_id", "event_id"]).returning(
                        WebhookDeliveryRow.id
                    )
                ).first()
                added += inserted is not None
            return added

        return self._write("queue webhook deliveries", work)

    def due_deliveries(
        self, now: datetime | None = None, limit: int = 50, lease_s: float = 60.0
    ) -> list[WebhookDelivery]:
        """Claim up to ``limit`` pending deliveries due at ``now``, oldest first.

        Claiming pushes their ``next_attempt_at`` ``lease_s`` into the future, so another node polling
        meanwhile does not send them too; if the claimer dies, they come due again after the lease.
        """
        when = as_utc(now) if now is not None else utc_now()

        def work(session: Session) -> list[WebhookDelivery]:
            query = (
                select(WebhookDeliveryRow, WebhookRow)
                .join(WebhookRow, WebhookRow.id == WebhookDeliveryRow.webhook_id)
                .where(
                    WebhookDeliveryRow.status == DeliveryStatus.PENDING,
                    WebhookDeliveryRow.next_attempt_at <= when,
                    WebhookRow.active.is_(True),
                )
                .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
                .limit(max(1, min(limit, MAX_PAGE)))
                .with_for_update(skip_locked=True, of=WebhookDeliveryRow)
            )
            claimed = []
            for delivery, hook in session.execute(query):
                claimed.append(_delivery(delivery, hook))
                delivery.next_attempt_at = when + timedelta(seconds=lease_s)
            return claimed

        return self._write("claim webhook deliveries", work)

    def mark_delivery(
        self,
        delivery_id: int,
        delivered: bool,
        error: str | None = None,
        retry_at: datetime | None = None,
        now: datetime | None = None,
    ) -> WebhookDelivery:
        """Record one attempt: delivered, or failed with ``error`` and retried at ``retry_at``
        (``retry_at=None`` on failure gives up: status "failed")."""
        when = as_utc(now) if now is not None else utc_now()

        def work(session: Session) -> WebhookDelivery:
            row = session.get(WebhookDeliveryRow, delivery_id, with_for_update=True)
            if row is None:
                raise NotFound(f"webhook delivery {delivery_id} does not exist", delivery_id=delivery_id)
            row.attempts += 1
            if delivered:
                row.status = DeliveryStatus.DELIVERED
                row.delivered_at = when
                row.last_error = None
            else:
                row.last_error = (error or "failed")[:4000]
                if retry_at is None:
                    row.status = DeliveryStatus.FAILED
                else:
                    row.status = DeliveryStatus.PENDING
                    row.next_attempt_at = as_utc(retry_at)
            hook = session.get(WebhookRow, row.webhook_id)
            assert hook is not None
            session.flush()
            return _delivery(row, hook)

        return self._write(f"mark webhook delivery {delivery_id}", work)

    def list_deliveries(
        self, webhook_id: int | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[WebhookDelivery]:
        limit, offset = _page(limit, offset)

        def work(session: Session) -> list[WebhookDelivery]:
            query = select(WebhookDeliveryRow, WebhookRow).join(
                WebhookRow, WebhookRow.id == WebhookDeliveryRow.webhook_id
            )
            if webhook_id is not None:
                query = query.where(WebhookDeliveryRow.webhook_id == webhook_id)
            if status is not None:
                query = query.where(WebhookDeliveryRow.status == status)
            query = query.order_by(WebhookDeliveryRow.id.desc()).limit(limit).offset(offset)
            return [_delivery(d, h) for d, h in session.execute(query)]

        return self._read("list webhook deliveries", work)

    # --------------------------------------------------------------------------------------- upkeep

    def ping(self) -> bool:
        """True when the database answers (never raises)."""
        return self.db.ping()

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables (for health pages and tests)."""

        def work(session: Session) -> dict[str, int]:
            return {
                name: session.scalar(select(func.count()).select_from(table)) or 0
                for name, table in (
                    ("calls", CallRow),
                    ("incidents", IncidentRow),
                    ("incident_timeline", IncidentTimelineRow),
                    ("call_takers", CallTakerRow),
                    ("users", UserRow),
                    ("webhook_deliveries", WebhookDeliveryRow),
                )
            }

        return self._read("count rows", work)


def _segment_key(segment: TranscriptSegment) -> tuple[Any, ...]:
    return (segment.leg, float(segment.start_s), float(segment.end_s), segment.text)


def _page(limit: int, offset: int) -> tuple[int, int]:
    return max(0, min(int(limit), MAX_PAGE)), max(0, int(offset))


def _user(row: UserRow) -> User:
    return User(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        role=row.role,
        active=row.active,
        created_at=row.created_at,
        token_version=row.token_version or 0,
    )


def _idempotency(row: IdempotencyKeyRow) -> IdempotencyRecord:
    return IdempotencyRecord(
        key=row.key,
        method=row.method,
        path=row.path,
        request_hash=row.request_hash,
        response_status=row.response_status,
        response_body=row.response_body,
        created_at=row.created_at,
    )


def _webhook(row: WebhookRow) -> Webhook:
    return Webhook(
        id=row.id,
        url=row.url,
        secret=row.secret,
        events=tuple(row.events),
        active=row.active,
        created_at=row.created_at,
    )


def _delivery(row: WebhookDeliveryRow, hook: WebhookRow) -> WebhookDelivery:
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


__all__ = [
    "INCIDENT_CHANGE_KEYS",
    "DeliveryStatus",
    "IdempotencyRecord",
    "Repository",
    "User",
    "Webhook",
    "WebhookDelivery",
    "incident_version",
]
