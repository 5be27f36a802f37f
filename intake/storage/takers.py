"""Storage of call takers (their desks, languages and last known state)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from intake.domain import CallTaker, utc_now
from intake.errors import NotFound
from intake.storage.core import StoreCore
from intake.storage.mapping import taker_from_row, taker_values
from intake.storage.tables import CallTakerRow


class TakerStore(StoreCore):
    """Call takers by id."""

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
