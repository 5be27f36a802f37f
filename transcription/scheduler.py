"""Who gets the recognizer next: waiting callers nobody has heard yet first, then the rest.

Recognition capacity is a fixed number of decoding slots (CPU cores' worth of Whisper). In a surge most
callers wait in a queue, and their first words are what triage needs to order that queue, so a slot goes
first to legs of callers waiting in a queue, then to calls in progress (connected to a call taker), then to
legs intake said nothing about. Among waiting callers, those triage has not yet judged from their own words
go before those it has (``triaged``), and among those, the callers heard least so far go first (``rounds``:
turns in which a leg's speech was decoded), so slots go round the queue one utterance at a time instead of
to the longest-waiting caller's whole story; then priority 1 before 2 before 3, then the longest wait.
Turns are bounded by the service (transcription/service.py): a leg that another leg waits behind yields
after one utterance or a few seconds of speech. A leg that asks for a slot and does not get one keeps its
audio queued (the service's bounded backlog); when a slot frees, it catches up in the same order. Audio the
backlog cannot hold is reported by the service with a ``[N s not transcribed: recognition behind]`` mark,
never dropped silently; this module keeps the count, and how long the slots were busy for which kind of leg
(``slot_s``: what capacity is spent on).

Pure: no threads, the clock is passed in. :class:`SlotGate` is the thin blocking wrapper the service's leg
workers use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from transcription.health import LegQueueState, LegSchedule, SlotStatus

LegKey = tuple[str, str]  # (call_ref, leg)

_STATE_RANK = {LegQueueState.WAITING: 0, LegQueueState.IN_PROGRESS: 1, LegQueueState.UNKNOWN: 2}
# What a decoding turn was spent on (status ``slot_s``): the leg's kind when the turn started, and whether
# the turn decoded speech or only ran the voice-activity detector over silence.
SPENT_WAITING_UNHEARD = "waiting, not triaged from own words"
SPENT_WAITING_TRIAGED = "waiting, triaged from own words"
SPENT_IN_PROGRESS = "in progress"
SPENT_OTHER = "other"


@dataclass(slots=True)
class _Leg:
    queue_state: LegQueueState = LegQueueState.UNKNOWN
    priority: int = 3
    waiting_since: float = 0.0
    opened_seq: int = 0
    requested_at: float | None = None
    running: bool = False
    not_transcribed_s: float = 0.0
    triaged: bool = False  # intake: triage has judged the caller from their own words
    rounds: int = 0  # turns in which this leg's speech was decoded
    started_at: float = 0.0
    spent_on: str = SPENT_OTHER

    def kind(self) -> str:
        if self.queue_state is LegQueueState.WAITING:
            return SPENT_WAITING_TRIAGED if self.triaged else SPENT_WAITING_UNHEARD
        return SPENT_IN_PROGRESS if self.queue_state is LegQueueState.IN_PROGRESS else SPENT_OTHER


class RecognitionScheduler:
    """Grants ``slots`` concurrent decoding turns to requesting legs in urgency order."""

    def __init__(self, slots: int, clock: Callable[[], float]) -> None:
        if slots < 1:
            raise ValueError(f"recognition needs at least one slot, not {slots}")
        self.slots = slots
        self._clock = clock
        self._legs: dict[LegKey, _Leg] = {}
        self._seq = 0
        self._down_reason = ""
        self._spent: dict[tuple[str, bool], float] = {}
        self._not_transcribed_total_s = 0.0

    # -- what intake tells us -----------------------------------------------------------------------
    def open(self, key: LegKey) -> None:
        if key not in self._legs:
            self._seq += 1
            self._legs[key] = _Leg(opened_seq=self._seq, waiting_since=self._clock())

    def close(self, key: LegKey) -> None:
        self._legs.pop(key, None)

    def set_queue_state(
        self,
        key: LegKey,
        state: LegQueueState,
        priority: int = 3,
        waiting_since: float | None = None,
        triaged: bool | None = None,
    ) -> None:
        """``priority`` 1 is the most urgent (cardiac arrest at the front); ``waiting_since`` orders equals;
        ``triaged``: triage has judged the caller from their own words (None: unchanged). A leg that is not
        open (never was, or closed already) is ignored."""
        leg = self._legs.get(key)
        if leg is None:
            return
        leg.queue_state = state
        leg.priority = priority
        if waiting_since is not None:
            leg.waiting_since = waiting_since
        if triaged is not None:
            leg.triaged = triaged

    def set_down(self, reason: str) -> None:
        """No engine can run (model missing, every stream given up): health is ``down``."""
        self._down_reason = reason

    # -- what the leg workers do --------------------------------------------------------------------
    def request(self, key: LegKey) -> None:
        self.open(key)
        leg = self._legs[key]
        if leg.requested_at is None and not leg.running:
            leg.requested_at = self._clock()

    def may_run(self, key: LegKey) -> bool:
        """True when ``key`` requested a slot and is among the first free slots in urgency order."""
        leg = self._legs.get(key)
        if leg is None or leg.requested_at is None:
            return False
        free = self.slots - sum(1 for x in self._legs.values() if x.running)
        if free <= 0:
            return False
        return key in self.order()[:free]

    def contended(self, key: LegKey) -> bool:
        """Another leg is waiting for a slot: ``key`` should decode only what must be committed."""
        return any(k != key and leg.requested_at is not None for k, leg in self._legs.items())

    def start(self, key: LegKey) -> None:
        leg = self._legs.get(key)
        if leg is not None:
            leg.requested_at = None
            leg.running = True
            leg.started_at = self._clock()
            leg.spent_on = leg.kind()

    def finish(self, key: LegKey, spoke: bool = False) -> None:
        """The turn is over; ``spoke``: it decoded some of the leg's speech (one more round heard)."""
        leg = self._legs.get(key)
        if leg is not None and leg.running:
            leg.running = False
            if spoke:
                leg.rounds += 1
            spent = (leg.spent_on, spoke)
            self._spent[spent] = self._spent.get(spent, 0.0) + max(0.0, self._clock() - leg.started_at)

    def mark_not_transcribed(self, key: LegKey, seconds: float) -> None:
        leg = self._legs.get(key)
        if leg is not None:
            leg.not_transcribed_s += seconds
            self._not_transcribed_total_s += seconds

    # -- order and status ---------------------------------------------------------------------------
    def order(self) -> list[LegKey]:
        """Requesting legs, most deserving first."""
        waiting = [(key, leg) for key, leg in self._legs.items() if leg.requested_at is not None]
        waiting.sort(key=lambda item: _rank(item[1]))
        return [key for key, _ in waiting]

    def status(self) -> SlotStatus:
        now = self._clock()
        legs = tuple(
            LegSchedule(
                call_ref=key[0],
                leg=key[1],
                queue_state=leg.queue_state,
                priority=leg.priority,
                waiting_since=leg.waiting_since,
                transcribing=leg.running,
                waiting_for_slot_s=0.0 if leg.requested_at is None else max(0.0, now - leg.requested_at),
                not_transcribed_s=leg.not_transcribed_s,
                triaged=leg.triaged,
                rounds=leg.rounds,
            )
            for key, leg in sorted(self._legs.items(), key=lambda kv: kv[1].opened_seq)
        )
        behind_s = max((x.waiting_for_slot_s for x in legs), default=0.0)
        return SlotStatus(
            behind_s=round(behind_s, 3),
            slots=self.slots,
            busy_slots=sum(1 for x in legs if x.transcribing),
            legs_waiting_for_slot=sum(1 for leg in self._legs.values() if leg.requested_at is not None),
            not_transcribed_s=round(sum(x.not_transcribed_s for x in legs), 3),
            legs=legs,
            down_reason=self._down_reason,
            slot_s=tuple(
                (f"{kind}: {'speech' if spoke else 'silence'}", round(seconds, 3))
                for (kind, spoke), seconds in sorted(self._spent.items())
            ),
            not_transcribed_total_s=round(self._not_transcribed_total_s, 3),
        )


def _rank(leg: _Leg) -> tuple[int, int, int, int, float, int]:
    """Waiting callers first; among them, not yet triaged from their own words before triaged, heard in
    fewer turns before more (round robin over first utterances); then priority, then the longest wait.
    (Measured against "a triaged caller counts one turn more" in the surge drill: 64 % triaged from their
    own words, first word -> triage p50 27 s, against 62 %, 58 s; docs/transcription.md.)"""
    waiting = leg.queue_state is LegQueueState.WAITING
    return (
        _STATE_RANK[leg.queue_state],
        int(leg.triaged) if waiting else 0,
        leg.rounds if waiting else 0,
        leg.priority,
        leg.waiting_since,
        leg.opened_seq,
    )


class SlotGate:
    """Blocking wrapper for the leg worker threads: ``with gate.turn(key): decode()``."""

    def __init__(self, scheduler: RecognitionScheduler) -> None:
        self.scheduler = scheduler
        self._condition = threading.Condition()

    def call(self, action: Callable[[RecognitionScheduler], object]) -> object:
        with self._condition:
            result = action(self.scheduler)
            self._condition.notify_all()
            return result

    def turn(self, key: LegKey) -> _Turn:
        return _Turn(self, key)

    def acquire(self, key: LegKey) -> None:
        with self._condition:
            self.scheduler.request(key)
            while not self.scheduler.may_run(key):
                self._condition.wait(0.5)
                self.scheduler.request(key)
            self.scheduler.start(key)

    def release(self, key: LegKey, spoke: bool = False) -> None:
        with self._condition:
            self.scheduler.finish(key, spoke)
            self._condition.notify_all()

    def status(self) -> SlotStatus:
        with self._condition:
            return self.scheduler.status()

    def contended(self, key: LegKey) -> bool:
        with self._condition:
            return self.scheduler.contended(key)


class _Turn:
    """One decoding turn; the body sets ``spoke`` when it decoded some of the leg's speech."""

    def __init__(self, gate: SlotGate, key: LegKey) -> None:
        self._gate = gate
        self._key = key
        self.spoke = False

    def __enter__(self) -> _Turn:
        self._gate.acquire(self._key)
        return self

    def __exit__(self, *exc: object) -> None:
        self._gate.release(self._key, self.spoke)
