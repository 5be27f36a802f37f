"""Bounded decoding turns with the real Whisper model: when callers wait behind each other for the one slot,
each caller's first words are decoded before any caller's whole story, and nothing is lost on the way."""

from __future__ import annotations

import dataclasses

import pytest
from transcription_support import EventLog, Speech, feed_speech

from transcription.config import TranscriptionConfig
from transcription.evaluation import corpus_error_rates
from transcription.events import TranscriptFinal, TranscriptionFailed
from transcription.models import ModelRegistry
from transcription.service import ModelEngines, TranscriptionService

HOLDER = ("someone-else", "caller")


@pytest.mark.slow
def test_waiting_callers_first_words_are_decoded_before_anyone_s_whole_story(
    base_config: TranscriptionConfig,
    shared_engines: ModelEngines,
    registry: ModelRegistry,
    czech_calls: list[Speech],
    events: EventLog,
) -> None:
    config = dataclasses.replace(base_config, decode_slots=1, max_backlog_s=120.0)
    service = TranscriptionService(config, events, registry=registry, engines=shared_engines)
    try:
        # The one slot is busy while three callers' whole stories queue up (a surge in miniature).
        service.gate.call(lambda scheduler: scheduler.open(HOLDER))
        service.gate.acquire(HOLDER)
        for index, speech in enumerate(czech_calls):
            service.open_leg(speech.call_id, "caller", speech.rate, language_hint="cs")
            service.set_leg_queue(speech.call_id, "caller", waiting=True, priority=2, waiting_since=index)
            feed_speech(service, speech.call_id, "caller", speech)
        service.gate.release(HOLDER)
        closed = [service.close_leg(speech.call_id, "caller") for speech in czech_calls]
        assert all(done.wait(300) for done in closed)
        spent = dict(service.recognition_status().slot_s)
    finally:
        service.close()

    assert not events.of(TranscriptionFailed)
    finals = [(e.call_ref, e) for e in events.of(TranscriptFinal)]
    order = [call_ref for call_ref, _ in finals]
    first_heard = {speech.call_id: order.index(speech.call_id) for speech in czech_calls}
    # Round robin: every caller's first words come before the longest-waiting caller's last ones.
    oldest = czech_calls[0].call_id
    last_of_oldest = len(order) - 1 - order[::-1].index(oldest)
    assert max(first_heard.values()) < last_of_oldest, order
    # Turns end at a word boundary the model chose: the whole story is still transcribed, in order.
    pairs = []
    for speech in czech_calls:
        own = [final for call_ref, final in finals if call_ref == speech.call_id]
        assert [f.start_s for f in own] == sorted(f.start_s for f in own)
        pairs.append((speech.text, " ".join(f.text for f in own)))
    wer, cer = corpus_error_rates(pairs)
    assert wer <= 0.75 and cer <= 0.35, (wer, cer, pairs)
    assert spent.get("waiting, not triaged from own words: speech", 0.0) > 0.0, spent
