"""Taking calls: who may accept a call, and the call lists a call taker or supervisor works from.

The rule of who may accept a call lives here, once: a call taker takes a call offered to them, or one
waiting on one of their desks that nobody was offered yet; a supervisor may take any call, for themselves
or for a call taker. The REST API only says who is asking.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import datetime

from intake.domain import Call, CallTaker
from intake.errors import NotFound, PermissionDenied
from intake.ports import TakingCalls, TakingRecords
from routing.vocabulary import DeskCode


def may_accept(call: Call, taker: CallTaker) -> bool:
    """Whether ``taker`` may take ``call`` on their own: it was offered to them, or it waits on one of
    their desks and nobody was offered it yet."""
    offered_to_taker = call.taker_id == taker.id
    waiting_on_their_desk = call.taker_id is None and call.desk in taker.desks
    return offered_to_taker or waiting_on_their_desk


class CallTakingService:
    """Accepting calls and listing them, for call takers and supervisors."""

    def __init__(self, records: TakingRecords, calls: TakingCalls) -> None:
        self._records = records
        self._calls = calls

    async def taker_of(self, username: str) -> CallTaker | None:
        """The call-taker record of a user, or None when the user takes no calls."""
        try:
            return await asyncio.to_thread(self._records.get_taker, username)
        except NotFound:
            return None

    async def accept(self, call_id: str, by: str, *, supervisor: bool, for_taker: str | None = None) -> Call:
        """``by`` takes the call (or, a supervisor only, has ``for_taker`` take it).

        PermissionDenied when a call taker accepts for someone else, or a call neither offered to them nor
        waiting on one of their desks; NotFound when the one to take it is no call taker.
        """
        taker_id = by
        if for_taker is not None:
            if not supervisor and for_taker != by:
                raise PermissionDenied("only a supervisor may accept a call for someone else")
            taker_id = for_taker
        taker = await asyncio.to_thread(self._records.get_taker, taker_id)  # NotFound: no call taker
        if not supervisor:
            waiting = await self._calls.get(call_id)
            if not may_accept(waiting, taker):
                raise PermissionDenied(
                    "the call is neither offered to you nor waiting on one of your desks",
                    call_id=call_id,
                    desk=waiting.desk.value if waiting.desk else None,
                )
        return await self._calls.accept(call_id, taker_id)

    async def list_calls(
        self,
        *,
        state: str | None = None,
        desk: DeskCode | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
        scope_desks: Collection[str] | None = None,
        scope_taker: str | None = None,
    ) -> tuple[list[Call], int]:
        """Stored calls newest first (``scope_desks``/``scope_taker``: what a call taker may read), each
        call still live on this node in its current, fresher form."""
        calls, total = await asyncio.to_thread(
            self._records.list_calls,
            state=state,
            desk=desk,
            since=since,
            until=until,
            text=text,
            limit=limit,
            offset=offset,
            scope_desks=scope_desks,
            scope_taker=scope_taker,
        )
        live = {c.id: c for c in self._calls.live_calls()}
        return [live.get(c.id, c) for c in calls], total
