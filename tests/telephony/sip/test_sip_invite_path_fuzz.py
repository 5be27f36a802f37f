"""The whole INVITE path, fuzzed against a running endpoint over a real UDP socket (issue 13).

The decoders' own fuzz tests test the decoders; a PIDF-LO with an unknown XML encoding or an MSD asn1tools
cannot read still made the endpoint answer an emergency INVITE with silence, because the INVITE path caught
only ``ValueError``. Here recorded INVITEs (baresip, Asterisk) carrying SDP, PIDF-LO, an eCall MSD and
multipart bodies are mutated by a seeded loop (body parts, multipart structure, headers, raw bytes) and
sent one by one. The oracle, per datagram:

* a SIP INVITE to an emergency number gets a final answer, and the endpoint emits a call (CallOffered; a
  refused one is also ended with the reason, so intake files it for call-back) - never silence;
* a request that is not valid SIP but names its sender (Via, Call-ID, CSeq) gets a 400 with the reason in
  a Warning; anything less is counted as a rejected datagram;
* the endpoint never hits its "unexpected error" safety net and still serves a clean call at the end.
"""

from __future__ import annotations

import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sip_events import EventRecorder

from telephony.events import LOCATION_REFUSED_HEADER, CallEnded, CallOffered, EndReason
from telephony.location.ecall import msd_from_hex
from telephony.sip import SipEndpoint
from telephony.sip.config import EMERGENCY_NUMBERS
from telephony.sip.errors import ParseError
from telephony.sip.message import (
    SipMessage,
    parse_message,
    parse_uri,
    parse_via,
    response_address,
    salvage_request,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ITERATIONS = 420  # ~10 s on the shared 2-core machine; raise locally (IZS_FUZZ_ITERATIONS) for a long run

PIDF = (FIXTURES / "location" / "pidf_circle_civic.xml").read_bytes()
MSD = msd_from_hex((FIXTURES / "location" / "legato_imported_msd.hex").read_text())
# Inputs found by fuzzing the decoders (50,000 per decoder) that escaped them before issue 13.
PIDF_UNKNOWN_ENCODING = PIDF.replace(b'encoding="UTF-8"', b'encoding="x-nope"', 1)
MSD_NOT_IMPLEMENTED = bytes.fromhex("014c0780a64d29259760170a2cc34e3d8f1b184861eba0c8ff737e6420d104013f8100")


class Peer:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp_port = self.rtp.getsockname()[1]

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()

    def final_for(self, call_id: str, timeout: float = 3.0) -> SipMessage | None:
        """The first final response (>= 200) for ``call_id``; provisional and stale responses are skipped."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            response = parse_message(data)  # whatever the endpoint sends must itself be valid SIP
            if response.call_id == call_id and response.status is not None and response.status >= 200:
                return response
        return None


def sdp(peer: Peer) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {peer.rtp_port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    ).encode()


def recorded_heads(peer: Peer) -> list[list[tuple[str, str]]]:
    """Header lists of the recorded INVITEs (baresip, Asterisk), pointed at this peer and an emergency
    number, body headers left out (the body is built per case)."""
    heads = []
    for name in ("baresip-invite.sip", "asterisk-invite-to-intake.sip"):
        message = parse_message((FIXTURES / "sip" / name).read_bytes())
        headers = []
        for key, value in message.headers:
            if key in ("Content-Type", "Content-Length", "X-IZS-Fork-Of"):
                continue
            if key == "Via":
                value = f"SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport"
            if key == "Contact":
                value = f"<sip:caller@127.0.0.1:{peer.port}>"
            headers.append((key, value))
        heads.append(headers)
    return heads


def multipart(parts: list[tuple[str, bytes, str]], boundary: str = "izs-b1") -> tuple[str, bytes]:
    body = b""
    for content_type, content, content_id in parts:
        body += f"--{boundary}\r\nContent-Type: {content_type}\r\n".encode()
        if content_id:
            body += f"Content-ID: <{content_id}>\r\n".encode()
        body += b"\r\n" + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return f"multipart/mixed;boundary={boundary}", body


def flip(rng: random.Random, data: bytes, max_changes: int = 4) -> bytes:
    wire = bytearray(data)
    for _ in range(rng.randint(1, max_changes)):
        if not wire:
            break
        position = rng.randrange(len(wire))
        choice = rng.random()
        if choice < 0.5:
            wire[position] = rng.randrange(256)
        elif choice < 0.75:
            del wire[position : position + rng.randint(1, 16)]
        else:
            wire[position:position] = rng.choice([b"<", b"&", b"\x00", b"\xff\xfe", b"]]>", b'"', b"\r\n"])
    return bytes(wire)


def mutated_pidf(rng: random.Random) -> bytes:
    choice = rng.random()
    if choice < 0.2:
        encoding = rng.choice([b"x-nope", b"utf-16", b"latin-1", b"", b"UTF-8\x00", b"ebcdic-xx"])
        return PIDF.replace(b'encoding="UTF-8"', b'encoding="' + encoding + b'"', 1)
    if choice < 0.3:
        return b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x "xx">]><presence>&x;</presence>'
    if choice < 0.4:
        return PIDF[: rng.randrange(len(PIDF))]
    return flip(rng, PIDF, 6)


def mutated_msd(rng: random.Random) -> bytes:
    choice = rng.random()
    if choice < 0.15:
        return MSD_NOT_IMPLEMENTED
    if choice < 0.3:
        return MSD[: rng.randrange(len(MSD))]
    wire = bytearray(MSD)
    for _ in range(rng.randint(1, 4)):
        wire[rng.randrange(1, len(wire))] = rng.randrange(256)
    return bytes(wire)


def build_invite(rng: random.Random, peer: Peer, call_id: str) -> tuple[bytes, str]:
    """One mutated INVITE and the kind of mutation (for the failure message)."""
    headers = list(rng.choice(recorded_heads(peer)))
    number = rng.choice(sorted(EMERGENCY_NUMBERS))
    headers = [
        (k, f"<sip:{number}@127.0.0.1>" if k == "To" else call_id if k == "Call-ID" else v)
        for k, v in headers
    ]
    pidf = mutated_pidf(rng) if rng.random() < 0.6 else PIDF
    msd = mutated_msd(rng) if rng.random() < 0.5 else MSD
    layout = rng.choice(["pidf", "msd", "both", "sdp-only"])
    parts = [("application/sdp", sdp(peer), "")]
    if layout in ("pidf", "both"):
        parts.append(("application/pidf+xml", pidf, "loc@caller"))
        headers.append(("Geolocation", rng.choice(["<cid:loc@caller>", "<cid:nowhere@x>", "<cid:", "<>"])))
    if layout in ("msd", "both"):
        parts.append(("application/EmergencyCallData.eCall.MSD", msd, ""))
    if layout == "sdp-only":
        content_type, body = "application/sdp", sdp(peer)
    else:
        rng.shuffle(parts)
        content_type, body = multipart(parts)
    kind = layout
    structural = rng.random()
    if structural < 0.15:
        content_type = rng.choice(
            ["multipart/mixed", "multipart/mixed;boundary=", "multipart/mixed;boundary=other", "text/x-what"]
        )
        kind += "+content-type"
    elif structural < 0.3:
        body = flip(rng, body, 8)
        kind += "+body-bytes"
    headers.append(("Content-Type", content_type))
    wire = SipMessage(
        method="INVITE", uri=f"sip:{number}@127.0.0.1", headers=tuple(headers), body=body
    ).to_bytes()
    if rng.random() < 0.2:
        head, _, rest = wire.partition(b"\r\n\r\n")
        wire = flip(rng, head, 3) + b"\r\n\r\n" + rest
        kind += "+head-bytes"
    return wire, kind


def close_dialog(peer: Peer, endpoint: SipEndpoint, invite: SipMessage, ok: SipMessage) -> None:
    """ACK and BYE an answered fuzz call, so calls do not pile up."""
    for method, cseq in (("ACK", 1), ("BYE", 2)):
        request = SipMessage(
            method=method,
            uri=f"sip:intake@127.0.0.1:{endpoint.address[1]}",
            headers=(
                ("Via", f"SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport"),
                ("From", invite.header("From") or ""),
                ("To", ok.header("To") or ""),
                ("Call-ID", ok.call_id),
                ("CSeq", f"{cseq} {method}"),
                ("Max-Forwards", "70"),
            ),
        )
        peer.sock.sendto(request.to_bytes(), ("127.0.0.1", endpoint.address[1]))


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


def test_whole_invite_path_answers_every_emergency_invite(
    start_endpoint: Callable[..., SipEndpoint],
    recorder: EventRecorder,
    peer: Peer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = start_endpoint(max_calls=5000)
    rng = random.Random(13)
    iterations = int(os.environ.get("IZS_FUZZ_ITERATIONS", ITERATIONS))
    answered = refused = bad_requests = not_sip = location_refused = elsewhere = 0
    failures: list[str] = []
    for index in range(iterations):
        call_id = f"fuzz-{index}-{uuid.uuid4().hex[:8]}"
        wire, kind = build_invite(rng, peer, call_id)
        peer.sock.sendto(wire, ("127.0.0.1", endpoint.address[1]))
        try:
            invite: SipMessage | None = parse_message(wire)
        except ParseError:
            invite = None
        if invite is None:
            salvaged = salvage_request(wire)
            if salvaged is None:
                not_sip += 1  # counted below (rejected_datagrams), logged by the endpoint
                continue
            response = peer.final_for(salvaged.call_id)
            if response is None or response.status != 400 or not response.header("Warning"):
                failures.append(f"#{index} {kind}: not SIP but no 400 with a reason: {response}")
            bad_requests += 1
            continue
        try:
            dialled = parse_uri(invite.uri or "").user
        except ParseError:
            dialled = ""
        reply_to = response_address(parse_via(invite.header_values("Via")[0]), ("127.0.0.1", peer.port))
        if reply_to != ("127.0.0.1", peer.port):
            # A mutated Via without rport names another port: the answer goes there (RFC 3261 18.2.2); the
            # call must still be there.
            elsewhere += 1
            if dialled in EMERGENCY_NUMBERS:
                try:
                    recorder.wait_for(CallOffered, call_ref=invite.call_id, timeout=2.0)
                except AssertionError:
                    failures.append(f"#{index} {kind}: no call emitted for {invite.call_id!r}")
            continue
        response = peer.final_for(invite.call_id)
        if response is None:
            failures.append(f"#{index} {kind}: INVITE {invite.call_id!r} to {dialled} got no final answer")
            continue
        if dialled not in EMERGENCY_NUMBERS or response.status in (404, 481):
            continue
        try:
            [offered] = recorder.wait_for(CallOffered, call_ref=invite.call_id, timeout=2.0)
        except AssertionError:
            failures.append(f"#{index} {kind}: {response.status} but no call emitted for {invite.call_id!r}")
            continue
        if LOCATION_REFUSED_HEADER in offered.headers:
            location_refused += 1
        if response.status == 200:
            answered += 1
            close_dialog(peer, endpoint, invite, response)
        else:
            refused += 1
            ended = recorder.wait_for(CallEnded, call_ref=invite.call_id, timeout=2.0)
            if ended[0].reason is not EndReason.REJECTED:
                failures.append(f"#{index} {kind}: refused with {response.status} but ended {ended[0]}")
    assert failures == []
    assert [r.getMessage() for r in caplog.records if "unexpected error" in r.getMessage()] == []
    # The mix really covered the paths: answered calls, refused location bodies, refused INVITEs, non-SIP.
    assert answered > iterations // 3 and location_refused > iterations // 10
    assert refused and bad_requests and not_sip
    assert endpoint.rejected_datagrams >= not_sip + bad_requests

    # The endpoint still serves an ordinary call.
    clean_id = f"clean-{uuid.uuid4().hex}"
    headers = [(k, clean_id if k == "Call-ID" else v) for k, v in recorded_heads(peer)[0]]
    headers.append(("Content-Type", "application/sdp"))
    peer.sock.sendto(
        SipMessage(
            method="INVITE", uri="sip:155@127.0.0.1", headers=tuple(headers), body=sdp(peer)
        ).to_bytes(),
        ("127.0.0.1", endpoint.address[1]),
    )
    final = peer.final_for(clean_id)
    assert final is not None and final.status == 200


@pytest.mark.parametrize(
    ("parts", "refused_part"),
    [
        ([("application/pidf+xml", PIDF_UNKNOWN_ENCODING, "loc@caller")], "PIDF-LO"),
        ([("application/EmergencyCallData.eCall.MSD", MSD_NOT_IMPLEMENTED, "")], "eCall MSD"),
    ],
    ids=["pidf-unknown-encoding", "msd-asn1tools-not-implemented"],
)
def test_location_body_the_decoder_cannot_read_never_stops_the_call(
    start_endpoint: Callable[..., SipEndpoint],
    recorder: EventRecorder,
    peer: Peer,
    parts: list[tuple[str, bytes, str]],
    refused_part: str,
) -> None:
    """The two reproductions of issue 13: before, no SIP answer at all and no call; retransmissions too."""
    endpoint = start_endpoint()
    call_id = f"badloc-{uuid.uuid4().hex}"
    headers = [(k, call_id if k == "Call-ID" else v) for k, v in recorded_heads(peer)[0]]
    headers = [(k, "<sip:112@127.0.0.1>" if k == "To" else v) for k, v in headers]
    content_type, body = multipart([("application/sdp", sdp(peer), ""), *parts])
    headers += [("Geolocation", "<cid:loc@caller>"), ("Content-Type", content_type)]
    wire = SipMessage(method="INVITE", uri="sip:112@127.0.0.1", headers=tuple(headers), body=body).to_bytes()

    peer.sock.sendto(wire, ("127.0.0.1", endpoint.address[1]))
    ok = peer.final_for(call_id)
    assert ok is not None and ok.status == 200
    [offered] = recorder.wait_for(CallOffered, call_ref=call_id)
    assert offered.headers[LOCATION_REFUSED_HEADER].startswith(refused_part)
    peer.sock.sendto(wire, ("127.0.0.1", endpoint.address[1]))  # the handset's retransmission
    again = peer.final_for(call_id)
    assert again is not None and again.status == 200
    assert len(recorder.of(CallOffered, call_id)) == 1
