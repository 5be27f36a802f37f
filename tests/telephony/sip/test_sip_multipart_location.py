"""SDP + PIDF-LO in one INVITE (RFC 6442): multipart extraction and location hand-over."""

from __future__ import annotations

import pytest

from telephony.sip.errors import ParseError
from telephony.sip.location import extract_location
from telephony.sip.message import parse_message
from telephony.sip.multipart import find_part, geolocation_references, split_body

PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
    b'xmlns:gml="http://www.opengis.net/gml" entity="pres:caller@example.cz">'
    b'<tuple id="t1"><status><gp:geopriv><gp:location-info>'
    b'<gml:Point srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>50.2306 12.8711</gml:pos></gml:Point>'
    b"</gp:location-info></gp:geopriv></status></tuple></presence>"
)
SDP = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def invite_with_location() -> bytes:
    body = (
        b"--geo-boundary\r\nContent-Type: application/sdp\r\n\r\n" + SDP + b"\r\n"
        b"--geo-boundary\r\nContent-Type: application/pidf+xml\r\nContent-ID: <loc1@example.cz>\r\n\r\n"
        + PIDF
        + b"\r\n--geo-boundary--\r\n"
    )
    head = (
        "INVITE urn:service:sos SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKg;rport\r\n"
        "From: <sip:+420777000111@ims.example>;tag=f\r\nTo: <urn:service:sos>\r\nCall-ID: geo-1\r\n"
        "CSeq: 1 INVITE\r\nGeolocation: <cid:loc1@example.cz>\r\nGeolocation-Routing: yes\r\n"
        'Content-Type: multipart/mixed; boundary="geo-boundary"\r\n'
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def test_multipart_invite_yields_sdp_and_pidf_parts() -> None:
    message = parse_message(invite_with_location())
    parts = split_body(message.header("Content-Type"), message.body)

    sdp = find_part(parts, "application/sdp")
    pidf = find_part(parts, "application/pidf+xml", "loc1@example.cz")
    assert sdp is not None and sdp.body == SDP
    assert pidf is not None and pidf.body == PIDF
    assert geolocation_references(message.header("Geolocation")) == ["cid:loc1@example.cz"]


def test_location_is_passed_on_raw_and_parsed() -> None:
    message = parse_message(invite_with_location())
    parts = split_body(message.header("Content-Type"), message.body)

    fix, more, headers = extract_location(message, parts, "geo-1")

    assert headers["Geolocation-Body"] == PIDF.decode()
    assert fix is not None and fix.lat == pytest.approx(50.2306) and fix.lon == pytest.approx(12.8711)
    assert more == []


def test_sip_and_location_read_a_body_with_the_one_multipart_reader() -> None:
    """One multipart reader: the SIP endpoint's parts are those telephony.location finds (nested parts
    flattened, base64 decoded)."""
    inner = b"--in\r\nContent-Type: application/pidf+xml\r\nContent-Transfer-Encoding: base64\r\n\r\nPHByZXNlbmNlLz4=\r\n--in--"
    body = (
        b"--out\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--out\r\n"
        b'Content-Type: multipart/mixed; boundary="in"\r\n\r\n' + inner + b"\r\n--out--"
    )
    parts = split_body("multipart/mixed; boundary=out", body)
    assert [p.content_type for p in parts] == ["application/sdp", "application/pidf+xml"]
    assert parts[1].body == b"<presence/>"


def test_multipart_without_boundary_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        split_body("multipart/mixed", b"--x\r\n\r\nabc\r\n--x--")


def test_plain_sdp_body_is_a_single_part() -> None:
    parts = split_body("application/sdp", SDP)
    assert [p.content_type for p in parts] == ["application/sdp"]
