"""Storage of calls and their append-only transcripts (the call aggregate)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, false, func, or_, select
from sqlalchemy.orm import Session

from intake.domain import Call, CallState, TranscriptSegment, settled_by_retry, utc_now
from intake.errors import NotForCallback, NotFound
from intake.storage.core import StoreCore, escape_like, page
from intake.storage.mapping import (
    as_utc,
    call_from_row,
    call_values,
    like_pattern,
    segment_key,
    segment_values,
)
from intake.storage.tables import CallRow, TranscriptSegmentRow
from routing.vocabulary import DeskCode
from telephony.events import EndReason


class CallStore(StoreCore):
    """Calls: saved whole by id, transcripts appended idempotently, listed and searched."""

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
                stored, last_seq = _stored_segments(session, call.id)
                new = []
                for segment in call.transcript:
                    key = segment_key(segment)
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
            stored, last_seq = _stored_segments(session, call_id)
            existing = stored.get(segment_key(segment))
            if existing is not None:
                return existing
            seq = last_seq + 1
            session.execute(
                self._insert(TranscriptSegmentRow).values(**segment_values(call_id, seq, segment))
            )
            return seq

        return self._write(f"append transcript to call {call_id}", work)

    def get_call(self, call_id: str) -> Call:
        def work(session: Session) -> Call:
            row = session.get(CallRow, call_id)
            if row is None:
                raise NotFound(f"call {call_id} does not exist", call_id=call_id)
            return calls_from_rows(session, [row], with_transcript=True)[0]

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
            return calls_from_rows(session, [row], with_transcript=True)[0] if row else None

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
                    escape_like(CallRow.id, raw_pattern),
                    escape_like(CallRow.call_ref, raw_pattern),
                    escape_like(CallRow.caller_raw, raw_pattern),
                    escape_like(CallRow.caller_e164, raw_pattern),
                    exists().where(
                        TranscriptSegmentRow.call_id == CallRow.id,
                        escape_like(TranscriptSegmentRow.text_folded, pattern),
                    ),
                )
            )
        limit, offset = page(limit, offset)

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
            return calls_from_rows(session, rows, with_transcript=with_transcript), total

        return self._read("list calls", work)

    def calls_in_states(self, states: Iterable[CallState]) -> list[Call]:
        """Every call in one of ``states``, oldest first, without transcripts (e.g. queued calls to rebuild
        Redis desk queues from after Redis lost its data)."""
        values = [CallState(s).value for s in states]

        def work(session: Session) -> list[Call]:
            rows = list(
                session.scalars(select(CallRow).where(CallRow.state.in_(values)).order_by(CallRow.offered_at))
            )
            return calls_from_rows(session, rows, with_transcript=False)

        return self._read("list live calls", work)

    def settle_refused_attempts(self, call_ref: str, taken_as: str, at: datetime) -> list[Call]:
        """The same INVITE (same SIP Call-ID) was taken as call ``taken_as`` after a node refused it (503 at
        its call limit, or stopping) and the front tried the next node: the refused attempt's record needs
        no call-back any more. It is kept (the refusal is part of the story) and marked called back by
        intake. Returns the settled records."""

        def work(session: Session) -> list[Call]:
            rows = list(
                session.scalars(
                    select(CallRow)
                    .where(
                        CallRow.call_ref == call_ref,
                        CallRow.id != taken_as,
                        CallRow.end_reason == EndReason.REJECTED.value,
                        CallRow.answered_at.is_(None),
                        CallRow.callback_done_at.is_(None),
                    )
                    .with_for_update()
                )
            )
            for row in rows:
                row.callback_done_at = as_utc(at)
                row.callback_by = settled_by_retry(taken_as)
                row.updated_at = utc_now()
            session.flush()
            return calls_from_rows(session, rows, with_transcript=False)

        return self._write(f"settle refused attempts of {call_ref}", work)

    def mark_called_back(self, call_id: str, by: str, at: datetime | None = None) -> Call:
        """Record that someone called an abandoned caller back. The first call-back is kept."""

        def work(session: Session) -> Call:
            row = session.execute(
                select(CallRow).where(CallRow.id == call_id).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                raise NotFound(f"call {call_id} does not exist", call_id=call_id)
            call = calls_from_rows(session, [row], with_transcript=False)[0]
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
            return calls_from_rows(session, [row], with_transcript=True)[0]

        return self._write(f"mark call {call_id} called back", work)


def calls_from_rows(session: Session, rows: list[CallRow], with_transcript: bool) -> list[Call]:
    """Domain calls from their rows, with transcripts (one query for all of them) on request."""
    segments: dict[str, list[TranscriptSegmentRow]] = {row.id: [] for row in rows}
    if with_transcript and rows:
        for segment in session.scalars(
            select(TranscriptSegmentRow)
            .where(TranscriptSegmentRow.call_id.in_(list(segments)))
            .order_by(TranscriptSegmentRow.call_id, TranscriptSegmentRow.seq)
        ):
            segments[segment.call_id].append(segment)
    return [call_from_row(row, segments[row.id]) for row in rows]


def _stored_segments(session: Session, call_id: str) -> tuple[dict[tuple[Any, ...], int], int]:
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
