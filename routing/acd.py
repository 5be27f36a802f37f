"""Desk routing (ACD): the one implementation of who answers which call, as pure functions.

Production (:mod:`intake.desks` over the Redis queues of :mod:`intake.live`) asks these functions every
question of order and choice; nothing else decides them.

- Queue order: suspected cardiac arrest and people trapped first ("front"), then priority 1..3, then
  arrival time.
- Who takes a call: an available call taker on the call's desk; among them one who speaks the caller's
  language ("cs-CZ" counts as "cs"), then the one idle longest. An emergency caller never waits for a
  language: when no available taker on the desk speaks it, the longest-idle one takes the call (with the
  112 language line), rather than leaving the caller in the queue.
- Assignment: the waiting calls in queue order, each given the best taker still free, so the most urgent
  call is answered first whatever desk it waits on.
- Overflow: a call waiting longer than the limit on an agency desk moves to the joint 112 desk.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from routing.types import TriageDecision
from routing.vocabulary import DeskCode


class TakerState(enum.StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class QueueEntry:
    call_ref: str
    desk: DeskCode
    priority: int  # 1..3
    arrived_at: float  # epoch seconds when the call entered the queue
    language: str | None = None  # None: not identified yet (anyone fits)
    front: bool = False  # suspected cardiac arrest or people trapped: served before everything else


@dataclass(frozen=True, slots=True)
class CallTaker:
    id: str
    desks: frozenset[DeskCode]
    languages: frozenset[str]
    state: TakerState
    state_since: float  # epoch seconds of the last state change (idle since, when available)


def queue_rank(priority: int, front: bool) -> int:
    """0 for the front (cardiac arrest, trapped), else the priority: lower is served first."""
    return 0 if front else priority


def queue_key(entry: QueueEntry) -> tuple[int, float, str]:
    """Sort key: lower is served first."""
    return (queue_rank(entry.priority, entry.front), entry.arrived_at, entry.call_ref)


def is_front(decision: TriageDecision) -> bool:
    """Whether triage puts the call at the front: suspected cardiac arrest, or a person trapped (its
    evidence names ``signal.trapped``)."""
    if decision.tcpr.value:
        return True
    return any(ev.rule.endswith("signal.trapped") for a in decision.agencies for ev in a.evidence) or any(
        ev.rule.endswith("signal.trapped") for ev in decision.priority.evidence
    )


def language_code(language: str | None) -> str | None:
    """ "cs-CZ", "CS" and "cs" are one language."""
    if not language:
        return None
    return language.strip().lower().replace("_", "-").split("-")[0] or None


def speaks(taker: CallTaker, language: str | None) -> bool:
    code = language_code(language)
    return code is None or code in {language_code(lang) for lang in taker.languages}


def choose_taker(entry: QueueEntry, takers: Iterable[CallTaker]) -> CallTaker | None:
    """The call taker for a waiting call: available, on its desk; a speaker of the caller's language
    before one who does not; then the one idle longest. None only when nobody on the desk is available."""
    fitting = [t for t in takers if t.state is TakerState.AVAILABLE and entry.desk in t.desks]
    if not fitting:
        return None
    return min(fitting, key=lambda t: (not speaks(t, entry.language), t.state_since, t.id))


def assign(queue: Iterable[QueueEntry], takers: Sequence[CallTaker]) -> list[tuple[QueueEntry, CallTaker]]:
    """Pair waiting calls with free call takers: calls in queue order (across desks), each with the best
    taker still free for it (:func:`choose_taker`)."""
    free = [t for t in takers if t.state is TakerState.AVAILABLE]
    pairs: list[tuple[QueueEntry, CallTaker]] = []
    for entry in sorted(queue, key=queue_key):
        if not free:
            break
        taker = choose_taker(entry, free)
        if taker is not None:
            pairs.append((entry, taker))
            free.remove(taker)
    return pairs


def should_overflow(desk: DeskCode, arrived_at: float, now: float, overflow_after_s: float) -> bool:
    """True when a call has waited too long on an agency desk and must go to the joint 112 desk (a call
    on the 112 desk has nowhere further to go)."""
    if desk is DeskCode.D112:
        return False
    return now - arrived_at >= overflow_after_s


def entry_from_decision(
    call_ref: str, decision: TriageDecision, arrived_at: float, language: str | None
) -> QueueEntry:
    """A queue entry from a triage decision: its desk, priority and front flag."""
    return QueueEntry(
        call_ref=call_ref,
        desk=decision.desk,
        priority=decision.priority.value,
        arrived_at=arrived_at,
        language=language,
        front=is_front(decision),
    )
