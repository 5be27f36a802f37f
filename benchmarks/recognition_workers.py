"""Recognition capacity of one worker process (issue 15 item 4) against the in-process service, same run.

Run (~2-3 min, niced): PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/recognition_workers.py [--legs 2]

The same Festival Czech callers (tests/fixtures/calls/dev.jsonl, 8 kHz telephone audio) are given to
  (a) the in-process TranscriptionService (one decoding slot), and
  (b) one recognition worker process (``python -m transcription.worker --slots 1``, nice 10) through a
      real redis-server and the intake-side RemoteRecognizer,
``--legs`` calls queued at once (commits only: the floor of the cost) and then the same calls fed in real
time on a 20 ms clock. Printed per mode: wall time until every leg is flushed, CPU seconds the decoder spent
per audio second (CPU, not wall: the machine is shared with other work, so wall times only compare within
one run), the legs of continuous real-time speech one decoding slot keeps up with (1 / CPU RTF), the
largest backlog while fed in real time, and the audio marked as not transcribed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from intake.redis_server import EmbeddedRedis  # noqa: E402
from transcription.config import TranscriptionConfig  # noqa: E402
from transcription.evaluation import frames, read_wav, synthesize_czech  # noqa: E402
from transcription.events import GAP_ENGINE, TranscriptEvent, TranscriptFinal  # noqa: E402
from transcription.service import TranscriptionService  # noqa: E402
from transcription.streams import RemoteRecognizer  # noqa: E402

CALL_IDS = ("dev-002", "dev-005", "dev-011")


def czech_audio(out: Path) -> tuple[np.ndarray, int]:
    calls = {
        c["id"]: c
        for c in map(json.loads, (ROOT / "tests/fixtures/calls/dev.jsonl").read_text().splitlines())
        if c
    }
    parts = []
    rate = 8000
    for i, call_id in enumerate(CALL_IDS):
        wav = out / f"{call_id}.wav"
        synthesize_czech(str(calls[call_id]["caller"]), wav, voice=("czech_machac", "czech_dita")[i % 2])
        samples, rate = read_wav(wav)
        parts += [samples, np.zeros(rate // 2, np.int16)]
    return np.concatenate(parts), rate


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sink:
    def __init__(self) -> None:
        self.gap_s = 0.0
        self.finals = 0
        self._lock = threading.Lock()

    def __call__(self, event: TranscriptEvent) -> None:
        if isinstance(event, TranscriptFinal):
            with self._lock:
                self.finals += 1
                if event.engine == GAP_ENGINE:
                    self.gap_s += event.end_s - event.start_s


def run(
    recognizer: object, pcm: list[bytes], rate: int, legs: int, realtime: bool, tag: str
) -> tuple[float, float]:
    """(wall seconds until flushed, largest backlog seconds)."""
    rec: object = recognizer
    refs = [f"{tag}-{i}" for i in range(legs)]
    for ref in refs:
        rec.open_leg(ref, "caller", rate, language_hint="cs")  # type: ignore[attr-defined]
    start = time.monotonic()
    worst = 0.0
    for i, frame in enumerate(pcm):
        for ref in refs:
            rec.feed(ref, "caller", frame)  # type: ignore[attr-defined]
        if realtime:
            worst = max(worst, max(rec.backlog_s(ref, "caller") for ref in refs))  # type: ignore[attr-defined]
            delay = start + (i + 1) * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    done = [rec.close_leg(ref, "caller") for ref in refs]  # type: ignore[attr-defined]
    for event in done:
        event.wait(600)
    return time.monotonic() - start, worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--legs", type=int, default=2)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}  cores: {os.cpu_count()}  (shared machine)")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        audio, rate = czech_audio(tmp)
        pcm = frames(audio, rate)
        audio_s = audio.size / rate * args.legs
        config = TranscriptionConfig(models_dir=tmp / "models", cache_dir=tmp / "cache", decode_slots=1)
        results: dict[str, dict[str, float]] = {}

        sink = Sink()
        service = TranscriptionService(config, sink)
        service.preload(("cs",))
        for realtime in (False, True):
            cpu0 = self_cpu_s()
            wall, backlog = run(service, pcm, rate, args.legs, realtime, f"local-{realtime}")
            results[f"in-process {'real time' if realtime else 'queued'}"] = {
                "wall": wall,
                "cpu_rtf": (self_cpu_s() - cpu0) / audio_s,
                "backlog": backlog,
                "gap": sink.gap_s,
            }
        service.close()

        server = EmbeddedRedis(tmp / "redis", stop_with_parent=True)
        server.start()
        worker = subprocess.Popen(
            ["nice", "-n", "10", sys.executable, "-m", "transcription.worker", "--redis", server.url,
             "--name", "bench", "--models-dir", str(tmp / "models"), "--slots", "1", "--max-legs", "16"],
            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            assert worker.stdout is not None
            for line in worker.stdout:
                if "ready" in line:
                    break
            sink = Sink()
            remote = RemoteRecognizer(server.url, sink, node="bench")
            for realtime in (False, True):
                cpu0 = proc_cpu_s(worker.pid)
                wall, backlog = run(remote, pcm, rate, args.legs, realtime, f"remote-{realtime}")
                results[f"worker process {'real time' if realtime else 'queued'}"] = {
                    "wall": wall,
                    "cpu_rtf": (proc_cpu_s(worker.pid) - cpu0) / audio_s,
                    "backlog": backlog,
                    "gap": sink.gap_s,
                }
            remote.close()
        finally:
            worker.terminate()
            worker.wait(30)
            if worker.stdout is not None:
                worker.stdout.close()
            server.stop()

    print(
        f"{args.legs} legs x {audio.size / rate:.1f} s of Czech speech each ({audio_s:.1f} s audio per run)"
    )
    print(
        f"{'mode':28} {'wall s':>7} {'CPU s/audio s':>14} {'legs/slot':>9} {'max backlog s':>14} {'marked s':>9}"
    )
    for mode, r in results.items():
        print(
            f"{mode:28} {r['wall']:7.1f} {r['cpu_rtf']:14.3f} {1 / r['cpu_rtf']:9.1f} {r['backlog']:14.1f} {r['gap']:9.1f}"
        )
    base = results["in-process queued"]["cpu_rtf"]
    print(
        f"worker / in-process CPU per audio second (queued): {results['worker process queued']['cpu_rtf'] / base:.2f}"
    )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
