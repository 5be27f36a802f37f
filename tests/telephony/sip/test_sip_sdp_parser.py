"""The pure SDP parser and the G.711 offer/answer choice."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.sip.errors import ParseError
from telephony.sip.sdp import (
    PCMA,
    PCMU,
    MediaDescription,
    SessionDescription,
    audio_session,
    build_sdp,
    negotiate_audio,
    parse_sdp,
)

BARESIP_OFFER = (
    b"v=0\r\no=- 1086485864 1199826493 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n"
    b"a=tool:baresip 1.0.0\r\nm=audio 23408 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    b"a=label:1\r\na=rtcp-rsize\r\na=ptime:20\r\n"
)


def test_baresip_offer_negotiates_pcmu_with_telephone_events() -> None:
    offer = parse_sdp(BARESIP_OFFER)
    chosen = negotiate_audio(offer)

    assert chosen is not None
    assert chosen.remote_address == ("192.0.2.2", 23408)
    assert chosen.payload_type == PCMU
    assert chosen.event_payload_type == 101
    assert chosen.ptime == 20


def test_offer_preferring_pcma_gets_pcma() -> None:
    offer = parse_sdp(BARESIP_OFFER.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 8 0 101"))
    chosen = negotiate_audio(offer)
    assert chosen is not None and chosen.payload_type == PCMA


def test_offer_with_only_unknown_codecs_is_not_acceptable() -> None:
    offer = parse_sdp(
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 96 9\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:9 G722/8000\r\n"
    )
    assert negotiate_audio(offer) is None


def test_media_level_connection_overrides_session_level() -> None:
    offer = parse_sdp(
        b"v=0\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\n"
    )
    assert offer.audio_address() == ("10.0.0.2", 4000)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"x=1",
        b"v=0\r\nm=audio abc RTP/AVP 0\r\n",
        b"v=0\r\nc=IN IP4\r\n",
        b"v=0\r\nbroken\r\n",
        b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:999 X/1\r\n",
        b"\xff\xfe",
    ],
)
def test_malformed_sdp_raises_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_sdp(body)


def test_our_answer_round_trips() -> None:
    answer = audio_session("127.0.0.1", 40000, [PCMA], 101, 42)
    assert parse_sdp(build_sdp(answer)) == answer


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


@st.composite
def sessions(draw: st.DrawFn) -> SessionDescription:
    media = []
    for _ in range(draw(st.integers(1, 3))):
        pts = draw(st.lists(st.integers(0, 127), min_size=1, max_size=5, unique=True))
        media.append(
            MediaDescription(
                media=draw(st.sampled_from(["audio", "video"])),
                port=draw(st.integers(0, 65535)),
                proto="RTP/AVP",
                formats=tuple(str(pt) for pt in pts),
                connection=draw(st.none() | st.just("10.1.2.3")),
                rtpmap={pt: f"{draw(_word)}/8000" for pt in pts},
                fmtp=draw(st.dictionaries(st.sampled_from(pts), _word, max_size=2)),
                ptime=draw(st.none() | st.integers(10, 60)),
                direction=draw(st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"])),
                other_attributes=tuple(draw(st.lists(_word.map(lambda w: f"x-{w}"), max_size=2))),
            )
        )
    return SessionDescription(
        f"- {draw(st.integers(0, 99))} 1 IN IP4 h", draw(_word), "192.0.2.1", tuple(media)
    )


@given(sessions())
@settings(max_examples=200, deadline=None)
def test_built_sdp_round_trips(session: SessionDescription) -> None:
    assert parse_sdp(build_sdp(session)) == session


@given(st.binary(max_size=1000))
@settings(max_examples=400, deadline=None)
def test_garbage_sdp_raises_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_sdp(data)


@given(st.text(max_size=400))
@settings(max_examples=300, deadline=None)
def test_textual_garbage_after_version_line_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_sdp(("v=0\r\n" + text).encode())
