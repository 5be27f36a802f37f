"""The pure SIP message parser: real wire messages parse, garbage gives ParseError and nothing else."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.sip.errors import ParseError
from telephony.sip.message import (
    SipMessage,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    response_address,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sip"


def _baresip_invite() -> bytes:
    return (FIXTURES / "baresip-invite.sip").read_bytes()


def test_baresip_invite_with_empty_supported_header_is_parsed() -> None:
    message = parse_message(_baresip_invite())

    assert message.method == "INVITE"
    assert message.header("Supported") == ""
    assert message.call_id == "dcec9b6d868ba38c"
    assert message.cseq == (31958, "INVITE")
    assert message.body.startswith(b"v=0\r\n")
    assert len(message.body) == 339


def test_compact_and_spaceless_headers_are_expanded_to_long_names() -> None:
    wire = (
        b"INVITE sip:112@10.0.0.1 SIP/2.0\r\n"
        b"v:SIP/2.0/UDP 10.0.0.9:5062;branch=z9hG4bKx;rport\r\n"
        b"f:<sip:alice@10.0.0.9>;tag=a1\r\n"
        b"t:<sip:112@10.0.0.1>\r\n"
        b"i:compact-1\r\n"
        b"CSeq:1 INVITE\r\n"
        b"m:<sip:alice@10.0.0.9:5062>\r\n"
        b"c:application/sdp\r\n"
        b"k:\r\n"
        b"l:4\r\n\r\nv=0\r\n"
    )
    message = parse_message(wire)

    assert message.header("Via") == "SIP/2.0/UDP 10.0.0.9:5062;branch=z9hG4bKx;rport"
    assert message.header("From") == "<sip:alice@10.0.0.9>;tag=a1"
    assert message.call_id == "compact-1"
    assert message.header("Contact") == "<sip:alice@10.0.0.9:5062>"
    assert message.header("content-type") == "application/sdp"
    assert message.header("Supported") == ""
    assert message.body == b"v=0\r"  # Content-Length wins over trailing bytes


def test_bare_lf_line_ends_and_folded_headers_are_accepted() -> None:
    wire = (
        b"OPTIONS sip:intake@h SIP/2.0\n"
        b"Via: SIP/2.0/UDP 1.2.3.4\n"
        b"From: <sip:lb@h>;tag=1\nTo: <sip:intake@h>\nCall-ID: opt\nCSeq: 7 OPTIONS\n"
        b"Subject: first part\n  second part\n\n"
    )
    message = parse_message(wire)

    assert message.header("Subject") == "first part second part"
    assert message.cseq == (7, "OPTIONS")


@pytest.mark.parametrize(
    "name", ["asterisk-invite-to-intake.sip", "asterisk-invite-to-intake-with-header.sip"]
)
def test_recorded_asterisk_fork_invites_parse(name: str) -> None:
    message = parse_message((FIXTURES / name).read_bytes())

    assert message.method == "INVITE"
    assert parse_uri(message.uri or "").user == "u5060"
    assert parse_via(message.header_values("Via")[0]).port == 5080
    assert message.body.startswith(b"v=0")


def test_fork_of_header_is_read_from_the_recorded_asterisk_invite() -> None:
    message = parse_message((FIXTURES / "asterisk-invite-to-intake-with-header.sip").read_bytes())

    assert message.header("X-IZS-Fork-Of") == "SIP/127.0.0.1-00000001"
    assert (
        parse_message((FIXTURES / "asterisk-invite-to-intake.sip").read_bytes()).header("X-IZS-Fork-Of")
        is None
    )


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x00\x01\x02",
        b"HELLO WORLD\r\n\r\n",
        b"INVITE sip:112@h SIP/3.0\r\nVia: SIP/2.0/UDP h\r\n\r\n",
        b"INVITE sip:112@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: x\r\n\r\n",  # no From/To/CSeq
        b"INVITE sip:112@h SIP/2.0\r\nVia: bogus\r\nFrom: a\r\nTo: b\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n",
        b"INVITE sip:112@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n",
        b"SIP/2.0 999 Odd\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n",
        b"INVITE sip:112@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 500\r\n\r\nshort",
        b"INVITE sip:112@h SIP/2.0\r\nBad Header Line\r\n\r\n",
    ],
)
def test_malformed_messages_raise_parse_error(wire: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(wire)


def test_huge_header_is_rejected() -> None:
    wire = _baresip_invite().replace(b"Supported:", b"X-Junk: " + b"a" * 20_000 + b"\r\nSupported:")
    with pytest.raises(ParseError, match="too long"):
        parse_message(wire)


def test_oversized_datagram_is_rejected() -> None:
    with pytest.raises(ParseError, match="too large"):
        parse_message(_baresip_invite() + b"x" * 70_000)


def test_replies_go_to_the_packet_source_when_rport_is_requested() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport")
    assert response_address(via, ("192.0.2.7", 40123)) == ("192.0.2.7", 40123)
    without_rport = parse_via("SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1")
    assert response_address(without_rport, ("192.0.2.7", 40123)) == ("192.0.2.7", 5070)


def test_name_addr_and_uri_parts() -> None:
    addr = parse_name_addr('"Jana Nováková" <sip:+420777123456@ims.example;user=phone>;tag=abc')
    assert addr.display == "Jana Nováková"
    assert addr.tag == "abc"
    uri = parse_uri(addr.uri)
    assert (uri.user, uri.host, uri.params) == ("+420777123456", "ims.example", {"user": "phone"})
    assert parse_uri("sip:[2001:db8::1]:5062").port == 5062
    assert parse_uri("tel:+420155").user == "+420155"


# ----------------------------------------------------------------------------- property tests

_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.", min_size=1, max_size=20
)
_value = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters=","),
    max_size=60,
).map(str.strip)


@st.composite
def sip_messages(draw: st.DrawFn) -> SipMessage:
    method = draw(st.sampled_from(["INVITE", "BYE", "OPTIONS", "INFO", "CANCEL"]))
    headers = [
        ("Via", f"SIP/2.0/UDP {draw(_token)}:{draw(st.integers(1, 65535))};branch=z9hG4bK{draw(_token)}"),
        ("From", f"<sip:{draw(_token)}@{draw(_token)}>;tag={draw(_token)}"),
        ("To", f"<sip:{draw(_token)}@{draw(_token)}>"),
        ("Call-ID", draw(_token)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    extra = draw(st.lists(st.tuples(_token.map(lambda t: "X-" + t), _value), max_size=5))
    body = draw(st.binary(max_size=200))
    return SipMessage(
        method=method, uri=f"sip:{draw(_token)}@{draw(_token)}", headers=tuple(headers + extra), body=body
    )


@given(sip_messages())
@settings(max_examples=200, deadline=None)
def test_built_messages_round_trip_through_the_parser(message: SipMessage) -> None:
    parsed = parse_message(message.to_bytes())

    assert parsed.method == message.method
    assert parsed.uri == message.uri
    assert parsed.body == message.body
    assert [(k, v) for k, v in parsed.headers if k != "Content-Length"] == list(message.headers)


@given(st.binary(max_size=2000))
@settings(max_examples=500, deadline=None)
def test_garbage_bytes_raise_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_message(data)


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_mutated_real_invites_raise_only_parse_error(data: st.DataObject) -> None:
    wire = bytearray(_baresip_invite())
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(wire) - 1))
        wire[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    with contextlib.suppress(ParseError):
        parse_message(bytes(wire[:cut]))
