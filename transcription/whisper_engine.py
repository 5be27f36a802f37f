"""faster-whisper (CTranslate2) engine in a chunked streaming mode.

Whisper is not a streaming model, so each leg re-decodes its growing utterance window every ``step_s``
seconds of new audio and commits the words two consecutive hypotheses agree on (LocalAgreement-2, as in
Macháček et al., "Turning Whisper into Real-Time Transcription System", 2023). Committed words are never
revised; they become a :class:`~transcription.events.TranscriptFinal` at a sentence end, when the window
grows past ``max_window_s`` (the window is then trimmed after the last committed word) or when the
utterance ends. The unagreed tail is the partial hypothesis.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

from transcription.audio import Float32Array, Int16Array, resample
from transcription.config import WhisperConfig
from transcription.engine import Hypothesis, Segment, StepResult
from transcription.errors import EngineError, ModelNotFound
from transcription.events import Word

log = logging.getLogger(__name__)

ENGINE_NAME = "whisper"
WHISPER_RATE = 16000
# Whisper decodes at most 30 s at once; the window is forced to commit well before that.
_HARD_WINDOW_S = 24.0
_SENTENCE_END = (".", "?", "!", "…")
_PROMPT_CHARS = 200
_NORMALIZE = re.compile(r"[^\w]+", re.UNICODE)
# Czech speech is about 3 words (6 tokens) a second; a window may not produce far more than that.
_TOKENS_PER_S = 12
_MAX_TOKENS = 400
_LOOP_COMPRESSION_RATIO = 2.8
_MAX_RUN = 3


# Whisper log-mel features: 100 frames a second, the encoder's fixed window is 3000 frames (30 s).
_FRAMES_PER_S = 100
_FULL_CONTEXT_FRAMES = 3000


class _ReducedContextModel(WhisperModel):
    """faster-whisper with the encoder fed only the decoded audio plus padding.

    faster-whisper 1.2 pads every segment to 3000 feature frames (``pad_or_trim``) before ``encode``, so
    a 2 s window costs a 30 s encoder pass. CTranslate2 >= 3.19 accepts shorter Whisper features (its
    PR #1446), like whisper.cpp's ``audio_ctx``: ``encode`` cuts the padded features back to the number of
    frames set for the decoding thread. The model is shared by every leg's thread, hence thread-local.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._context = threading.local()

    def set_context_frames(self, frames: int | None) -> None:
        self._context.frames = frames

    def encode(self, features: np.ndarray) -> object:
        frames = getattr(self._context, "frames", None)
        if frames is not None and features.shape[-1] > frames:
            features = features[..., :frames]
        return super().encode(features)


def _norm(text: str) -> str:
    return _NORMALIZE.sub("", text.lower())


@dataclass(frozen=True, slots=True)
class _TimedWord:
    text: str
    start_s: float
    end_s: float
    probability: float


def _segment(words: list[_TimedWord]) -> Segment:
    events_words = tuple(
        Word(text=w.text, start_s=round(w.start_s, 3), end_s=round(w.end_s, 3), confidence=w.probability)
        for w in words
    )
    return Segment(
        text=" ".join(w.text for w in words),
        start_s=events_words[0].start_s,
        end_s=events_words[-1].end_s,
        words=events_words,
        confidence=float(np.mean([w.probability for w in words])),
    )


class WhisperEngine:
    """One CTranslate2 Whisper model shared by all legs (CTranslate2 releases the GIL while decoding)."""

    def __init__(self, model_dir: Path, config: WhisperConfig) -> None:
        if not (model_dir / "model.bin").is_file():
            raise ModelNotFound(f"no Whisper model.bin in {model_dir}")
        self._config = config
        try:
            self._model = _ReducedContextModel(
                str(model_dir),
                device="cpu",
                compute_type=config.compute_type,
                cpu_threads=config.cpu_threads,
                num_workers=config.num_workers,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineError(f"faster-whisper could not load {model_dir}: {exc}") from exc
        self.model_dir = model_dir

    @property
    def name(self) -> str:
        return ENGINE_NAME

    @property
    def config(self) -> WhisperConfig:
        return self._config

    def languages(self) -> frozenset[str] | None:
        return None

    def open_stream(self, sample_rate: int, language: str) -> WhisperStream:
        return WhisperStream(self, sample_rate, language)

    def _reduce_context(self, audio_s: float) -> None:
        """The encoder of this thread's next call sees ``audio_s`` plus ``context_pad_s``, not 30 s."""
        pad_s = self._config.context_pad_s
        if pad_s is not None:
            frames = int((audio_s + pad_s) * _FRAMES_PER_S) + 1
            self._model.set_context_frames(min(frames, _FULL_CONTEXT_FRAMES))

    def language_probabilities(self, samples: Int16Array, sample_rate: int) -> dict[str, float]:
        audio = resample(samples, sample_rate, WHISPER_RATE)
        self._reduce_context(audio.size / WHISPER_RATE)
        try:
            _, _, all_probs = self._model.detect_language(audio=audio, language_detection_segments=1)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"Whisper language identification failed: {exc}") from exc
        finally:
            self._model.set_context_frames(None)
        return {lang: float(p) for lang, p in all_probs}

    def decode(self, audio: Float32Array, language: str, prompt: str, offset_s: float) -> list[_TimedWord]:
        """Transcribe one window; word times are shifted by ``offset_s`` to leg time.

        Guards against Whisper's repetition loops ("všaká všaká všaká ..."), which otherwise turn a
        second of trailing noise into hundreds of words: a token budget proportional to the audio, a
        sampled retry when the text compresses suspiciously well, and a cut after a run of one word.
        """
        cfg = self._config
        audio_s = audio.size / WHISPER_RATE
        self._reduce_context(audio_s)
        try:
            segments, _ = self._model.transcribe(
                audio,
                language=language,
                beam_size=cfg.beam_size,
                temperature=[0.0, 0.4],
                compression_ratio_threshold=2.4,
                log_prob_threshold=None,
                no_speech_threshold=None,
                max_new_tokens=min(_MAX_TOKENS, int(audio_s * _TOKENS_PER_S) + 10),
                word_timestamps=True,
                initial_prompt=prompt or None,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            words: list[_TimedWord] = []
            for segment in segments:
                if segment.no_speech_prob > cfg.no_speech_threshold and (
                    segment.avg_logprob < cfg.log_prob_threshold
                ):
                    continue
                if segment.compression_ratio > _LOOP_COMPRESSION_RATIO:
                    log.info("dropped a repetitive Whisper segment: %.60s", segment.text)
                    continue
                for w in segment.words or []:
                    text = w.word.strip()
                    if text:
                        words.append(
                            _TimedWord(
                                text, offset_s + float(w.start), offset_s + float(w.end), float(w.probability)
                            )
                        )
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"Whisper decoding failed: {exc}") from exc
        finally:
            self._model.set_context_frames(None)
        return _cut_repetition(words)


def _cut_repetition(words: list[_TimedWord]) -> list[_TimedWord]:
    """Keep one copy of any 1-4 word phrase repeated ``_MAX_RUN`` times in a row (a decoding loop)."""
    keys = [_norm(w.text) for w in words]
    for i in range(len(keys)):
        for n in range(1, 5):
            end = i + n * _MAX_RUN
            if end > len(keys):
                break
            phrase = keys[i : i + n]
            if all(keys[i + k * n : i + (k + 1) * n] == phrase for k in range(1, _MAX_RUN)):
                return words[: i + n]
    return words


class WhisperStream:
    def __init__(self, engine: WhisperEngine, sample_rate: int, language: str) -> None:
        self._engine = engine
        self._config = engine.config
        self._rate = sample_rate
        self._language = language
        self._chunks: list[Int16Array] = []
        self._buffered = 0
        self._window_start_s = 0.0
        self._decoded_upto = 0  # samples of the window covered by the last decode
        self._committed: list[_TimedWord] = []  # agreed, not yet emitted as a final
        self._emitted: list[_TimedWord] = []  # the last words emitted as finals (context to keep)
        self._committed_end_s = 0.0
        self._previous_tail: list[_TimedWord] = []
        self._prompt = ""
        self._last_decode_s = 0.0

    # -- window bookkeeping -------------------------------------------------------------------------
    def _window_s(self) -> float:
        return self._buffered / self._rate

    def _window_end_s(self) -> float:
        return self._window_start_s + self._window_s()

    def _window(self) -> Int16Array:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, dtype=np.int16)

    def _trim_to(self, at_s: float) -> None:
        cut = round((at_s - self._window_start_s) * self._rate)
        cut = max(0, min(cut, self._buffered))
        window = self._window()[cut:]
        self._chunks = [window] if window.size else []
        self._buffered = window.size
        self._window_start_s += cut / self._rate
        self._decoded_upto = max(0, self._decoded_upto - cut)

    def _decode(self) -> list[_TimedWord]:
        audio = resample(self._window(), self._rate, WHISPER_RATE)
        self._decoded_upto = self._buffered
        started = time.monotonic()
        words = self._engine.decode(audio, self._language, self._prompt, self._window_start_s)
        self._last_decode_s = time.monotonic() - started
        # Words the committed prefix already covers (Whisper re-reads the start of the window).
        tail = [w for w in words if w.end_s > self._committed_end_s + 0.05]
        recent = [_norm(w.text) for w in self._committed[-5:]]
        for n in range(min(5, len(recent), len(tail)), 0, -1):
            if [_norm(w.text) for w in tail[:n]] == recent[-n:]:
                tail = tail[n:]
                break
        return tail

    def _commit(self, words: list[_TimedWord]) -> None:
        if words:
            self._committed.extend(words)
            self._committed_end_s = max(self._committed_end_s, words[-1].end_s)

    def _trim_point(self, over_window: bool) -> float:
        """Where to cut the window after a final: after the committed words, but keeping the last
        ``keep_context_s`` of committed audio (cut at a word end) as acoustic context for the next
        decode; Whisper re-reads it and ``_decode`` drops the words it already committed."""
        keep = self._config.keep_context_s
        if over_window or keep <= 0:
            return self._committed_end_s
        ends = [w.end_s for w in self._emitted if w.end_s <= self._committed_end_s - keep]
        return max(ends) if ends else self._window_start_s

    def _emit(self) -> list[Segment]:
        if not self._committed:
            return []
        self._emitted = [*self._emitted, *self._committed][-40:]
        segment = _segment(self._committed)
        self._prompt = (self._prompt + " " + segment.text).strip()[-_PROMPT_CHARS:]
        self._committed = []
        return [segment]

    # -- EngineStream -------------------------------------------------------------------------------
    def start_utterance(self, at_s: float) -> None:
        self._chunks = []
        self._buffered = 0
        self._decoded_upto = 0
        self._window_start_s = at_s
        self._previous_tail = []
        self._committed_end_s = max(self._committed_end_s, at_s)

    def accept(self, samples: Int16Array) -> None:
        if samples.size:
            self._chunks.append(samples)
            self._buffered += samples.size

    def step(self, want_partial: bool) -> StepResult:
        new_s = (self._buffered - self._decoded_upto) / self._rate
        over_window = self._window_s() >= self._config.max_window_s
        # Re-decoding costs a whole 30 s Whisper window however short the audio; when decodes get slow
        # (many calls, a busy machine) partials come less often instead of the leg falling behind.
        step_s = max(self._config.step_s, self._config.step_per_decode * self._last_decode_s)
        if not ((want_partial and new_s >= step_s) or (over_window and new_s > 0.5)):
            return StepResult()
        return self._advance(force=over_window, over_window=over_window, want_partial=want_partial)

    def settle(self) -> list[Segment]:
        if self._buffered == self._decoded_upto and not self._previous_tail:
            return []
        if self._buffered == self._decoded_upto:
            # Decoded already: what the last hypothesis placed safely before the window end is settled.
            settled = self._window_end_s() - 1.0
            forced = [w for w in self._previous_tail if w.end_s <= settled]
            self._previous_tail = self._previous_tail[len(forced) :]
            self._commit(forced)
            return self._finals_after_commit(over_window=False, emit_now=True)
        return self._advance(force=True, over_window=False, want_partial=False, emit_now=True).finals

    def _advance(
        self, force: bool, over_window: bool, want_partial: bool, emit_now: bool = False
    ) -> StepResult:
        """Decode the window, commit what two hypotheses agree on and, with ``force``, what lies safely
        before the window end (falling behind, one endless utterance, or a leg yielding its turn)."""
        tail = self._decode()
        agreed: list[_TimedWord] = []
        for previous, current in zip(self._previous_tail, tail, strict=False):
            if _norm(previous.text) != _norm(current.text):
                break
            agreed.append(current)
        self._commit(agreed)
        tail = tail[len(agreed) :]
        if force:
            settled_before = self._window_end_s() - 1.0
            forced = [w for w in tail if w.end_s <= settled_before]
            if not forced and self._window_s() >= _HARD_WINDOW_S:
                forced = tail
            self._commit(forced)
            tail = tail[len(forced) :]
        self._previous_tail = tail
        finals = self._finals_after_commit(over_window, emit_now)
        partial = None
        if want_partial:
            text = " ".join(w.text for w in [*self._committed, *tail])
            if text:
                partial = Hypothesis(text=text, audio_s=round(self._window_end_s(), 3))
        return StepResult(finals=finals, partial=partial)

    def _finals_after_commit(self, over_window: bool, emit_now: bool = False) -> list[Segment]:
        sentence_done = bool(self._committed) and self._committed[-1].text.endswith(_SENTENCE_END)
        if self._committed and (over_window or sentence_done or emit_now or self._config.final_on_commit):
            finals = self._emit()
            self._trim_to(self._trim_point(over_window))
            return finals
        if over_window and not self._committed:
            self._trim_to(self._window_end_s() - 1.0)
        return []

    def end_utterance(self) -> list[Segment]:
        if self._buffered - self._decoded_upto > 0 or self._previous_tail:
            tail = self._decode() if self._buffered else []
            self._commit(tail)
        self._previous_tail = []
        finals = self._emit()
        self._chunks = []
        self._buffered = 0
        self._decoded_upto = 0
        return finals

    def close(self) -> None:
        self._chunks = []
        self._buffered = 0
        self._committed = []
        self._previous_tail = []
