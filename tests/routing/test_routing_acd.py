"""Desk routing: queue order, skills and language, overflow to 112, reassign and priority override."""

from __future__ import annotations

import dataclasses

import pytest

from routing.acd import (
    CallTaker,
    QueueEntry,
    TakerState,
    choose_taker,
    entry_from_decision,
    next_call_for,
    order_queue,
    overflow,
    override_priority,
    queue_key,
    queue_score,
    reassign,
    set_state,
    should_overflow,
)
from routing.triage import Triage
from routing.types import TriageInput
from routing.vocabulary import DeskCode

T0 = 1_790_000_000.0


def entry(ref: str, priority: int = 2, at: float = 0.0, **kw: object) -> QueueEntry:
    return QueueEntry(
        call_ref=ref, desk=kw.pop("desk", DeskCode.ZZS), priority=priority, arrived_at=T0 + at, **kw
    )  # type: ignore[arg-type]


def taker(
    tid: str,
    idle_since: float,
    *,
    desks: set[DeskCode] | None = None,
    languages: set[str] | None = None,
    state: TakerState = TakerState.AVAILABLE,
) -> CallTaker:
    return CallTaker(
        tid, frozenset(desks or {DeskCode.ZZS}), frozenset(languages or {"cs"}), state, T0 + idle_since
    )


def test_queue_orders_by_priority_then_arrival() -> None:
    queue = [
        entry("late-p1", 1, at=30),
        entry("early-p2", 2, at=0),
        entry("early-p1", 1, at=10),
        entry("p3", 3, at=-50),
    ]
    assert [e.call_ref for e in order_queue(queue)] == ["early-p1", "late-p1", "early-p2", "p3"]


def test_cardiac_arrest_and_trapped_go_to_the_front() -> None:
    queue = [
        entry("p1", 1, at=0),
        entry("arrest", 2, at=60, tcpr=True),
        entry("trapped", 3, at=90, trapped=True),
    ]
    assert [e.call_ref for e in order_queue(queue)] == ["arrest", "trapped", "p1"]


def test_redis_score_gives_the_same_order_as_the_key() -> None:
    queue = [entry(f"c{i}", p, at=i * 7.5, tcpr=(i % 5 == 0)) for i, p in enumerate([3, 1, 2, 2, 1, 3, 1, 2])]
    assert sorted(queue, key=queue_score) == sorted(queue, key=queue_key)


def test_longest_idle_available_taker_with_the_desk_gets_the_call() -> None:
    takers = [
        taker("busy", -500, state=TakerState.BUSY),
        taker("paused", -400, state=TakerState.PAUSED),
        taker("wrap", -300, state=TakerState.WRAP_UP),
        taker("fire-desk", -600, desks={DeskCode.HZS}),
        taker("recent", -10),
        taker("longest", -200),
    ]
    chosen = choose_taker(entry("c1"), takers)
    assert chosen is not None and chosen.id == "longest"


def test_caller_language_is_a_required_skill() -> None:
    takers = [taker("czech-only", -500), taker("speaks-german", -10, languages={"cs", "de"})]
    chosen = choose_taker(entry("c1", language="de"), takers)
    assert chosen is not None and chosen.id == "speaks-german"
    assert choose_taker(entry("c2", language="vi"), takers) is None


def test_nobody_fits_means_the_call_waits() -> None:
    assert choose_taker(entry("c1"), [taker("t", -5, state=TakerState.BUSY)]) is None


def test_call_overflows_to_112_after_the_configured_wait() -> None:
    waiting = entry("c1", at=0)
    assert not should_overflow(waiting, T0 + 29, overflow_after_s=30)
    assert should_overflow(waiting, T0 + 30, overflow_after_s=30)
    moved = overflow(waiting)
    assert moved.desk is DeskCode.D112 and moved.overflowed and moved.reassigned_from is DeskCode.ZZS
    assert moved.arrived_at == waiting.arrived_at  # keeps its place in the line
    assert not should_overflow(moved, T0 + 999, overflow_after_s=30)


def test_reassign_moves_the_call_to_another_desk() -> None:
    moved = reassign(entry("c1", desk=DeskCode.HZS), DeskCode.ZZS)
    assert moved.desk is DeskCode.ZZS and moved.reassigned_from is DeskCode.HZS


def test_priority_override_is_recorded_with_who_made_it() -> None:
    changed = override_priority(entry("c1", 3), 1, by="supervisor-7")
    assert changed.priority == 1 and changed.priority_overridden_by == "supervisor-7"
    with pytest.raises(ValueError):
        override_priority(entry("c1"), 0, by="x")
    with pytest.raises(ValueError):
        override_priority(entry("c1"), 1, by="")


def test_available_taker_takes_the_most_urgent_call_they_can() -> None:
    t = taker("t", 0, languages={"cs"})
    queue = [
        entry("p2", 2, at=0),
        entry("german-arrest", 1, at=5, tcpr=True, language="de"),
        entry("p1", 1, at=9),
    ]
    nxt = next_call_for(t, queue)
    assert nxt is not None and nxt.call_ref == "p1"
    assert next_call_for(set_state(t, TakerState.BUSY, T0 + 1), queue) is None


def test_set_state_records_when_the_taker_became_idle() -> None:
    t = taker("t", -100, state=TakerState.WRAP_UP)
    now_free = set_state(t, TakerState.AVAILABLE, T0 + 5)
    assert now_free.state is TakerState.AVAILABLE and now_free.state_since == T0 + 5
    assert set_state(now_free, TakerState.AVAILABLE, T0 + 50) == now_free


def test_entry_from_triage_decision_carries_desk_priority_and_arrest_flag(triage: Triage) -> None:
    decision = triage.decide(TriageInput(dialled="150", transcript="manžel nereaguje a nedýchá"))
    e = entry_from_decision("call-1", decision, T0, "cs")
    assert (e.desk, e.priority, e.tcpr) == (DeskCode.ZZS, 1, True)
    trapped = triage.decide(TriageInput(dialled="112", transcript="bouračka, řidič je zaklíněný v autě"))
    assert entry_from_decision("call-2", trapped, T0, "cs").trapped


def test_entries_are_plain_values() -> None:
    e = entry("c1")
    assert dataclasses.asdict(e)["call_ref"] == "c1"
