"""Recognition in worker processes over Redis Streams: one intake-side recognizer, two real worker
processes (``python -m transcription.worker``) with the installed Whisper model, a real redis-server, a
Czech caller (Festival) streamed in real time; one worker is killed with SIGKILL mid-call."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from transcription_support import (
    EventLog,
    Speech,
    start_recognition_worker,
    stop_recognition_worker,
    wait_worker_ready,
)

from intake.redis_server import EmbeddedRedis
from transcription.evaluation import frames, normalize
from transcription.events import GAP_ENGINE, TranscriptFinal, TranscriptionFailed
from transcription.health import RecognitionHealth
from transcription.remote import instances_key, leg_key
from transcription.streams import RemoteRecognizer

LEASE_S = 2.0


def _wait_for(predicate: object, deadline_s: float) -> bool:
    assert callable(predicate)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", stop_with_parent=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_killed_worker_legs_resume_on_the_other(
    redis_server: EmbeddedRedis, czech_calls: list[Speech], tmp_path: Path
) -> None:
    url = redis_server.url
    workers = {name: start_recognition_worker(url, name, tmp_path / "models") for name in ("w1", "w2")}
    events = EventLog()
    recognizer: RemoteRecognizer | None = None
    clients: list[redis.Redis] = []
    try:
        for process in workers.values():
            wait_worker_ready(process, 120)
        recognizer = RemoteRecognizer(url, events, node="intake-1")
        assert _wait_for(lambda: recognizer.recognition_status().workers == 2, 10)
        assert recognizer.recognition_status().health is RecognitionHealth.OK

        # One caller: three Czech sentences with pauses, streamed in real time.
        rate = czech_calls[0].rate
        pause = np.zeros(rate, np.int16)
        audio = np.concatenate([part for s in czech_calls for part in (s.samples, pause)])
        pcm = frames(audio, rate)
        kill_at_frame = int(len(czech_calls[0].samples) / rate / 0.02) + 25  # in the pause after sentence 1
        recognizer.open_leg("call-1", "caller", rate, country_hint="+420602123456")
        recognizer.set_leg_queue("call-1", "caller", waiting=True, priority=2)
        client = redis.Redis.from_url(url)
        clients.append(client)
        killed = ""
        killed_at = 0.0
        start = time.monotonic()
        for i, frame in enumerate(pcm):
            recognizer.feed("call-1", "caller", frame)
            if i == kill_at_frame:
                (opening,) = client.smembers(instances_key("izs:asr", "call-1", "caller"))
                owner = client.hget(leg_key("izs:asr", "call-1", opening.decode()), "owner")
                killed = owner.decode() if isinstance(owner, bytes) else ""
                assert killed in workers, "the leg has no owner after a few seconds of audio"
                workers[killed].send_signal(signal.SIGKILL)
                workers[killed].wait(10)
                killed_at = time.monotonic()
                kill_leg_s = (i + 1) * 0.02
            delay = start + (i + 1) * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the caller speaks in real time
        done = recognizer.close_leg("call-1", "caller")
        assert done.wait(90), "the leg was not flushed after the worker died"

        survivor = next(name for name in workers if name != killed)
        resumed = [e for e in events.of(TranscriptionFailed) if f"resumed on {survivor}" in e.reason]
        assert resumed, events.kinds()
        resumed_time = next(t for t, e in events.timed if e is resumed[0])
        assert resumed_time - killed_at < LEASE_S + 6, "legs must move within seconds"
        print(f"leg resumed on {survivor} {resumed_time - killed_at:.1f} s after {killed} was killed")
        finals = events.of(TranscriptFinal, "call-1")
        spoken = [f for f in finals if f.engine != GAP_ENGINE]
        after = [f for f in spoken if f.end_s > kill_leg_s]
        assert after, [(f.start_s, f.text) for f in finals]
        heard = set(normalize(" ".join(f.text for f in after)))
        last_sentence = set(normalize(czech_calls[-1].text))
        assert len(heard & last_sentence) >= 3, (heard, last_sentence)
        # Nothing lost without a mark: every gap in the transcript is a marked gap.
        assert all(f.end_s >= f.start_s for f in finals)
        assert _wait_for(lambda: recognizer.recognition_status().workers == 1, 10)
    finally:
        if recognizer is not None:
            recognizer.close()
        for client in clients:
            client.close()
        for process in workers.values():
            stop_recognition_worker(process)


def test_a_leg_no_worker_takes_is_marked_not_transcribed(redis_server: EmbeddedRedis) -> None:
    """Recognition in workers, none running: intake is told the leg is not being transcribed (once), and the
    close marks the whole leg in the transcript at once instead of the flush waiting for words."""
    events = EventLog()
    recognizer = RemoteRecognizer(redis_server.url, events, node="intake-1", worker_stale_s=0.5)
    try:
        recognizer.open_leg("call-1", "caller", 8000)
        for _ in range(100):  # 2 s of audio
            recognizer.feed("call-1", "caller", b"\x00\x01" * 160)
        assert _wait_for(lambda: events.of(TranscriptionFailed, "call-1"), 10), events.kinds()
        failed = events.of(TranscriptionFailed, "call-1")
        assert len(failed) == 1 and not failed[0].recovered
        assert "no recognition worker alive" in failed[0].reason
        assert recognizer.recognition_status().health is RecognitionHealth.DOWN
        done = recognizer.close_leg("call-1", "caller")
        assert done.is_set()
        (gap,) = events.of(TranscriptFinal, "call-1")
        assert gap.engine == GAP_ENGINE and gap.start_s == 0.0 and gap.end_s == pytest.approx(2.0)
        assert "2.0 s not transcribed: no recognition worker alive" in gap.text
    finally:
        recognizer.close()


@pytest.mark.slow
def test_a_worker_started_late_takes_the_waiting_leg(
    redis_server: EmbeddedRedis, czech_calls: list[Speech], tmp_path: Path
) -> None:
    """The leg opened while no worker ran is marked; a worker that starts then takes it (intake hears it
    recovered) and transcribes it from its first word: the audio waited in the leg's stream."""
    events = EventLog()
    recognizer = RemoteRecognizer(redis_server.url, events, node="intake-1", worker_stale_s=1.0)
    worker: subprocess.Popen[str] | None = None
    try:
        speech = czech_calls[0]
        recognizer.open_leg("call-1", "caller", speech.rate)
        for frame in frames(speech.samples, speech.rate):
            recognizer.feed("call-1", "caller", frame)
        assert _wait_for(lambda: events.of(TranscriptionFailed, "call-1"), 10), events.kinds()
        worker = start_recognition_worker(redis_server.url, "late", tmp_path / "models")
        wait_worker_ready(worker, 120)
        assert _wait_for(lambda: any(e.recovered for e in events.of(TranscriptionFailed, "call-1")), 20)
        for frame in frames(np.zeros(speech.rate, np.int16), speech.rate):
            recognizer.feed("call-1", "caller", frame)
        assert recognizer.close_leg("call-1", "caller").wait(90)
        spoken = [f for f in events.of(TranscriptFinal, "call-1") if f.engine != GAP_ENGINE]
        heard = set(normalize(" ".join(f.text for f in spoken)))
        assert len(heard & set(normalize(speech.text))) >= 3, (heard, speech.text)
    finally:
        recognizer.close()
        if worker is not None:
            stop_recognition_worker(worker)


@pytest.mark.slow
def test_a_node_taking_a_call_over_gets_the_dead_nodes_last_words(
    redis_server: EmbeddedRedis, czech_calls: list[Speech], tmp_path: Path
) -> None:
    """Intake node 1 sends the caller's first sentence and dies before any worker has decoded it; node 2
    takes the call over and opens the leg again. The first sentence's words reach node 2 (the earlier
    opening is closed and its events redirected), and node 2's own audio is transcribed from its own offsets.
    The worker starts only after the takeover, so the order of events is fixed (no race with decoding)."""
    first_node = RemoteRecognizer(redis_server.url, EventLog(), node="intake-1")
    second_events = EventLog()
    second_node: RemoteRecognizer | None = None
    worker: subprocess.Popen[str] | None = None
    try:
        one, two = czech_calls[0], czech_calls[1]
        pause = np.zeros(one.rate, np.int16)
        first_node.open_leg("call-1", "caller", one.rate)
        for frame in frames(np.concatenate([one.samples, pause]), one.rate):
            first_node.feed("call-1", "caller", frame)
        first_node.close()  # what it sent reached Redis; then the node is gone, the leg never closed
        second_node = RemoteRecognizer(redis_server.url, second_events, node="intake-2")
        second_node.open_leg("call-1", "caller", two.rate)
        for frame in frames(np.concatenate([two.samples, pause]), two.rate):
            second_node.feed("call-1", "caller", frame)
        worker = start_recognition_worker(redis_server.url, "w1", tmp_path / "models")
        wait_worker_ready(worker, 120)
        assert second_node.close_leg("call-1", "caller").wait(90)

        def heard_of(speech: Speech) -> set[str]:
            finals = [f for f in second_events.of(TranscriptFinal, "call-1") if f.engine != GAP_ENGINE]
            return set(normalize(" ".join(f.text for f in finals))) & set(normalize(speech.text))

        assert _wait_for(lambda: len(heard_of(one)) >= 3, 60), (heard_of(one), one.text)
        assert len(heard_of(two)) >= 3, (heard_of(two), two.text)
        assert all(f.leg == "caller" for f in second_events.of(TranscriptFinal, "call-1"))
    finally:
        if second_node is not None:
            second_node.close()
        if worker is not None:
            stop_recognition_worker(worker)
