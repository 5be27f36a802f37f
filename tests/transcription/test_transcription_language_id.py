"""Caller language identification on real speech: Whisper's detection weighted by the caller's country."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import EventLog, Speech, feed_speech, pad

from transcription.config import TranscriptionConfig
from transcription.evaluation import read_wav, synthesize_espeak, telephone_band
from transcription.events import LanguageDetected, TranscriptFinal
from transcription.models import ModelRegistry
from transcription.service import ModelEngines, TranscriptionService

GERMAN = "Hallo, hier ist ein Unfall auf der Autobahn bei Cheb. Zwei Autos, ein Mann ist verletzt und blutet."
RUSSIAN = (
    "Здравствуйте, мой отец упал с лестницы и не может встать. У него очень болит нога. Мы в Карловых Варах."
)


def phone_speech(text: str, voice: str, tmp: Path) -> Speech:
    raw = tmp / f"{voice}-raw.wav"
    synthesize_espeak(text, raw, voice=voice, rate=16000)
    band = tmp / f"{voice}-8k.wav"
    telephone_band(raw, band, 8000)
    samples, rate = read_wav(band)
    return Speech(text, pad(samples, rate), rate)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "voice", "number", "expected"),
    [
        (GERMAN, "de", "+4915112345678", "de"),
        # A Czech number is only a prior: clearly German speech is still German.
        (GERMAN, "de", "+420603224590", "de"),
        # A Ukrainian number makes Ukrainian likely a priori; Russian speech is still Russian.
        (RUSSIAN, "ru", "+380501234567", "ru"),
    ],
)
def test_caller_language_is_identified_from_speech_and_number(
    text: str,
    voice: str,
    number: str,
    expected: str,
    base_config: TranscriptionConfig,
    shared_engines: ModelEngines,
    registry: ModelRegistry,
    events: EventLog,
    tmp_path: Path,
) -> None:
    speech = phone_speech(text, voice, tmp_path)
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
