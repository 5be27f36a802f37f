"""Caller language identification on real speech: Whisper's detection weighted by the caller's country.

Festival English is used (the Czech case is in test_transcription_czech.py): Whisper base identifies
espeak-ng German or Russian in the telephone band barely above chance (top probability 0.1-0.3), so
those would test espeak-ng rather than the service.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from transcription_support import EventLog, Speech, feed_speech, pad

from transcription.config import TranscriptionConfig
from transcription.evaluation import read_wav, synthesize_english
from transcription.events import LanguageDetected, TranscriptFinal
from transcription.models import ModelRegistry
from transcription.service import ModelEngines, TranscriptionService

ENGLISH = (
    "Hello, there has been a car accident on the road near Cheb. "
    "Two cars crashed, a man is bleeding and cannot move his legs."
)


def phone_speech(text: str, tmp: Path) -> Speech:
    wav = tmp / "english.wav"
    synthesize_english(text, wav, 8000)
    samples, rate = read_wav(wav)
    return Speech(text, pad(samples, rate), rate)


@pytest.mark.slow
@pytest.mark.parametrize(
    "number",
    [
        "+447700900123",
        # A Czech number is only a prior: clearly English speech is still English.
        "+420603224590",
    ],
)
def test_english_caller_is_identified_from_speech_whatever_the_number(
    number: str,
    base_config: TranscriptionConfig,
    shared_engines: ModelEngines,
    registry: ModelRegistry,
    events: EventLog,
    tmp_path: Path,
) -> None:
    speech = phone_speech(ENGLISH, tmp_path)
    expected = "en"
    config = dataclasses.replace(base_config, max_backlog_s=60.0)
    service = TranscriptionService(config, events, registry=registry, engines=shared_engines)
    try:
        service.open_leg("lid", "caller", speech.rate, country_hint=number)
        feed_speech(service, "lid", "caller", speech)
        assert service.close_leg("lid", "caller").wait(120)
    finally:
        service.close()
    detected = events.of(LanguageDetected, "lid")
    assert len(detected) == 1
    assert detected[0].language == expected, detected[0].candidates
    assert detected[0].leg == "caller"
    finals = events.of(TranscriptFinal, "lid")
    assert finals and all(f.language == expected and f.engine == "whisper" for f in finals)
