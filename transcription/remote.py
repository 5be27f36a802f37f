"""Recognition in separate worker processes: the pure parts (no Redis, no threads, time passed in).

Intake publishes each leg's audio on a stream of its own; workers of a consumer group take legs (one
``open`` entry per leg on the control stream, held un-acknowledged while the worker owns the leg: that
pending entry is the lease) and send transcript events back on the intake node's event stream. The Redis
adapter is :mod:`transcription.streams`; this module holds what can be decided without it:

- the stream keys and the wire form of messages and transcript events (tolerant: a malformed message is
  reported as ``None``, never an exception);
- :class:`LegCursor`: where the owner is in a leg's audio, the gaps it finds (audio trimmed before anyone
  decoded it: marked as not transcribed) and the checkpoint a successor resumes from;
- :class:`LeaseClock`: when a worker renews its leases and looks for legs of dead workers;
- :func:`alive_workers`: which workers' heartbeats are recent.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from transcription.events import (
    LanguageDetected,
    TranscriptEvent,
    TranscriptFinal,
    TranscriptionFailed,
    TranscriptPartial,
    Word,
)

DEFAULT_PREFIX = "izs:asr"
WORKER_GROUP = "recognition-workers"

# Message kinds on a leg's audio stream (in order: audio, queue state, close).
MSG_AUDIO = "a"
MSG_QUEUE = "q"
MSG_CLOSE = "c"
# Kinds on an intake node's event stream besides the four transcript events.
EVENT_PROGRESS = "progress"  # audio consumed by the decoder (intake's flush wait and backlog)
EVENT_CLOSED = "closed"  # the leg is closed and flushed: its last final was sent before this


def control_key(prefix: str) -> str:
    return f"{prefix}:legs"


def audio_key(prefix: str, call_ref: str, leg: str) -> str:
    return f"{prefix}:audio:{call_ref}:{leg}"


def leg_key(prefix: str, call_ref: str, leg: str) -> str:
    return f"{prefix}:leg:{call_ref}:{leg}"


def instances_key(prefix: str, call_ref: str, leg: str) -> str:
    """The wire names under which intake nodes opened ``leg`` of ``call_ref`` (a node taking a call over from
    a dead one opens it again: the dead node's instance is found here)."""
    return f"{prefix}:instances:{call_ref}:{leg}"


def wire_leg(leg: str, instance: str) -> str:
    """The name one opening of a leg has on the wire: each opening gets its own streams, so a leg opened
    again (by the node that took the call over) never mixes its audio offsets with the earlier opening's."""
    return f"{leg}@{instance}"


def base_leg(name: str) -> str:
    """The leg (``caller``/``taker``) of a wire name."""
    return name.split("@", 1)[0]


def events_key(prefix: str, node: str) -> str:
    return f"{prefix}:events:{node}"


def workers_key(prefix: str) -> str:
    return f"{prefix}:workers"


def text(fields: Mapping[bytes, bytes], name: str, default: str = "") -> str:
    """A field of a Redis entry as text (undecodable bytes replaced, never an exception)."""
    value = fields.get(name.encode())
    return default if value is None else value.decode("utf-8", "replace")


def entry_before(entry_id: str) -> str:
    """The largest stream id before ``entry_id``: XREAD from it returns ``entry_id`` itself."""
    ms_text, _, seq_text = entry_id.partition("-")
    ms, seq = int(ms_text), int(seq_text or 0)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    if ms > 0:
        return f"{ms - 1}-18446744073709551615"
    return "0-0"


def wall_from_monotonic(monotonic_at: float, now_monotonic: float, now_wall: float) -> float:
    """A time of this process's monotonic clock on the wall clock (the form other processes understand)."""
    return now_wall - (now_monotonic - monotonic_at)


def monotonic_from_wall(wall_at: float, now_monotonic: float, now_wall: float) -> float:
    return now_monotonic - (now_wall - wall_at)


# ------------------------------------------------------------------------------------------ events codec


def encode_event(event: TranscriptEvent) -> tuple[str, str]:
    """(kind, JSON payload) of a transcript event for the event stream."""
    if isinstance(event, TranscriptFinal):
        data: dict[str, object] = {
            "call_ref": event.call_ref,
            "leg": event.leg,
            "text": event.text,
            "start_s": event.start_s,
            "end_s": event.end_s,
            "words": [[w.text, w.start_s, w.end_s, w.confidence] for w in event.words],
            "language": event.language,
            "confidence": event.confidence,
            "engine": event.engine,
        }
        return "final", json.dumps(data)
    if isinstance(event, TranscriptPartial):
        return "partial", json.dumps(
            {"call_ref": event.call_ref, "leg": event.leg, "text": event.text, "audio_s": event.audio_s}
        )
    if isinstance(event, LanguageDetected):
        return "language", json.dumps(
            {
                "call_ref": event.call_ref,
                "leg": event.leg,
                "language": event.language,
                "probability": event.probability,
                "candidates": [list(c) for c in event.candidates],
            }
        )
    return "failed", json.dumps(
        {"call_ref": event.call_ref, "leg": event.leg, "reason": event.reason, "recovered": event.recovered}
    )


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def decode_event(kind: str, payload: str) -> TranscriptEvent | None:
    """The event of an event-stream entry; ``None`` for anything malformed (the caller logs it)."""
    try:
        data = json.loads(payload)
        if not isinstance(data, dict):
            return None
        call_ref, leg = str(data["call_ref"]), str(data["leg"])
        if kind == "final":
            words = tuple(
                Word(str(w[0]), _number(w[1]), _number(w[2]), _number(w[3])) for w in data.get("words") or []
            )
            confidence = data.get("confidence")
            return TranscriptFinal(
                call_ref=call_ref,
                leg=leg,
                text=str(data["text"]),
                start_s=_number(data["start_s"]),
                end_s=_number(data["end_s"]),
                words=words,
                language=_optional_str(data.get("language")),
                confidence=None if confidence is None else _number(confidence),
                engine=str(data.get("engine") or ""),
            )
        if kind == "partial":
            return TranscriptPartial(call_ref, leg, str(data["text"]), _number(data["audio_s"]))
        if kind == "language":
            candidates = tuple((str(c[0]), _number(c[1])) for c in data.get("candidates") or [])
            return LanguageDetected(
                call_ref, str(data["language"]), _number(data["probability"]), candidates=candidates, leg=leg
            )
        if kind == "failed":
            return TranscriptionFailed(call_ref, leg, str(data["reason"]), recovered=bool(data["recovered"]))
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return None


# ------------------------------------------------------------------------------------------ leg cursor


@dataclass(frozen=True, slots=True)
class Accepted:
    """What to do with one audio entry: feed ``pcm`` after marking ``gap_bytes`` as not transcribed."""

    gap_bytes: int
    pcm: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a successor resumes: byte ``offset`` of the leg's audio, inside entry ``entry_id``."""

    offset: int
    entry_id: str


class LegCursor:
    """The owner's position in one leg's audio stream (byte offsets from the leg's start).

    Every audio entry carries its offset, so the owner sees audio that never reached it (trimmed by the
    stream's MAXLEN, or dropped by intake while Redis was away) as a gap, and audio it has already had (a
    successor re-reading the entry holding its checkpoint) as an overlap to cut. ``checkpoint_for`` maps a
    leg time the decoder has settled to the entry a successor must start reading from.
    """

    def __init__(self, rate: int, start: Checkpoint, max_entries: int = 100_000) -> None:
        self.rate = rate
        self.next_offset = start.offset
        self.checkpoint = start
        self._entries: deque[tuple[str, int]] = deque(maxlen=max_entries)  # (entry id, offset), in order

    def accept(self, entry_id: str, offset: int, pcm: bytes) -> Accepted:
        gap = max(0, offset - self.next_offset)
        skip = max(0, self.next_offset - offset)
        if skip >= len(pcm) and pcm:
            return Accepted(gap_bytes=0, pcm=b"")
        self._entries.append((entry_id, offset))
        self.next_offset = offset + len(pcm)
        cut = pcm[skip:]
        if len(cut) % 2:  # 16-bit samples: an odd cut would shift every sample after it
            cut = cut[:-1]
            self.next_offset -= 1
        return Accepted(gap_bytes=gap, pcm=cut)

    def offset_of(self, leg_s: float) -> int:
        return round(leg_s * self.rate) * 2

    def checkpoint_for(self, settled_s: float) -> Checkpoint | None:
        """The checkpoint for audio settled up to ``settled_s`` (leg time); None when it does not move it
        forward. Entries before the new checkpoint are forgotten (a successor never needs them)."""
        offset = min(self.offset_of(settled_s), self.next_offset)
        if offset <= self.checkpoint.offset:
            return None
        holder: tuple[str, int] | None = None
        while self._entries and self._entries[0][1] <= offset:
            holder = self._entries.popleft()
        if holder is None:
            return None
        self._entries.appendleft(holder)  # the entry holding the checkpoint is where a successor starts
        self.checkpoint = Checkpoint(offset, holder[0])
        return self.checkpoint

    def seconds(self, n_bytes: int) -> float:
        return n_bytes / 2 / self.rate


# ------------------------------------------------------------------------------------------ leases


class LeaseClock:
    """When a worker renews the leases of its legs and looks for legs whose owner stopped renewing.

    A leg's lease is its ``open`` entry pending for the owner in the consumer group; renewing resets the
    entry's idle time (XCLAIM to oneself). Another worker may claim an entry idle longer than ``lease_s``, so
    the owner renews every ``lease_s / 3`` (two renewals may be missed under load before the leg is lost).
    """

    def __init__(self, lease_s: float, now: float) -> None:
        if lease_s <= 0:
            raise ValueError(f"a lease must last a while, not {lease_s} s")
        self.lease_s = lease_s
        self._renewed_at = now
        self._looked_at = now - lease_s  # look for orphaned legs at once on start

    @property
    def claim_idle_ms(self) -> int:
        return int(self.lease_s * 1000)

    def renewal_due(self, now: float) -> bool:
        return now - self._renewed_at >= self.lease_s / 3

    def renewed(self, now: float) -> None:
        self._renewed_at = now

    def lost(self, now: float) -> bool:
        """Renewals stopped long enough that another worker may have taken the legs (fencing decides)."""
        return now - self._renewed_at > self.lease_s

    def claim_due(self, now: float) -> bool:
        return now - self._looked_at >= self.lease_s / 3

    def looked(self, now: float) -> None:
        self._looked_at = now


def alive_workers(reports: Mapping[str, float], now_wall: float, stale_after_s: float) -> list[str]:
    """Names of workers whose last heartbeat (wall time) is within ``stale_after_s``."""
    return sorted(name for name, at in reports.items() if 0 <= now_wall - at <= stale_after_s)
