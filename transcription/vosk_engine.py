"""Vosk (Kaldi) streaming engine: one ``vosk.Model`` per language shared by all legs, a recognizer per leg."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import vosk

from transcription.audio import Int16Array
from transcription.engine import Hypothesis, Segment, StepResult
from transcription.errors import EngineError, ModelNotFound
from transcription.events import Word
from transcription.models import is_vosk_model_dir

log = logging.getLogger(__name__)

ENGINE_NAME = "vosk"
_log_level_lock = threading.Lock()
_log_level_set = False


def _quiet_kaldi() -> None:
    global _log_level_set
    with _log_level_lock:
        if not _log_level_set:
            vosk.SetLogLevel(-1)
            _log_level_set = True


def _words(raw: list[dict[str, Any]], offset_s: float) -> tuple[Word, ...]:
    return tuple(
        Word(
            text=str(item["word"]),
            start_s=round(offset_s + float(item["start"]), 3),
            end_s=round(offset_s + float(item["end"]), 3),
            confidence=float(item.get("conf", 1.0)),
        )
        for item in raw
    )


def _segment_from_result(result_json: str, offset_s: float) -> Segment | None:
    try:
        result = json.loads(result_json)
    except json.JSONDecodeError as exc:
        raise EngineError(f"Vosk returned malformed JSON: {result_json[:80]!r}") from exc
    text = str(result.get("text", "")).strip()
    if not text:
        return None
    words = _words(result.get("result", []), offset_s)
    if words:
        start, end = words[0].start_s, words[-1].end_s
        confidence = sum(w.confidence for w in words) / len(words)
    else:
        start = end = offset_s
        confidence = None
    return Segment(text=text, start_s=start, end_s=end, words=words, confidence=confidence)


class VoskStream:
    def __init__(self, model: vosk.Model, sample_rate: int) -> None:
        self._model = model
        self._rate = sample_rate
        self._recognizer: vosk.KaldiRecognizer | None = None
        self._offset_s = 0.0
        self._samples = 0
        self._finals: list[Segment] = []

    def start_utterance(self, at_s: float) -> None:
        # A fresh recognizer per utterance keeps Vosk's word times relative to the utterance start.
        try:
            recognizer = vosk.KaldiRecognizer(self._model, float(self._rate))
            recognizer.SetWords(True)
        except Exception as exc:
            raise EngineError(f"Vosk could not create a recognizer: {exc}") from exc
        self._recognizer = recognizer
        self._offset_s = at_s
        self._samples = 0

    def accept(self, samples: Int16Array) -> None:
        if self._recognizer is None:
            self.start_utterance(self._offset_s)
        assert self._recognizer is not None
        try:
            endpoint = self._recognizer.AcceptWaveform(samples.tobytes())
            self._samples += samples.size
            if endpoint:
                segment = _segment_from_result(self._recognizer.Result(), self._offset_s)
                if segment is not None:
                    self._finals.append(segment)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"Vosk failed while decoding: {exc}") from exc

    def step(self, want_partial: bool) -> StepResult:
        finals, self._finals = self._finals, []
        partial = None
        if want_partial and self._recognizer is not None:
            try:
                text = str(json.loads(self._recognizer.PartialResult()).get("partial", "")).strip()
            except (json.JSONDecodeError, RuntimeError) as exc:
                raise EngineError(f"Vosk partial result failed: {exc}") from exc
            if text:
                partial = Hypothesis(text=text, audio_s=self._offset_s + self._samples / self._rate)
        return StepResult(finals=finals, partial=partial)

    def settle(self) -> list[Segment]:
        # Vosk decodes as it accepts: what its endpoints committed is all there is to give now.
        finals, self._finals = self._finals, []
        return finals

    def end_utterance(self) -> list[Segment]:
        finals, self._finals = self._finals, []
        if self._recognizer is not None:
            try:
                segment = _segment_from_result(self._recognizer.FinalResult(), self._offset_s)
            except EngineError:
                raise
            except Exception as exc:
                raise EngineError(f"Vosk final result failed: {exc}") from exc
            if segment is not None:
                finals.append(segment)
            self._recognizer = None
        return finals

    def close(self) -> None:
        self._recognizer = None
        self._finals = []


class VoskEngine:
    """Loads a Vosk model directory once; every leg of that language shares it."""

    def __init__(self, model_path: Path, language: str) -> None:
        if not is_vosk_model_dir(model_path):
            raise ModelNotFound(
                f"{model_path} is not a Vosk model directory (no am/final.mdl, conf/mfcc.conf)"
            )
        _quiet_kaldi()
        try:
            self._model = vosk.Model(str(model_path))
        except Exception as exc:
            raise EngineError(f"Vosk could not load the model at {model_path}: {exc}") from exc
        self._language = language
        self.model_path = model_path

    @property
    def name(self) -> str:
        return ENGINE_NAME

    def languages(self) -> frozenset[str] | None:
        return frozenset({self._language})

    def open_stream(self, sample_rate: int, language: str) -> VoskStream:
        return VoskStream(self._model, sample_rate)
