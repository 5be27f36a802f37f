"""Desk routing (ACD): the one rule production uses for queue order, who takes a call, and overflow."""

from __future__ import annotations

import dataclasses

from routing.acd import (
    CallTaker,
    QueueEntry,
    TakerState,
    assign,
    choose_taker,
    entry_from_decision,
    language_code,
    queue_key,
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
    assert [e.call_ref for e in sorted(queue, key=queue_key)] == ["early-p1", "late-p1", "early-p2", "p3"]


def test_cardiac_arrest_and_trapped_go_to_the_front() -> None:
    queue = [
        entry("p1", 1, at=0),
        entry("arrest", 2, at=60, front=True),
        entry("trapped", 3, at=90, front=True),
    ]
    assert [e.call_ref for e in sorted(queue, key=queue_key)] == ["arrest", "trapped", "p1"]


def test_longest_idle_available_taker_with_the_desk_gets_the_call() -> None:
    takers = [
        taker("busy", -500, state=TakerState.BUSY),
        taker("paused", -400, state=TakerState.PAUSED),
        taker("wrap", -300, state=TakerState.WRAP_UP),
        taker("offline", -900, state=TakerState.OFFLINE),
        taker("fire-desk", -600, desks={DeskCode.HZS}),
        taker("recent", -10),
        taker("longest", -200),
    ]
    chosen = choose_taker(entry("c1"), takers)
    assert chosen is not None and chosen.id == "longest"


def test_a_speaker_of_the_callers_language_is_preferred_and_regional_codes_count() -> None:
    takers = [taker("czech-only", -500), taker("speaks-german", -10, languages={"cs", "de-AT"})]
    chosen = choose_taker(entry("c1", language="de-DE"), takers)
    assert chosen is not None and chosen.id == "speaks-german"
    assert language_code("cs-CZ") == language_code("CS") == "cs"


def test_an_emergency_caller_never_waits_for_a_language() -> None:
    """Nobody free speaks Vietnamese: the longest-idle taker answers (with the 112 language line)."""
    takers = [taker("czech-only", -500), taker("speaks-german", -10, languages={"cs", "de"})]
    chosen = choose_taker(entry("c2", language="vi"), takers)
    assert chosen is not None and chosen.id == "czech-only"


def test_nobody_available_on_the_desk_means_the_call_waits() -> None:
    assert choose_taker(entry("c1"), [taker("t", -5, state=TakerState.BUSY)]) is None
    assert choose_taker(entry("c1"), [taker("fire", -5, desks={DeskCode.HZS})]) is None


def test_assign_answers_the_most_urgent_call_first_across_desks() -> None:
    queue = [
        entry("p3-fire", 3, at=0, desk=DeskCode.HZS),
        entry("p2", 2, at=0),
        entry("german-arrest", 1, at=5, front=True, language="de"),
        entry("p1", 1, at=9),
    ]
    takers = [
        taker("czech", -300, desks={DeskCode.ZZS, DeskCode.HZS}),
        taker("german", -10, languages={"cs", "de"}),
    ]
    pairs = [(e.call_ref, t.id) for e, t in assign(queue, takers)]
    # The arrest is first and goes to the German speaker although the Czech taker idled longer.
    assert pairs == [("german-arrest", "german"), ("p1", "czech")]


def test_assign_never_uses_a_taker_twice_or_one_who_is_not_free() -> None:
    queue = [entry(f"c{i}", 2, at=i) for i in range(5)]
    takers = [taker("a", -5), taker("b", -4, state=TakerState.BUSY), taker("c", -3)]
    assert [(e.call_ref, t.id) for e, t in assign(queue, takers)] == [("c0", "a"), ("c1", "c")]


def test_call_overflows_to_112_after_the_configured_wait() -> None:
    assert not should_overflow(DeskCode.ZZS, T0, T0 + 29, overflow_after_s=30)
    assert should_overflow(DeskCode.ZZS, T0, T0 + 30, overflow_after_s=30)
    assert not should_overflow(DeskCode.D112, T0, T0 + 999, overflow_after_s=30)  # nowhere further to go


def test_entry_from_triage_decision_carries_desk_priority_and_front_flag(triage: Triage) -> None:
    decision = triage.decide(TriageInput(dialled="150", transcript="manžel nereaguje a nedýchá"))
    e = entry_from_decision("call-1", decision, T0, "cs")
    assert (e.desk, e.priority, e.front) == (DeskCode.ZZS, 1, True)
    trapped = triage.decide(TriageInput(dialled="112", transcript="bouračka, řidič je zaklíněný v autě"))
    assert entry_from_decision("call-2", trapped, T0, "cs").front


def test_entries_are_plain_values() -> None:
    e = entry("c1")
    assert dataclasses.asdict(e)["call_ref"] == "c1"
