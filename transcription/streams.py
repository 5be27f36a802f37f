"""Recognition over Redis Streams: intake's side (:class:`RemoteRecognizer`) and the worker process
(:class:`RecognitionWorker`). The decisions that need no Redis live in :mod:`transcription.remote`.

Streams (prefix ``izs:asr``):
- ``legs`` (consumer group ``recognition-workers``): one ``open`` entry per leg. The worker that reads it
  owns the leg and keeps the entry pending (its lease, renewed by XCLAIM to itself); it acknowledges the
  entry once the leg is closed and flushed. A killed worker stops renewing: after ``lease_s`` another
  worker takes the entry over with XAUTOCLAIM and resumes the leg.
- ``audio:<call>:<leg>``: the leg's audio (with byte offsets), queue-state changes and the close, in order;
  bounded by MAXLEN. The owner trims it up to its checkpoint (audio committed as finals or silence), so
  the stream holds exactly what a successor must decode again; audio trimmed by MAXLEN before anyone
  decoded it is marked ``[N s not transcribed …]`` in the transcript, never silently dropped.
- ``leg:<call>:<leg>`` (hash): rate, hints, language, checkpoint, owner and an ``epoch`` fencing token:
  every event a worker publishes is checked against it in one script, so a worker that lost its lease
  (paused, not dead) cannot publish over its successor.
- ``events:<node>``: transcript events back to the intake node that opened the leg (bounded).
- ``workers`` (hash): each worker's heartbeat and recognition status (health, backlog).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.typing import KeyT, StreamIdT

from transcription.config import TranscriptionConfig
from transcription.events import GAP_ENGINE, TranscriptEvent, TranscriptFinal, TranscriptionFailed
from transcription.health import DEFAULT_WINDOW_S, RecognitionHealth, RecognitionStatus
from transcription.remote import (
    DEFAULT_PREFIX,
    EVENT_CLOSED,
    EVENT_PROGRESS,
    MSG_AUDIO,
    MSG_CLOSE,
    MSG_QUEUE,
    WORKER_GROUP,
    Checkpoint,
    LeaseClock,
    LegCursor,
    alive_workers,
    audio_key,
    base_leg,
    control_key,
    decode_event,
    encode_event,
    entry_before,
    events_key,
    instances_key,
    leg_key,
    monotonic_from_wall,
    text,
    wall_from_monotonic,
    wire_leg,
    workers_key,
)
from transcription.service import EngineSource, TranscriptionService

log = logging.getLogger(__name__)

EventSink = Callable[[TranscriptEvent], None]
HEARTBEAT_S = 1.0
PROGRESS_S = 0.5
EVENTS_MAXLEN = 100_000
RETRY_S = 0.5

# Publish an event only while the leg's epoch is ours (else FENCED) and to the node the leg's hash names
# (else REPLY_MOVED: another node took the call over, read ``reply`` again); optionally move the checkpoint
# forward (and trim the audio up to it) and remember the leg's language, all at once.
FENCED, PUBLISHED, REPLY_MOVED = 0, 1, 2
NOT_SENT = -1  # Redis refused the script: logged, the leg goes on (nothing to retry or drop)
_PUBLISH = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'reply') ~= KEYS[2] then return 2 end
if ARGV[3] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'kind', ARGV[3], 'data', ARGV[4])
end
if ARGV[5] ~= '' and tonumber(ARGV[5]) > tonumber(redis.call('HGET', KEYS[1], 'ckpt_offset') or '0') then
  redis.call('HSET', KEYS[1], 'ckpt_offset', ARGV[5], 'ckpt_id', ARGV[6])
  redis.call('XTRIM', KEYS[3], 'MINID', ARGV[6])
end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'language', ARGV[7]) end
return 1
"""
# The leg is closed and flushed: say so, release the lease, forget the leg.
_FINISH = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'kind', 'closed', 'data', ARGV[3])
redis.call('XACK', KEYS[4], ARGV[4], ARGV[5])
redis.call('XDEL', KEYS[4], ARGV[5])
redis.call('DEL', KEYS[1], KEYS[3])
return 1
"""


Fields = dict[bytes, bytes]


def _as_text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _flag(value: str) -> bool | None:
    """A queue message's optional yes/no field: "1", "0", or absent (unchanged)."""
    return None if not value else value == "1"


def _stream_entries(reply: object) -> list[tuple[str, str, Fields]]:
    """(stream, entry id, fields) of an XREAD/XREADGROUP reply (redis-py's loose types narrowed here)."""
    out: list[tuple[str, str, Fields]] = []
    for stream, entries in reply if isinstance(reply, list) else []:
        for entry_id, fields in entries:
            out.append((_as_text(stream), _as_text(entry_id), fields if isinstance(fields, dict) else {}))
    return out


def _connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=10)


# ================================================================================ intake's side


@dataclass(slots=True)
class _RemoteLeg:
    rate: int
    wire: str  # this opening's name on the wire (see :func:`transcription.remote.wire_leg`)
    opened_at: float = 0.0  # monotonic
    sent_bytes: int = 0  # offset of the next frame
    processed_bytes: int = 0
    first_frame: bool = True
    heard: bool = False  # a worker has said something about this leg
    unserved_said: bool = False  # intake was told nobody transcribes it
    done: threading.Event = field(default_factory=threading.Event)


class RemoteRecognizer:
    """Intake's recognizer when recognition runs in worker processes: the same methods as
    :class:`~transcription.service.TranscriptionService`, none of which blocks the caller (a sender thread
    talks to Redis; a reader thread delivers events to ``on_event``, as the service's leg threads do)."""

    def __init__(
        self,
        redis_url: str,
        on_event: EventSink,
        *,
        node: str,
        prefix: str = DEFAULT_PREFIX,
        audio_maxlen_s: float = 120.0,
        max_buffer_s: float = 60.0,
        worker_stale_s: float = 5.0,
    ) -> None:
        self._redis = _connect(redis_url)
        self._on_event = on_event
        self._node = node
        self._prefix = prefix
        self._events = events_key(prefix, node)
        self._audio_maxlen_s = audio_maxlen_s
        self._max_buffer_s = max_buffer_s
        self._worker_stale_s = worker_stale_s
        self._legs: dict[tuple[str, str], _RemoteLeg] = {}
        self._instance = f"{node}-{uuid.uuid4().hex[:8]}"
        self._openings = 0
        self._lock = threading.Condition()
        self._outbox: deque[tuple[str, tuple[str, str], dict[str, str | bytes]]] = deque()
        self._outbox_bytes: dict[tuple[str, str], int] = {}
        self._stopping = threading.Event()
        self._workers: dict[str, dict[str, Any]] = {}
        self._last_error = ""
        self._last_event_id = "$"
        self._sender = threading.Thread(target=self._send_loop, name="asr-remote-send", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="asr-remote-read", daemon=True)
        self._ready = threading.Event()
        self._reader.start()
        self._ready.wait(5.0)  # events published after this point are not missed
        self._sender.start()

    # -- the recognizer's methods (never block) -----------------------------------------------------
    def open_leg(
        self,
        call_ref: str,
        leg: str,
        sample_rate: int,
        language_hint: str | None = None,
        country_hint: str | None = None,
    ) -> None:
        with self._lock:
            self._openings += 1
            wire = wire_leg(leg, f"{self._instance}.{self._openings}")
            self._legs[(call_ref, leg)] = _RemoteLeg(sample_rate, wire, opened_at=time.monotonic())
        self._post(
            "open",
            (call_ref, wire),
            {
                "leg": leg,
                "rate": str(sample_rate),
                "language_hint": language_hint or "",
                "country_hint": country_hint or "",
                "reply": self._events,
            },
        )

    def feed(self, call_ref: str, leg: str, pcm: bytes) -> bool:
        key = (call_ref, leg)
        with self._lock:
            state = self._legs.get(key)
            if state is None or state.done.is_set():
                return False
            offset = state.sent_bytes
            state.sent_bytes += len(pcm)
            buffered = self._outbox_bytes.get(key, 0)
            if buffered + len(pcm) > self._max_buffer_s * state.rate * 2:
                # Redis is away or slow: the newest audio is not sent; the worker sees the jump in offsets and
                # marks it as not transcribed (the recording keeps it).
                return True
            first, state.first_frame = state.first_frame, False
        self._post(
            MSG_AUDIO, (call_ref, state.wire), {"o": str(offset), "pcm": pcm, "first": "1" if first else ""}
        )
        return True

    def set_leg_queue(
        self,
        call_ref: str,
        leg: str,
        waiting: bool,
        priority: int = 3,
        waiting_since: float | None = None,
        triaged: bool | None = None,
    ) -> None:
        since = wall_from_monotonic(
            time.monotonic() if waiting_since is None else waiting_since, time.monotonic(), time.time()
        )
        with self._lock:
            state = self._legs.get((call_ref, leg))
        if state is None:
            return
        fields: dict[str, str | bytes] = {
            "waiting": "1" if waiting else "",
            "priority": str(priority),
            "since": repr(since),
        }
        if triaged is not None:
            fields["triaged"] = "1" if triaged else "0"
        self._post(MSG_QUEUE, (call_ref, state.wire), fields)

    def close_leg(self, call_ref: str, leg: str) -> threading.Event:
        with self._lock:
            state = self._legs.get((call_ref, leg))
        if state is None:
            done = threading.Event()
            done.set()
            return done
        self._post(MSG_CLOSE, (call_ref, state.wire), {})
        if not state.heard and not self._workers_alive():
            # Nobody took the leg: the transcript says so now instead of the flush waiting for words that
            # will not come. The close is still sent: a worker that starts later decodes the leg, and intake
            # stores those late words on the call too.
            seconds = state.sent_bytes / 2 / state.rate
            with self._lock:
                self._legs.pop((call_ref, leg), None)
            log.error(
                "recognition: %s/%s closed with no recognition worker alive (%.1f s)", call_ref, leg, seconds
            )
            self._emit(
                TranscriptFinal.gap(
                    call_ref, leg, 0.0, seconds, "no recognition worker alive; the recording has it"
                )
            )
            state.done.set()
        return state.done

    def backlog_s(self, call_ref: str, leg: str) -> float:
        with self._lock:
            state = self._legs.get((call_ref, leg))
            if state is None:
                return 0.0
            return max(0, state.sent_bytes - state.processed_bytes) / 2 / state.rate

    def processed_s(self, call_ref: str, leg: str) -> float:
        with self._lock:
            state = self._legs.get((call_ref, leg))
            return 0.0 if state is None else state.processed_bytes / 2 / state.rate

    def recognition_status(self, window_s: float = DEFAULT_WINDOW_S) -> RecognitionStatus:
        """The workers' reports in one value: down when none is alive (or Redis is unreachable), else the
        worst worker's health with the legs, backlog and dropped audio of all of them."""
        now = time.time()
        with self._lock:
            reports = dict(self._workers)
            legs = list(self._legs.values())
            error = self._last_error
        if error:
            return RecognitionStatus.down(f"recognition workers unreachable: {error}")
        alive = self._alive(reports, now)
        if not alive:
            return RecognitionStatus.down("no recognition worker alive")
        statuses = [RecognitionStatus.from_json(reports[name].get("status")) for name in alive]
        order = [RecognitionHealth.OK, RecognitionHealth.BEHIND, RecognitionHealth.DOWN]
        # One worker down (its model missing) is not recognition down while others work: behind.
        healths = [s.health for s in statuses]
        if all(h is RecognitionHealth.DOWN for h in healths):
            health = RecognitionHealth.DOWN
        else:
            health = max((h for h in healths if h is not RecognitionHealth.DOWN), key=order.index)
            if RecognitionHealth.DOWN in healths:
                health = RecognitionHealth.BEHIND
        worst = next((s for s in statuses if s.health is health), statuses[0])
        stream_backlog = max(
            (max(0, s.sent_bytes - s.processed_bytes) / 2 / s.rate for s in legs), default=0.0
        )
        return RecognitionStatus(
            health=health,
            reason=worst.reason,
            open_legs=sum(s.open_legs for s in statuses),
            backlog_s=round(max([stream_backlog] + [s.backlog_s for s in statuses]), 1),
            dropped_s=round(sum(s.dropped_s for s in statuses), 1),
            window_s=window_s,
            failures=sum(s.failures for s in statuses),
            last_failure=next((s.last_failure for s in statuses if s.last_failure), ""),
            models=tuple(sorted({m for s in statuses for m in s.models})),
            behind_s=max(s.behind_s for s in statuses),
            slots=sum(s.slots for s in statuses),
            busy_slots=sum(s.busy_slots for s in statuses),
            legs_waiting_for_slot=sum(s.legs_waiting_for_slot for s in statuses),
            not_transcribed_s=sum(s.not_transcribed_s for s in statuses),
            workers=len(alive),
        )

    def _alive(self, reports: dict[str, dict[str, Any]], now_wall: float) -> list[str]:
        """Names of the workers whose last report is recent."""
        beats = {name: float(r.get("at") or 0.0) for name, r in reports.items()}
        return alive_workers(beats, now_wall, self._worker_stale_s)

    def _workers_alive(self) -> bool:
        with self._lock:
            reports = dict(self._workers)
            error = self._last_error
        return not error and bool(self._alive(reports, time.time()))

    def _say_unserved_legs(self) -> None:
        """A leg no worker has taken within ``worker_stale_s`` is not being transcribed (no worker alive, or
        every worker full): intake hears it once, the console shows it and the call routes on; it hears
        again when a worker takes the leg."""
        now = time.monotonic()
        with self._lock:
            unserved = [
                key
                for key, state in self._legs.items()
                if not state.heard
                and not state.unserved_said
                and now - state.opened_at >= self._worker_stale_s
            ]
            for key in unserved:
                self._legs[key].unserved_said = True
        if not unserved:
            return
        why = (
            "no recognition worker alive" if not self._workers_alive() else "every recognition worker is full"
        )
        for call_ref, leg in unserved:
            log.error("recognition: %s/%s is not being transcribed: %s", call_ref, leg, why)
            self._emit(
                TranscriptionFailed(
                    call_ref,
                    leg,
                    f"{why}: this leg is not being transcribed yet (the recording keeps it)",
                    recovered=False,
                )
            )

    def _emit(self, event: TranscriptEvent) -> None:
        try:
            self._on_event(event)
        except Exception:  # the consumer's bug must not stop the event stream for every other call
            log.exception("on_event raised for %s", event)

    def health(self) -> tuple[bool, str]:
        status = self.recognition_status()
        return status.healthy, status.line()

    def close(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._outbox and time.monotonic() < deadline:
                self._lock.wait(0.1)
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        self._sender.join(max(0.0, deadline - time.monotonic()))
        self._reader.join(max(0.0, deadline - time.monotonic()) + 2.0)
        self._redis.close()

    # -- sending ------------------------------------------------------------------------------------
    def _post(self, kind: str, key: tuple[str, str], fields: dict[str, str | bytes]) -> None:
        with self._lock:
            self._outbox.append((kind, key, fields))
            if kind == MSG_AUDIO:
                self._outbox_bytes[key] = self._outbox_bytes.get(key, 0) + len(fields["pcm"])
            self._lock.notify()

    def _send_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                while not self._outbox and not self._stopping.is_set():
                    self._lock.wait(1.0)
                batch = list(self._outbox)
            if not batch:
                continue
            try:
                self._send(batch)
            except redis.RedisError as exc:
                with self._lock:
                    self._last_error = str(exc)
                log.error(
                    "recognition: sending %d messages to Redis failed (kept, retrying): %s", len(batch), exc
                )
                self._stopping.wait(RETRY_S)
                continue
            with self._lock:
                for _ in batch:
                    kind, key, fields = self._outbox.popleft()
                    if kind == MSG_AUDIO:
                        self._outbox_bytes[key] -= len(fields["pcm"])
                self._last_error = ""
                self._lock.notify_all()

    def _send(self, batch: list[tuple[str, tuple[str, str], dict[str, str | bytes]]]) -> None:
        # MULTI: a batch is applied whole or not at all, so a retry after a dropped connection repeats nothing
        pipe = self._redis.pipeline(transaction=True)
        pending: tuple[tuple[str, str], int, bytearray] | None = None  # audio of one leg, coalesced

        def flush_audio() -> None:
            nonlocal pending
            if pending is not None:
                (call_ref, leg), offset, pcm = pending
                self._xadd_leg(pipe, call_ref, leg, {"t": MSG_AUDIO, "o": str(offset), "pcm": bytes(pcm)})
                pending = None

        for kind, (call_ref, leg), fields in batch:
            if kind == MSG_AUDIO and not fields["first"]:
                pcm = fields["pcm"]
                assert isinstance(pcm, bytes)
                offset = int(fields["o"])
                if (
                    pending is not None
                    and pending[0] == (call_ref, leg)
                    and pending[1] + len(pending[2]) == offset
                ):
                    pending[2].extend(pcm)
                    continue
                flush_audio()
                pending = ((call_ref, leg), offset, bytearray(pcm))
                continue
            flush_audio()
            if kind == "open":
                self._take_over_earlier_openings(pipe, call_ref, str(fields["leg"]))
                instances = instances_key(self._prefix, call_ref, str(fields["leg"]))
                pipe.sadd(instances, leg)
                pipe.expire(instances, 3600)
                pipe.hset(
                    leg_key(self._prefix, call_ref, leg),
                    mapping={
                        "call_ref": call_ref,
                        "leg": leg,
                        "rate": fields["rate"],
                        "language_hint": fields["language_hint"],
                        "country_hint": fields["country_hint"],
                        "reply": fields["reply"],
                        "epoch": "0",
                        "ckpt_offset": "0",
                        "ckpt_id": "0-0",
                    },
                )
                pipe.xadd(control_key(self._prefix), {"call_ref": call_ref, "leg": leg})
            elif (
                kind == MSG_AUDIO
            ):  # a leg's first frame goes alone: the worker settles the rate from its size
                self._xadd_leg(pipe, call_ref, leg, {"t": MSG_AUDIO, "o": fields["o"], "pcm": fields["pcm"]})
            elif kind == MSG_QUEUE:
                self._xadd_leg(pipe, call_ref, leg, {"t": MSG_QUEUE, **fields})
                pipe.hset(
                    leg_key(self._prefix, call_ref, leg), mapping={f"q_{k}": v for k, v in fields.items()}
                )
            elif kind == MSG_CLOSE:
                self._xadd_leg(pipe, call_ref, leg, {"t": MSG_CLOSE})
        flush_audio()
        pipe.execute()

    def _take_over_earlier_openings(self, pipe: Any, call_ref: str, leg: str) -> None:
        """The leg was opened before by another node (it died; this node took the call over) or by this
        node's earlier process: its worker still holds audio the dead node never heard back. From now on
        that opening's events come here (the worker's publish checks ``reply`` in the leg's hash), and it
        is closed, so its worker flushes the caller's last words now instead of after ``idle_close_s``."""
        for raw in self._redis.smembers(instances_key(self._prefix, call_ref, leg)):
            earlier = _as_text(raw)
            lkey = leg_key(self._prefix, call_ref, earlier)
            if not self._redis.exists(lkey):
                continue  # finished already
            log.warning(
                "recognition: %s/%s was opened before as %s: its last words come here", call_ref, leg, earlier
            )
            pipe.hset(lkey, "reply", self._events)
            self._xadd_leg(pipe, call_ref, earlier, {"t": MSG_CLOSE})

    def _xadd_leg(self, pipe: Any, call_ref: str, leg: str, fields: dict[str, str | bytes]) -> None:
        # Entries hold 20 ms (a leg's first frame, a sender keeping up) to a few hundred ms of audio: bounding
        # the entries at 20 ms each keeps at least ``audio_maxlen_s`` of audio (approximate trimming).
        key = audio_key(self._prefix, call_ref, leg)
        pipe.xadd(key, fields, maxlen=max(100, int(self._audio_maxlen_s * 50)), approximate=True)
        pipe.expire(key, 3600)  # a leg nobody closes (its intake node died) does not stay for ever

    # -- receiving ----------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        next_poll = 0.0
        while not self._stopping.is_set():
            try:
                if self._last_event_id == "$":
                    info = (
                        self._redis.xinfo_stream(self._events) if self._redis.exists(self._events) else None
                    )
                    self._last_event_id = str(info["last-generated-id"], "ascii") if info else "0-0"
                    self._ready.set()
                if time.monotonic() >= next_poll:
                    self._poll_workers()
                    self._say_unserved_legs()
                    next_poll = time.monotonic() + HEARTBEAT_S
                replies = self._redis.xread({self._events: self._last_event_id}, count=500, block=500)
            except redis.RedisError as exc:
                with self._lock:
                    self._last_error = str(exc)
                log.error("recognition: reading events from Redis failed: %s", exc)
                self._stopping.wait(RETRY_S)
                continue
            for _stream, entry_id, fields in _stream_entries(replies):
                self._last_event_id = entry_id
                self._deliver(text(fields, "kind"), text(fields, "data"))

    def _poll_workers(self) -> None:
        reports: dict[str, dict[str, Any]] = {}
        for name, raw in self._redis.hgetall(workers_key(self._prefix)).items():
            try:
                report = json.loads(raw)
            except ValueError:
                continue
            if isinstance(report, dict):
                reports[name.decode() if isinstance(name, bytes) else str(name)] = report
        with self._lock:
            self._workers = reports
            self._last_error = ""

    def _heard(self, key: tuple[str, str]) -> None:
        """A worker spoke about the leg: if intake had been told nobody transcribes it, it hears otherwise."""
        with self._lock:
            state = self._legs.get(key)
            if state is None or state.heard:
                return
            state.heard = True
            recovered = state.unserved_said
        if recovered:
            self._emit(TranscriptionFailed(*key, "a recognition worker took the leg", recovered=True))

    def _current(self, call_ref: str, wire: str) -> tuple[tuple[str, str], bool]:
        """The intake-side key of a wire leg, and whether it is this node's current opening of it (events of
        an earlier opening, taken over from a dead node, are delivered; its progress is not ours)."""
        key = (call_ref, base_leg(wire))
        with self._lock:
            state = self._legs.get(key)
            return key, state is not None and state.wire == wire

    def _deliver(self, kind: str, payload: str) -> None:
        if kind in (EVENT_PROGRESS, EVENT_CLOSED):
            try:
                data = json.loads(payload)
                key, current = self._current(str(data["call_ref"]), str(data["leg"]))
                processed = int(data.get("processed") or 0)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("recognition: malformed %s message ignored: %s", kind, exc)
                return
            if not current:
                return
            self._heard(key)
            with self._lock:
                state = self._legs.get(key)
                if state is None:
                    return
                state.processed_bytes = max(state.processed_bytes, processed)
                if kind == EVENT_CLOSED:
                    state.processed_bytes = state.sent_bytes
                    del self._legs[key]
            if kind == EVENT_CLOSED:
                state.done.set()
            return
        event = decode_event(kind, payload)
        if event is None:
            log.warning("recognition: malformed %s event ignored: %.200s", kind, payload)
            return
        key, current = self._current(event.call_ref, event.leg)
        if current:
            self._heard(key)
        self._emit(dataclasses.replace(event, leg=key[1]))


# ================================================================================ the worker


@dataclass(slots=True)
class _OwnedLeg:
    call_ref: str
    leg: str
    entry_id: str  # the pending ``open`` entry: the lease
    epoch: str
    reply: str
    cursor: LegCursor
    last_read: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event | None = None
    lost: bool = False
    last_entry_at: float = 0.0  # monotonic time of the last entry read (a leg nobody feeds is closed)


class RecognitionWorker:
    """One recognition worker process: takes legs from the consumer group, decodes them with one
    :class:`TranscriptionService` (the same scheduler, gap marks and waiting-callers-first as in-process)
    and publishes the events back; takes over the legs of workers that stop renewing their leases."""

    def __init__(
        self,
        redis_url: str,
        config: TranscriptionConfig,
        *,
        name: str,
        prefix: str = DEFAULT_PREFIX,
        max_legs: int = 8,
        lease_s: float = 3.0,
        idle_close_s: float = 120.0,
        engines: EngineSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._redis = _connect(redis_url)
        self._prefix = prefix
        self._control = control_key(prefix)
        self._max_legs = max_legs
        self._idle_close_s = idle_close_s
        self._clock = clock
        self._leases = LeaseClock(lease_s, clock())
        self._owned: dict[tuple[str, str], _OwnedLeg] = {}
        self._owned_lock = threading.Lock()
        self._stopping = threading.Event()
        self._publish = self._redis.register_script(_PUBLISH)
        self._finish = self._redis.register_script(_FINISH)
        self._events_maxlen = EVENTS_MAXLEN
        self.service = TranscriptionService(config, self._on_event, engines=engines)
        try:
            self._redis.xgroup_create(self._control, WORKER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        """Serve until :meth:`stop`; Redis errors are logged and retried (legs stay owned by their lease)."""
        next_beat = 0.0
        next_progress = 0.0
        while not self._stopping.is_set():
            try:
                now = self._clock()
                if self._leases.renewal_due(now):
                    if self._leases.lost(
                        now
                    ):  # paused past the lease: fencing decides which legs are still ours
                        log.warning("recognition worker %s: leases not renewed in time", self.name)
                    self._renew()
                    self._leases.renewed(now)
                if self._leases.claim_due(now):
                    self._claim_orphans()
                    self._leases.looked(now)
                self._take_new_legs()
                self._read_audio()
                self._finish_closed_legs()
                if now >= next_progress:
                    self._publish_progress()
                    next_progress = now + PROGRESS_S
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + HEARTBEAT_S
            except redis.RedisError as exc:
                log.error("recognition worker %s: Redis: %s", self.name, exc)
                self._stopping.wait(RETRY_S)
        self._redis.hdel(workers_key(self._prefix), self.name)

    # -- legs in --------------------------------------------------------------------------------------
    def _take_new_legs(self) -> None:
        with self._owned_lock:
            room = self._max_legs - len(self._owned)
        if room <= 0:
            return
        block = None if self._owned else 200
        replies = self._redis.xreadgroup(
            WORKER_GROUP, self.name, {self._control: ">"}, count=room, block=block
        )
        for _stream, entry_id, fields in _stream_entries(replies):
            self._adopt(entry_id, text(fields, "call_ref"), text(fields, "leg"), resumed=False)

    def _claim_orphans(self) -> None:
        with self._owned_lock:
            room = self._max_legs - len(self._owned)
        if room <= 0:
            return
        result = self._redis.xautoclaim(
            self._control, WORKER_GROUP, self.name, self._leases.claim_idle_ms, "0-0", count=room
        )
        for _stream, entry_id, fields in _stream_entries([(self._control, result[1])]):
            if fields:  # an entry deleted since (its leg finished) comes back without fields
                self._adopt(entry_id, text(fields, "call_ref"), text(fields, "leg"), resumed=True)

    def _adopt(self, entry_id: str, call_ref: str, leg: str, resumed: bool) -> None:
        lkey = leg_key(self._prefix, call_ref, leg)
        info = {_as_text(k): _as_text(v) for k, v in self._redis.hgetall(lkey).items()}
        if not info:  # finished by a worker that died before acknowledging
            self._redis.xack(self._control, WORKER_GROUP, entry_id)
            self._redis.xdel(self._control, entry_id)
            return
        epoch = str(self._redis.hincrby(lkey, "epoch", 1))
        previous_owner = info.get("owner", "")
        self._redis.hset(lkey, "owner", self.name)
        rate = int(info.get("rate") or 8000)
        start = Checkpoint(int(info.get("ckpt_offset") or 0), info.get("ckpt_id") or "0-0")
        language = info.get("language") or info.get("language_hint") or None
        owned = _OwnedLeg(
            call_ref,
            leg,
            entry_id,
            epoch,
            info.get("reply", ""),
            LegCursor(rate, start),
            entry_before(start.entry_id) if start.entry_id != "0-0" else "0-0",
        )
        try:
            self.service.open_leg(
                call_ref,
                leg,
                rate,
                language_hint=language,
                country_hint=info.get("country_hint") or None,
                start_s=owned.cursor.seconds(start.offset),
            )
        except Exception as exc:  # a bad leg must not stop the worker: say so to intake, finish the leg
            log.exception("recognition worker %s: cannot open %s/%s", self.name, call_ref, leg)
            with self._owned_lock:
                self._owned[(call_ref, leg)] = owned
            self._on_event(TranscriptionFailed(call_ref, leg, f"recognition worker: {exc}", recovered=False))
            owned.done = threading.Event()
            owned.done.set()
            return
        owned.last_entry_at = self._clock()
        with self._owned_lock:
            self._owned[(call_ref, leg)] = owned
        if info.get("q_priority"):
            self._set_queue(
                call_ref,
                leg,
                info.get("q_waiting", ""),
                info["q_priority"],
                info.get("q_since", ""),
                info.get("q_triaged", ""),
            )
        if resumed:
            log.warning(
                "recognition worker %s: took over %s/%s from %s at %.1f s",
                self.name,
                call_ref,
                leg,
                previous_owner or "?",
                owned.cursor.seconds(start.offset),
            )
            self._on_event(
                TranscriptionFailed(
                    call_ref,
                    leg,
                    f"recognition worker {previous_owner or '?'} lost; resumed on {self.name} from "
                    f"{owned.cursor.seconds(start.offset):.1f} s",
                    recovered=True,
                )
            )

    def _read_audio(self) -> None:
        with self._owned_lock:
            legs = [o for o in self._owned.values() if o.done is None and not o.lost]
        if not legs:
            return
        streams: dict[KeyT, StreamIdT] = {
            audio_key(self._prefix, o.call_ref, o.leg): o.last_read for o in legs
        }
        by_stream = {audio_key(self._prefix, o.call_ref, o.leg): o for o in legs}
        replies = self._redis.xread(streams, count=200, block=100)
        now = self._clock()
        for stream, entry_id, fields in _stream_entries(replies):
            owned = by_stream[stream]
            owned.last_read = entry_id
            owned.last_entry_at = now
            self._handle(owned, entry_id, fields)
        for owned in legs:
            if owned.done is None and now - owned.last_entry_at > self._idle_close_s:
                # Intake sends frames (silence too) for as long as a call lasts: a leg without any for this
                # long lost its intake node; flush what was said and release it instead of holding it for ever.
                log.warning(
                    "recognition worker %s: no audio for %s/%s in %.0f s; closing it",
                    self.name,
                    owned.call_ref,
                    owned.leg,
                    self._idle_close_s,
                )
                owned.done = self.service.close_leg(owned.call_ref, owned.leg)

    def _handle(self, owned: _OwnedLeg, entry_id: str, fields: dict[bytes, bytes]) -> None:
        kind = text(fields, "t")
        if kind == MSG_AUDIO:
            try:
                offset = int(text(fields, "o"))
            except ValueError:
                log.warning(
                    "recognition worker: audio entry %s of %s without offset ignored",
                    entry_id,
                    owned.call_ref,
                )
                return
            pcm = fields.get(b"pcm", b"")
            with owned.lock:
                accepted = owned.cursor.accept(entry_id, offset, pcm)
            if accepted.gap_bytes:
                self._mark_gap(owned, offset - accepted.gap_bytes, accepted.gap_bytes)
            if accepted.pcm:
                self.service.feed(owned.call_ref, owned.leg, accepted.pcm)
        elif kind == MSG_QUEUE:
            self._set_queue(
                owned.call_ref,
                owned.leg,
                text(fields, "waiting"),
                text(fields, "priority"),
                text(fields, "since"),
                text(fields, "triaged"),
            )
        elif kind == MSG_CLOSE:
            owned.done = self.service.close_leg(owned.call_ref, owned.leg)

    def _mark_gap(self, owned: _OwnedLeg, from_offset: int, n_bytes: int) -> None:
        """Audio that never reached a decoder: a mark in the transcript, silence for the leg's clock."""
        start_s = owned.cursor.seconds(from_offset)
        seconds = owned.cursor.seconds(n_bytes)
        self._on_event(
            TranscriptFinal.gap(
                owned.call_ref, owned.leg, start_s, seconds, "recognition worker lost or behind"
            )
        )
        self.service.feed(owned.call_ref, owned.leg, bytes(n_bytes - n_bytes % 2))

    def _set_queue(
        self, call_ref: str, leg: str, waiting: str, priority: str, since: str, triaged: str = ""
    ) -> None:
        try:
            since_mono = monotonic_from_wall(float(since), time.monotonic(), time.time()) if since else None
            self.service.set_leg_queue(
                call_ref, leg, bool(waiting), int(priority or 3), since_mono, triaged=_flag(triaged)
            )
        except ValueError:
            log.warning("recognition worker: malformed queue state of %s/%s ignored", call_ref, leg)

    # -- events out -----------------------------------------------------------------------------------
    def _on_event(self, event: TranscriptEvent) -> None:
        """From the service's leg threads: publish under the leg's epoch; a lost epoch drops the leg here."""
        with self._owned_lock:
            owned = self._owned.get((event.call_ref, event.leg))
        if owned is None or owned.lost:
            return
        kind, payload = encode_event(event)
        checkpoint: Checkpoint | None = None
        settled = self.service.settled_s(owned.call_ref, owned.leg)
        if isinstance(event, TranscriptFinal) and event.engine != GAP_ENGINE:
            settled = max(settled or 0.0, event.end_s)
        if settled is not None:
            with owned.lock:
                checkpoint = owned.cursor.checkpoint_for(settled)
        language = getattr(event, "language", "") if kind == "language" else ""
        self._run_publish(owned, kind, payload, checkpoint, language or "")

    def _run_publish(
        self, owned: _OwnedLeg, kind: str, payload: str, checkpoint: Checkpoint | None, language: str = ""
    ) -> None:
        for _attempt in range(3):
            outcome = self._try_publish(owned, kind, payload, checkpoint, language)
            if outcome != REPLY_MOVED:
                break
            # Another intake node took the call over (its first node died): its events go there now.
            try:
                reply = self._redis.hget(leg_key(self._prefix, owned.call_ref, owned.leg), "reply")
            except redis.RedisError as exc:
                log.error("recognition worker %s: reply stream of %s not read: %s", self.name, owned.leg, exc)
                return
            owned.reply = _as_text(reply) if reply else owned.reply
        if outcome == FENCED:
            self._drop_lost(owned)

    def _try_publish(
        self, owned: _OwnedLeg, kind: str, payload: str, checkpoint: Checkpoint | None, language: str
    ) -> int:
        try:
            ok = self._publish(
                keys=[
                    leg_key(self._prefix, owned.call_ref, owned.leg),
                    owned.reply,
                    audio_key(self._prefix, owned.call_ref, owned.leg),
                ],
                args=[
                    owned.epoch,
                    self._events_maxlen,
                    kind,
                    payload,
                    "" if checkpoint is None else str(checkpoint.offset),
                    "" if checkpoint is None else checkpoint.entry_id,
                    language,
                ],
            )
        except redis.RedisError as exc:
            log.error(
                "recognition worker %s: event of %s/%s not published: %s",
                self.name,
                owned.call_ref,
                owned.leg,
                exc,
            )
            return NOT_SENT
        return int(ok)

    def _drop_lost(self, owned: _OwnedLeg) -> None:
        """Another worker owns the leg now (this one was paused past its lease): stop, publish nothing."""
        if owned.lost:
            return
        owned.lost = True
        log.warning(
            "recognition worker %s: %s/%s taken over by another worker; dropped here",
            self.name,
            owned.call_ref,
            owned.leg,
        )
        owned.done = self.service.close_leg(owned.call_ref, owned.leg)

    def _publish_progress(self) -> None:
        with self._owned_lock:
            legs = [o for o in self._owned.values() if not o.lost]
        for owned in legs:
            processed = owned.cursor.next_offset - int(
                self.service.backlog_s(owned.call_ref, owned.leg) * owned.cursor.rate * 2
            )
            settled = self.service.settled_s(owned.call_ref, owned.leg)
            with owned.lock:
                checkpoint = None if settled is None else owned.cursor.checkpoint_for(settled)
            payload = json.dumps({"call_ref": owned.call_ref, "leg": owned.leg, "processed": processed})
            self._run_publish(owned, EVENT_PROGRESS, payload, checkpoint)

    def _finish_closed_legs(self) -> None:
        with self._owned_lock:
            finished = [o for o in self._owned.values() if o.done is not None and o.done.is_set()]
        for owned in finished:
            if not owned.lost:
                payload = json.dumps(
                    {"call_ref": owned.call_ref, "leg": owned.leg, "processed": owned.cursor.next_offset}
                )
                self._finish(
                    keys=[
                        leg_key(self._prefix, owned.call_ref, owned.leg),
                        owned.reply,
                        audio_key(self._prefix, owned.call_ref, owned.leg),
                        self._control,
                    ],
                    args=[owned.epoch, self._events_maxlen, payload, WORKER_GROUP, owned.entry_id],
                )
            with self._owned_lock:
                self._owned.pop((owned.call_ref, owned.leg), None)

    # -- leases and health ----------------------------------------------------------------------------
    def _renew(self) -> None:
        with self._owned_lock:
            ids = [o.entry_id for o in self._owned.values() if not o.lost]
        if ids:
            self._redis.xclaim(self._control, WORKER_GROUP, self.name, 0, list[StreamIdT](ids), justid=True)

    def _heartbeat(self) -> None:
        status = self.service.recognition_status()
        report = {
            "at": time.time(),
            "legs": len(self._owned),
            "max_legs": self._max_legs,
            "status": status.to_json(),
        }
        self._redis.hset(workers_key(self._prefix), self.name, json.dumps(report))
