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
    # Cutting turns costs accuracy, bounded here against the same calls decoded whole, one after the other,
    # in this run (where turns end depends on when the other legs ask for the slot, so an absolute bound on
    # three calls is a coin toss at its edge). Measured: WER +0.08 to +0.18, CER +0.05 to +0.11 — the price
    # of hearing every waiting caller's first words early in a surge (docs/transcription.md).
    wer, cer = corpus_error_rates(pairs)
    whole_wer, whole_cer = corpus_error_rates(
        _decoded_whole(base_config, shared_engines, registry, czech_calls)
    )
    print(f"\nturns: WER {wer:.2f} CER {cer:.2f}; whole: WER {whole_wer:.2f} CER {whole_cer:.2f}")
    assert wer <= whole_wer + 0.25 and cer <= whole_cer + 0.15, (wer, cer, whole_wer, whole_cer, pairs)
    assert spent.get("waiting, not triaged from own words: speech", 0.0) > 0.0, spent


def _decoded_whole(
    config: TranscriptionConfig, engines: ModelEngines, registry: ModelRegistry, calls: list[Speech]
) -> list[tuple[str, str]]:
    """(reference, transcript) of each call decoded alone on one slot, nobody waiting behind it."""
    log = EventLog()
    service = TranscriptionService(
        dataclasses.replace(config, decode_slots=1, max_backlog_s=120.0),
        log,
        registry=registry,
        engines=engines,
    )
    try:
        for speech in calls:
            ref = f"whole-{speech.call_id}"
            service.open_leg(ref, "caller", speech.rate, language_hint="cs")
            feed_speech(service, ref, "caller", speech)
            assert service.close_leg(ref, "caller").wait(300)
    finally:
        service.close()
    return [
        (speech.text, " ".join(f.text for f in log.of(TranscriptFinal, f"whole-{speech.call_id}")))
        for speech in calls
    ]
