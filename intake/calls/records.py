"""Writing a call's record: the database first, the node-local journal while the database is away, the
live list of active calls in Redis, and the call's events on the live bus."""

from __future__ import annotations

import asyncio
import logging

from intake.bus import LiveEvent
from intake.domain import Call
from intake.errors import LiveStateError, StorageError
from intake.ports import ActiveCalls, CallWriter, Journal, Publisher
from intake.views import call_json

log = logging.getLogger(__name__)


class CallRecords:
    def __init__(
        self,
        store: CallWriter,
        bus: Publisher,
        live: ActiveCalls | None = None,
        journal: Journal | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._live = live
        self._journal = journal
        self._journaled: set[str] = set()

    @property
    def journaled(self) -> frozenset[str]:
        """Ids of calls whose latest state waits in the journal."""
        return frozenset(self._journaled)

    async def save(self, call: Call) -> None:
        """The call's current state, durable (database or journal) and listed live for every node."""
        try:
            await asyncio.to_thread(self._store.save_call, call)
            if self._journal is not None and call.id in self._journaled:
                self._journaled.discard(call.id)
                self._journal.forget(call.id)
        except StorageError as exc:
            if self._journal is None:
                raise
            # The call goes on; its latest state waits in the local journal until the database is back.
            await self.journal(call)
            log.error("call %s: database unavailable, state journaled locally: %s", call.id, exc)
        if self._live is not None:
            try:
                if call.is_live:
                    await self._live.put_active_call(call.id, call_json(call))
                else:
                    await self._live.remove_active_call(call.id)
            except LiveStateError as exc:
                log.error("call %s: live state not updated: %s", call.id, exc)

    async def settle_refused_attempts(self, call: Call) -> None:
        """A node refused this INVITE before (503) and the front tried again here: the refused attempt is
        off the call-back list. Best effort: a failure leaves a needless call-back, never a lost call."""
        try:
            settled = await asyncio.to_thread(
                self._store.settle_refused_attempts, call.call_ref, call.id, call.offered_at
            )
        except StorageError as exc:
            log.error("call %s: refused attempts of the same INVITE not settled: %s", call.id, exc)
            return
        for refused in settled:
            log.info(
                "call %s: the refused attempt %s of the same INVITE needs no call-back", call.id, refused.id
            )
            view = call_json(refused)
            await self._bus.publish(
                LiveEvent(
                    "call.updated",
                    {"callback_done_at": view["callback_done_at"], "callback_by": view["callback_by"]},
                    call_id=refused.id,
                    desk=refused.desk.value if refused.desk else None,
                )
            )

    async def journal(self, call: Call) -> None:
        """Keep the call's snapshot (with its transcript) locally until the database takes it."""
        if self._journal is None:
            return
        await asyncio.to_thread(self._journal.record, call)
        self._journaled.add(call.id)

    async def drain_journal(self) -> tuple[int, int]:
        """Retry journaled call records. Returns (written, still pending)."""
        if self._journal is None:
            return 0, 0
        written, pending = await asyncio.to_thread(self._journal.drain, self._store)
        if written:
            log.warning("journal: %d call records written to the database after an outage", written)
            self._journaled = {c.id for c in await asyncio.to_thread(self._journal.pending)}
        return written, pending

    async def publish(self, call: Call, kind: str, data: dict[str, object]) -> None:
        await self._bus.publish(
            LiveEvent(
                kind,
                data,
                call_id=call.id,
                incident_id=call.incident_id,
                desk=call.desk.value if call.desk else None,
                taker_id=call.taker_id,
            )
        )
