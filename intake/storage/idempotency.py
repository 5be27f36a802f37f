"""Storage of Idempotency-Key records: the first response to a keyed request, shared by every node."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from intake.domain import utc_now
from intake.storage.core import StoreCore
from intake.storage.mapping import IdempotencyRecord, as_utc, idempotency_from_row
from intake.storage.tables import IdempotencyKeyRow


class IdempotencyStore(StoreCore):
    """Idempotency keys: the first writer wins."""

    def get_idempotent(self, key: str) -> IdempotencyRecord | None:
        def work(session: Session) -> IdempotencyRecord | None:
            row = session.get(IdempotencyKeyRow, key)
            return idempotency_from_row(row) if row is not None else None

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
            return idempotency_from_row(row)

        return self._write("save idempotency key", work)

    def purge_idempotent(self, older_than: datetime) -> int:
        def work(session: Session) -> int:
            result = session.execute(
                delete(IdempotencyKeyRow).where(IdempotencyKeyRow.created_at < as_utc(older_than))
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

        return self._write("purge idempotency keys", work)
