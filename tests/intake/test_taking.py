"""Who may accept a call (intake/taking.py), with fakes at the service's typed ports."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import pytest

from intake.domain import Call, CallerNumber, CallState, CallTaker
from intake.errors import NotFound, PermissionDenied
from intake.taking import CallTakingService, may_accept
from routing.vocabulary import DeskCode

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
ZZS_TAKER = CallTaker(id="zzs1", name="ZZS 1", desks=(DeskCode.ZZS,))
HZS_TAKER = CallTaker(id="hzs1", name="HZS 1", desks=(DeskCode.HZS,))


def waiting_call(desk: DeskCode, offered_to: str | None = None) -> Call:
    return Call(
        id="c1",
        call_ref="ref-1",
        source="sip",
        dialled="155",
        caller=CallerNumber(raw="+420603123456"),
        state=CallState.QUEUED,
        offered_at=T0,
        desk=desk,
        taker_id=offered_to,
    )


class FakeRecords:
    def __init__(self, *takers: CallTaker) -> None:
        self.takers = {t.id: t for t in takers}
        self.listed: dict[str, Any] = {}
        self.stored: list[Call] = []

    def get_taker(self, taker_id: str) -> CallTaker:
        if taker_id not in self.takers:
            raise NotFound(f"call taker {taker_id} does not exist")
        return self.takers[taker_id]

    def list_calls(
        self,
        state: Any = None,
        desk: Any = None,
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
        self.listed = {"scope_desks": scope_desks, "scope_taker": scope_taker, "state": state}
        return list(self.stored), len(self.stored)


class FakeCalls:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.accepted: list[tuple[str, str]] = []

    async def get(self, call_id: str) -> Call:
        return self.call

    async def accept(self, call_id: str, taker_id: str) -> Call:
        self.accepted.append((call_id, taker_id))
        self.call.taker_id = taker_id
        return self.call

    def live_calls(self) -> list[Call]:
        return [self.call]


def test_a_call_taker_may_take_a_call_offered_to_them_or_waiting_unoffered_on_their_desk() -> None:
    assert may_accept(waiting_call(DeskCode.ZZS), ZZS_TAKER)
    assert may_accept(waiting_call(DeskCode.HZS, offered_to="zzs1"), ZZS_TAKER)
    assert not may_accept(waiting_call(DeskCode.HZS), ZZS_TAKER)
    assert not may_accept(waiting_call(DeskCode.ZZS, offered_to="zzs2"), ZZS_TAKER)


async def test_a_call_taker_accepts_on_their_desk_but_not_on_another() -> None:
    calls = FakeCalls(waiting_call(DeskCode.ZZS))
    service = CallTakingService(FakeRecords(ZZS_TAKER, HZS_TAKER), calls)
    with pytest.raises(PermissionDenied):
        await service.accept("c1", "hzs1", supervisor=False)
    assert calls.accepted == []
    taken = await service.accept("c1", "zzs1", supervisor=False)
    assert taken.taker_id == "zzs1" and calls.accepted == [("c1", "zzs1")]


async def test_only_a_supervisor_accepts_for_someone_else_and_only_for_a_call_taker() -> None:
    calls = FakeCalls(waiting_call(DeskCode.HZS))
    service = CallTakingService(FakeRecords(ZZS_TAKER, HZS_TAKER), calls)
    with pytest.raises(PermissionDenied):
        await service.accept("c1", "zzs1", supervisor=False, for_taker="hzs1")
    with pytest.raises(NotFound):
        await service.accept("c1", "boss", supervisor=True, for_taker="nobody")
    # A supervisor may give any call to any call taker, whatever their desks.
    await service.accept("c1", "boss", supervisor=True, for_taker="zzs1")
    assert calls.accepted == [("c1", "zzs1")]


async def test_call_lists_keep_the_scope_and_show_live_calls_fresh() -> None:
    stored = waiting_call(DeskCode.ZZS)
    live = waiting_call(DeskCode.ZZS, offered_to="zzs1")
    records = FakeRecords(ZZS_TAKER)
    records.stored = [stored]
    service = CallTakingService(records, FakeCalls(live))
    calls, total = await service.list_calls(state="queued", scope_desks=["ZZS"], scope_taker="zzs1")
    assert total == 1 and calls[0] is live
    assert records.listed == {"scope_desks": ["ZZS"], "scope_taker": "zzs1", "state": "queued"}
    assert await service.taker_of("nobody") is None
