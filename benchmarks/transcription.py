"""Speech recognition on this machine: real-time factor, capacity, partial latency, memory, WER/CER.

Run (one command, ~3 min): PYTHONPATH=. .venv/bin/python benchmarks/transcription.py
      [--calls 3] [--ablation] [--cache-dir DIR] [--capacity [--seconds 8] [--levels 1,2,3] [--skip-vosk]]

* Streaming side by side (always, first), the same Festival Czech calls fed in real time on both cores,
  one call at a time, in the SAME run: the engine before issue 15 (full 30 s encoder window,
  LocalAgreement step 1 s, finals at sentence ends); today's (reduced audio context: the window +
  ``context_pad_s``; step 0.5 s; agreed words emitted as finals at once; but a worker with more than 1 s of
  audio queued when its turn came skipped the partial); and the new one (a leg alone on its slot shows a
  partial after every decode unless it is catching up more than ``caught_up_s`` = 12 s). Word spoken ->
  on the console: for every word of the finals, the time from the moment the audio of its end was fed to
  the first event showing it (a partial covering that audio that contains the word, or its final); word ->
  final separately; WER/CER of each engine's finals; CPU seconds per audio second; and where the seconds
  go: how many decodes, how long each took, how much audio each read. On a loaded machine absolute times
  are pessimistic: compare the columns (ratios).

* Czech calls: the first ``--calls`` Czech callers of tests/fixtures/calls/dev.jsonl, synthesized with
  Festival (czech_machac / czech_dita alternately) and band-limited to 8 kHz telephone audio.
* Whisper base int8 (the engine for Czech) and Vosk with the packaged Korean model (espeak-ng speech).
* RTF = CPU seconds the service spends per audio second (CPU, not wall time: the machine is shared),
  pinned to ONE core with one Whisper thread. "Queued": whole calls queued at once (commits only, no
  partials), the floor of the cost. "Real time": K calls fed at once on a 20 ms clock (``--levels``),
  the first ``--seconds`` of each; sustained = no audio dropped and CPU RTF < 1.
* Partial latency: the moment a partial arrives minus the moment the audio it covers was fed.
  Also measured for one call on both cores with default settings.
* Memory: RSS growth when a model loads; per call = peak RSS growth while K calls stream, / K.
* WER/CER: corpus error rates of the finals of the queued run against the dev-set text (lower-cased,
  no punctuation; numbers written as digits by Whisper count as errors).

The machine is shared: the load average at start and end is printed, compare figures within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transcription.config import TranscriptionConfig, WhisperConfig
from transcription.evaluation import (
    corpus_error_rates,
    frames,
    read_wav,
    synthesize_czech,
    synthesize_espeak,
)
from transcription.events import TranscriptEvent, TranscriptFinal, TranscriptionFailed, TranscriptPartial
from transcription.models import ModelRegistry
from transcription.service import ModelEngines, TranscriptionService
from transcription.whisper_engine import WHISPER_RATE, WhisperEngine

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "tests" / "fixtures" / "calls" / "dev.jsonl"
KOREAN = ("불이 났어요. 빨리 와 주세요.", "교통사고가 났어요. 사람이 다쳤어요.")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclasses.dataclass
class Leg:
    ref: str
    text: str
    samples: np.ndarray
    rate: int
    language: str

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[float, TranscriptEvent]] = []

    def __call__(self, event: TranscriptEvent) -> None:
        with self.lock:
            self.events.append((time.monotonic(), event))

    def finals(self, ref: str) -> str:
        return " ".join(
            e.text for _, e in self.events if isinstance(e, TranscriptFinal) and e.call_ref == ref
        )


def feed(service: TranscriptionService, leg: Leg, mode: str, fed_at: dict[int, float] | None = None) -> None:
    start = time.monotonic()
    for i, frame in enumerate(frames(leg.samples, leg.rate)):
        if fed_at is not None:
            fed_at[i] = time.monotonic()
        service.feed(leg.ref, "caller", frame)
        if mode == "keep_up":
            while service.backlog_s(leg.ref, "caller") > 0:
                time.sleep(0.002)
        elif mode == "realtime":
            delay = start + (i + 1) * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def run_legs(
    config: TranscriptionConfig, engines: ModelEngines, legs: list[Leg], mode: str
) -> tuple[Recorder, float, dict[str, dict[int, float]], float]:
    """Returns the events, the CPU seconds the run consumed, when each frame was fed, peak RSS growth."""
    recorder = Recorder()
    service = TranscriptionService(config, recorder, engines=engines)
    fed_at: dict[str, dict[int, float]] = {leg.ref: {} for leg in legs}
    with RssSampler() as sampler:
        base = rss_mb()
        started = cpu_s()
        for leg in legs:
            service.open_leg(leg.ref, "caller", leg.rate, language_hint=leg.language)
        threads = [threading.Thread(target=feed, args=(service, leg, mode, fed_at[leg.ref])) for leg in legs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for leg in legs:
            service.close_leg(leg.ref, "caller").wait(600)
        service.close()
        used = cpu_s() - started
    return recorder, used, fed_at, max(0.0, sampler.peak - base)


def partial_latencies(
    recorder: Recorder, legs: list[Leg], fed_at: dict[str, dict[int, float]]
) -> list[float]:
    out = []
    for arrived, event in recorder.events:
        if isinstance(event, TranscriptPartial):
            frame = max(0, round(event.audio_s / 0.02) - 1)
            fed = fed_at[event.call_ref].get(frame)
            if fed is not None:
                out.append(arrived - fed)
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(values, q))


def czech_legs(n: int, tmp: Path) -> list[Leg]:
    calls = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    legs = []
    for i, call in enumerate([c for c in calls if c["language"] == "cs"][:n]):
        wav = tmp / f"{call['id']}.wav"
        synthesize_czech(call["caller"], wav, voice=("czech_machac", "czech_dita")[i % 2], rate=8000)
        samples, rate = read_wav(wav)
        samples = np.concatenate([np.zeros(rate // 2, np.int16), samples, np.zeros(rate, np.int16)])
        legs.append(Leg(call["id"], call["caller"], samples, rate, "cs"))
    return legs


def korean_legs(tmp: Path) -> list[Leg]:
    legs = []
    for i, text in enumerate(KOREAN):
        wav = tmp / f"ko-{i}.wav"
        synthesize_espeak(text, wav, voice="ko", rate=16000, speed_wpm=160)
        samples, rate = read_wav(wav)
        samples = np.concatenate([np.zeros(rate // 2, np.int16), samples, np.zeros(rate, np.int16)])
        legs.append(Leg(f"ko-{i}", text, samples, rate, "ko"))
    return legs


def truncate(legs: list[Leg], seconds: float, suffix: str) -> list[Leg]:
    return [
        dataclasses.replace(leg, ref=leg.ref + suffix, samples=leg.samples[: int(seconds * leg.rate)])
        for leg in legs
    ]


def failures(recorder: Recorder) -> list[str]:
    return [e.reason for _, e in recorder.events if isinstance(e, TranscriptionFailed)]


def realtime_load(
    config: TranscriptionConfig, engines: ModelEngines, legs: list[Leg], k: int, seconds: float
) -> dict[str, float]:
    """K calls at once in real time: did they keep up, how fast were partials, what did it cost."""
    batch = [
        dataclasses.replace(
            legs[i % len(legs)],
            ref=f"rt{k}-{i}",
            samples=legs[i % len(legs)].samples[: int(seconds * legs[i % len(legs)].rate)],
        )
        for i in range(k)
    ]
    closing_started: list[float] = []
    recorder = Recorder()
    service = TranscriptionService(config, recorder, engines=engines)
    fed_at: dict[str, dict[int, float]] = {leg.ref: {} for leg in batch}
    with RssSampler() as sampler:
        base = rss_mb()
        cpu0 = cpu_s()
        for leg in batch:
            service.open_leg(leg.ref, "caller", leg.rate, language_hint=leg.language)
        threads = [
            threading.Thread(target=feed, args=(service, leg, "realtime", fed_at[leg.ref])) for leg in batch
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        closing_started.append(time.monotonic())
        for leg in batch:
            service.close_leg(leg.ref, "caller").wait(600)
        flush_s = time.monotonic() - closing_started[0]
        service.close()
        used = cpu_s() - cpu0
    latencies = partial_latencies(recorder, batch, fed_at)
    dropped = [r for r in failures(recorder) if "fell behind" in r]
    return {
        "k": k,
        "rtf": used / sum(leg.seconds for leg in batch),
        "p50": pct(latencies, 50),
        "p95": pct(latencies, 95),
        "partials": len(latencies),
        "dropped": len(dropped),
        "flush_s": flush_s,
        "mem_per_call": max(0.0, sampler.peak - base) / k,
    }


def _tokens(text: str) -> list[str]:
    return [t for t in (_norm_word(w) for w in text.split()) if t]


def _norm_word(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def word_latencies(recorder: Recorder, ref: str, fed_at: dict[int, float]) -> tuple[list[float], list[float]]:
    """(word -> console, word -> final) in seconds for every word of the leg's finals."""
    partials = [
        (arrived, e.audio_s, set(_tokens(e.text)))
        for arrived, e in recorder.events
        if isinstance(e, TranscriptPartial) and e.call_ref == ref
    ]
    console: list[float] = []
    final: list[float] = []
    for arrived, event in recorder.events:
        if not isinstance(event, TranscriptFinal) or event.call_ref != ref:
            continue
        for word in event.words:
            spoken = fed_at.get(max(0, round(word.end_s / 0.02) - 1))
            key = _norm_word(word.text)
            if spoken is None or not key:
                continue
            first = arrived
            for p_arrived, audio_s, tokens in partials:
                if p_arrived >= first:
                    break
                if audio_s >= word.end_s - 0.02 and key in tokens:
                    first = p_arrived
                    break
            console.append(max(0.0, first - spoken))
            final.append(max(0.0, arrived - spoken))
    return console, final


class DecodeTimes:
    """Wraps the loaded Whisper engine's ``decode``: how long each decode took and how much audio it read."""

    def __init__(self, engine: WhisperEngine) -> None:
        self.took: list[float] = []
        self.audio_s: list[float] = []
        inner = engine.decode

        def timed(audio: np.ndarray, language: str, prompt: str, offset_s: float) -> list[Any]:
            started = time.monotonic()
            try:
                return inner(audio, language, prompt, offset_s)
            finally:
                self.took.append(time.monotonic() - started)
                self.audio_s.append(audio.size / WHISPER_RATE)

        engine.decode = timed  # type: ignore[method-assign]


def compare_streaming(
    base_config: TranscriptionConfig,
    registry: ModelRegistry,
    legs: list[Leg],
    ablation: bool = False,
    with_before_15: bool = True,
) -> list[dict[str, float | str]]:
    """Today's streaming and the new one on the same calls, one call at a time, in real time."""
    variants: list[tuple[str, WhisperConfig, dict[str, float]]] = [
        (
            "before 15: 30 s window, step 1 s",
            WhisperConfig(step_s=1.0, context_pad_s=None, final_on_commit=False),
            {"caught_up_s": 1.0},
        ),
        (
            "today: reduced context, finals at once, caught up 1 s",
            WhisperConfig(step_per_decode=1.5),
            {"caught_up_s": 1.0},
        ),
        ("new: partial on every turn (caught up 12 s)", WhisperConfig(step_per_decode=1.5), {}),
        ("new, shipped: + next decode at once (1.0 x decode)", WhisperConfig(), {}),
    ]
    if not with_before_15:
        variants = variants[1:]
    if ablation:
        variants.insert(1, ("reduced context only (step 0.5 s)", WhisperConfig(final_on_commit=False), {}))
        # Cutting the window right after each final loses acoustic context: WER 0.72 vs 0.61 (09:03 run).
        variants.insert(
            -1,
            ("new, no kept context", WhisperConfig(keep_context_s=0.0), {}),
        )
    rows: list[dict[str, float | str]] = []
    for name, whisper, changes in variants:
        config = dataclasses.replace(base_config, whisper=whisper, **changes)
        engines = ModelEngines(config, registry)
        engine = engines.engine("whisper", "cs")
        assert isinstance(engine, WhisperEngine)
        decodes = DecodeTimes(engine)
        console: list[float] = []
        to_final: list[float] = []
        pairs = []
        cpu = audio = 0.0
        dropped = 0
        for leg in legs:
            recorder, used, fed_at, _ = run_legs(config, engines, [leg], "realtime")
            c, f = word_latencies(recorder, leg.ref, fed_at[leg.ref])
            console += c
            to_final += f
            pairs.append((leg.text, recorder.finals(leg.ref)))
            cpu += used
            audio += leg.seconds
            dropped += len([r for r in failures(recorder) if "behind" in r])
        wer, cer = corpus_error_rates(pairs)
        rows.append(
            {
                "engine": name,
                "console_p50": pct(console, 50),
                "console_p95": pct(console, 95),
                "final_p50": pct(to_final, 50),
                "final_p95": pct(to_final, 95),
                "words": len(console),
                "wer": wer,
                "cer": cer,
                "rtf": cpu / audio,
                "dropped": dropped,
                "decodes": len(decodes.took),
                "decode_p50": pct(decodes.took, 50),
                "decode_p95": pct(decodes.took, 95),
                "window_p50": pct(decodes.audio_s, 50),
            }
        )
        print(f"  measured {name}: {rows[-1]}", flush=True)
    return rows


def print_comparison(rows: list[dict[str, float | str]], n_calls: int, audio_s: float) -> None:
    print()
    print(
        f"Streaming side by side, same run, {n_calls} Festival Czech calls ({audio_s:.0f} s, 8 kHz) fed in "
        "real time one at a time, both cores, Whisper base int8:"
    )
    print(
        f"{'engine':<55}{'word->console p50':>18}{'p95':>7}{'word->final p50':>16}{'p95':>7}"
        f"{'WER':>6}{'CER':>6}{'CPU RTF':>8}{'dropped':>8}"
    )
    for r in rows:
        print(
            f"{r['engine']!s:<55}{r['console_p50']:>17.2f}s{r['console_p95']:>6.2f}s{r['final_p50']:>15.2f}s"
            f"{r['final_p95']:>6.2f}s{r['wer']:>6.2f}{r['cer']:>6.2f}{r['rtf']:>8.2f}{r['dropped']:>8}"
        )
    print()
    print("Where the seconds go (one decode = one Whisper call over the window; a word waits for the next")
    print("decode to start, then for it to finish):")
    print(f"{'engine':<55}{'decodes':>8}{'decode p50':>11}{'p95':>7}{'window p50':>11}")
    for r in rows:
        print(
            f"{r['engine']!s:<55}{r['decodes']:>8}{r['decode_p50']:>10.2f}s{r['decode_p95']:>6.2f}s"
            f"{r['window_p50']:>10.1f}s"
        )
    today = next(r for r in rows if str(r["engine"]).startswith("today"))
    bases = [(str(rows[0]["engine"]).split(":")[0], rows[0])] if rows[0] is not today else []
    for new in (r for r in rows if str(r["engine"]).startswith("new")):
        for label, base in [*bases, ("today", today)]:
            print(
                f"ratio {str(new['engine'])[:40]} / {label}: word->console p50 "
                f"{float(new['console_p50']) / float(base['console_p50']):.2f}, "
                f"p95 {float(new['console_p95']) / float(base['console_p95']):.2f}; CPU "
                f"{float(new['rtf']) / float(base['rtf']):.2f}; WER {float(new['wer']):.2f} vs "
                f"{float(base['wer']):.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3, help="Czech dev-set calls to synthesize")
    parser.add_argument(
        "--capacity", action="store_true", help="also the one-core capacity levels, queued RTF and Vosk"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="audio per call in the real-time runs")
    parser.add_argument("--levels", default="1,2,3", help="concurrent real-time calls to try on one core")
    parser.add_argument("--skip-vosk", action="store_true")
    parser.add_argument("--ablation", action="store_true", help="also finals without the kept context")
    parser.add_argument("--cache-dir", type=Path, help="keep the joined Whisper model here between runs")
    parser.add_argument(
        "--without-before-15", action="store_true", help="skip the slow engine before issue 15 (~2 min)"
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x]
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores; other work shares them)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.monotonic()
        cs_legs = czech_legs(args.calls, tmp)
        ko_legs = [] if args.skip_vosk or not args.capacity else korean_legs(tmp)
        print(
            f"synthesized {len(cs_legs)} Czech calls ({sum(x.seconds for x in cs_legs):.0f} s) "
            f"and {len(ko_legs)} Korean phrases in {time.monotonic() - t0:.1f} s"
        )
        base_config = TranscriptionConfig(
            models_dir=tmp / "models", cache_dir=args.cache_dir or tmp / "cache", engines={"ko": "vosk"}
        )
        registry = ModelRegistry.from_config(base_config)
        registry.whisper_model_dir()  # join the parts outside the measurements
        rows = compare_streaming(
            base_config, registry, cs_legs, args.ablation, with_before_15=not args.without_before_15
        )
        print_comparison(rows, len(cs_legs), sum(x.seconds for x in cs_legs))
        if not args.capacity:
            print(f"load average at end: {os.getloadavg()[0]:.2f}")
            return

        # Everything below runs on ONE core with one Whisper thread.
        one_core = dataclasses.replace(base_config, whisper=WhisperConfig(cpu_threads=1))
        all_cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(all_cores)})
        engines = ModelEngines(one_core, registry)
        before = rss_mb()
        engines.engine("whisper", "cs")
        whisper_mb = rss_mb() - before
        vosk_mb = float("nan")
        if ko_legs:
            before = rss_mb()
            engines.engine("vosk", "ko")
            vosk_mb = rss_mb() - before

        # Whole calls queued at once: the commit-only cost floor, and the accuracy the tests bound.
        unbounded = dataclasses.replace(one_core, max_backlog_s=600.0)
        audio_s = sum(x.seconds for x in cs_legs)
        burst, burst_cpu, _, _ = run_legs(unbounded, engines, cs_legs, "burst")
        wer, cer = corpus_error_rates([(x.text, burst.finals(x.ref)) for x in cs_legs])
        loads = [realtime_load(one_core, engines, cs_legs, k, args.seconds) for k in levels]
        vosk_burst = vosk_cer = float("nan")
        vosk_rt: dict[str, float] = {}
        if ko_legs:
            ko_rec, ko_cpu, _, _ = run_legs(unbounded, engines, ko_legs, "burst")
            vosk_burst = ko_cpu / sum(x.seconds for x in ko_legs)
            _, vosk_cer = corpus_error_rates([(x.text, ko_rec.finals(x.ref)) for x in ko_legs])
            vosk_rt = realtime_load(one_core, engines, ko_legs, 1, args.seconds)
        os.sched_setaffinity(0, all_cores)
        # Both cores, default settings (Whisper cpu_threads=2): what one call sees in deployment.
        engines_2 = ModelEngines(base_config, registry)
        engines_2.engine("whisper", "cs")
        two_cores = realtime_load(base_config, engines_2, cs_legs, 1, args.seconds)
        vosk_two: dict[str, float] = {}
        if ko_legs:
            engines_2.engine("vosk", "ko")
            vosk_two = realtime_load(base_config, engines_2, ko_legs, 1, args.seconds)

    print()
    print("One core (Whisper cpu_threads=1); RTF = CPU seconds per audio second.")
    print(f"Whisper base int8, whole calls queued (commit only): RTF {burst_cpu / audio_s:.2f}")
    print(
        f"{'calls at once':>14}{'RTF':>7}{'partial p50':>12}{'p95':>7}{'partials':>9}"
        f"{'dropped':>8}{'flush':>7}{'MB/call':>8}"
    )
    for r in loads:
        print(
            f"{r['k']:>14.0f}{r['rtf']:>7.2f}{r['p50']:>11.2f}s{r['p95']:>6.2f}s{r['partials']:>9.0f}"
            f"{r['dropped']:>8.0f}{r['flush_s']:>6.1f}s{r['mem_per_call']:>8.0f}"
        )
    sustained = [r["k"] for r in loads if r["dropped"] == 0 and r["rtf"] < 1.0]
    print(
        f"Whisper calls one core sustains in real time (no audio dropped, CPU RTF < 1): "
        f"{max(sustained) if sustained else 0:.0f} of {levels}"
    )
    if ko_legs:
        print(
            f"Vosk ko: RTF queued {vosk_burst:.2f}, real time RTF {vosk_rt['rtf']:.2f}, partial p50 "
            f"{vosk_rt['p50']:.2f}s p95 {vosk_rt['p95']:.2f}s ({vosk_rt['partials']:.0f} partials), "
            f"calls/core ~{1 / vosk_burst:.1f}"
        )
    print(
        f"Both cores, 1 call, default settings: Whisper partial p50 {two_cores['p50']:.2f}s "
        f"p95 {two_cores['p95']:.2f}s ({two_cores['partials']:.0f} partials, finals {two_cores['flush_s']:.1f}s "
        f"after hang-up)"
        + (
            f"; Vosk ko partial p50 {vosk_two['p50']:.2f}s p95 {vosk_two['p95']:.2f}s "
            f"({vosk_two['partials']:.0f} partials)"
            if vosk_two
            else ""
        )
    )
    print(
        f"Model memory (RSS growth on load): Whisper base int8 {whisper_mb:.0f} MB, Vosk ko {vosk_mb:.0f} MB"
    )
    print()
    print(
        f"Czech, {len(cs_legs)} dev calls, {audio_s:.0f} s, Festival voices, 8 kHz band, Whisper base int8:"
    )
    print(f"  WER {wer:.2f}  CER {cer:.2f}")
    if ko_legs:
        print(
            f"Korean espeak-ng through Vosk ko: CER {vosk_cer:.2f} (espeak-ng Korean is barely intelligible to it)"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
