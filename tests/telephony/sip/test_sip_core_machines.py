"""The SIP endpoint's pure machines (SipCore: incoming calls, taker legs, media, retransmission timers),
driven with parsed bytes and an injected clock - no sockets, no threads, no sleeps.

Each test feeds datagrams/ticks at chosen instants and checks the actions that come out: what is sent to
whom, which telephony events are emitted, which media is started/stopped.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from telephony.events import (
    AudioFrame,
    CallAnswered,
    CallConnected,
    CallEnded,
    CallOffered,
    DtmfReceived,
    EndReason,
    TelephonyEvent,
)
from telephony.sip.config import SipEndpointConfig
from telephony.sip.core import SipCore
from telephony.sip.dialog import Action, Emit, Local, Send, SendRtp, SettleTaker, StartMedia, StopMedia
from telephony.sip.errors import CallNotFoundError, TakerUnavailableError
from telephony.sip.g711 import encode
from telephony.sip.message import SipMessage, parse_message
from telephony.sip.rtp import RtpPacket, build_telephone_event
from telephony.sip.sdp import PCMU, parse_sdp

CALLER = ("192.0.2.10", 5062)
CALLER_RTP = ("192.0.2.10", 40000)
TAKER = ("192.0.2.50", 5060)
TAKER_URI = "sip:taker1@192.0.2.50:5060"
PIDF_BAD_ENCODING = (
    b'<?xml version="1.0" encoding="x-nope"?>\r\n<presence xmlns="urn:ietf:params:xml:ns:pidf"'
    b' entity="pres:caller@example.cz"></presence>'
)


class FakePorts:
    """RTP ports handed out in order; ``exhausted`` makes the next open fail like a full port range."""

    def __init__(self) -> None:
        self.next_port = 30000
        self.exhausted = False

    def open(self) -> int:
        if self.exhausted:
            raise OSError("no free RTP port in 30000-30010")
        self.next_port += 2
        return self.next_port


def sdp(port: int = CALLER_RTP[1], host: str = CALLER_RTP[0], formats: str = "0 8 101") -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {formats}\r\na=rtpmap:101 telephone-event/8000\r\n"
    ).encode()


def request(
    method: str,
    call_id: str,
    *,
    number: str = "155",
    body: bytes = b"",
    content_type: str = "application/sdp",
    to_tag: str = "",
    cseq: int = 1,
    branch: str = "z9hG4bKc1",
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    headers = [
        ("Via", f"SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch={branch};rport"),
        ("From", '"Caller" <sip:+420777000111@192.0.2.10>;tag=caller1'),
        ("To", f"<sip:{number}@198.51.100.1>" + (f";tag={to_tag}" if to_tag else "")),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
        ("Contact", f"<sip:caller@{CALLER[0]}:{CALLER[1]}>"),
        ("Max-Forwards", "70"),
        *extra,
    ]
    if body:
        headers.append(("Content-Type", content_type))
    return SipMessage(
        method=method, uri=f"sip:{number}@198.51.100.1", headers=tuple(headers), body=body
    ).to_bytes()


def sent(actions: list[Action], to: tuple[str, int] | None = None) -> list[SipMessage]:
    return [parse_message(a.data) for a in actions if isinstance(a, Send) and (to is None or a.address == to)]


def statuses(actions: list[Action]) -> list[int | str | None]:
    return [m.status or m.method for m in sent(actions)]


def events(actions: list[Action]) -> list[TelephonyEvent]:
    return [a.event for a in actions if isinstance(a, Emit)]


def to_tag(message: SipMessage) -> str:
    return (message.header("To") or "").split("tag=")[1]


class Rig:
    def __init__(self, **overrides: Any) -> None:
        self.config = replace(SipEndpointConfig(host="198.51.100.1", port=5060), **overrides)
        self.ports = FakePorts()
        self.core = SipCore(Local("198.51.100.1", 5060, "izs-test"), self.config, self.ports)
        self.now = 1000.0

    def feed(self, data: bytes, at: float | None = None, source: tuple[str, int] = CALLER) -> list[Action]:
        if at is not None:
            self.now = at
        return self.core.on_datagram(data, source, self.now)

    def tick(self, at: float) -> list[Action]:
        self.now = at
        return self.core.tick(at)

    def ticks(self, start: float, end: float, step: float = 0.02) -> list[Action]:
        actions: list[Action] = []
        steps = round((end - start) / step)
        for k in range(steps + 1):
            actions += self.tick(start + k * step)
        return actions

    def answered_call(self) -> tuple[str, SipMessage]:
        call_id = uuid.uuid4().hex
        ok = sent(self.feed(request("INVITE", call_id, body=sdp())))[-1]
        assert ok.status == 200
        self.feed(request("ACK", call_id, to_tag=to_tag(ok), cseq=1, branch="z9hG4bKack"))
        return call_id, ok


# --------------------------------------------------------------------------- INVITE and Timer G/H


def test_invite_is_offered_answered_and_media_started() -> None:
    rig = Rig()
    actions = rig.feed(request("INVITE", "call-1", body=sdp()))

    assert statuses(actions) == [100, 200]
    ok = sent(actions)[-1]
    assert parse_sdp(ok.body).audio_address() == ("198.51.100.1", 30002)
    assert [type(e) for e in events(actions)] == [CallOffered, CallAnswered]
    offered = events(actions)[0]
    assert isinstance(offered, CallOffered) and offered.dialled == "155" and offered.caller == "+420777000111"
    assert any(isinstance(a, StartMedia) and a.leg.local_port == 30002 for a in actions)
    # Responses go back where the request came from (rport), with received= stamped on the Via.
    assert all(a.address == CALLER for a in actions if isinstance(a, Send))
    assert "received=192.0.2.10" in (ok.header("Via") or "")


def test_200_ok_is_retransmitted_at_t1_doubling_to_t2_until_the_ack() -> None:
    rig = Rig()
    t0 = rig.now
    ok = sent(rig.feed(request("INVITE", "call-g", body=sdp())))[-1]

    ticks = [t0 + k / 50 for k in range(1, 400)]  # every 20 ms for 8 s, exact binary fractions
    resent_at = [t - t0 for t in ticks if statuses(rig.tick(t)) == [200]]
    assert resent_at == [0.5, 1.5, 3.5, 7.5]  # T1, then 2T1, 4T1, capped at T2 = 4 s

    rig.feed(request("ACK", "call-g", to_tag=to_tag(ok), branch="z9hG4bKack"))
    assert statuses(rig.ticks(rig.now, rig.now + 10.0, 0.1)) == []


def test_200_ok_never_acked_ends_the_call_at_timer_h() -> None:
    rig = Rig(ack_timeout_s=4.0, media_timeout_s=60.0)
    t0 = rig.now
    rig.feed(request("INVITE", "call-h", body=sdp()))

    before = rig.ticks(t0, t0 + 3.9, 0.1)
    assert not [e for e in events(before) if isinstance(e, CallEnded)]
    after = rig.ticks(t0 + 4.0, t0 + 4.1, 0.1)
    ended = [e for e in events(after) if isinstance(e, CallEnded)]
    assert len(ended) == 1 and ended[0].reason == EndReason.ERROR and "acknowledged" in ended[0].detail
    assert "BYE" in statuses(after)
    assert any(isinstance(a, StopMedia) for a in after)
    assert rig.core.active_calls() == []


def test_retransmitted_invite_is_absorbed_and_answered_again_with_the_same_response() -> None:
    rig = Rig()
    first = rig.feed(request("INVITE", "call-r", body=sdp()))
    again = rig.feed(request("INVITE", "call-r", body=sdp()))

    assert [m.to_bytes() for m in sent(again)] == [sent(first)[-1].to_bytes()]
    assert events(again) == []  # never offered twice
    assert not any(isinstance(a, StartMedia) for a in again)
    assert rig.core.active_calls() == ["call-r"]


def test_retransmitted_invite_while_ringing_gets_the_180() -> None:
    rig = Rig(answer_after_s=3.0)
    assert statuses(rig.feed(request("INVITE", "call-180", body=sdp()))) == [100, 180]
    assert statuses(rig.feed(request("INVITE", "call-180", body=sdp()))) == [180]


# --------------------------------------------------------------------------------------- CANCEL


def test_cancel_before_answer_gives_487_ends_abandoned_and_the_ring_timer_never_answers() -> None:
    rig = Rig(answer_after_s=3.0)
    t0 = rig.now
    rig.feed(request("INVITE", "call-c", body=sdp()))
    actions = rig.feed(request("CANCEL", "call-c"), at=t0 + 1.0)

    assert statuses(actions) == [200, 487]
    ended = [e for e in events(actions) if isinstance(e, CallEnded)]
    assert len(ended) == 1 and ended[0].reason == EndReason.ABANDONED
    later = rig.ticks(t0 + 1.02, t0 + 5.0)
    assert 200 not in statuses(later)  # never answered after the CANCEL
    assert statuses(later) and set(statuses(later)) == {487}  # the 487 is retransmitted until ACKed
    assert not [e for e in events(later) if isinstance(e, CallAnswered)]

    rig.feed(request("ACK", "call-c", branch="z9hG4bKc1"))
    assert statuses(rig.ticks(rig.now + 0.1, rig.now + 6.0, 0.1)) == []
    # A retransmitted CANCEL is answered again, the call stays ended once.
    assert statuses(rig.feed(request("CANCEL", "call-c"))) == [200]


def test_cancel_after_answer_has_no_effect() -> None:
    rig = Rig()
    call_id, _ = rig.answered_call()
    actions = rig.feed(request("CANCEL", call_id))
    assert statuses(actions) == [200] and events(actions) == []
    assert rig.core.active_calls() == [call_id]


# ------------------------------------------------------------------------------------------ BYE


def test_bye_from_the_caller_ends_the_call_once() -> None:
    rig = Rig()
    call_id, ok = rig.answered_call()
    bye = request("BYE", call_id, to_tag=to_tag(ok), cseq=2, branch="z9hG4bKbye")
    actions = rig.feed(bye)

    assert statuses(actions) == [200]
    ended = [e for e in events(actions) if isinstance(e, CallEnded)]
    assert len(ended) == 1 and ended[0].reason == EndReason.CALLER_HANGUP
    assert any(isinstance(a, StopMedia) for a in actions)
    again = rig.feed(bye)  # retransmitted BYE: answered, not ended twice
    assert statuses(again) == [200] and events(again) == []


def test_hangup_by_intake_sends_bye_retransmitted_until_its_200() -> None:
    rig = Rig()
    call_id, _ = rig.answered_call()
    actions = rig.core.hangup(call_id, rig.now)
    byes = sent(actions, CALLER)
    assert [m.method for m in byes] == ["BYE"]
    assert [e.reason for e in events(actions) if isinstance(e, CallEnded)] == [EndReason.TAKER_HANGUP]

    assert statuses(rig.ticks(rig.now + 0.02, rig.now + 0.6)) == ["BYE"]  # resent at T1
    response = SipMessage(
        status=200,
        reason="OK",
        headers=tuple((n, v) for n, v in byes[0].headers if n in ("Via", "From", "To", "Call-ID", "CSeq")),
    ).to_bytes()
    rig.feed(response)
    assert statuses(rig.ticks(rig.now + 0.1, rig.now + 10.0, 0.1)) == []
    with pytest.raises(CallNotFoundError):
        rig.core.hangup(call_id, rig.now)


def test_hangup_of_a_ringing_call_answers_480() -> None:
    rig = Rig(answer_after_s=5.0)
    rig.feed(request("INVITE", "call-480", body=sdp()))
    actions = rig.core.hangup("call-480", rig.now)
    assert statuses(actions) == [480]
    assert [e.reason for e in events(actions) if isinstance(e, CallEnded)] == [EndReason.REJECTED]


# ------------------------------------------------------------------------------------ re-INVITE


def test_reinvite_moves_the_callers_media_and_is_answered_with_our_sdp() -> None:
    rig = Rig()
    call_id, ok = rig.answered_call()
    reinvite = request(
        "INVITE",
        call_id,
        body=sdp(port=41000, host="192.0.2.11"),
        to_tag=to_tag(ok),
        cseq=2,
        branch="z9hG4bKre",
    )
    actions = rig.feed(reinvite)

    assert statuses(actions) == [200]
    assert events(actions) == []  # same call, not a new one
    leg = rig.core.table.calls[call_id].caller
    assert leg.remote_rtp == ("192.0.2.11", 41000) and "192.0.2.11" in leg.allowed_rtp_hosts
    assert parse_sdp(sent(actions)[0].body).audio() is not None


def test_reinvite_with_a_bad_body_is_still_answered() -> None:
    rig = Rig()
    call_id, ok = rig.answered_call()
    bad = request("INVITE", call_id, body=b"v=0\r\nm=audio x", to_tag=to_tag(ok), cseq=2, branch="z9hG4bKb")
    assert statuses(rig.feed(bad)) == [200]


# --------------------------------------------------------------- malformed and out-of-dialog input


@pytest.mark.parametrize(
    ("method", "extra_to_tag", "expected"),
    [
        ("BYE", "x", 481),
        ("CANCEL", "", 481),
        ("INFO", "x", 481),
        ("INVITE", "stale", 481),  # re-INVITE for a dialog we do not hold (e.g. after a restart)
        ("SUBSCRIBE", "", 405),
        ("OPTIONS", "", 200),
    ],
)
def test_out_of_dialog_requests_get_the_right_status(method: str, extra_to_tag: str, expected: int) -> None:
    rig = Rig()
    body = sdp() if method == "INVITE" else b""
    actions = rig.feed(request(method, "nobody", to_tag=extra_to_tag, body=body))
    assert statuses(actions) == [expected]
    assert events(actions) == []


def test_ack_for_nothing_is_ignored_silently() -> None:
    assert Rig().feed(request("ACK", "nobody", to_tag="x")) == []


def test_not_sip_but_naming_its_sender_gets_400_with_the_reason() -> None:
    rig = Rig()
    garbage = (
        b"INVITE sip:155@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKg\r\n"
        b"Call-ID: g1\r\nCSeq: 1 INVITE\r\nContent-Length: nope\r\n\r\n"
    )
    actions = rig.feed(garbage)
    assert statuses(actions) == [400]
    assert (sent(actions)[0].header("Warning") or "").startswith("399 ")
    assert rig.core.rejected_datagrams == 1


@pytest.mark.parametrize("data", [b"\x00\xff" * 40, b"HELLO\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n"])
def test_unanswerable_garbage_is_counted_never_raised(data: bytes) -> None:
    rig = Rig()
    assert rig.feed(data) == []
    assert rig.core.rejected_datagrams == 1


def test_keepalive_crlf_is_not_a_rejection() -> None:
    rig = Rig()
    assert rig.feed(b"\r\n\r\n") == [] and rig.core.rejected_datagrams == 0


def test_not_an_emergency_number_is_404_and_no_call() -> None:
    actions = Rig().feed(request("INVITE", "c404", number="12345", body=sdp()))
    assert statuses(actions) == [404] and events(actions) == []


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "application/sdp", 488),  # no offer
        (sdp(formats="96"), "application/sdp", 488),  # no G.711
        (b"--b\r\nno end", 'multipart/mixed; boundary="b"', 488),  # read to its end: text, no SDP offer
        (b"no delimiter at all", 'multipart/mixed; boundary="b"', 400),  # body does not parse
    ],
)
def test_emergency_invite_without_usable_audio_is_refused_and_still_filed(
    body: bytes, content_type: str, status: int
) -> None:
    rig = Rig()
    invite = request("INVITE", "crefused", body=body, content_type=content_type)
    actions = rig.feed(invite)
    assert statuses(actions) == [status]
    kinds = [type(e) for e in events(actions)]
    assert kinds == [CallOffered, CallEnded]
    ended = events(actions)[1]
    assert isinstance(ended, CallEnded) and ended.reason == EndReason.REJECTED
    again = rig.feed(invite)  # a retransmission gets the same answer and is not filed twice
    assert statuses(again) == [status] and events(again) == []


def test_no_free_rtp_port_is_503_and_filed() -> None:
    rig = Rig()
    rig.ports.exhausted = True
    actions = rig.feed(request("INVITE", "c503", body=sdp()))
    assert statuses(actions) == [503]
    assert [type(e) for e in events(actions)] == [CallOffered, CallEnded]


def test_full_endpoint_answers_503_and_files_the_attempt() -> None:
    """Issue 13: an emergency INVITE refused at the call limit still leaves a call record (ended, for
    call-back); its retransmission gets the same answer and files nothing twice."""
    rig = Rig(max_calls=1)
    rig.answered_call()
    actions = rig.feed(request("INVITE", "one-too-many", body=sdp()))
    assert statuses(actions) == [503]
    offered, ended = events(actions)
    assert isinstance(offered, CallOffered) and offered.call_ref == "one-too-many"
    assert isinstance(ended, CallEnded) and "limit of 1 calls" in ended.detail
    again = rig.feed(request("INVITE", "one-too-many", body=sdp()))
    assert statuses(again) == [503] and events(again) == []


def test_full_endpoint_still_answers_404_to_numbers_it_does_not_serve() -> None:
    rig = Rig(max_calls=1)
    rig.answered_call()
    actions = rig.feed(request("INVITE", "not-ours", number="800123456", body=sdp()))
    assert statuses(actions) == [404] and events(actions) == []


def test_invite_whose_location_body_is_bad_is_still_answered() -> None:
    """Issue 13: the optional part (a PIDF-LO no decoder can read) never stops the mandatory part."""
    body = (
        b"--geo\r\nContent-Type: application/sdp\r\n\r\n" + sdp() + b"\r\n"
        b"--geo\r\nContent-Type: application/pidf+xml\r\nContent-ID: <loc1@example.cz>\r\n\r\n"
        + PIDF_BAD_ENCODING
        + b"\r\n--geo--\r\n"
    )
    invite = request(
        "INVITE",
        "c-geo",
        body=body,
        content_type='multipart/mixed; boundary="geo"',
        extra=(("Geolocation", "<cid:loc1@example.cz>"),),
    )
    actions = Rig().feed(invite)
    assert statuses(actions) == [100, 200]
    offered = events(actions)[0]
    assert isinstance(offered, CallOffered) and offered.location is None


# --------------------------------------------------------------------------------- taker legs


def taker_response(invite: SipMessage, status: int, reason: str, body: bytes = b"") -> bytes:
    headers = [(n, v) for n, v in invite.headers if n in ("Via", "From", "Call-ID", "CSeq")]
    headers.append(("To", f"{invite.header('To')};tag=taker-tag"))
    headers.append(("Contact", f"<{TAKER_URI}>"))
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return SipMessage(status=status, reason=reason, headers=tuple(headers), body=body).to_bytes()


def connect(rig: Rig, call_id: str) -> tuple[concurrent.futures.Future[None], SipMessage]:
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    actions = rig.core.connect_to_taker(call_id, TAKER_URI, TAKER, 1, future, rig.now)
    invites = sent(actions, TAKER)
    assert [m.method for m in invites] == ["INVITE"]
    assert invites[0].header("X-IZS-Call-Ref") == call_id and invites[0].header("Priority") == "emergency"
    return future, invites[0]


def settled(actions: list[Action]) -> list[TakerUnavailableError | None]:
    return [a.error for a in actions if isinstance(a, SettleTaker)]


def test_taker_answers_the_call_is_connected_and_acked() -> None:
    rig = Rig()
    call_id, _ = rig.answered_call()
    _, invite = connect(rig, call_id)
    assert rig.feed(taker_response(invite, 180, "Ringing"), source=TAKER) == []

    actions = rig.feed(taker_response(invite, 200, "OK", sdp(port=42000, host="192.0.2.50")), source=TAKER)
    assert [m.method for m in sent(actions, TAKER)] == ["ACK"]
    assert [type(e) for e in events(actions)] == [CallConnected]
    assert settled(actions) == [None]
    # A retransmitted 2xx is ACKed again, not connected twice.
    again = rig.feed(taker_response(invite, 200, "OK", sdp(port=42000, host="192.0.2.50")), source=TAKER)
    assert [m.method for m in sent(again, TAKER)] == ["ACK"] and events(again) == []


def test_taker_busy_fails_the_connect_and_is_acked() -> None:
    rig = Rig()
    call_id, _ = rig.answered_call()
    _, invite = connect(rig, call_id)
    actions = rig.feed(taker_response(invite, 486, "Busy Here"), source=TAKER)
    assert [m.method for m in sent(actions, TAKER)] == ["ACK"]
    errors = settled(actions)
    assert len(errors) == 1 and errors[0] is not None and errors[0].status == 486
    assert rig.core.active_calls() == [call_id]  # the caller stays on the line


def test_taker_not_answering_in_time_is_cancelled() -> None:
    rig = Rig(taker_answer_timeout_s=5.0)
    call_id, _ = rig.answered_call()
    t0 = rig.now
    _, invite = connect(rig, call_id)
    # Media from the caller keeps the call alive; the taker's INVITE is retransmitted meanwhile.
    early = rig.ticks(t0 + 0.02, t0 + 4.9, 0.1)
    assert "INVITE" in [m.method for m in sent(early, TAKER)] and not settled(early)
    late = rig.ticks(t0 + 5.0, t0 + 5.2, 0.1)
    assert "CANCEL" in [m.method for m in sent(late, TAKER)]
    errors = settled(late)
    assert len(errors) == 1 and errors[0] is not None and "in time" in errors[0].detail
    # The phone's late 487 to the cancelled INVITE is still ACKed.
    ack = rig.feed(taker_response(invite, 487, "Request Terminated"), source=TAKER)
    assert [m.method for m in sent(ack, TAKER)] == ["ACK"]


def test_bye_from_the_taker_ends_the_call_and_hangs_up_the_caller() -> None:
    rig = Rig()
    call_id, _ = rig.answered_call()
    _, invite = connect(rig, call_id)
    rig.feed(taker_response(invite, 200, "OK", sdp(port=42000, host="192.0.2.50")), source=TAKER)
    bye = SipMessage(
        method="BYE",
        uri="sip:intake@198.51.100.1:5060",
        headers=(
            ("Via", f"SIP/2.0/UDP {TAKER[0]}:{TAKER[1]};branch=z9hG4bKtb"),
            ("From", f"<{TAKER_URI}>;tag=taker-tag"),
            ("To", invite.header("From") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", "2 BYE"),
        ),
    ).to_bytes()
    actions = rig.feed(bye, source=TAKER)
    assert [m.status for m in sent(actions, TAKER)] == [200]
    assert [m.method for m in sent(actions, CALLER)] == ["BYE"]
    assert [e.reason for e in events(actions) if isinstance(e, CallEnded)] == [EndReason.TAKER_HANGUP]


def test_caller_hanging_up_while_the_taker_rings_cancels_the_taker() -> None:
    rig = Rig()
    call_id, ok = rig.answered_call()
    _, _ = connect(rig, call_id)
    actions = rig.feed(request("BYE", call_id, to_tag=to_tag(ok), cseq=2, branch="z9hG4bKbye"))
    assert [m.method for m in sent(actions, TAKER)] == ["CANCEL"]
    errors = settled(actions)
    assert len(errors) == 1 and errors[0] is not None


# --------------------------------------------------------------------------------------- media


def rtp(
    seq: int, ts: int, ssrc: int = 0x1234, payload_type: int = PCMU, payload: bytes | None = None
) -> bytes:
    data = payload if payload is not None else encode(bytes(320), PCMU)
    return RtpPacket(payload_type, seq, ts, ssrc, data).to_bytes()


def test_rtp_is_framed_latched_to_one_ssrc_and_foreign_hosts_dropped() -> None:
    rig = Rig()
    call_id, _ = rig.answered_call()
    leg = rig.core.table.calls[call_id].caller
    frames: list[AudioFrame] = []
    for i in range(5):
        out = rig.core.on_rtp(leg, rtp(i, i * 160), CALLER_RTP, rig.now + i * 0.02)
        frames += [e for e in events(out) if isinstance(e, AudioFrame)]
        # A second stream interleaved with the first is never mixed in.
        assert rig.core.on_rtp(leg, rtp(i, i * 160, ssrc=0x9999), CALLER_RTP, rig.now + i * 0.02) == []
        assert rig.core.on_rtp(leg, rtp(i, i * 160), ("203.0.113.9", 40000), rig.now + i * 0.02) == []
    assert [f.seq for f in frames] == [0, 1, 2, 3, 4]
    assert leg.rtp_latched and leg.remote_rtp == CALLER_RTP and leg.rtp_ssrc == 0x1234
    # After a pause of the latched stream, a new SSRC is taken (the phone restarted its stream).
    out = rig.core.on_rtp(leg, rtp(100, 16000, ssrc=0x9999), CALLER_RTP, rig.now + 3.0)
    assert [type(e) for e in events(out)] == [AudioFrame]


def test_rtp_dtmf_is_reported_once_per_key_press() -> None:
    rig = Rig()
    call_id, _ = rig.answered_call()
    leg = rig.core.table.calls[call_id].caller
    digits: list[str] = []
    for seq, end in enumerate([False, False, True, True]):
        event = build_telephone_event("5", end, 160 * (seq + 1))
        out = rig.core.on_rtp(leg, rtp(seq, 8000, payload_type=101, payload=event), CALLER_RTP, rig.now)
        digits += [e.digit for e in events(out) if isinstance(e, DtmfReceived)]
    assert digits == ["5"]


def test_media_timeout_ends_the_call() -> None:
    rig = Rig(media_timeout_s=2.0)
    rig.answered_call()
    t0 = rig.now
    actions = rig.ticks(t0 + 0.1, t0 + 2.2, 0.1)
    assert [e.reason for e in events(actions) if isinstance(e, CallEnded)] == [EndReason.MEDIA_LOST]


def test_prompt_is_played_a_frame_per_tick_and_answers_a_ringing_call() -> None:
    rig = Rig(answer_after_s=10.0)
    rig.feed(request("INVITE", "c-prompt", body=sdp()))
    prompt = np.arange(400, dtype=np.int16)
    actions = rig.core.play_prompt("c-prompt", prompt, False, rig.now)
    assert statuses(actions) == [200]  # answered to play the prompt
    played = [a for a in rig.ticks(rig.now + 0.02, rig.now + 0.2) if isinstance(a, SendRtp)]
    assert len(played) == 3  # 400 samples = 2.5 frames, not looped, the rest padded with silence
    assert all(a.address == CALLER_RTP for a in played)


def test_a_bug_on_one_request_is_answered_500_after_what_was_already_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig()
    invite = request("INVITE", "c-bug", body=sdp())

    def broken(*_args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("telephony.sip.incoming.decode_invite_location", broken)
    with pytest.raises(RuntimeError) as raised:
        rig.feed(invite)
    actions = rig.core.answer_after_bug(invite, CALLER, raised.value)
    assert statuses(actions) == [500]
    assert "RuntimeError: boom" in (sent(actions)[0].header("Warning") or "")
    assert rig.core.rejected_datagrams == 1
