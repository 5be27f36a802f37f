"""End-to-end calls between real baresip user agents and the SIP endpoint (Czech espeak-ng speech)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sip_events import EventRecorder, wait_until
from sip_peers import BARESIP, ESPEAK, Baresip, peak_normalised_correlation, read_wav, synthesize_czech

from telephony.events import (
    AudioFrame,
    CallAnswered,
    CallConnected,
    CallEnded,
    CallOffered,
    DtmfReceived,
    EndReason,
    Leg,
)
from telephony.sip import SipEndpoint, generate_prompt_wav, read_wav_pcm

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BARESIP is None or ESPEAK is None, reason="needs baresip and espeak-ng (Debian packages)"
    ),
]

CALLER_TEXT = "Dobrý den, hoří nám dům v Sokolově na Hlavní ulici, uvnitř je ještě babička."
TAKER_TEXT = (
    "Záchranná služba, dobrý den. Zůstaňte na lince, posíláme k vám hasiče i záchranku. "
    "Je někdo zraněný? Dýchá babička? Jděte ven z domu a počkejte na ulici."
)


def _pcm(frames: list[AudioFrame]) -> np.ndarray:
    return np.frombuffer(b"".join(f.pcm for f in frames), dtype="<i2")


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_czech_speech_from_baresip_arrives_as_16_bit_frames_matching_what_was_sent(
    tmp_path: Path, start_endpoint: Callable[..., SipEndpoint], recorder: EventRecorder, codec: str
) -> None:
    endpoint = start_endpoint()
    speech = synthesize_czech(CALLER_TEXT, tmp_path / "caller.wav")
    caller = Baresip(tmp_path, "caller", audio_source=speech, codec=codec).start()
    try:
        caller.dial(f"sip:155@127.0.0.1:{endpoint.address[1]}")
        ended = recorder.wait_for(CallEnded, timeout=20)[0]  # baresip hangs up at the end of the file
    finally:
        caller.stop()

    call_ref = ended.call_ref
    assert ended.reason is EndReason.CALLER_HANGUP
    assert f"Set audio encoder: {codec} 8000Hz" in caller.log()
    assert recorder.sequence(call_ref) == ["CallOffered", "CallAnswered", "AudioFrame", "CallEnded"]
    offered = recorder.of(CallOffered, call_ref)[0]
    assert (offered.dialled, offered.caller) == ("155", "caller")
    frames = recorder.of(AudioFrame, call_ref)
    assert {len(f.pcm) for f in frames} == {320}
    assert [f.seq for f in frames] == list(range(len(frames)))
    sent = read_wav(speech)
    received = _pcm(frames)
    assert peak_normalised_correlation(sent[8000:24000], received) > 0.95
    assert np.count_nonzero(received & 0xFF) > len(received) // 4  # real 16-bit samples, not 8-bit


def test_cancel_from_baresip_before_answer_ends_abandoned_and_is_never_answered(
    tmp_path: Path, start_endpoint: Callable[..., SipEndpoint], recorder: EventRecorder
) -> None:
    endpoint = start_endpoint(answer_after_s=3.0)
    caller = Baresip(tmp_path, "caller").start()
    try:
        dialled_at = time.monotonic()
        caller.dial(f"sip:158@127.0.0.1:{endpoint.address[1]}")
        offered = recorder.wait_for(CallOffered)[0]
        caller.wait_event("CALL_RINGING")
        caller.hangup()  # → CANCEL
        ended = recorder.wait_for(CallEnded)[0]
        closed = caller.wait_event("CALL_CLOSED")
        # Beyond the ring time: the endpoint's timers ran past it, then stop() delivers all its events.
        ring_over = dialled_at + 3.0
        wait_until(lambda: endpoint.timers_ran_until > ring_over, timeout=15)
        endpoint.stop()
    finally:
        caller.stop()

    assert ended.call_ref == offered.call_ref
    assert ended.reason is EndReason.ABANDONED
    assert recorder.of(CallAnswered) == []
    assert "CALL_ESTABLISHED" not in caller.event_types()
    assert recorder.sequence(offered.call_ref) == ["CallOffered", "CallEnded"]
    assert closed is not None


def test_dtmf_from_baresip_arrives(
    tmp_path: Path, start_endpoint: Callable[..., SipEndpoint], recorder: EventRecorder
) -> None:
    endpoint = start_endpoint()
    caller = Baresip(tmp_path, "caller").start()
    try:
        caller.dial(f"sip:112@127.0.0.1:{endpoint.address[1]}")
        caller.wait_event("CALL_ESTABLISHED")
        for pressed, digit in enumerate("15#", start=1):
            caller.command("sndcode", digit)
            recorder.wait_for(DtmfReceived, pressed)  # one key press at a time, as a caller presses them
        digits = recorder.of(DtmfReceived)
        caller.hangup()
        recorder.wait_for(CallEnded)
    finally:
        caller.stop()

    assert [d.digit for d in digits] == ["1", "5", "#"]


def test_twenty_simultaneous_calls_from_independent_baresips_are_answered_and_ended_cleanly(
    tmp_path: Path, start_endpoint: Callable[..., SipEndpoint], recorder: EventRecorder
) -> None:
    endpoint = start_endpoint()
    speech = synthesize_czech("Pomoc, autonehoda u Chebu.", tmp_path / "short.wav")
    callers = [Baresip(tmp_path, f"caller{i}", audio_source=speech) for i in range(20)]
    try:
        for caller in callers:
            caller.start()
        numbers = ["112", "150", "155", "158", "156"]
        for index, caller in enumerate(callers):
            caller.dial(f"sip:{numbers[index % 5]}@127.0.0.1:{endpoint.address[1]}")
        answered = recorder.wait_for(CallAnswered, 20, timeout=30)
        ended = recorder.wait_for(CallEnded, 20, timeout=40)
    finally:
        for caller in callers:
            caller.stop()

    assert len({a.call_ref for a in answered}) == 20
    assert {e.reason for e in ended} == {EndReason.CALLER_HANGUP}
    offered = recorder.of(CallOffered)
    assert len({o.caller for o in offered}) == 20
    assert all(c.event_types().count("CALL_ESTABLISHED") == 1 for c in callers)
    reference = read_wav(speech)[4000:12000]
    for event in ended:
        frames = recorder.of(AudioFrame, event.call_ref)
        assert len(frames) > 50
        assert peak_normalised_correlation(reference, _pcm(frames)) > 0.9
    assert endpoint.active_calls() == []


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_busy_prompt_is_heard_by_the_baresip_caller_in_its_codec(
    tmp_path: Path, start_endpoint: Callable[..., SipEndpoint], recorder: EventRecorder, codec: str
) -> None:
    endpoint = start_endpoint()
    prompt_wav = generate_prompt_wav(tmp_path / "var")
    assert generate_prompt_wav(tmp_path / "var") == prompt_wav  # cached
    pcm, rate = read_wav_pcm(prompt_wav)
    caller = Baresip(tmp_path, "caller", record=True, codec=codec).start()
    try:
        caller.dial(f"sip:155@127.0.0.1:{endpoint.address[1]}")
        call_ref = recorder.wait_for(CallAnswered)[0].call_ref
        caller.wait_event("CALL_ESTABLISHED")
        asyncio.run(endpoint.play_prompt(call_ref, pcm, rate, loop=False))
        wait_until(lambda: not endpoint.prompt_playing(call_ref), timeout=len(pcm) / 2 / rate + 10)
        caller.hangup()
        recorder.wait_for(CallEnded)
    finally:  # stop() waits for baresip to exit: its recordings are complete after it
        caller.stop()

    heard = caller.received_audio()
    prompt = np.frombuffer(pcm, "<i2")
    assert peak_normalised_correlation(prompt[4000:20000], heard) > 0.9
    assert f"Set audio decoder: {codec} 8000Hz" in caller.log()  # the call really ran in this codec


def test_standalone_connect_to_taker_relays_audio_both_ways(
    tmp_path: Path, start_endpoint: Callable[..., SipEndpoint], recorder: EventRecorder
) -> None:
    endpoint = start_endpoint()
    caller_speech = synthesize_czech(CALLER_TEXT + " " + CALLER_TEXT, tmp_path / "caller.wav")
    taker_speech = synthesize_czech(TAKER_TEXT + " " + TAKER_TEXT, tmp_path / "taker.wav")
    caller = Baresip(tmp_path, "caller", audio_source=caller_speech, record=True).start()
    taker = Baresip(tmp_path, "taker", audio_source=taker_speech, auto_answer=True, record=True).start()
    try:
        caller.dial(f"sip:155@127.0.0.1:{endpoint.address[1]}")
        call_ref = recorder.wait_for(CallAnswered)[0].call_ref
        asyncio.run(endpoint.connect_to_taker(call_ref, taker.uri, priority=1))
        connected = recorder.wait_for(CallConnected)[0]
        ended = recorder.wait_for(CallEnded, timeout=30)[0]  # the caller's file ends first
        taker.wait_event("CALL_CLOSED")
    finally:  # stop() waits for both baresips to exit: their recordings are complete after it
        caller.stop()
        taker.stop()

    assert connected.taker == taker.uri
    assert ended.reason is EndReason.CALLER_HANGUP
    sequence = recorder.sequence(call_ref)
    assert sequence[:2] == ["CallOffered", "CallAnswered"]
    assert sequence[-1] == "CallEnded"
    assert "CallConnected" in sequence
    caller_frames = [f for f in recorder.of(AudioFrame, call_ref) if f.leg is Leg.CALLER]
    taker_frames = [f for f in recorder.of(AudioFrame, call_ref) if f.leg is Leg.TAKER]
    assert len(taker_frames) > 100
    sent_by_caller = read_wav(caller_speech)
    sent_by_taker = read_wav(taker_speech)
    # The taker's phone heard the caller, the caller's phone heard the taker, intake got both legs.
    assert peak_normalised_correlation(sent_by_caller[40000:56000], taker.received_audio()) > 0.9
    assert peak_normalised_correlation(sent_by_taker[8000:24000], caller.received_audio()) > 0.9
    assert peak_normalised_correlation(sent_by_taker[8000:24000], _pcm(taker_frames)) > 0.95
    assert peak_normalised_correlation(sent_by_caller[40000:56000], _pcm(caller_frames)) > 0.95
