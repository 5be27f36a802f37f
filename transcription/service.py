"""The streaming transcription service: PCM frames of call legs in, transcript events out.

Threading model: ``open_leg``/``feed``/``close_leg`` only touch a per-leg queue under a short lock and
return at once, so they are safe to call from the asyncio loop or a media thread. Each leg has a worker
thread that runs voice-activity detection, language identification and the engine; decoding never runs
on the caller's thread. ``on_event`` is called from those worker threads.

Failure policy (the call always goes on): a malformed frame, a mislabelled sample rate, an engine error
or a worker that falls behind becomes a :class:`TranscriptionFailed` event; the engine stream is
restarted (``recovered=True``) up to ``max_restarts_per_leg`` times, after which the leg's audio is
discarded cheaply (``recovered=False``). The queue is bounded: beyond ``max_backlog_s`` the newest audio
is dropped and reported, and partial hypotheses are skipped while the worker catches up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import numpy as np

from transcription import language as lang_id
from transcription.audio import (
    EnergyVad,
    Int16Array,
    UtteranceAudio,
    UtteranceEnd,
    UtteranceStart,
    VadEvent,
    clipped_fraction,
    frame_size_bytes,
    pcm16_to_array,
    rate_from_frame_size,
)
from transcription.config import ENGINE_VOSK, ENGINE_WHISPER, TranscriptionConfig
from transcription.engine import Engine, EngineStream, LanguageGuess, LanguageIdentifier, Segment
from transcription.errors import AudioFormatError, EngineError, TranscriptionError
from transcription.events import (
    LanguageDetected,
    TranscriptEvent,
    TranscriptFinal,
    TranscriptionFailed,
    TranscriptPartial,
)
from transcription.health import DEFAULT_WINDOW_S, LegQueueState, RecognitionStatus
from transcription.models import ModelRegistry, engine_for_language, require_vosk_model
from transcription.scheduler import RecognitionScheduler, SlotGate

log = logging.getLogger(__name__)

EventSink = Callable[[TranscriptEvent], None]
# Minimum audio between two partial hypotheses of a leg (keeps consoles from flickering).
PARTIAL_INTERVAL_S = 0.1
# A bounded turn (another leg waits for the slot) takes the leg's backlog in slices of this much audio.
TURN_SLICE_S = 0.5


class EngineSource(Protocol):
    """Where legs get their (shared) engines from; the default loads models from the registry."""

    def engine(self, engine_name: str, language: str) -> Engine: ...

    def identifier(self) -> LanguageIdentifier | None: ...


class ModelEngines:
    """Loads each model once, on first use, from whichever worker needs it; shared by every leg."""

    def __init__(self, config: TranscriptionConfig, registry: ModelRegistry) -> None:
        self._config = config
        self._registry = registry
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str], Engine] = {}

    def engine(self, engine_name: str, language: str) -> Engine:
        key = (engine_name, language if engine_name == ENGINE_VOSK else "*")
        with self._lock:
            engine = self._loaded.get(key)
            if engine is None:
                engine = self._load(engine_name, language)
                self._loaded[key] = engine
            return engine

    def _load(self, engine_name: str, language: str) -> Engine:
        if engine_name == ENGINE_VOSK:
            from transcription.vosk_engine import VoskEngine

            return VoskEngine(require_vosk_model(self._registry, language), language)
        from transcription.whisper_engine import WhisperEngine

        return WhisperEngine(self._registry.whisper_model_dir(), self._config.whisper)

    def identifier(self) -> LanguageIdentifier | None:
        try:
            engine = self.engine(ENGINE_WHISPER, "*")
        except TranscriptionError as exc:
            log.warning("language identification unavailable: %s", exc.message)
            return None
        from transcription.whisper_engine import WhisperEngine

        return engine if isinstance(engine, WhisperEngine) else None

    def loaded(self) -> list[Engine]:
        with self._lock:
            return list(self._loaded.values())


@dataclass(slots=True)
class _LegState:
    call_ref: str
    leg: str
    declared_rate: int
    language_hint: str | None
    country: str | None
    start_s: float = 0.0  # where in the leg's audio this service starts (a leg resumed on another worker)
    condition: threading.Condition = field(default_factory=threading.Condition)
    queue: deque[bytes] = field(default_factory=deque)
    queued_bytes: int = 0
    dropped_bytes: int = 0
    processed_bytes: int = 0  # audio the worker has taken off the queue: how a waiter sees it progress
    closing: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    worker: threading.Thread | None = None
    # Everything below is touched only by the worker thread.
    pipeline: _LegPipeline | None = None


class _LegPipeline:
    """VAD → language identification → engine stream for one leg; runs only on its worker thread."""

    def __init__(self, service: TranscriptionService, state: _LegState) -> None:
        self._service = service
        self._config = service.config
        self._state = state
        self.rate = state.declared_rate
        self._rate_checked = False
        self._vad: EnergyVad | None = None
        self._language: str | None = state.language_hint
        self._engine_name = ""
        self._stream: EngineStream | None = None
        self._pending: list[VadEvent] = []  # held back until the language is known
        self._pending_voiced: list[Int16Array] = []
        self._restarts = 0
        self.dead = False
        self._malformed_reported = False
        self._clipping_reported = False
        self._last_partial_s = -1.0
        self._last_partial_text = ""
        # Speech the VAD passed on and utterances it ended: how much of the leg a turn heard.
        self.voiced_s = 0.0
        self.utterances_ended = 0
        # Leg time up to which every sound is either committed as a final or was silence: a worker taking the
        # leg over after a crash resumes here (transcription/streams.py). Written only after the finals.
        self.settled_s = state.start_s

    @classmethod
    def resuming(cls, service: TranscriptionService, state: _LegState) -> _LegPipeline:
        """A clean pipeline replacing a crashed one, keeping the leg's clock, rate and language."""
        fresh = cls(service, state)
        old = state.pipeline
        if old is not None:
            fresh.rate = old.rate
            fresh._rate_checked = old._rate_checked
            fresh._language = old._language
            fresh._restarts = old._restarts
            fresh.settled_s = old.settled_s
            if old._vad is not None:
                fresh._vad_for_rate().position_samples = old._vad.position_samples
        return fresh

    # -- events -------------------------------------------------------------------------------------
    def _emit(self, event: TranscriptEvent) -> None:
        self._service.emit(event)

    def _fail(self, reason: str, recovered: bool) -> None:
        log.warning("transcription %s/%s: %s", self._state.call_ref, self._state.leg, reason)
        self._emit(TranscriptionFailed(self._state.call_ref, self._state.leg, reason, recovered=recovered))

    # -- input --------------------------------------------------------------------------------------
    def _check_rate(self, chunk: bytes) -> bool:
        """Settle the leg's real sample rate on its first frame; False when the leg must be refused."""
        self._rate_checked = True
        cfg = self._config
        if len(chunk) == frame_size_bytes(self.rate, cfg.frame_ms):
            return True
        actual = rate_from_frame_size(len(chunk), cfg.frame_ms, cfg.accepted_sample_rates)
        if actual is None:
            return True  # another packetisation; the label is all we have
        if not self._service.detect_rate_from_frame_size:
            self._fail(
                f"{len(chunk)}-byte frames are {cfg.frame_ms} ms at {actual} Hz but the leg was opened at "
                f"{self.rate} Hz; refusing to transcribe it",
                recovered=False,
            )
            return False
        self._fail(
            f"{len(chunk)}-byte frames are {cfg.frame_ms} ms at {actual} Hz but the leg was opened at "
            f"{self.rate} Hz; transcribing it as {actual} Hz",
            recovered=True,
        )
        self.rate = actual
        return True

    def _vad_for_rate(self) -> EnergyVad:
        if self._vad is None:
            self._vad = EnergyVad(self.rate, self._config.vad)
            self._vad.position_samples = int(self._state.start_s * self.rate)
        return self._vad

    def skip(self, n_bytes: int) -> None:
        if self.dead:
            return
        seconds = n_bytes / 2 / self.rate
        self._service.gate.call(
            lambda scheduler: scheduler.mark_not_transcribed((self._state.call_ref, self._state.leg), seconds)
        )
        self._fail(f"recognition fell behind: dropped {seconds:.1f} s of audio", recovered=True)
        vad = self._vad_for_rate()
        start_s = vad.position_samples / self.rate
        self._handle(vad.skip(n_bytes // 2), last=False)
        # The transcript says where words may be missing: a caller's words are never lost without a trace.
        self._emit(
            TranscriptFinal.gap(
                self._state.call_ref, self._state.leg, start_s, seconds, "recognition behind", self._language
            )
        )

    def feed(self, chunks: list[bytes], caught_up: bool) -> None:
        if self.dead:
            return
        if not self._rate_checked and chunks and not self._check_rate(chunks[0]):
            self.dead = True
            return
        vad = self._vad_for_rate()
        arrays = []
        for chunk in chunks:
            try:
                arrays.append(pcm16_to_array(chunk))
            except AudioFormatError as exc:
                if not self._malformed_reported:
                    self._malformed_reported = True
                    self._fail(f"{exc.message}; such chunks are skipped", recovered=True)
        if not arrays:
            return
        samples = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        if not self._clipping_reported and clipped_fraction(samples) > self._config.vad.clipped_fraction:
            self._clipping_reported = True
            log.warning("transcription %s/%s: input is clipping", self._state.call_ref, self._state.leg)
        self._handle(vad.process(samples), last=caught_up)
        if not vad.in_utterance and self._language is not None and not self._pending:
            self.settled_s = vad.position_samples / self.rate

    def settle(self) -> None:
        """The leg yields its turn mid-utterance: commit the words heard so far as finals."""
        if self.dead or self._stream is None or self._vad is None or not self._vad.in_utterance:
            return
        self._guard(lambda stream: self._emit_finals(stream.settle()))

    def finish(self) -> None:
        if self.dead:
            return
        events = self._vad.flush() if self._vad is not None else []
        self._handle(events, last=False, closing=True)
        if self._language is None and self._pending_voiced:
            self._identify()
        if self._stream is not None:
            self._guard(lambda stream: self._emit_finals(stream.end_utterance()))
            stream = self._stream
            self._stream = None
            stream.close()

    # -- pipeline -----------------------------------------------------------------------------------
    def _handle(self, events: list[VadEvent], last: bool, closing: bool = False) -> None:
        for event in events:
            if isinstance(event, UtteranceAudio):
                self.voiced_s += event.samples.size / self.rate
            elif isinstance(event, UtteranceEnd):
                self.utterances_ended += 1
        if self._language is None:
            self._pending.extend(events)
            self._pending_voiced.extend(e.samples for e in events if isinstance(e, UtteranceAudio))
            voiced_s = sum(a.size for a in self._pending_voiced) / self.rate
            if voiced_s >= self._config.language_detect_s:
                self._identify()
            return
        for event in events:
            self._dispatch(event)
        if last and self._stream is not None and self._vad is not None and self._vad.in_utterance:
            self._step(want_partial=True)

    def _identify(self) -> None:
        state = self._state
        cfg = self._config
        # Exactly the first language_detect_s of speech, however the audio was batched (deterministic).
        voiced = np.concatenate(self._pending_voiced)[: int(cfg.language_detect_s * self.rate)]
        identifier = self._service.engines.identifier()
        guess: LanguageGuess
        if identifier is None:
            guess = lang_id.prior_only(state.country, cfg.candidate_languages, cfg.fallback_language)
        else:
            try:
                acoustic = identifier.language_probabilities(voiced, self.rate)
            except EngineError as exc:
                self._fail(f"language identification failed: {exc.message}", recovered=True)
                guess = lang_id.prior_only(state.country, cfg.candidate_languages, cfg.fallback_language)
            else:
                guess = lang_id.combine(
                    acoustic, cfg.candidate_languages, state.country, cfg.country_prior_weight
                )
        self._language = guess.language
        self._emit(
            LanguageDetected(
                state.call_ref, guess.language, guess.probability, candidates=guess.candidates, leg=state.leg
            )
        )
        pending, self._pending, self._pending_voiced = self._pending, [], []
        for event in pending:
            self._dispatch(event)

    def _open_stream(self) -> EngineStream | None:
        assert self._language is not None
        engine_name = engine_for_language(self._config, self._service.registry, self._language)
        try:
            engine = self._service.engines.engine(engine_name, self._language)
            stream = engine.open_stream(self.rate, self._language)
        except TranscriptionError as exc:
            self.dead = True
            reason = f"no {engine_name} engine for {self._language}: {exc.message}"
            self._service.gate.call(lambda scheduler: scheduler.set_down(reason))
            self._fail(reason, recovered=False)
            return None
        self._service.gate.call(lambda scheduler: scheduler.set_down(""))
        self._engine_name = engine.name
        self._stream = stream
        return stream

    def _dispatch(self, event: VadEvent) -> None:
        if self.dead:
            return
        if self._stream is None and self._open_stream() is None:
            return
        if isinstance(event, UtteranceStart):
            self._last_partial_s = -1.0
            self._guard(lambda stream: stream.start_utterance(event.at_s))
        elif isinstance(event, UtteranceAudio):
            self._guard(lambda stream: stream.accept(event.samples))
            self._step(want_partial=False)
        elif isinstance(event, UtteranceEnd):
            self._guard(lambda stream: self._emit_finals(stream.end_utterance()))
            self._last_partial_text = ""

    def _step(self, want_partial: bool) -> None:
        def run(stream: EngineStream) -> None:
            result = stream.step(want_partial)
            self._emit_finals(result.finals)
            partial = result.partial
            if (
                partial is not None
                and partial.text != self._last_partial_text
                and partial.audio_s - self._last_partial_s >= PARTIAL_INTERVAL_S
            ):
                self._last_partial_s = partial.audio_s
                self._last_partial_text = partial.text
                self._emit(
                    TranscriptPartial(self._state.call_ref, self._state.leg, partial.text, partial.audio_s)
                )

        self._guard(run)

    def _emit_finals(self, segments: list[Segment]) -> None:
        for segment in segments:
            self._emit(
                TranscriptFinal(
                    call_ref=self._state.call_ref,
                    leg=self._state.leg,
                    text=segment.text,
                    start_s=segment.start_s,
                    end_s=segment.end_s,
                    words=segment.words,
                    language=self._language,
                    confidence=segment.confidence,
                    engine=self._engine_name,
                )
            )

    def _guard(self, action: Callable[[EngineStream], None]) -> None:
        """Run one engine call; an engine failure restarts the stream instead of ending the leg."""
        stream = self._stream
        if stream is None or self.dead:
            return
        try:
            action(stream)
        except EngineError as exc:
            self._restart(exc.message)
        except Exception as exc:  # an engine bug must not end the call's transcription silently
            log.exception("transcription %s/%s: engine crashed", self._state.call_ref, self._state.leg)
            self._restart(f"engine crashed: {type(exc).__name__}: {exc}")

    def _restart(self, reason: str) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except Exception:  # the stream is being discarded; its close failing changes nothing
                log.exception(
                    "closing a crashed stream of %s/%s failed", self._state.call_ref, self._state.leg
                )
        self._stream = None
        self._restarts += 1
        if self._restarts > self._config.max_restarts_per_leg:
            self.dead = True
            self._fail(f"{reason}; gave up after {self._restarts - 1} restarts", recovered=False)
            return
        self._fail(f"{reason}; engine stream restarted", recovered=True)
        stream = self._open_stream()
        if stream is not None and self._vad is not None and self._vad.in_utterance:
            # The rest of the interrupted utterance continues in the fresh stream.
            position_s = self._vad.position_samples / self.rate
            self._guard(lambda s: s.start_utterance(position_s))


class TranscriptionService:
    """Transcribes any number of call legs concurrently with shared models.

    ``on_event`` is called from worker threads; hop to the event loop there
    (``loop.call_soon_threadsafe``).
    """

    def __init__(
        self,
        config: TranscriptionConfig,
        on_event: EventSink,
        *,
        registry: ModelRegistry | None = None,
        engines: EngineSource | None = None,
        detect_rate_from_frame_size: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.registry = registry or ModelRegistry.from_config(config)
        self.engines: EngineSource = engines or ModelEngines(config, self.registry)
        self.detect_rate_from_frame_size = detect_rate_from_frame_size
        self._on_event = on_event
        self._legs: dict[tuple[str, str], _LegState] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._warned_unknown: set[tuple[str, str]] = set()
        # Health (supervisor's component panel): audio dropped because recognition fell behind, and
        # failures it did not recover from, with their monotonic times; bounded.
        self._drops: deque[tuple[float, float]] = deque(maxlen=10_000)
        self._failures: deque[tuple[float, str]] = deque(maxlen=1_000)
        self._last_final = 0.0
        self._clock = clock
        self.gate = SlotGate(RecognitionScheduler(config.decode_slots, clock))

    # -- public API ---------------------------------------------------------------------------------
    def preload(self, languages: tuple[str, ...] = ()) -> None:
        """Load the models for ``languages`` (and Whisper for identification) now, e.g. at startup.

        Blocking: call it from a thread, not the event loop.
        """
        self.engines.identifier()
        for language in languages:
            self.engines.engine(engine_for_language(self.config, self.registry, language), language)

    def open_leg(
        self,
        call_ref: str,
        leg: str,
        sample_rate: int,
        language_hint: str | None = None,
        country_hint: str | None = None,
        start_s: float = 0.0,
    ) -> None:
        """Start transcribing one leg. ``language_hint`` fixes the language (no identification);
        ``country_hint`` is an ISO region (``"CZ"``) or an E.164 caller number used as a prior; ``start_s``
        is where the first frame sits in the leg's audio (a leg resumed by another recognition worker), so
        transcript times stay leg times."""
        if sample_rate not in self.config.accepted_sample_rates:
            raise AudioFormatError(
                f"sample rate {sample_rate} Hz is not supported (use one of {self.config.accepted_sample_rates})"
            )
        country = country_hint
        if country_hint is not None and country_hint.startswith("+"):
            country = lang_id.country_of(country_hint)
        state = _LegState(call_ref, leg, sample_rate, language_hint, country, start_s=max(0.0, start_s))
        with self._lock:
            if self._closed:
                raise TranscriptionError("transcription service is closed")
            previous = self._legs.get((call_ref, leg))
            if previous is not None and not previous.done.is_set():
                raise TranscriptionError(f"leg {call_ref}/{leg} is already open")
            self._legs[(call_ref, leg)] = state
        self.gate.call(lambda scheduler: scheduler.open((call_ref, leg)))
        self._start_worker(state)

    def feed(self, call_ref: str, leg: str, pcm: bytes) -> bool:
        """Queue one frame of 16-bit little-endian mono PCM; never blocks. False if the leg is not open."""
        state = self._legs.get((call_ref, leg))
        if state is None or state.closing:
            # Frames racing a hang-up are normal; say so once per leg, not 50 times a second.
            if (call_ref, leg) not in self._warned_unknown:
                if len(self._warned_unknown) > 10_000:
                    self._warned_unknown.clear()
                self._warned_unknown.add((call_ref, leg))
                log.warning("audio for %s/%s which is not open; ignored", call_ref, leg)
            return False
        limit = int(self.config.max_backlog_s * state.declared_rate * 2)
        with state.condition:
            if state.dropped_bytes or (state.queue and state.queued_bytes + len(pcm) > limit):
                # Full: the NEWEST audio is the part not transcribed (marked when the worker reaches it). A
                # leg waiting for the recognizer keeps the oldest, i.e. a waiting caller's first words,
                # which is what triage needs; the recording keeps everything. Once dropping, keep dropping
                # until the worker has reached the gap, so it stays one interval after everything queued.
                state.dropped_bytes += len(pcm)
                self._drops.append((time.monotonic(), len(pcm) / 2 / state.declared_rate))
            else:
                state.queue.append(pcm)
                state.queued_bytes += len(pcm)
            state.condition.notify()
        worker = state.worker
        if worker is not None and not worker.is_alive() and not state.done.is_set():
            self._restart_worker(state)
        return True

    def close_leg(self, call_ref: str, leg: str) -> threading.Event:
        """Flush the leg's remaining audio into finals; the returned event is set when that is done."""
        state = self._legs.get((call_ref, leg))
        if state is None:
            done = threading.Event()
            done.set()
            return done
        with state.condition:
            state.closing = True
            state.condition.notify()
        worker = state.worker
        if worker is not None and not worker.is_alive() and not state.done.is_set():
            self._restart_worker(state)
        return state.done

    def set_leg_queue(
        self,
        call_ref: str,
        leg: str,
        waiting: bool,
        priority: int = 3,
        waiting_since: float | None = None,
        triaged: bool | None = None,
    ) -> None:
        """Intake says where the caller is: ``waiting`` in a queue (with its ``priority``, 1 = most urgent,
        and since when, any monotone clock) or in progress with a call taker, and whether triage has judged
        the caller from their own words yet (``triaged``; None: unchanged). Waiting callers not yet triaged
        are decoded first (their first words order the queue); see transcription/scheduler.py."""
        state = LegQueueState.WAITING if waiting else LegQueueState.IN_PROGRESS
        self.gate.call(
            lambda scheduler: scheduler.set_queue_state(
                (call_ref, leg), state, priority, waiting_since, triaged
            )
        )

    def recognition_status(self, window_s: float = DEFAULT_WINDOW_S) -> RecognitionStatus:
        """The service's real state in one value: legs being transcribed, the largest backlog, audio not
        transcribed and unrecovered failures within ``window_s``, the models loaded, and who waits for a
        decoding slot. ``ok``; ``behind`` (audio was dropped, or a leg waits for a slot); ``down`` (closed,
        or failing without a transcript since)."""
        now = time.monotonic()
        with self._lock:
            legs = [s for s in self._legs.values() if not s.done.is_set()]
            closed = self._closed
        failures = [(at, reason) for at, reason in list(self._failures) if now - at <= window_s]
        loaded = getattr(self.engines, "loaded", None)
        models = sorted({e.name for e in loaded()}) if callable(loaded) else []
        return RecognitionStatus.combine(
            self.gate.status(),
            closed=closed,
            failing=bool(failures) and failures[-1][0] > self._last_final,
            open_legs=len(legs),
            backlog_s=max((s.queued_bytes / 2 / s.declared_rate for s in legs), default=0.0),
            dropped_s=sum(seconds for at, seconds in list(self._drops) if now - at <= window_s),
            window_s=window_s,
            failures=len(failures),
            last_failure=failures[-1][1] if failures else "",
            models=tuple(models or [self.config.default_engine]),
        )

    def backlog_s(self, call_ref: str, leg: str) -> float:
        state = self._legs.get((call_ref, leg))
        return 0.0 if state is None else state.queued_bytes / 2 / state.declared_rate

    def processed_s(self, call_ref: str, leg: str) -> float:
        """Seconds of the leg's audio the worker has consumed so far (grows while it makes progress; a
        closed and flushed leg reads 0)."""
        state = self._legs.get((call_ref, leg))
        return 0.0 if state is None else state.processed_bytes / 2 / state.declared_rate

    def settled_s(self, call_ref: str, leg: str) -> float | None:
        """Leg time up to which the audio is committed as finals or was silence (None: leg not open)."""
        state = self._legs.get((call_ref, leg))
        pipeline = None if state is None else state.pipeline
        if state is None:
            return None
        return state.start_s if pipeline is None else pipeline.settled_s

    def health(self) -> tuple[bool, str]:
        status = self.recognition_status()
        return status.healthy, status.line()

    def close(self, timeout_s: float = 30.0) -> None:
        """Close every leg (flushing finals) and wait for the workers."""
        with self._lock:
            self._closed = True
            legs = list(self._legs.values())
        for state in legs:
            self.close_leg(state.call_ref, state.leg)
        deadline = time.monotonic() + timeout_s
        for state in legs:
            if not state.done.wait(max(0.0, deadline - time.monotonic())):
                log.warning("transcription worker of %s/%s did not finish in time", state.call_ref, state.leg)

    # -- internals ----------------------------------------------------------------------------------
    def emit(self, event: TranscriptEvent) -> None:
        if isinstance(event, TranscriptionFailed) and not event.recovered:
            self._failures.append((time.monotonic(), event.reason))
        elif isinstance(event, TranscriptFinal):
            self._last_final = time.monotonic()
        try:
            self._on_event(event)
        except Exception:  # the consumer's bug must not stop recognition for the call
            log.exception("on_event raised for %s", event)

    def _start_worker(self, state: _LegState) -> None:
        worker = threading.Thread(
            target=self._run_leg, args=(state,), name=f"asr-{state.call_ref}-{state.leg}", daemon=True
        )
        state.worker = worker
        worker.start()

    def _restart_worker(self, state: _LegState) -> None:
        with self._lock:
            worker = state.worker
            if worker is None or worker.is_alive() or state.done.is_set():
                return
            log.error("transcription worker of %s/%s died; restarting it", state.call_ref, state.leg)
            # The dead worker's pipeline may be mid-utterance in an unknown state: start clean.
            state.pipeline = _LegPipeline.resuming(self, state)
            self._start_worker(state)
        self.emit(
            TranscriptionFailed(
                state.call_ref, state.leg, "transcription worker died; restarted", recovered=True
            )
        )

    def _run_leg(self, state: _LegState) -> None:
        """Supervises the leg's worker loop: a bug outside the engine restarts the pipeline, not the call."""
        crashes = 0
        while True:
            try:
                self._serve_leg(state)
                return
            except Exception as exc:  # supervisor: anything unexpected is logged, reported and restarted
                log.exception("transcription worker of %s/%s crashed", state.call_ref, state.leg)
                crashes += 1
                state.pipeline = _LegPipeline.resuming(self, state)
                give_up = crashes > self.config.max_restarts_per_leg
                state.pipeline.dead = give_up
                reason = f"transcription worker crashed: {type(exc).__name__}: {exc}"
                self.emit(
                    TranscriptionFailed(
                        state.call_ref,
                        state.leg,
                        reason + ("; gave up" if give_up else "; restarted"),
                        recovered=not give_up,
                    )
                )

    def _take(self, state: _LegState, max_bytes: int | None) -> tuple[list[bytes], int, bool]:
        """Up to ``max_bytes`` of the leg's queued audio (None: all of it), oldest first; the dropped
        audio (newer than everything queued) and the closing flag only once the queue is empty."""
        with state.condition:
            if max_bytes is None:
                chunks = list(state.queue)
                state.queue.clear()
            else:
                chunks, size = [], 0
                while state.queue and size < max_bytes:
                    chunks.append(state.queue.popleft())
                    size += len(chunks[-1])
            state.queued_bytes -= sum(len(chunk) for chunk in chunks)
            if state.queue:
                return chunks, 0, False
            dropped, state.dropped_bytes = state.dropped_bytes, 0
            return chunks, dropped, state.closing

    def _take_turn(self, state: _LegState, pipeline: _LegPipeline, key: tuple[str, str]) -> tuple[bool, bool]:
        """One decoding turn; (closing, whether it decoded speech). Alone, a leg takes its whole backlog;
        while another leg waits for a slot the turn ends after one utterance or ``turn_speech_s`` of speech
        (the words so far committed), so slots go round the waiting callers one utterance at a time; the
        rest stays queued for the leg's next turn. A large batch or a waiting leg means the recognizer is
        behind: no partials then, only commits (an utterance is decoded once, at its end, at the turn's end
        or when the window is full)."""
        voiced_before, ended_before = pipeline.voiced_s, pipeline.utterances_ended
        bounded = self.gate.contended(key)
        slice_bytes = int(TURN_SLICE_S * state.declared_rate * 2)
        caught_up_bytes = int(self.config.caught_up_s * state.declared_rate * 2)
        while True:
            chunks, dropped, closing = self._take(state, slice_bytes if bounded else None)
            taken = sum(len(chunk) for chunk in chunks)
            if chunks:
                caught_up = not bounded and taken <= caught_up_bytes and not self.gate.contended(key)
                pipeline.feed(chunks, caught_up)
            if dropped:  # dropped audio is newer than everything that was queued with it
                pipeline.skip(dropped)
            state.processed_bytes += dropped + taken
            heard_s = pipeline.voiced_s - voiced_before
            if not bounded or not chunks or dropped or closing:
                return closing, heard_s > 0
            if heard_s > 0 and (
                pipeline.utterances_ended > ended_before or heard_s >= self.config.turn_speech_s
            ):
                if self.gate.contended(key):
                    pipeline.settle()
                    return False, True
                bounded = False  # nobody waits any more: take the rest at once

    def _serve_leg(self, state: _LegState) -> None:
        if state.pipeline is None:
            state.pipeline = _LegPipeline(self, state)
        pipeline = state.pipeline
        while True:
            with state.condition:
                while not state.queue and not state.closing and not state.dropped_bytes:
                    state.condition.wait()
            key = (state.call_ref, state.leg)
            # Decoding waits for a slot (waiting callers first); meanwhile the leg's audio stays queued and
            # is caught up (commits only) once the slot is granted.
            with self.gate.turn(key) as turn:
                closing, turn.spoke = self._take_turn(state, pipeline, key)
            if closing:
                with state.condition:
                    more = bool(state.queue) or bool(state.dropped_bytes)
                if more:
                    continue
                try:
                    with self.gate.turn(key):
                        pipeline.finish()
                finally:
                    state.done.set()
                    with self._lock:
                        if self._legs.get(key) is state:
                            del self._legs[key]
                    self.gate.call(partial(RecognitionScheduler.close, key=key))
                return
