"""Czech calls from the dev set, synthesized with Festival, through the service with Whisper base."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from transcription_support import EventLog, Speech, feed_speech

from transcription.config import TranscriptionConfig
from transcription.evaluation import corpus_error_rates, normalize
from transcription.events import LanguageDetected, TranscriptFinal, TranscriptionFailed, TranscriptPartial
from transcription.models import ModelRegistry
from transcription.service import ModelEngines, TranscriptionService
from transcription.whisper_engine import WhisperEngine


@pytest.mark.slow
def test_concurrent_czech_calls_share_one_model_and_transcribe_within_wer_bound(
    base_config: TranscriptionConfig,
    shared_engines: ModelEngines,
    registry: ModelRegistry,
    czech_calls: list[Speech],
    czech_taker: Speech,
    events: EventLog,
) -> None:
    # Fed in bursts, so the backlog must hold a whole call: nothing may be dropped for the WER figure.
    config = dataclasses.replace(base_config, max_backlog_s=120.0)
    service = TranscriptionService(config, events, registry=registry, engines=shared_engines)
    legs = [(s.call_id, "caller", s) for s in czech_calls] + [(czech_taker.call_id, "taker", czech_taker)]
    try:
        for call_ref, leg, speech in legs:
            if leg == "caller":
                service.open_leg(call_ref, leg, speech.rate, country_hint=speech.caller_number)
            else:
                service.open_leg(call_ref, leg, speech.rate, language_hint="cs")
        feeders = [
            threading.Thread(target=feed_speech, args=(service, call_ref, leg, speech))
            for call_ref, leg, speech in legs
        ]
        for feeder in feeders:
            feeder.start()
        for feeder in feeders:
            feeder.join()
        closed = [service.close_leg(call_ref, leg) for call_ref, leg, _ in legs]
        assert all(done.wait(240) for done in closed)
    finally:
        service.close()

    assert not events.of(TranscriptionFailed)
    whisper_engines = [e for e in shared_engines.loaded() if isinstance(e, WhisperEngine)]
    assert len(whisper_engines) == 1
    pairs = []
    for call_ref, leg, speech in legs:
        finals = [f for f in events.of(TranscriptFinal, call_ref) if f.leg == leg]
        assert finals, f"no transcript for {call_ref}/{leg}"
        for final in finals:
            assert final.engine == "whisper" and final.language == "cs"
            assert final.words and all(0.0 <= w.confidence <= 1.0 for w in final.words)
            assert final.start_s <= final.end_s <= speech.samples.size / speech.rate + 0.5
        assert [f.start_s for f in finals] == sorted(f.start_s for f in finals)
        pairs.append((speech.text, " ".join(f.text for f in finals)))
    for speech in czech_calls:
        detected = [e for e in events.of(LanguageDetected, speech.call_id) if e.leg == "caller"]
        assert [e.language for e in detected] == ["cs"]
        assert {lang for lang, _ in detected[0].candidates} <= set(config.candidate_languages)
    # The taker's leg had a language hint: nothing to identify.
    assert not [e for e in events.of(LanguageDetected, czech_taker.call_id) if e.leg == "taker"]
    wer, cer = corpus_error_rates(pairs)
    # Whisper base on Festival speech in the 8 kHz band measures about WER 0.6, CER 0.2.
    assert wer <= 0.75, pairs
    assert cer <= 0.35, pairs


@pytest.mark.slow
def test_czech_partials_arrive_while_speaking_before_the_final(
    base_config: TranscriptionConfig,
    shared_engines: ModelEngines,
    registry: ModelRegistry,
    czech_calls: list[Speech],
    events: EventLog,
) -> None:
    speech = czech_calls[0]
    first_seconds = dataclasses.replace(speech, samples=speech.samples[: int(6.0 * speech.rate)])
    service = TranscriptionService(base_config, events, registry=registry, engines=shared_engines)
    try:
        service.open_leg("rt", "caller", speech.rate, language_hint="cs")
        feed_speech(service, "rt", "caller", first_seconds, realtime=True, keep_up=True)
        assert service.close_leg("rt", "caller").wait(120)
    finally:
        service.close()
    kinds = events.kinds("rt")
    assert "TranscriptPartial" in kinds and "TranscriptFinal" in kinds
    assert kinds.index("TranscriptPartial") < kinds.index("TranscriptFinal")
    partials = events.of(TranscriptPartial, "rt")
    assert all(p.leg == "caller" and p.text for p in partials)
    positions = [p.audio_s for p in partials]
    assert positions == sorted(positions)
    # Partials are hypotheses of the same speech the finals settle (Whisper may still revise them).
    final_words = set(normalize(" ".join(f.text for f in events.of(TranscriptFinal, "rt"))))
    assert any(final_words & set(normalize(p.text)) for p in partials)
