"""PCM handling shared by every engine: validation, resampling and energy voice-activity detection."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from transcription.config import VadConfig
from transcription.errors import AudioFormatError

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]

FULL_SCALE = 32767


def frame_size_bytes(sample_rate: int, frame_ms: int) -> int:
    return sample_rate * frame_ms // 1000 * 2


def pcm16_to_array(pcm: bytes) -> Int16Array:
    """Little-endian signed 16-bit mono PCM as an array; an odd byte count is malformed input."""
    if len(pcm) % 2:
        raise AudioFormatError(f"PCM chunk of {len(pcm)} bytes is not whole 16-bit samples")
    return np.frombuffer(pcm, dtype="<i2").astype(np.int16, copy=False)


def rate_from_frame_size(n_bytes: int, frame_ms: int, rates: tuple[int, ...]) -> int | None:
    """The sample rate at which one ``frame_ms`` frame has exactly ``n_bytes`` bytes, if any."""
    for rate in rates:
        if frame_size_bytes(rate, frame_ms) == n_bytes:
            return rate
    return None


def resample(samples: npt.NDArray[np.generic], src_rate: int, dst_rate: int) -> Float32Array:
    """Band-limited (FFT) resampling to ``dst_rate`` as float32 in [-1, 1].

    Done on a whole decoding window at once, so there are no chunk-edge artefacts to carry over.
    """
    audio = samples.astype(np.float32)
    if samples.dtype == np.int16:
        audio /= 32768.0
    if src_rate == dst_rate or audio.size == 0:
        return audio
    n_out = round(audio.size * dst_rate / src_rate)
    spectrum = np.fft.rfft(audio)
    n_bins = n_out // 2 + 1
    if n_bins > spectrum.size:
        spectrum = np.concatenate([spectrum, np.zeros(n_bins - spectrum.size, dtype=spectrum.dtype)])
    else:
        spectrum = spectrum[:n_bins]
    out = np.fft.irfft(spectrum, n=n_out) * (n_out / audio.size)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def rms(samples: Int16Array) -> float:
    if samples.size == 0:
        return 0.0
    as_float = samples.astype(np.float32)
    return float(np.sqrt(np.mean(as_float * as_float)))


def clipped_fraction(samples: Int16Array) -> float:
    if samples.size == 0:
        return 0.0
    return float(np.count_nonzero(np.abs(samples.astype(np.int32)) >= FULL_SCALE - 1) / samples.size)


@dataclass(frozen=True, slots=True)
class UtteranceStart:
    at_s: float


@dataclass(frozen=True, slots=True)
class UtteranceAudio:
    samples: Int16Array


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    at_s: float


VadEvent = UtteranceStart | UtteranceAudio | UtteranceEnd


class EnergyVad:
    """Splits a leg's audio into utterances; silence between them never reaches an engine.

    The noise floor is a low percentile of the recent frame energies, so steady noise (a car, a fan)
    stops counting as speech after a fraction of a second while syllable gaps keep it low during speech.
    """

    def __init__(self, sample_rate: int, config: VadConfig) -> None:
        self._config = config
        self._rate = sample_rate
        self._frame_len = sample_rate * config.frame_ms // 1000
        self._energies: deque[float] = deque(maxlen=max(1, 3000 // config.frame_ms))
        self._preroll: deque[Int16Array] = deque(maxlen=max(1, config.preroll_ms // config.frame_ms))
        self._onset: list[Int16Array] = []
        self._hangover_frames = max(1, config.hangover_ms // config.frame_ms)
        self._silent_run = 0
        self._in_utterance = False
        self._pending = np.zeros(0, dtype=np.int16)
        self.position_samples = 0
        self.voiced_samples = 0

    @property
    def in_utterance(self) -> bool:
        return self._in_utterance

    def noise_floor(self) -> float:
        if not self._energies:
            return 0.0
        return float(np.percentile(np.fromiter(self._energies, dtype=np.float64), 10))

    def skip(self, n_samples: int) -> list[VadEvent]:
        """Audio that was dropped upstream: close any open utterance and advance the clock."""
        events = self.flush()
        self.position_samples += n_samples
        return events

    def process(self, samples: Int16Array) -> list[VadEvent]:
        events: list[VadEvent] = []
        data = np.concatenate([self._pending, samples]) if self._pending.size else samples
        n_frames = data.size // self._frame_len
        for i in range(n_frames):
            frame = data[i * self._frame_len : (i + 1) * self._frame_len]
            events.extend(self._process_frame(frame))
        self._pending = data[n_frames * self._frame_len :].copy()
        return events

    def flush(self) -> list[VadEvent]:
        """End of audio: close the open utterance (including the partial frame still buffered)."""
        events: list[VadEvent] = []
        if self._in_utterance:
            if self._pending.size:
                events.append(UtteranceAudio(self._pending.copy()))
                self.voiced_samples += self._pending.size
            self.position_samples += self._pending.size
            events.append(UtteranceEnd(self.position_samples / self._rate))
            self._in_utterance = False
        else:
            self.position_samples += self._pending.size
        self._pending = np.zeros(0, dtype=np.int16)
        self._onset.clear()
        self._preroll.clear()
        self._silent_run = 0
        return events

    def _is_speech(self, frame: Int16Array) -> bool:
        energy = rms(frame)
        floor = self.noise_floor()
        self._energies.append(energy)
        return energy > max(self._config.min_speech_rms, floor * self._config.snr_factor)

    def _process_frame(self, frame: Int16Array) -> list[VadEvent]:
        speech = self._is_speech(frame)
        self.position_samples += frame.size
        now_s = self.position_samples / self._rate
        if self._in_utterance:
            self.voiced_samples += frame.size
            self._silent_run = 0 if speech else self._silent_run + 1
            if self._silent_run >= self._hangover_frames:
                self._in_utterance = False
                self._silent_run = 0
                return [UtteranceAudio(frame), UtteranceEnd(now_s)]
            return [UtteranceAudio(frame)]
        if not speech:
            if self._onset:
                self._preroll.extend(self._onset)
                self._onset.clear()
            self._preroll.append(frame)
            return []
        self._onset.append(frame)
        if len(self._onset) < self._config.onset_frames:
            return []
        head = list(self._preroll) + self._onset
        self._preroll.clear()
        self._onset = []
        audio = np.concatenate(head)
        self._in_utterance = True
        self._silent_run = 0
        self.voiced_samples += audio.size
        return [UtteranceStart(now_s - audio.size / self._rate), UtteranceAudio(audio)]
