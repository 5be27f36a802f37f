"""Recognition in worker processes over Redis Streams: one intake-side recognizer, two real worker
processes (``python -m transcription.worker``) with the installed Whisper model, a real redis-server, a
Czech caller (Festival) streamed in real time; one worker is killed with SIGKILL mid-call."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from transcription_support import EventLog, Speech

from intake.redis_server import EmbeddedRedis
from transcription.evaluation import frames, normalize
from transcription.events import GAP_ENGINE, TranscriptFinal, TranscriptionFailed
from transcription.health import RecognitionHealth
from transcription.remote import leg_key
from transcription.streams import RemoteRecognizer

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0


def _start_worker(url: str, name: str, models: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [
        "nice", "-n", "10", sys.executable, "-m", "transcription.worker", "--redis", url, "--name", name,
        "--models-dir", str(models), "--slots", "1", "--max-legs", "4", "--lease-s", str(LEASE_S),
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _wait_ready(process: subprocess.Popen[str], deadline_s: float) -> None:
    ready = threading.Event()

    def watch() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if "ready" in line:
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    assert ready.wait(deadline_s), f"worker {process.args!r} did not start"


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
    workers = {name: _start_worker(url, name, tmp_path / "models") for name in ("w1", "w2")}
    events = EventLog()
    recognizer: RemoteRecognizer | None = None
    clients: list[redis.Redis] = []
    try:
        for process in workers.values():
            _wait_ready(process, 120)
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
                owner = client.hget(leg_key("izs:asr", "call-1", "caller"), "owner")
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
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
            if process.stdout is not None:
                process.stdout.close()
