from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transcription.audio import (
    EnergyVad,
    UtteranceAudio,
    UtteranceEnd,
    UtteranceStart,
    pcm16_to_array,
    rate_from_frame_size,
    resample,
)
from transcription.config import VadConfig
from transcription.errors import AudioFormatError

RATE = 8000


def tone(seconds: float, amplitude: float = 6000.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.int16)


def test_silence_opens_no_utterance() -> None:
    vad = EnergyVad(RATE, VadConfig())
    assert vad.process(silence(5.0)) == []
    assert vad.flush() == []
    assert vad.voiced_samples == 0


def test_speech_between_silences_is_one_utterance_with_times() -> None:
    vad = EnergyVad(RATE, VadConfig())
    events = vad.process(np.concatenate([silence(1.0), tone(1.0), silence(1.5)]))
    kinds = [type(e) for e in events]
    assert kinds[0] is UtteranceStart
    assert kinds[-1] is UtteranceEnd
    start = events[0]
    end = events[-1]
    assert isinstance(start, UtteranceStart) and isinstance(end, UtteranceEnd)
    # Pre-roll reaches back before the onset; the hangover keeps it open a little after the tone.
    assert 0.7 <= start.at_s <= 1.0
    assert 2.0 < end.at_s <= 2.0 + VadConfig().hangover_ms / 1000 + 0.05


def test_steady_noise_stops_counting_as_speech() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 800, int(10 * RATE)).clip(-32768, 32767).astype(np.int16)
    vad = EnergyVad(RATE, VadConfig())
    vad.process(noise)
    vad.flush()
    # Only the first moments, before the noise floor adapts, are decoded.
    assert vad.voiced_samples < 1.5 * RATE


def test_speech_over_noise_is_still_detected() -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 300, int(6 * RATE))
    audio = noise.copy()
    audio[int(4 * RATE) : int(5 * RATE)] += tone(1.0, amplitude=8000)
    vad = EnergyVad(RATE, VadConfig())
    events = vad.process(audio.clip(-32768, 32767).astype(np.int16)) + vad.flush()
    starts = [e.at_s for e in events if isinstance(e, UtteranceStart)]
    assert any(3.7 <= s <= 4.1 for s in starts)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.floats(min_value=0.0, max_value=1.5)), min_size=1, max_size=8),
    st.integers(min_value=1, max_value=700),
)
def test_vad_keeps_time_and_balances_utterances(segments: list[tuple[bool, float]], chunk: int) -> None:
    audio = np.concatenate([tone(d) if voiced else silence(d) for voiced, d in segments] + [silence(0.01)])
    vad = EnergyVad(RATE, VadConfig())
    events = []
    for i in range(0, audio.size, chunk):
        events += vad.process(audio[i : i + chunk])
    events += vad.flush()
    assert vad.position_samples == audio.size
    depth = 0
    for event in events:
        if isinstance(event, UtteranceStart):
            assert depth == 0
            depth = 1
        elif isinstance(event, UtteranceEnd):
            assert depth == 1
            depth = 0
        else:
            assert isinstance(event, UtteranceAudio) and depth == 1
    assert depth == 0
    voiced_out = sum(e.samples.size for e in events if isinstance(e, UtteranceAudio))
    assert voiced_out == vad.voiced_samples <= audio.size


def test_odd_byte_count_is_rejected() -> None:
    with pytest.raises(AudioFormatError):
        pcm16_to_array(b"\x00\x01\x02")


@given(st.binary(max_size=400).filter(lambda b: len(b) % 2 == 0))
def test_any_even_byte_string_is_pcm(pcm: bytes) -> None:
    assert pcm16_to_array(pcm).size == len(pcm) // 2


def test_frame_size_tells_the_sample_rate() -> None:
    assert rate_from_frame_size(320, 20, (8000, 16000)) == 8000
    assert rate_from_frame_size(640, 20, (8000, 16000)) == 16000
    assert rate_from_frame_size(480, 20, (8000, 16000)) is None


def test_resampling_keeps_duration_and_pitch() -> None:
    up = resample(tone(1.0, freq=1000.0), RATE, 16000)
    assert up.size == 16000
    spectrum = np.abs(np.fft.rfft(up))
    assert abs(np.argmax(spectrum) * 16000 / up.size - 1000) < 5
    assert 0.15 < float(np.max(np.abs(up))) <= 1.0
