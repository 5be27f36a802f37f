"""Desk routing (ACD) as pure functions. The integrator keeps the queues (Redis sorted sets) and calls these.

Queue order: suspected cardiac arrest and people trapped first, then priority 1..3, then arrival time.
A call taker gets the call when available, on the needed desk, speaking the caller's language; among those,
the one idle longest. A call waiting longer than the overflow limit moves to the joint 112 desk.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from routing.types import TriageDecision
from routing.vocabulary import DeskCode

# Sorted-set scores: a lower score is served first. Arrival times are epoch seconds (< 1e10 until 2286), so
# one band per urgency class keeps every class ahead of all later ones.
_BAND = 1e10


class TakerState(enum.StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class QueueEntry:
    call_ref: str
    desk: DeskCode
    priority: int  # 1..3
    arrived_at: float  # epoch seconds when the call entered the queue
    language: str = "cs"
    tcpr: bool = False  # suspected cardiac arrest: front of the queue
    trapped: bool = False  # people trapped: front of the queue
    overflowed: bool = False
    priority_overridden_by: str | None = None  # call taker / supervisor id when a human set the priority
    reassigned_from: DeskCode | None = None


@dataclass(frozen=True, slots=True)
class CallTaker:
    id: str
    desks: frozenset[DeskCode]
    languages: frozenset[str]
    state: TakerState
    state_since: float  # epoch seconds of the last state change (idle since, when available)


def urgency_class(entry: QueueEntry) -> int:
    """0 cardiac arrest or trapped, then 1..3 by priority."""
    if entry.tcpr or entry.trapped:
        return 0
    return max(1, min(3, entry.priority))


def queue_key(entry: QueueEntry) -> tuple[int, float, str]:
    """Sort key: lower is served first."""
    return (urgency_class(entry), entry.arrived_at, entry.call_ref)


def queue_score(entry: QueueEntry) -> float:
    """The same order as one float, for ZADD into a Redis sorted set."""
    return urgency_class(entry) * _BAND + entry.arrived_at


def order_queue(entries: Iterable[QueueEntry]) -> list[QueueEntry]:
    return sorted(entries, key=queue_key)


def _speaks(taker: CallTaker, language: str) -> bool:
    code = (language or "cs").lower().split("-")[0]
    return code in taker.languages


def choose_taker(entry: QueueEntry, takers: Iterable[CallTaker]) -> CallTaker | None:
    """The longest-idle available call taker on the entry's desk who speaks the caller's language.

    None when nobody fits: the call waits (and overflows to the 112 desk after the limit).
    """
    fitting = [
        t
        for t in takers
        if t.state is TakerState.AVAILABLE and entry.desk in t.desks and _speaks(t, entry.language)
    ]
    if not fitting:
        return None
    return min(fitting, key=lambda t: (t.state_since, t.id))


def next_call_for(taker: CallTaker, queue: Iterable[QueueEntry]) -> QueueEntry | None:
    """When a taker becomes available: the most urgent waiting call they can take."""
    if taker.state is not TakerState.AVAILABLE:
        return None
    eligible = [e for e in queue if e.desk in taker.desks and _speaks(taker, e.language)]
    return min(eligible, key=queue_key) if eligible else None


def should_overflow(entry: QueueEntry, now: float, overflow_after_s: float) -> bool:
    """True when the call has waited too long on its desk and must go to the joint 112 desk."""
    if entry.desk is DeskCode.D112 or entry.overflowed:
        return False
    return now - entry.arrived_at >= overflow_after_s


def overflow(entry: QueueEntry) -> QueueEntry:
    """The entry moved to the 112 desk; it keeps its arrival time, so it does not lose its place."""
    return dataclasses.replace(entry, desk=DeskCode.D112, overflowed=True, reassigned_from=entry.desk)


def reassign(entry: QueueEntry, desk: DeskCode) -> QueueEntry:
    """A call taker or supervisor moves the call to another desk (keeps arrival time and priority)."""
    if desk is entry.desk:
        return entry
    return dataclasses.replace(entry, desk=desk, reassigned_from=entry.desk, overflowed=False)


def override_priority(entry: QueueEntry, priority: int, by: str) -> QueueEntry:
    """A human sets the priority; recorded with who did it."""
    if priority not in (1, 2, 3):
        raise ValueError(f"priority must be 1, 2 or 3, got {priority!r}")
    if not by:
        raise ValueError("a priority override must name who made it")
    return dataclasses.replace(entry, priority=priority, priority_overridden_by=by)


def set_state(taker: CallTaker, state: TakerState, now: float) -> CallTaker:
    if state is taker.state:
        return taker
    return dataclasses.replace(taker, state=state, state_since=now)


def entry_from_decision(
    call_ref: str, decision: TriageDecision, arrived_at: float, language: str, *, trapped: bool | None = None
) -> QueueEntry:
    """A queue entry from a triage decision: its desk, priority and the cardiac-arrest flag.

    `trapped` defaults to whether triage heard a trapped person (its evidence names signal.trapped).
    """
    if trapped is None:
        trapped = any(
            ev.rule.endswith("signal.trapped") for a in decision.agencies for ev in a.evidence
        ) or any(ev.rule.endswith("signal.trapped") for ev in decision.priority.evidence)
    return QueueEntry(
        call_ref=call_ref,
        desk=decision.desk,
        priority=decision.priority.value,
        arrived_at=arrived_at,
        language=language,
        tcpr=decision.tcpr.value,
        trapped=trapped,
    )
