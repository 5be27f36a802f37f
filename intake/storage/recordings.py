"""Durable storage of call recordings (voice logging): one row per recorded call, its audio in chunks.

Chunks are written while the call goes on (one per few seconds per leg), so what was recorded up to a
node's failure is in the shared database. Same transaction helpers and error mapping as the repository.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from intake.domain import utc_now
from intake.errors import NotFound
from intake.recording import Chunk, RecordingInfo, RecordingStatus
from intake.storage.core import StoreCore
from intake.storage.mapping import as_utc
from intake.storage.tables import RecordingChunkRow, RecordingRow


def _info(row: RecordingRow) -> RecordingInfo:
    return RecordingInfo(
        call_id=row.call_id,
        node=row.node,
        codec=row.codec,
        sample_rate=row.sample_rate,
        status=row.status,
        started_at=as_utc(row.started_at),
        ended_at=as_utc(row.ended_at) if row.ended_at else None,
        legs=dict(row.legs or {}),
        gaps=list(row.gaps or []),
        stored_bytes=row.stored_bytes,
        detail=row.detail,
        purged_at=as_utc(row.purged_at) if row.purged_at else None,
    )


class RecordingRepository(StoreCore):
    """Recordings on the centre's database (SQLite or PostgreSQL)."""

    def begin_recording(
        self, call_id: str, node: str, started_at: datetime, sample_rate: int, codec: str = "flac"
    ) -> None:
        """Register a recording at its first audio; registering it again changes nothing."""

        def work(session: Session) -> None:
            now = utc_now()
            stmt = self._insert(RecordingRow).values(
                call_id=call_id,
                node=node,
                codec=codec,
                sample_rate=sample_rate,
                status=RecordingStatus.RECORDING,
                started_at=started_at,
                ended_at=None,
                legs={},
                gaps=[],
                stored_bytes=0,
                detail=None,
                purged_at=None,
                updated_at=now,
            )
            session.execute(stmt.on_conflict_do_nothing(index_elements=[RecordingRow.call_id]))

        self._write(f"begin recording of call {call_id}", work)

    def append_chunk(self, call_id: str, chunk: Chunk) -> None:
        """Store one chunk; storing the same chunk again (a retry after a lost answer) keeps one copy."""

        def work(session: Session) -> None:
            stmt = self._insert(RecordingChunkRow).values(
                call_id=call_id,
                leg=chunk.leg,
                seq=chunk.seq,
                start_s=chunk.start_s,
                duration_s=chunk.duration_s,
                data=chunk.data,
                created_at=utc_now(),
            )
            session.execute(
                stmt.on_conflict_do_nothing(
                    index_elements=[RecordingChunkRow.call_id, RecordingChunkRow.leg, RecordingChunkRow.seq]
                )
            )

        self._write(f"store recording chunk of call {call_id}", work)

    def finish_recording(
        self,
        call_id: str,
        status: str,
        ended_at: datetime,
        legs: dict[str, dict[str, float]],
        gaps: list[dict[str, Any]],
        detail: str | None,
    ) -> None:
        def work(session: Session) -> None:
            stored = session.execute(
                select(func.coalesce(func.sum(func.length(RecordingChunkRow.data)), 0)).where(
                    RecordingChunkRow.call_id == call_id
                )
            ).scalar_one()
            session.execute(
                update(RecordingRow)
                .where(RecordingRow.call_id == call_id)
                .values(
                    status=status,
                    ended_at=ended_at,
                    legs=legs,
                    gaps=gaps,
                    detail=detail or None,
                    stored_bytes=int(stored),
                    updated_at=utc_now(),
                )
            )

        self._write(f"finish recording of call {call_id}", work)

    def get_recording(self, call_id: str) -> RecordingInfo | None:
        def work(session: Session) -> RecordingInfo | None:
            row = session.get(RecordingRow, call_id)
            return _info(row) if row is not None else None

        return self._read(f"get recording of call {call_id}", work)

    def recordings_of(self, call_ids: Collection[str]) -> dict[str, RecordingInfo]:
        if not call_ids:
            return {}

        def work(session: Session) -> dict[str, RecordingInfo]:
            rows = session.execute(select(RecordingRow).where(RecordingRow.call_id.in_(list(call_ids))))
            return {row.call_id: _info(row) for row in rows.scalars()}

        return self._read("get recordings", work)

    def recording_chunks(self, call_id: str, legs: Collection[str], from_s: float = 0.0) -> list[Chunk]:
        """The stored chunks of ``legs`` that reach past ``from_s``, in time order."""

        def work(session: Session) -> list[Chunk]:
            rows = session.execute(
                select(RecordingChunkRow)
                .where(
                    RecordingChunkRow.call_id == call_id,
                    RecordingChunkRow.leg.in_(list(legs)),
                    RecordingChunkRow.start_s + RecordingChunkRow.duration_s > from_s,
                )
                .order_by(RecordingChunkRow.leg, RecordingChunkRow.seq)
            ).scalars()
            return [Chunk(r.leg, r.seq, r.start_s, r.duration_s, bytes(r.data)) for r in rows]

        return self._read(f"read recording of call {call_id}", work)

    def recording_end_s(self, call_id: str, leg: str) -> float:
        """Where the stored audio of ``leg`` ends on the recording's time line (0 without any)."""

        def work(session: Session) -> float:
            end = session.execute(
                select(func.max(RecordingChunkRow.start_s + RecordingChunkRow.duration_s)).where(
                    RecordingChunkRow.call_id == call_id, RecordingChunkRow.leg == leg
                )
            ).scalar_one_or_none()
            return float(end or 0.0)

        return self._read(f"read recording of call {call_id}", work)

    def purge_recordings(self, started_before: datetime, limit: int = 500) -> int:
        """Delete the audio of recordings older than the retention period (their rows stay, ``purged``).
        Returns how many recordings were purged; a large backlog goes in batches of ``limit``."""

        def work(session: Session) -> int:
            ids = list(
                session.execute(
                    select(RecordingRow.call_id)
                    .where(
                        RecordingRow.started_at < started_before,
                        RecordingRow.status != RecordingStatus.PURGED,
                    )
                    .limit(limit)
                ).scalars()
            )
            if not ids:
                return 0
            session.execute(delete(RecordingChunkRow).where(RecordingChunkRow.call_id.in_(ids)))
            now = utc_now()
            session.execute(
                update(RecordingRow)
                .where(RecordingRow.call_id.in_(ids))
                .values(status=RecordingStatus.PURGED, purged_at=now, stored_bytes=0, updated_at=now)
            )
            return len(ids)

        return self._write("purge old recordings", work)

    def require_recording(self, call_id: str) -> RecordingInfo:
        info = self.get_recording(call_id)
        if info is None:
            raise NotFound(f"call {call_id} has no recording", call_id=call_id)
        return info
