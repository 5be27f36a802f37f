"""Voice logging cost on this machine: CPU per call added by recording, and storage per call-minute.

Run: PYTHONPATH=. .venv/bin/python benchmarks/recording.py [--calls 10] [--seconds 20]
     [--database-url postgresql+psycopg://...]   (default: a temporary SQLite file)

N two-leg calls stream in real time (20 ms frames on both legs, as the SIP endpoint hands them over), once
into a no-op (baseline) and once into the real :class:`intake.recording.CallRecorder` writing FLAC chunks to
the database. CPU is this process's CPU time (all threads) per wall second; "per call" is the increase over
the baseline of the same run, divided by N, in % of one core. The audio is speech (Festival Czech for the
caller, espeak-ng for the call taker, with pauses) passed through G.711 µ-law, i.e. what comes off the wire.
Storage is what the database holds per minute of a two-leg call; both stored codecs are measured (FLAC, the
default, and Opus: settings.recording_codec).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from intake.recording import SAMPLE_RATE, CallRecorder
from intake.storage.database import Database
from intake.storage.recordings import RecordingRepository
from izs.demo.speech import SpeechSynthesizer
from telephony.sip.g711 import decode, encode
from telephony.sip.sdp import PCMU

FRAME = 160
CALLER_TEXT = (
    "Dobrý den, potřebuji záchranku. Můj manžel upadl v kuchyni, nereaguje a nedýchá. "
    "Jsme v Sokolově, Husitská dvanáct, druhé patro."
)
TAKER_TEXT = "Stay on the line. Is he breathing normally? Put the phone on speaker and kneel beside him."


def wire_speech(work: Path, seconds: float) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Caller and call-taker speech with pauses, ``seconds`` long each, as decoded from G.711."""
    synthesizer = SpeechSynthesizer(work / "voices")
    legs = []
    for words, language, voice in ((CALLER_TEXT, "cs", None), (TAKER_TEXT, "en", "espeak")):
        spoken = synthesizer.synthesize(words, language, voice=voice, tail_silence_s=2.0)
        samples, rate = soundfile.read(spoken.path, dtype="int16")
        assert rate == SAMPLE_RATE, rate
        repeated = np.tile(samples, int(seconds * SAMPLE_RATE / len(samples)) + 1)[
            : int(seconds * SAMPLE_RATE)
        ]
        wire = decode(encode(repeated.astype("<i2").tobytes(), PCMU), PCMU)
        legs.append(np.frombuffer(wire, dtype="<i2"))
    return legs[0], legs[1]


class NoRecorder:
    def begin(self, call_id: str) -> None: ...

    def feed(self, call_id: str, leg: str, pcm: bytes, seq: int) -> None: ...

    def end(self, call_id: str, at: Any = None) -> None: ...


def stream(
    recorder: Any, calls: int, seconds: float, caller: np.ndarray[Any, Any], taker: np.ndarray[Any, Any]
) -> tuple[float, float]:
    """Feed ``calls`` two-leg calls in real time; returns (CPU seconds, wall seconds)."""
    ids = [f"bench-{time.monotonic_ns()}-{i}" for i in range(calls)]
    for call_id in ids:
        recorder.begin(call_id)
    frames = int(seconds * SAMPLE_RATE) // FRAME
    cpu0, wall0 = time.process_time(), time.monotonic()
    next_tick = wall0
    for seq in range(frames):
        at = seq * FRAME
        caller_frame = caller[at : at + FRAME].tobytes()
        taker_frame = taker[at : at + FRAME].tobytes()
        for call_id in ids:
            recorder.feed(call_id, "caller", caller_frame, seq)
            recorder.feed(call_id, "taker", taker_frame, seq)
        next_tick += FRAME / SAMPLE_RATE
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for call_id in ids:
        recorder.end(call_id)
    if hasattr(recorder, "wait_stored"):
        recorder.wait_stored(60)
    return time.process_time() - cpu0, time.monotonic() - wall0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10, help="concurrent two-leg calls (default 10)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the run (default 20)")
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="izs-bench-recording-") as tmp:
        work = Path(tmp)
        caller, taker = wire_speech(work, args.seconds)
        database = Database(args.database_url or f"sqlite:///{work / 'bench.db'}")
        database.upgrade()
        store = RecordingRepository(database)
        print(f"recording benchmark: {args.calls} two-leg calls, {args.seconds:g} s, {database.backend}")

        base_cpu, base_wall = stream(NoRecorder(), args.calls, args.seconds, caller, taker)
        base_load = base_cpu / base_wall
        print(f"  baseline (frames fed, no recording): {base_load * 100:6.2f} % of a core")
        call_minutes = args.calls * args.seconds / 60
        for codec in ("flac", "opus"):
            with database.engine.begin() as conn:
                conn.execute(text("DELETE FROM recording_chunks"))
            recorder = CallRecorder(store, "bench", codec=codec)
            recorder.start()
            try:
                rec_cpu, rec_wall = stream(recorder, args.calls, args.seconds, caller, taker)
            finally:
                recorder.stop()
            rec_load = rec_cpu / rec_wall
            per_call = (rec_load - base_load) / args.calls * 100
            with database.engine.connect() as conn:
                stored = int(
                    conn.execute(
                        text("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM recording_chunks")
                    ).scalar_one()
                )
            print(
                f"  {codec:<5} recording: {rec_load * 100:6.2f} % of a core in all; added per call "
                f"{per_call:6.3f} % of a core (target <= 2 %); "
                f"{stored / call_minutes / 1024:6.1f} KiB per call-minute (both legs)"
            )
        print(f"  G.711 on the wire, for scale: {2 * 8000 * 60 / 1024:.1f} KiB per call-minute")
        database.dispose()


if __name__ == "__main__":
    main()
