"""G.711 µ-law / A-law <-> 16-bit linear PCM, table driven with numpy (no audioop: gone in Python 3.13).

pyVoIP 1.6.8 decodes received audio to 8-bit unsigned PCM (``audioop.ulaw2lin(payload, 1)``), throwing away
the low byte that speech recognition needs; these tables give the full 14/13-bit G.711 resolution in 16 bits.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

from telephony.sip.sdp import PCMA, PCMU

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159
_ULAW_ENCODE_BIAS = 0x21
_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _ulaw_byte_to_linear(byte: int) -> int:
    inverted = ~byte & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return -magnitude if inverted & 0x80 else magnitude


def _alaw_byte_to_linear(byte: int) -> int:
    value = byte ^ 0x55
    exponent = (value >> 4) & 0x07
    mantissa = value & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if value & 0x80 else -magnitude


def _linear_to_ulaw_byte(sample: int) -> int:
    # The CCITT reference (Sun g711.c) works on 14 bits; audioop and every phone do the same.
    value = sample >> 2
    if value < 0:
        value = -value
        mask = 0x7F
    else:
        mask = 0xFF
    value = min(value, _ULAW_CLIP) + _ULAW_ENCODE_BIAS
    segment = next((i for i, end in enumerate(_ULAW_SEGMENT_ENDS) if value <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _linear_to_alaw_byte(sample: int) -> int:
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = next((i for i, end in enumerate(_ALAW_SEGMENT_ENDS) if value <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    encoded = segment << 4
    encoded |= (value >> 1) & 0x0F if segment < 2 else (value >> segment) & 0x0F
    return encoded ^ mask


@cache
def _decode_table(payload_type: int) -> npt.NDArray[np.int16]:
    convert = _ulaw_byte_to_linear if payload_type == PCMU else _alaw_byte_to_linear
    return np.array([convert(b) for b in range(256)], dtype="<i2")


@cache
def _encode_table(payload_type: int) -> npt.NDArray[np.uint8]:
    convert = _linear_to_ulaw_byte if payload_type == PCMU else _linear_to_alaw_byte
    # Indexed by the sample's 16-bit two's-complement pattern (uint16 view of int16).
    samples = np.arange(65536, dtype=np.uint16).view(np.int16)
    return np.array([convert(int(s)) for s in samples], dtype=np.uint8)


def _check(payload_type: int) -> None:
    if payload_type not in (PCMU, PCMA):
        raise ValueError(f"not a G.711 payload type: {payload_type}")


def decode(payload: bytes, payload_type: int) -> bytes:
    """G.711 payload (one byte per sample) -> 16-bit little-endian PCM."""
    _check(payload_type)
    codes = np.frombuffer(payload, dtype=np.uint8)
    return _decode_table(payload_type)[codes].tobytes()


def encode(pcm: bytes, payload_type: int) -> bytes:
    """16-bit little-endian PCM -> G.711 payload in the given codec (PCMA really as A-law)."""
    _check(payload_type)
    usable = len(pcm) - (len(pcm) % 2)
    samples = np.frombuffer(pcm[:usable], dtype="<u2")
    return _encode_table(payload_type)[samples].tobytes()


def transcode(payload: bytes, from_type: int, to_type: int) -> bytes:
    if from_type == to_type:
        return payload
    return encode(decode(payload, from_type), to_type)
