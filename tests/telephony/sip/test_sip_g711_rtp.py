"""G.711 codec tables and RTP / telephone-event packets (pure)."""

from __future__ import annotations

import contextlib
import warnings
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.sip import g711
from telephony.sip.errors import ParseError
from telephony.sip.rtp import RtpPacket, build_telephone_event, parse_rtp, parse_telephone_event
from telephony.sip.sdp import PCMA, PCMU


def _audioop() -> ModuleType:
    # audioop is only the reference here (deprecated in 3.11, removed in 3.13): skip where it is gone.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip("audioop")


@pytest.mark.parametrize("payload_type", [PCMU, PCMA])
def test_decoding_gives_full_16_bit_samples_matching_the_itu_reference(payload_type: int) -> None:
    audioop = _audioop()
    every_code = bytes(range(256))
    reference = audioop.ulaw2lin(every_code, 2) if payload_type == PCMU else audioop.alaw2lin(every_code, 2)

    decoded = g711.decode(every_code, payload_type)

    assert decoded == reference
    samples = np.frombuffer(decoded, "<i2")
    assert np.count_nonzero(samples & 0xFF) > 100  # low byte carries information (pyVoIP keeps 8 bits only)


@pytest.mark.parametrize("payload_type", [PCMU, PCMA])
def test_encoding_matches_the_itu_reference_for_every_sample(payload_type: int) -> None:
    audioop = _audioop()
    pcm = np.arange(-32768, 32768, dtype="<i2").tobytes()
    reference = audioop.lin2ulaw(pcm, 2) if payload_type == PCMU else audioop.lin2alaw(pcm, 2)
    assert g711.encode(pcm, payload_type) == reference


def test_pcma_is_really_sent_as_a_law_not_mu_law() -> None:
    tone = (np.sin(np.arange(160) / 5) * 8000).astype("<i2").tobytes()
    assert g711.encode(tone, PCMA) != g711.encode(tone, PCMU)
    restored = np.frombuffer(g711.decode(g711.encode(tone, PCMA), PCMA), "<i2")
    assert np.max(np.abs(restored - np.frombuffer(tone, "<i2"))) < 300


def test_transcoding_between_laws_keeps_the_signal() -> None:
    tone = (np.sin(np.arange(800) / 7) * 12000).astype("<i2")
    ulaw = g711.encode(tone.tobytes(), PCMU)
    back = np.frombuffer(g711.decode(g711.transcode(ulaw, PCMU, PCMA), PCMA), "<i2")
    assert np.corrcoef(back, tone)[0, 1] > 0.999


def test_rtp_packet_with_csrc_extension_and_padding_is_parsed() -> None:
    header = (
        bytes([0xB1, 0x80 | 8]) + (7).to_bytes(2, "big") + (1234).to_bytes(4, "big") + (99).to_bytes(4, "big")
    )
    csrc = (5).to_bytes(4, "big")
    extension = b"\xbe\xde\x00\x01" + b"\x00" * 4
    packet = parse_rtp(header + csrc + extension + b"\xd5" * 160 + b"\x00\x00\x03")

    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (8, 7, 1234, 99)
    assert packet.marker
    assert packet.payload == b"\xd5" * 160


@pytest.mark.parametrize(
    "data", [b"", b"\x80" * 5, b"\x40" + b"\x00" * 20, b"\xa0\x00" + b"\x00" * 10 + b"\xff"]
)
def test_malformed_rtp_raises_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_rtp(data)


@given(
    st.integers(0, 127),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=400),
    st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_rtp_packets_round_trip(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool) -> None:
    packet = RtpPacket(pt, seq, ts, ssrc, payload, marker)
    assert parse_rtp(packet.to_bytes()) == packet


@given(st.binary(max_size=300))
@settings(max_examples=400, deadline=None)
def test_rtp_garbage_raises_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_rtp(data)
    with contextlib.suppress(ParseError):
        parse_telephone_event(data)


def test_telephone_event_round_trip() -> None:
    event = parse_telephone_event(build_telephone_event("#", end=True, duration=800))
    assert (event.digit, event.end, event.duration) == ("#", True, 800)
