"""Voice logging on the real database (SQLite, or PostgreSQL with IZS_TEST_DB=postgres): chunks written while
the call goes on, gaps marked with their reason, database refusals retried and bounded, the nightly purge,
and playback as one FLAC file (python-soundfile decodes what we stored, sample for sample)."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import soundfile

from intake.domain import utc_now
from intake.errors import StorageError
from intake.recording import (
    SAMPLE_RATE,
    CallRecorder,
    Chunk,
    GapReason,
    RecordingStatus,
    build_playable,
)
from intake.storage.database import Database
from intake.storage.recordings import RecordingRepository

FRAME = 160  # 20 ms at 8 kHz


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def speech(seconds: float, seed: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = 6000 * np.sin(2 * np.pi * 300 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    return (tone + rng.normal(0, 500, len(t))).astype(np.int16)


def feed(
    recorder: CallRecorder, clock: Clock, call_id: str, leg: str, pcm: np.ndarray[Any, Any], seq0: int = 0
) -> int:
    """Feed ``pcm`` as 20 ms frames in real-time order; returns the next seq."""
    seq = seq0
    for start in range(0, len(pcm), FRAME):
        clock.t += FRAME / SAMPLE_RATE
        recorder.feed(call_id, leg, pcm[start : start + FRAME].tobytes(), seq)
        seq += 1
    return seq


@pytest.fixture
def store(database: Database) -> RecordingRepository:
    return RecordingRepository(database)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recorder(store: RecordingRepository, clock: Clock) -> Any:
    recorder = CallRecorder(store, "node-a", monotonic=clock)
    recorder.start()
    yield recorder
    recorder.stop()


def decoded(audio: bytes) -> np.ndarray[Any, np.dtype[np.int16]]:
    samples, rate = soundfile.read(io.BytesIO(audio), dtype="int16", always_2d=True)
    assert rate == SAMPLE_RATE
    return np.asarray(samples)


def test_both_legs_are_stored_while_the_call_goes_and_play_back_sample_for_sample(
    recorder: CallRecorder, store: RecordingRepository, clock: Clock
) -> None:
    caller, taker = speech(5.0, 1), speech(3.0, 2)
    recorder.begin("call-1")
    feed(recorder, clock, "call-1", "caller", caller[: 2 * SAMPLE_RATE])
    # The call taker answers after 2 s: from then on both legs alternate frame by frame.
    seq_c, seq_t = 2 * SAMPLE_RATE // FRAME, 0
    for i in range(0, 3 * SAMPLE_RATE, FRAME):
        clock.t += FRAME / SAMPLE_RATE
        recorder.feed(
            "call-1", "caller", caller[2 * SAMPLE_RATE + i : 2 * SAMPLE_RATE + i + FRAME].tobytes(), seq_c
        )
        recorder.feed("call-1", "taker", taker[i : i + FRAME].tobytes(), seq_t)
        seq_c, seq_t = seq_c + 1, seq_t + 1
    assert recorder.wait_stored()
    # Mid-call, the database already holds the first chunks (written as the call goes, not at its end).
    info = store.get_recording("call-1")
    assert info is not None and info.status == RecordingStatus.RECORDING
    assert store.recording_end_s("call-1", "caller") >= 4.0
    recorder.end("call-1")
    assert recorder.wait_stored()

    info = store.get_recording("call-1")
    assert info is not None and info.status == RecordingStatus.COMPLETE
    assert info.legs["caller"] == {"offset_s": 0.0, "duration_s": 5.0}
    assert info.legs["taker"]["offset_s"] == pytest.approx(2.02, abs=0.03)
    assert info.gaps == []
    assert 0 < info.stored_bytes < len(caller) * 2 + len(taker) * 2  # compressed

    playable = build_playable(store, recorder, "call-1", ("caller", "taker"), None)
    audio = decoded(playable.audio)
    assert audio.shape[1] == 2
    assert np.array_equal(audio[: len(caller), 0], caller)  # lossless
    at = round(info.legs["taker"]["offset_s"] * SAMPLE_RATE)
    assert np.array_equal(audio[at : at + len(taker), 1], taker)


def test_instant_replay_is_the_last_seconds_including_audio_not_stored_yet(
    recorder: CallRecorder, store: RecordingRepository, clock: Clock
) -> None:
    caller = speech(13.3, 3)
    recorder.begin("call-2")
    feed(recorder, clock, "call-2", "caller", caller)
    assert recorder.wait_stored()
    tail = recorder.tail("call-2", "caller")
    assert tail is not None and 0 < len(tail[1]) < 2 * SAMPLE_RATE * 2  # the chunk still being filled
    playable = build_playable(store, recorder, "call-2", ("caller",), 10.0)
    audio = decoded(playable.audio)[:, 0]
    assert playable.from_s == pytest.approx(3.3, abs=0.01)
    assert len(audio) == pytest.approx(10 * SAMPLE_RATE, abs=2)
    assert np.array_equal(audio, caller[-len(audio) :])


def test_silence_from_the_network_and_frames_dropped_on_our_side_are_marked_as_gaps(
    recorder: CallRecorder, store: RecordingRepository, clock: Clock
) -> None:
    recorder.begin("call-3")
    seq = feed(recorder, clock, "call-3", "caller", speech(1.0, 4))
    clock.t += 3.0  # nothing arrives for 3 s (the caller's network), then audio resumes
    seq = feed(recorder, clock, "call-3", "caller", speech(1.0, 5), seq)
    feed(recorder, clock, "call-3", "caller", speech(1.0, 6), seq + 25)  # 25 frames lost before us
    recorder.end("call-3")
    assert recorder.wait_stored()
    info = store.get_recording("call-3")
    assert info is not None
    gaps = {g["reason"]: g for g in info.gaps}
    assert gaps[GapReason.NO_AUDIO]["start_s"] == pytest.approx(1.0, abs=0.05)
    assert gaps[GapReason.NO_AUDIO]["duration_s"] == pytest.approx(3.0, abs=0.05)
    assert gaps[GapReason.DROPPED]["duration_s"] == pytest.approx(0.5, abs=0.01)
    assert info.status == RecordingStatus.PARTIAL  # audio lost on our side
    assert info.legs["caller"]["duration_s"] == pytest.approx(6.5, abs=0.05)
    audio = decoded(build_playable(store, None, "call-3", ("caller",), None).audio)[:, 0]
    assert len(audio) == pytest.approx(6.5 * SAMPLE_RATE, abs=200)
    assert not audio[int(1.2 * SAMPLE_RATE) : int(3.8 * SAMPLE_RATE)].any()  # the gap is silence


class RefusingStore:
    """The real repository behind a switch that makes the database refuse writes (an outage)."""

    def __init__(self, inner: RecordingRepository) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name in ("begin_recording", "append_chunk", "finish_recording"):

            def guarded(*args: Any, **kwargs: Any) -> Any:
                if self.down:
                    raise StorageError("database unavailable (test outage)")
                return target(*args, **kwargs)

            return guarded
        return target


def test_a_database_outage_is_bridged_by_retries_and_a_long_one_marks_the_recording_partial(
    store: RecordingRepository, clock: Clock
) -> None:
    refusing = RefusingStore(store)
    recorder = CallRecorder(refusing, "node-a", monotonic=clock, max_pending_bytes=60_000)
    recorder.start()
    try:
        refusing.down = True
        recorder.begin("call-4")
        seq = feed(recorder, clock, "call-4", "caller", speech(2.0, 7))
        assert recorder.wait_stored()
        healthy, detail = recorder.health()
        assert not healthy and "failed" in detail
        refusing.down = False
        feed(recorder, clock, "call-4", "caller", speech(0.2, 8), seq)
        recorder.end("call-4")
        assert recorder.wait_stored()
        info = store.get_recording("call-4")
        # Short outage: the chunks waiting in memory reached the database once it was back.
        assert info is not None and info.status == RecordingStatus.COMPLETE, info
        assert store.recording_end_s("call-4", "caller") == pytest.approx(2.2, abs=0.01)

        refusing.down = True  # now an outage longer than the retry buffer holds
        recorder.begin("call-5")
        seq = feed(recorder, clock, "call-5", "caller", speech(12.0, 9))
        assert recorder.wait_stored()
        refusing.down = False
        feed(recorder, clock, "call-5", "caller", speech(0.1, 10), seq)
        recorder.end("call-5")
        assert recorder.wait_stored()
        info = store.get_recording("call-5")
        assert info is not None and info.status == RecordingStatus.PARTIAL
        assert any(g["reason"] == GapReason.STORAGE for g in info.gaps)
    finally:
        recorder.stop()


def test_a_full_queue_drops_frames_instead_of_waiting_and_the_loss_is_marked(
    store: RecordingRepository, clock: Clock
) -> None:
    recorder = CallRecorder(store, "node-a", monotonic=clock, max_queued_frames=50)
    recorder.begin("call-6")
    feed(recorder, clock, "call-6", "caller", speech(2.0, 11))  # 100 frames, worker not running yet
    assert recorder.stats.frames_dropped == 50
    recorder.start()
    try:
        assert recorder.wait_stored()
        feed(recorder, clock, "call-6", "caller", speech(0.2, 12), 100)
        recorder.end("call-6")
        assert recorder.wait_stored()
        info = store.get_recording("call-6")
        assert info is not None and info.status == RecordingStatus.PARTIAL
        assert [g["reason"] for g in info.gaps] == [GapReason.DROPPED]
        assert info.gaps[0]["duration_s"] == pytest.approx(1.0, abs=0.01)
    finally:
        recorder.stop()


def test_a_call_without_any_audio_has_no_recording(
    recorder: CallRecorder, store: RecordingRepository
) -> None:
    recorder.begin("call-7")
    recorder.end("call-7")
    assert recorder.wait_stored()
    assert store.get_recording("call-7") is None


def test_the_purge_deletes_old_audio_and_keeps_the_record_that_it_was_purged(
    store: RecordingRepository,
) -> None:
    now = utc_now()
    for call_id, age_days in (("old", 100), ("new", 10)):
        store.begin_recording(call_id, "node-a", now - timedelta(days=age_days), SAMPLE_RATE)
        store.append_chunk(call_id, Chunk("caller", 0, 0.0, 0.02, b"fLaC-test"))
    assert store.purge_recordings(now - timedelta(days=90)) == 1
    assert store.purge_recordings(now - timedelta(days=90)) == 0
    old, new = store.get_recording("old"), store.get_recording("new")
    assert old is not None and old.status == RecordingStatus.PURGED and old.purged_at is not None
    assert store.recording_chunks("old", ["caller"]) == []
    assert new is not None and new.status == RecordingStatus.RECORDING
    assert len(store.recording_chunks("new", ["caller"])) == 1


def test_opus_chunks_are_stored_smaller_and_play_back_as_one_flac_of_the_same_length(
    store: RecordingRepository, clock: Clock
) -> None:
    recorder = CallRecorder(store, "node-a", monotonic=clock, codec="opus")
    recorder.start()
    try:
        caller = speech(5.0, 13)
        recorder.begin("call-8")
        feed(recorder, clock, "call-8", "caller", caller)
        recorder.end("call-8")
        assert recorder.wait_stored()
    finally:
        recorder.stop()
    info = store.get_recording("call-8")
    assert info is not None and info.codec == "opus" and info.status == RecordingStatus.COMPLETE
    assert info.stored_bytes < len(caller) * 2 / 4
    audio = decoded(build_playable(store, None, "call-8", ("caller",), None).audio)[:, 0]
    assert len(audio) == len(caller)
    # Lossy, but the same signal: strongly correlated with what came in.
    assert np.corrcoef(audio.astype(float), caller.astype(float))[0, 1] > 0.9


def test_an_unknown_codec_is_refused_at_start(store: RecordingRepository) -> None:
    with pytest.raises(ValueError, match="flac, opus"):
        CallRecorder(store, "node-a", codec="mp3")
