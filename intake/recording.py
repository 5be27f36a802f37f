"""Voice logging: every call's caller and call-taker legs recorded, compressed, stored while the call goes.

The media path hands each 20 ms frame to :meth:`CallRecorder.feed` on the event loop; that only appends to a
bounded in-memory queue and never waits. One recorder thread per node turns frames into FLAC chunks of
``chunk_s`` seconds (python-soundfile's bundled libsndfile) and writes them to the shared database, so a
recording survives the node that took the call and can be replayed from any node while the call is still
going. Nothing here can stop or slow a call: a full queue drops audio (marked as a gap), a database that
refuses a chunk keeps it in a bounded retry buffer, and a recording that could not be kept is marked
``partial`` or ``failed`` on the call rather than silently missing.

Time line: 0 s is the first RTP frame of the call (either leg). Each leg starts at its own offset; frames
that never came (network loss beyond what the endpoint fills, frames dropped under load, chunks the
database refused) are silence in the recording and listed as gaps with their reason.

Why FLAC rather than Opus: measured in ``benchmarks/recording.py``, libsndfile's Opus encoder costs about
1 % of a core per leg at 8 kHz, so two legs would exceed the 2 %-per-call budget; FLAC costs under 0.1 %
and keeps exactly what came off the wire (evidence), at roughly three times Opus's storage.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
import soundfile

from intake.domain import utc_now
from intake.errors import IzsError

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
CODEC = "flac"  # stored chunks: "flac" (default) or "opus" (settings.recording_codec)
CODECS = ("flac", "opus")
MEDIA_TYPE = "audio/flac"
CHUNK_S = 2.0
# Audio that arrives this much later than its place on the leg's clock means nothing came meanwhile.
GAP_TOLERANCE_S = 1.0
# ~3 minutes of 20 ms frames for 30 two-leg calls; beyond that frames are dropped (and marked), never waited on.
MAX_QUEUED_FRAMES = 30 * 2 * 50 * 180
# Chunks kept for a retry while the database refuses them (per node).
MAX_PENDING_BYTES = 32 * 1024 * 1024
RETRY_EVERY_S = 1.0
LEGS = ("caller", "taker")


class RecordingStatus:
    RECORDING = "recording"  # audio is being stored
    COMPLETE = "complete"  # everything that arrived is stored
    PARTIAL = "partial"  # some audio was lost on our side (overload, database): see gaps
    FAILED = "failed"  # nothing could be stored
    PURGED = "purged"  # deleted after the retention period
    INTERRUPTED = "interrupted"  # the node recording it stopped or died before the call ended
    NOT_RECORDED = "not_recorded"  # no audio ever reached the recorder (read side only)


class GapReason:
    NO_AUDIO = "no_audio"  # nothing arrived from the phone or network
    DROPPED = "dropped"  # frames dropped before storage (media backlog or recorder queue full)
    STORAGE = "storage"  # the database refused the chunk for too long


@dataclass(frozen=True, slots=True)
class Gap:
    leg: str
    start_s: float
    duration_s: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "leg": self.leg,
            "start_s": round(self.start_s, 3),
            "duration_s": round(self.duration_s, 3),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    call_id: str
    node: str
    codec: str
    sample_rate: int
    status: str
    started_at: datetime
    ended_at: datetime | None
    legs: dict[str, dict[str, float]]  # leg -> {"offset_s", "duration_s"}
    gaps: list[dict[str, Any]]
    stored_bytes: int
    detail: str | None = None
    purged_at: datetime | None = None

    @property
    def duration_s(self) -> float:
        return max((v["offset_s"] + v["duration_s"] for v in self.legs.values()), default=0.0)


@dataclass(frozen=True, slots=True)
class Chunk:
    leg: str
    seq: int
    start_s: float
    duration_s: float
    data: bytes


class RecordingStore(Protocol):
    """Where recordings are kept (:class:`intake.storage.recordings.RecordingRepository`)."""

    def begin_recording(
        self, call_id: str, node: str, started_at: datetime, sample_rate: int, codec: str = CODEC
    ) -> None: ...

    def append_chunk(self, call_id: str, chunk: Chunk) -> None: ...

    def finish_recording(
        self,
        call_id: str,
        status: str,
        ended_at: datetime,
        legs: dict[str, dict[str, float]],
        gaps: list[dict[str, Any]],
        detail: str | None,
    ) -> None: ...


def encode_flac(pcm: bytes | np.ndarray[Any, Any], sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM (mono bytes, or an int16 array of shape (n,) / (n, channels)) as a FLAC file."""
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray) else pcm
    out = io.BytesIO()
    soundfile.write(out, samples, sample_rate, format="FLAC", subtype="PCM_16")
    return out.getvalue()


def encode_chunk(pcm: bytes, codec: str) -> bytes:
    """One stored chunk: FLAC (lossless) or Ogg/Opus (about 2.5x smaller, about 30x the CPU)."""
    if codec == "opus":
        out = io.BytesIO()
        soundfile.write(out, np.frombuffer(pcm, dtype="<i2"), SAMPLE_RATE, format="OGG", subtype="OPUS")
        return out.getvalue()
    return encode_flac(pcm)


def decode(data: bytes) -> np.ndarray[Any, np.dtype[np.int16]]:
    samples, _ = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=False)
    return np.asarray(samples, dtype=np.int16)


# ------------------------------------------------------------------------------------------- recorder


@dataclass
class _Leg:
    name: str
    offset_s: float
    first_mono: float
    samples: int = 0  # everything placed on this leg's time line so far (audio and gap silence)
    next_seq: int | None = None
    buffer: bytearray = field(default_factory=bytearray)
    buffer_start: int = 0  # sample position of buffer[0]
    chunk_seq: int = 0


@dataclass
class _Recording:
    call_id: str
    t0_mono: float | None = None
    started_at: datetime | None = None
    legs: dict[str, _Leg] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    lost: bool = False  # audio lost on our side: the recording is partial
    stored_chunks: int = 0
    failed_chunks: int = 0
    row_written: bool = False
    ending_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Frame:
    call_id: str
    leg: str
    pcm: bytes
    seq: int
    at: float


@dataclass(frozen=True, slots=True)
class _Control:
    what: str  # "start" | "end" | "stopped" (node going away) | "barrier"
    call_id: str
    at: datetime
    reached: threading.Event | None = None


@dataclass
class RecorderStats:
    """What the supervisor's component panel shows about voice logging on this node."""

    recording_now: int = 0
    queued_frames: int = 0
    frames_dropped: int = 0
    chunks_stored: int = 0
    chunk_write_failures: int = 0
    pending_bytes: int = 0
    last_failure: str = ""
    failures_at: deque[float] = field(default_factory=lambda: deque(maxlen=1000))


class CallRecorder:
    """Records every call of this node; see the module docstring. Thread-safe; ``feed`` never blocks."""

    def __init__(
        self,
        store: RecordingStore,
        node: str,
        *,
        chunk_s: float = CHUNK_S,
        max_queued_frames: int = MAX_QUEUED_FRAMES,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        codec: str = CODEC,
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"recording codec must be one of {', '.join(CODECS)}, not {codec!r}")
        self._codec = codec
        self._store = store
        self._node = node
        self._chunk_samples = int(chunk_s * SAMPLE_RATE)
        self._max_queued = max_queued_frames
        self._max_pending = max_pending_bytes
        self._monotonic = monotonic
        self._now = now
        self._frames: deque[_Frame] = deque()
        self._controls: deque[_Control] = deque()
        self._wake = threading.Condition()
        self._lock = threading.Lock()  # the recordings' state: worker thread and tail() readers
        self._recordings: dict[str, _Recording] = {}
        self._dropped: dict[tuple[str, str], int] = {}
        self._pending: deque[tuple[str, Chunk]] = deque()
        self._closing: dict[str, tuple[_Recording, datetime, bool]] = {}  # ended, chunks still pending
        self._pending_finish: dict[
            str, tuple[str, datetime, dict[str, dict[str, float]], list[Any], str]
        ] = {}
        self._pending_bytes = 0
        self._last_retry = 0.0
        self.stats = RecorderStats()
        self._running = False
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name="call-recorder", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Store what is queued and close every open recording as ``interrupted`` (the process is going
        away while those calls may go on elsewhere, e.g. a PBX keeps them)."""
        with self._wake:
            for call_id in list(self._recordings):
                self._controls.append(_Control("stopped", call_id, self._now()))
            self._running = False
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("call recorder did not finish in %.0f s; unstored audio is lost", timeout_s)

    # ------------------------------------------------------------------ from the event loop

    def begin(self, call_id: str) -> None:
        self._control(_Control("start", call_id, self._now()))

    def end(self, call_id: str, at: datetime | None = None) -> None:
        self._control(_Control("end", call_id, at or self._now()))

    def feed(self, call_id: str, leg: str, pcm: bytes, seq: int) -> None:
        """One frame of 8 kHz 16-bit PCM. Never blocks: a full queue drops the frame (marked as a gap)."""
        with self._wake:
            if len(self._frames) >= self._max_queued:
                key = (call_id, leg)
                self._dropped[key] = self._dropped.get(key, 0) + 1
                self.stats.frames_dropped += 1
                return
            self._frames.append(_Frame(call_id, leg, pcm, seq, self._monotonic()))
            if len(self._frames) == 1:
                self._wake.notify()

    def wait_stored(self, timeout_s: float = 10.0) -> bool:
        """Block until everything fed before this call has been handled (stored or queued for a retry).
        For tests and shutdown; never call it on the event loop."""
        reached = threading.Event()
        self._control(_Control("barrier", "", self._now(), reached))
        return reached.wait(timeout_s)

    def _control(self, control: _Control) -> None:
        with self._wake:
            self._controls.append(control)
            self._wake.notify()

    # ------------------------------------------------------------------ read side (any thread)

    def tail(self, call_id: str, leg: str) -> tuple[float, bytes] | None:
        """The audio of a call still being recorded here that is not in the database yet:
        (start on the recording's time line, PCM)."""
        with self._lock:
            recording = self._recordings.get(call_id)
            state = recording.legs.get(leg) if recording else None
            if state is None:
                return None
            return state.offset_s + state.buffer_start / SAMPLE_RATE, bytes(state.buffer)

    def health(self) -> tuple[bool, str]:
        now = self._monotonic()
        recent = sum(1 for at in self.stats.failures_at if now - at < 600)
        with self._lock:
            recording = len(self._recordings)
        detail = (
            f"recording {recording} calls, {self.stats.chunks_stored} chunks stored, "
            f"{self.stats.frames_dropped} frames dropped"
        )
        if self._pending_bytes:
            detail += f", {self._pending_bytes // 1024} KiB waiting for the database"
        if recent:
            return False, f"{detail}; {recent} chunk writes failed in 10 min: {self.stats.last_failure}"
        return True, detail

    # ------------------------------------------------------------------------------ worker

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._running and not self._frames and not self._controls:
                    self._wake.wait(RETRY_EVERY_S)
                controls = list(self._controls)
                self._controls.clear()
                frames = list(self._frames)
                self._frames.clear()
                dropped, self._dropped = self._dropped, {}
                running = self._running
            try:
                self._apply(controls, frames, dropped)
                if self._pending or self._pending_finish or self._closing:
                    self._retry()
            except Exception:  # the recorder must outlive its own bugs; the calls never depend on it
                log.exception("call recorder error (recording continues with the next frames)")
            if not running and not self._frames and not self._controls:
                self._retry(final=True)
                return

    def _apply(
        self, controls: list[_Control], frames: list[_Frame], dropped: dict[tuple[str, str], int]
    ) -> None:
        ends: list[_Control] = []
        barriers: list[threading.Event] = []
        for control in controls:
            if control.what == "start":
                with self._lock:
                    self._recordings.setdefault(control.call_id, _Recording(control.call_id))
            elif control.what == "barrier" and control.reached is not None:
                barriers.append(control.reached)
            else:
                ends.append(control)
        for (call_id, leg), _count in dropped.items():
            recording = self._recordings.get(call_id)
            if recording is not None and leg in recording.legs:
                recording.lost = True  # the seq jump of the next frame places the silence and the gap
        for frame in frames:
            recording = self._recordings.get(frame.call_id)
            if recording is not None:
                self._place(recording, frame)
        for control in ends:
            self._finish(control.call_id, control.at, interrupted=control.what == "stopped")
        self.stats.recording_now = len(self._recordings)
        if barriers:
            # "Everything fed has been handled" includes one more attempt at what waits for the database.
            if self._pending or self._pending_finish or self._closing:
                self._retry(force=True)
            for reached in barriers:
                reached.set()

    def _place(self, recording: _Recording, frame: _Frame) -> None:
        if recording.t0_mono is None:
            recording.t0_mono = frame.at
            recording.started_at = self._now() - timedelta(seconds=self._monotonic() - frame.at)
            self._write_row(recording)
        state = recording.legs.get(frame.leg)
        if state is None:
            state = _Leg(frame.leg, offset_s=max(0.0, frame.at - recording.t0_mono), first_mono=frame.at)
            with self._lock:
                recording.legs[frame.leg] = state
        frame_samples = len(frame.pcm) // 2
        if state.next_seq is not None and frame.seq > state.next_seq:
            missing = (frame.seq - state.next_seq) * frame_samples
            self._silence(recording, state, missing, GapReason.DROPPED)
            recording.lost = True
        elif state.next_seq is not None and frame.seq < state.next_seq:
            return  # a frame older than what we have (never expected from the endpoint)
        behind = int((frame.at - state.first_mono) * SAMPLE_RATE) - state.samples - frame_samples
        if behind > GAP_TOLERANCE_S * SAMPLE_RATE:
            self._silence(recording, state, behind, GapReason.NO_AUDIO)
        with self._lock:
            state.buffer.extend(frame.pcm[: frame_samples * 2])
        state.samples += frame_samples
        state.next_seq = frame.seq + 1
        if len(state.buffer) >= self._chunk_samples * 2:
            self._flush(recording, state)

    def _silence(self, recording: _Recording, state: _Leg, samples: int, reason: str) -> None:
        recording.gaps.append(
            Gap(state.name, state.offset_s + state.samples / SAMPLE_RATE, samples / SAMPLE_RATE, reason)
        )
        log.warning(
            "call %s %s leg: %.1f s gap in the recording (%s)",
            recording.call_id,
            state.name,
            samples / SAMPLE_RATE,
            reason,
        )
        # Long silences are not encoded: the chunk's start on the time line says where audio resumes.
        self._flush(recording, state)
        state.samples += samples
        with self._lock:
            state.buffer_start = state.samples

    def _flush(self, recording: _Recording, state: _Leg) -> None:
        with self._lock:
            pcm = bytes(state.buffer)
            start = state.buffer_start
            state.buffer.clear()
            state.buffer_start = start + len(pcm) // 2
        if not pcm:
            return
        chunk = Chunk(
            leg=state.name,
            seq=state.chunk_seq,
            start_s=state.offset_s + start / SAMPLE_RATE,
            duration_s=len(pcm) / 2 / SAMPLE_RATE,
            data=encode_chunk(pcm, self._codec),
        )
        state.chunk_seq += 1
        if self._pending:
            self._queue_retry(recording, chunk)  # keep the order: older chunks first
            return
        self._write_chunk(recording, chunk)

    def _write_row(self, recording: _Recording) -> None:
        assert recording.started_at is not None
        try:
            self._store.begin_recording(
                recording.call_id, self._node, recording.started_at, SAMPLE_RATE, self._codec
            )
            recording.row_written = True
        except IzsError as exc:
            self._failed(f"recording of call {recording.call_id} not registered yet: {exc}")

    def _write_chunk(self, recording: _Recording | None, chunk: Chunk, call_id: str = "") -> bool:
        call_id = recording.call_id if recording is not None else call_id
        try:
            self._store.append_chunk(call_id, chunk)
        except IzsError as exc:
            self._failed(f"call {call_id} {chunk.leg} chunk {chunk.seq} not stored: {exc}")
            if recording is not None:
                self._queue_retry(recording, chunk)
            return False
        self.stats.chunks_stored += 1
        if recording is not None:
            recording.stored_chunks += 1
        return True

    def _queue_retry(self, recording: _Recording, chunk: Chunk) -> None:
        self._pending.append((recording.call_id, chunk))
        self._pending_bytes += len(chunk.data)
        while self._pending_bytes > self._max_pending and self._pending:
            call_id, oldest = self._pending.popleft()
            self._pending_bytes -= len(oldest.data)
            lost = self._owner(call_id)
            log.error(
                "call %s: %.1f s of the %s leg dropped from the recording (database away too long)",
                call_id,
                oldest.duration_s,
                oldest.leg,
            )
            if lost is not None:
                lost.lost = True
                lost.failed_chunks += 1
                lost.gaps.append(Gap(oldest.leg, oldest.start_s, oldest.duration_s, GapReason.STORAGE))
        self.stats.pending_bytes = self._pending_bytes

    def _failed(self, message: str) -> None:
        log.error("voice logging: %s", message)
        self.stats.chunk_write_failures += 1
        self.stats.last_failure = message
        self.stats.failures_at.append(self._monotonic())

    def _retry(self, final: bool = False, force: bool = False) -> None:
        now = self._monotonic()
        if not (final or force) and now - self._last_retry < RETRY_EVERY_S:
            return
        self._last_retry = now
        for recording in list(self._recordings.values()):
            if recording.started_at is not None and not recording.row_written:
                self._write_row(recording)
        while self._pending:
            call_id, chunk = self._pending[0]
            if not self._write_chunk(None, chunk, call_id=call_id):
                self._pending_bytes = sum(len(c.data) for _, c in self._pending)
                self.stats.pending_bytes = self._pending_bytes
                if final:  # the process is going away: what is not stored is lost, and said so
                    for call_id in list(self._closing):
                        self._close_if_stored(call_id, final=True)
                return
            self._pending.popleft()
            self._pending_bytes -= len(chunk.data)
            retried = self._owner(call_id)
            if retried is not None:
                retried.stored_chunks += 1
        self.stats.pending_bytes = self._pending_bytes
        for call_id in list(self._closing):
            self._close_if_stored(call_id)
        for call_id, args in list(self._pending_finish.items()):
            status, ended_at, legs, gaps, detail = args
            try:
                self._store.finish_recording(call_id, status, ended_at, legs, gaps, detail)
            except IzsError as exc:
                self._failed(f"recording of call {call_id} not closed yet: {exc}")
                return
            del self._pending_finish[call_id]

    def _finish(self, call_id: str, at: datetime, interrupted: bool = False) -> None:
        recording = self._recordings.get(call_id)
        if recording is None:
            return
        for state in recording.legs.values():
            self._flush(recording, state)
        with self._lock:
            del self._recordings[call_id]
        if recording.t0_mono is None:
            return  # no audio ever came: nothing recorded, the call says so
        # Closed once its last chunks are stored (or given up): the status then says what is kept.
        self._closing[call_id] = (recording, at, interrupted)
        self._close_if_stored(call_id)

    def _owner(self, call_id: str) -> _Recording | None:
        recording = self._recordings.get(call_id)
        if recording is None and call_id in self._closing:
            recording = self._closing[call_id][0]
        return recording

    def _close_if_stored(self, call_id: str, final: bool = False) -> None:
        recording, at, interrupted = self._closing[call_id]
        unstored = sum(1 for cid, _ in self._pending if cid == call_id)
        if unstored and not final:
            return
        del self._closing[call_id]
        if recording.stored_chunks == 0 and unstored == 0 and recording.failed_chunks:
            status = RecordingStatus.FAILED
        elif recording.lost or unstored:
            status = RecordingStatus.PARTIAL
        else:
            status = RecordingStatus.COMPLETE
        detail = None
        if unstored:
            detail = f"{unstored} chunks could not be stored before node {self._node} stopped"
        if interrupted:
            status = RecordingStatus.INTERRUPTED
            detail = f"node {self._node} stopped while the call was going on" + (
                f"; {detail}" if detail else ""
            )
        legs = {
            s.name: {"offset_s": round(s.offset_s, 3), "duration_s": round(s.samples / SAMPLE_RATE, 3)}
            for s in recording.legs.values()
        }
        gaps = [g.to_json() for g in recording.gaps]
        try:
            if not recording.row_written:
                self._write_row(recording)
            self._store.finish_recording(call_id, status, at, legs, gaps, detail)
        except IzsError as exc:
            self._failed(f"recording of call {call_id} not closed yet: {exc}")
            self._pending_finish[call_id] = (status, at, legs, gaps, detail or "")


# ---------------------------------------------------------------------------------------- playback


def assemble(
    chunks: Iterable[Chunk],
    legs: Iterable[str],
    *,
    from_s: float = 0.0,
    tail: dict[str, tuple[float, bytes]] | None = None,
) -> tuple[bytes, float]:
    """One playable FLAC file of ``legs`` (one channel each: caller left, call taker right) from
    ``from_s`` on the recording's time line to its end; unrecorded stretches are silence.
    ``tail`` adds audio not stored yet (a call still being recorded on this node). Returns (FLAC, seconds)."""
    wanted = list(legs)
    pieces: list[tuple[int, float, np.ndarray[Any, np.dtype[np.int16]]]] = []
    for chunk in chunks:
        if chunk.leg in wanted and chunk.start_s + chunk.duration_s > from_s:
            pieces.append((wanted.index(chunk.leg), chunk.start_s, decode(chunk.data)))
    for leg, (start_s, pcm) in (tail or {}).items():
        if leg in wanted and pcm:
            pieces.append((wanted.index(leg), start_s, np.frombuffer(pcm, dtype="<i2")))
    end_s = max((start + len(samples) / SAMPLE_RATE for _, start, samples in pieces), default=from_s)
    total = max(0, round((end_s - from_s) * SAMPLE_RATE))
    out = np.zeros((total, len(wanted)), dtype=np.int16)
    for channel, start_s, samples in pieces:
        at = round((start_s - from_s) * SAMPLE_RATE)
        if at < 0:
            samples = samples[-at:]
            at = 0
        samples = samples[: max(0, total - at)]
        out[at : at + len(samples), channel] = samples
    if total == 0:
        out = np.zeros((1, len(wanted)), dtype=np.int16)
    return encode_flac(out if len(wanted) > 1 else out[:, 0]), total / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class Playable:
    audio: bytes  # FLAC
    seconds: float
    from_s: float
    legs: tuple[str, ...]
    info: RecordingInfo


def recording_status(info: RecordingInfo | None, call_is_live: bool) -> str:
    """What the call's record says about its recording."""
    if info is None:
        return RecordingStatus.NOT_RECORDED
    if info.status == RecordingStatus.RECORDING and not call_is_live:
        return RecordingStatus.INTERRUPTED
    return info.status


def build_playable(
    store: Any,
    recorder: CallRecorder | None,
    call_id: str,
    legs: tuple[str, ...],
    last_s: float | None,
) -> Playable:
    """The recording of ``call_id`` as one FLAC file (blocking: run it in a thread). With ``last_s`` only
    the last seconds of the caller's audio so far, including what this node has not stored yet."""
    from intake.errors import NotFound

    info: RecordingInfo = store.require_recording(call_id)
    if info.status == RecordingStatus.PURGED:
        raise NotFound(
            f"the recording of call {call_id} was purged after the retention period", call_id=call_id
        )
    tail: dict[str, tuple[float, bytes]] = {}
    if recorder is not None:
        for leg in legs:
            pending = recorder.tail(call_id, leg)
            if pending is not None:
                tail[leg] = pending
    from_s = 0.0
    if last_s is not None:
        end = max(
            [store.recording_end_s(call_id, leg) for leg in legs]
            + [start + len(pcm) / 2 / SAMPLE_RATE for start, pcm in tail.values()]
        )
        from_s = max(0.0, end - last_s)
    chunks = store.recording_chunks(call_id, legs, from_s)
    audio, seconds = assemble(chunks, legs, from_s=from_s, tail=tail)
    return Playable(audio, seconds, from_s, legs, info)
