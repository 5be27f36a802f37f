"""Recognition health: one typed report for the supervisor's panel, the metrics and the other nodes.

The service knows what happened to audio (dropped, failures, models loaded, backlog); the scheduler knows who
waits for a decoding slot. :class:`RecognitionStatus` is both in one value: the service builds it, intake
shows it, a node shares it with the others as JSON (:meth:`RecognitionStatus.to_json`) and reads theirs back
(:meth:`RecognitionStatus.from_json`, tolerant: a report from another version degrades to ``down`` with the
reason, never an exception on the health path).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

# A requesting leg that has waited longer than this for a slot is "behind" (supervisor, health, metrics).
BEHIND_AFTER_S = 2.0
DEFAULT_WINDOW_S = 600.0


class RecognitionHealth(enum.Enum):
    OK = "ok"
    BEHIND = "behind"  # audio dropped (marked in the transcript) or a leg waits for a slot
    DOWN = "down"  # closed, or failing without a transcript since


class LegQueueState(enum.Enum):
    WAITING = "waiting"  # the caller waits in a queue for a call taker
    IN_PROGRESS = "in_progress"  # connected to a call taker
    UNKNOWN = "unknown"  # intake has not said (ringing, a call-taker leg, a test)


@dataclass(frozen=True, slots=True)
class LegSchedule:
    """One leg as the supervisor sees it."""

    call_ref: str
    leg: str
    queue_state: LegQueueState
    priority: int
    waiting_since: float
    transcribing: bool
    waiting_for_slot_s: float
    not_transcribed_s: float
    triaged: bool = False  # intake said triage judged the caller from their own words
    rounds: int = 0  # decoding turns in which the leg's speech was decoded


@dataclass(frozen=True, slots=True)
class SlotStatus:
    """The scheduler's part: decoding slots and who waits for one."""

    behind_s: float
    slots: int
    busy_slots: int
    legs_waiting_for_slot: int
    not_transcribed_s: float
    legs: tuple[LegSchedule, ...]
    down_reason: str = ""
    # Seconds the slots were busy, by what they were spent on (transcription/scheduler.py SPENT_*).
    slot_s: tuple[tuple[str, float], ...] = ()
    not_transcribed_total_s: float = 0.0  # since start, closed legs included


@dataclass(frozen=True, slots=True)
class RecognitionStatus:
    """A node's recognition as one value. ``behind_s``: how long the longest-waiting leg has waited for
    a decoding slot; ``dropped_s``: audio not transcribed within ``window_s`` (marked in the transcript and
    kept in the recording); ``backlog_s``: the largest queued audio of one leg."""

    health: RecognitionHealth
    reason: str = ""
    open_legs: int = 0
    backlog_s: float = 0.0
    dropped_s: float = 0.0
    window_s: float = DEFAULT_WINDOW_S
    failures: int = 0
    last_failure: str = ""
    models: tuple[str, ...] = ()
    behind_s: float = 0.0
    slots: int = 0
    busy_slots: int = 0
    legs_waiting_for_slot: int = 0
    not_transcribed_s: float = 0.0
    legs: tuple[LegSchedule, ...] = field(default=())
    slot_s: tuple[tuple[str, float], ...] = ()  # decoding time by what it was spent on (this node)
    not_transcribed_total_s: float = 0.0  # marked as not transcribed since start (this node)
    # Recognition in separate worker processes (transcription/streams.py): how many report alive; 0 when
    # recognition runs inside the node.
    workers: int = 0

    @classmethod
    def combine(
        cls,
        slot_status: SlotStatus,
        *,
        closed: bool = False,
        failing: bool = False,
        open_legs: int = 0,
        backlog_s: float = 0.0,
        dropped_s: float = 0.0,
        window_s: float = DEFAULT_WINDOW_S,
        failures: int = 0,
        last_failure: str = "",
        models: tuple[str, ...] = (),
    ) -> RecognitionStatus:
        if closed:
            health, reason = RecognitionHealth.DOWN, "closed"
        elif slot_status.down_reason:
            health, reason = RecognitionHealth.DOWN, slot_status.down_reason
        elif failing:
            health, reason = RecognitionHealth.DOWN, last_failure
        elif dropped_s > 0:
            health, reason = RecognitionHealth.BEHIND, f"{dropped_s:.1f} s of audio not transcribed"
        elif slot_status.behind_s > BEHIND_AFTER_S:
            health, reason = RecognitionHealth.BEHIND, f"a leg waits {slot_status.behind_s:.1f} s for a slot"
        else:
            health, reason = RecognitionHealth.OK, ""
        return cls(
            health=health,
            reason=reason,
            open_legs=open_legs,
            backlog_s=round(backlog_s, 1),
            dropped_s=round(dropped_s, 1),
            window_s=window_s,
            failures=failures,
            last_failure=last_failure,
            models=models,
            behind_s=slot_status.behind_s,
            slots=slot_status.slots,
            busy_slots=slot_status.busy_slots,
            legs_waiting_for_slot=slot_status.legs_waiting_for_slot,
            not_transcribed_s=slot_status.not_transcribed_s,
            legs=slot_status.legs,
            slot_s=slot_status.slot_s,
            not_transcribed_total_s=slot_status.not_transcribed_total_s,
        )

    @classmethod
    def down(cls, reason: str) -> RecognitionStatus:
        return cls(health=RecognitionHealth.DOWN, reason=reason, last_failure=reason)

    @property
    def healthy(self) -> bool:
        return self.health is RecognitionHealth.OK

    def line(self) -> str:
        """One line for people (the supervisor's component panel)."""
        text = (
            f"{self.health.value}: {self.open_legs} legs, backlog {self.backlog_s} s, "
            f"dropped {self.dropped_s} s in {int(self.window_s // 60)} min, "
            f"waiting for a slot {self.legs_waiting_for_slot} (longest {self.behind_s:.1f} s), "
            f"model {', '.join(self.models) or '-'}"
        )
        if self.workers:
            text += f", {self.workers} recognition workers alive"

        if self.last_failure:
            text += f"; last failure: {self.last_failure}"
        return text

    def to_json(self) -> dict[str, Any]:
        """What a node shares with the others (per-leg details stay local: they are this node's calls)."""
        return {
            "status": self.health.value,
            "reason": self.reason,
            "legs": self.open_legs,
            "backlog_s": self.backlog_s,
            "dropped_s": self.dropped_s,
            "window_s": self.window_s,
            "failures": self.failures,
            "last_failure": self.last_failure,
            "models": list(self.models),
            "behind_s": self.behind_s,
            "slots": self.slots,
            "busy_slots": self.busy_slots,
            "legs_waiting_for_slot": self.legs_waiting_for_slot,
            "not_transcribed_s": self.not_transcribed_s,
            "workers": self.workers,
        }

    @classmethod
    def from_json(cls, data: object) -> RecognitionStatus:
        """Another node's report; anything unreadable is a ``down`` report that says so."""
        if not isinstance(data, dict):
            return cls.down(f"unreadable health report: {type(data).__name__}")
        try:
            models = data.get("models") or []
            return cls(
                health=RecognitionHealth(str(data.get("status", "down"))),
                reason=str(data.get("reason") or ""),
                open_legs=int(data.get("legs") or 0),
                backlog_s=float(data.get("backlog_s") or 0.0),
                dropped_s=float(data.get("dropped_s") or 0.0),
                window_s=float(data.get("window_s") or DEFAULT_WINDOW_S),
                failures=int(data.get("failures") or 0),
                last_failure=str(data.get("last_failure") or ""),
                models=tuple(str(m) for m in models) if isinstance(models, list) else (str(models),),
                behind_s=float(data.get("behind_s") or 0.0),
                slots=int(data.get("slots") or 0),
                busy_slots=int(data.get("busy_slots") or 0),
                legs_waiting_for_slot=int(data.get("legs_waiting_for_slot") or 0),
                not_transcribed_s=float(data.get("not_transcribed_s") or 0.0),
                workers=int(data.get("workers") or 0),
            )
        except (TypeError, ValueError) as exc:
            return cls.down(f"unreadable health report: {exc}")
