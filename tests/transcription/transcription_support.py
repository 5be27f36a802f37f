"""Helpers the transcription tests share (imported by name; fixtures stay in conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transcription.audio import Int16Array
from transcription.evaluation import frames


@dataclass(frozen=True)
class Speech:
    text: str
    samples: Int16Array
    rate: int
    caller_number: str = ""
    call_id: str = ""


def pad(samples: Int16Array, rate: int, before_s: float = 0.5, after_s: float = 1.0) -> Int16Array:
    return np.concatenate(
        [np.zeros(int(before_s * rate), np.int16), samples, np.zeros(int(after_s * rate), np.int16)]
    )


class EventLog:
    """Collects events from worker threads with the time each arrived."""

    def __init__(self) -> None:
        self._clock = time.monotonic
        self._lock = threading.Lock()
        self.timed: list[tuple[float, object]] = []

    def __call__(self, event: object) -> None:
        with self._lock:
            self.timed.append((self._clock(), event))

    def of(self, kind: type, call_ref: str | None = None) -> list[Any]:
        with self._lock:
            return [
                e
                for _, e in self.timed
                if isinstance(e, kind) and (call_ref is None or getattr(e, "call_ref", None) == call_ref)
            ]

    def kinds(self, call_ref: str | None = None) -> list[str]:
        with self._lock:
            return [
                type(e).__name__
                for _, e in self.timed
                if call_ref is None or getattr(e, "call_ref", None) == call_ref
            ]


def feed_speech(
    service: Any,
    call_ref: str,
    leg: str,
    speech: Speech,
    realtime: bool = False,
    frame_ms: int = 20,
    pace: float = 1.0,
    keep_up: bool = False,
) -> None:
    """Feed 20 ms frames, as fast as possible or (``realtime``) one per ``frame_ms * pace``.

    ``keep_up`` also waits for the worker to take each frame, as if the machine were fast enough for
    real time (the test machine is shared with other test runs, so real time alone proves little).
    """
    start = time.monotonic()
    for i, frame in enumerate(frames(speech.samples, speech.rate, frame_ms)):
        service.feed(call_ref, leg, frame)
        if keep_up:
            while service.backlog_s(call_ref, leg) > 0:
                time.sleep(0.002)
        if realtime:
            delay = start + (i + 1) * frame_ms * pace / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)


ROOT = Path(__file__).resolve().parents[2]


def start_recognition_worker(
    url: str, name: str, models: Path, lease_s: float = 2.0
) -> subprocess.Popen[str]:
    """A real ``izs-recognition-worker`` process (one decoding slot, at most 4 legs) on ``url``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [
        "nice", "-n", "10", sys.executable, "-m", "transcription.worker", "--redis", url, "--name", name,
        "--models-dir", str(models), "--slots", "1", "--max-legs", "4", "--lease-s", str(lease_s),
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def wait_worker_ready(process: subprocess.Popen[str], deadline_s: float) -> None:
    ready = threading.Event()

    def watch() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if "ready" in line:
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    assert ready.wait(deadline_s), f"worker {process.args!r} did not start"


def stop_recognition_worker(process: subprocess.Popen[str]) -> None:
    """SIGTERM (the worker flushes and releases its legs), SIGKILL if it has not gone within 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    if process.stdout is not None:
        process.stdout.close()
