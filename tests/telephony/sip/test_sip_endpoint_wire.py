"""The endpoint's SIP/RTP behaviour on the wire, driven by raw UDP sockets (exact bytes, fast).

Calls with real user agents (baresip) are in test_sip_endpoint_baresip.py; these cover the protocol corners a
real UA will not produce on demand: lying Via ports, garbage, floods, missing SDP, forks replayed from Asterisk.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sip_events import EventRecorder, wait_until

from telephony.events import (
    AudioFrame,
    CallAnswered,
    CallEnded,
    CallOffered,
    DtmfReceived,
    EndReason,
)
from telephony.sip import SipEndpoint
from telephony.sip.g711 import encode
from telephony.sip.message import SipMessage, parse_message
from telephony.sip.rtp import RtpPacket, parse_rtp
from telephony.sip.sdp import PCMU, parse_sdp

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sip"


class RawSipPeer:
    """A UDP socket that speaks SIP by hand, with its own RTP socket."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.rtp_port = self.rtp.getsockname()[1]
        self.received: list[SipMessage] = []

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()

    def sdp(self, formats: str = "0 8 101") -> bytes:
        return (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP {formats}\r\na=rtpmap:101 telephone-event/8000\r\n"
            "a=rtpmap:96 opus/48000/2\r\na=sendrecv\r\n"
        ).encode()

    def request(
        self,
        method: str,
        number: str,
        call_id: str,
        *,
        body: bytes | None = None,
        via_port: int | None = None,
        rport: bool = True,
        to_tag: str = "",
        branch: str = "z9hG4bKraw1",
        cseq: int = 1,
        extra: tuple[tuple[str, str], ...] = (),
        content_type: str = "application/sdp",
    ) -> bytes:
        via = f"SIP/2.0/UDP 127.0.0.1:{via_port or self.port};branch={branch}" + (";rport" if rport else "")
        headers = [
            ("Via", via),
            ("From", f'"Caller {self.port}" <sip:+42077700{self.port}@127.0.0.1>;tag=from{self.port}'),
            ("To", f"<sip:{number}@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:caller@127.0.0.1:{self.port}>"),
            ("Max-Forwards", "70"),
            *extra,
        ]
        if body:
            headers.append(("Content-Type", content_type))
        return SipMessage(
            method=method, uri=f"sip:{number}@127.0.0.1", headers=tuple(headers), body=body or b""
        ).to_bytes()

    def send(self, data: bytes, endpoint: SipEndpoint) -> None:
        self.sock.sendto(data, ("127.0.0.1", endpoint.address[1]))

    def expect(
        self, status: int | str, timeout: float = 3.0, sock: socket.socket | None = None
    ) -> SipMessage:
        """Read until a response with this status (or a request with this method) arrives."""
        deadline = time.monotonic() + timeout
        sock = sock or self.sock
        while time.monotonic() < deadline:
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                continue
            message = parse_message(data)
            self.received.append(message)
            if message.status == status or message.method == status:
                return message
        raise AssertionError(
            f"no {status} within {timeout}s; got {[m.status or m.method for m in self.received]}"
        )

    def establish(self, endpoint: SipEndpoint, number: str = "155") -> tuple[str, SipMessage]:
        call_id = uuid.uuid4().hex
        self.send(self.request("INVITE", number, call_id, body=self.sdp()), endpoint)
        ok = self.expect(200)
        self.send(self.request("ACK", number, call_id, to_tag=_to_tag(ok), branch="z9hG4bKack"), endpoint)
        return call_id, ok


def _to_tag(message: SipMessage) -> str:
    return (message.header("To") or "").split("tag=")[1]


@pytest.fixture
def peer() -> Iterator[RawSipPeer]:
    raw = RawSipPeer()
    yield raw
    raw.close()


def _tone_packets(seconds: float, ssrc: int = 7) -> list[bytes]:
    samples = (np.sin(np.arange(int(8000 * seconds)) * 2 * np.pi * 440 / 8000) * 9000).astype("<i2")
    payload = encode(samples.tobytes(), PCMU)
    return [
        RtpPacket(PCMU, i, i * 160, ssrc, payload[i * 160 : (i + 1) * 160]).to_bytes()
        for i in range(len(payload) // 160)
    ]


def _rtp_sender(peer: RawSipPeer, remote: tuple[str, int], packets: list[bytes]) -> threading.Thread:
    def run() -> None:
        for packet in packets:
            peer.rtp.sendto(packet, remote)
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _await_rtp_handled(
    peer: RawSipPeer, remote: tuple[str, int], recorder: EventRecorder, call_id: str, timeout: float = 15.0
) -> None:
    """Barrier: a DTMF key press from the caller's stream, sent until reported. RTP on one socket is handled
    in order, so once it is reported every packet sent before it has been handled and its frames delivered."""
    from telephony.sip.rtp import build_telephone_event

    marker = RtpPacket(101, 60000, 0x7FFF0000, 7, build_telephone_event("D", True, 480)).to_bytes()
    deadline = time.monotonic() + timeout
    while not recorder.of(DtmfReceived, call_id):
        if time.monotonic() > deadline:
            raise AssertionError(f"RTP of call {call_id} not handled within {timeout}s")
        peer.rtp.sendto(marker, remote)
        with contextlib.suppress(AssertionError):
            recorder.wait_for(DtmfReceived, call_ref=call_id, timeout=0.2)


def test_options_probe_gets_200_ok(start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer) -> None:
    endpoint = start_endpoint()
    peer.send(peer.request("OPTIONS", "intake", "probe-1"), endpoint)

    ok = peer.expect(200)
    assert "INVITE" in (ok.header("Allow") or "")
    assert ok.call_id == "probe-1"


def test_non_emergency_number_is_rejected_with_404(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    endpoint = start_endpoint()
    peer.send(peer.request("INVITE", "800123456", "wrong-number", body=peer.sdp()), endpoint)

    rejection = peer.expect(404)
    assert "tag=" in (rejection.header("To") or "")
    assert recorder.of(CallOffered) == []


@pytest.mark.parametrize(
    ("body", "why"),
    [(None, "no SDP offer"), (b"opus", "no PCMU/PCMA")],
    ids=["without-sdp", "only-unknown-codecs"],
)
def test_invite_without_usable_audio_gets_488(
    start_endpoint: Callable[..., SipEndpoint],
    peer: RawSipPeer,
    recorder: EventRecorder,
    body: bytes | None,
    why: str,
) -> None:
    endpoint = start_endpoint()
    offer = peer.sdp("96 9") if body else None
    peer.send(peer.request("INVITE", "112", "no-audio", body=offer), endpoint)

    response = peer.expect(488)
    assert why in (response.header("Warning") or "")
    # An emergency call that cannot carry audio still leaves a record (and a number to call back).
    [ended] = recorder.wait_for(CallEnded, call_ref="no-audio")
    assert ended.reason is EndReason.REJECTED and why in ended.detail
    assert len(recorder.of(CallOffered, "no-audio")) == 1
    peer.send(peer.request("INVITE", "112", "no-audio", body=offer), endpoint)  # retransmission
    assert peer.expect(488).header("Warning") == response.header("Warning")
    assert len(recorder.of(CallOffered, "no-audio")) == 1


def test_replies_go_to_each_callers_via_address(
    start_endpoint: Callable[..., SipEndpoint], recorder: EventRecorder
) -> None:
    endpoint = start_endpoint()
    peers = [RawSipPeer() for _ in range(3)]
    try:
        # Without rport the reply must go to the Via port; with rport to the packet's source port even when the
        # Via port is a lie (a NAT rewrote the source): never to one configured server address.
        natted = RawSipPeer()
        peers.append(natted)
        for index, raw in enumerate(peers[:3]):
            raw.send(raw.request("INVITE", "150", f"via-{index}", body=raw.sdp(), rport=False), endpoint)
        natted.send(natted.request("INVITE", "158", "via-nat", body=natted.sdp(), via_port=9), endpoint)

        for index, raw in enumerate(peers[:3]):
            assert raw.expect(200).call_id == f"via-{index}"
        assert natted.expect(200).call_id == "via-nat"
        assert len(recorder.wait_for(CallAnswered, 4)) == 4
    finally:
        for raw in peers:
            raw.close()


def test_asterisk_media_fork_invite_is_offered_with_fork_of(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    endpoint = start_endpoint()
    recorded = (FIXTURES / "asterisk-invite-to-intake-with-header.sip").read_bytes()
    peer.send(
        recorded.replace(b"127.0.0.1:5080;branch", f"127.0.0.1:{peer.port};branch".encode(), 1), endpoint
    )

    peer.expect(200)
    offered = recorder.wait_for(CallOffered)[0]
    assert offered.fork_of == "SIP/127.0.0.1-00000001"
    assert offered.dialled == "u5060"
    assert offered.caller == "fork"
    assert offered.headers["User-Agent"] == "Asterisk PBX 20.20.1"


def test_plain_asterisk_fork_without_header_dials_a_non_emergency_user_and_is_rejected(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer
) -> None:
    endpoint = start_endpoint()
    recorded = (FIXTURES / "asterisk-invite-to-intake.sip").read_bytes()
    peer.send(
        recorded.replace(b"127.0.0.1:5080;branch", f"127.0.0.1:{peer.port};branch".encode(), 1), endpoint
    )
    peer.expect(404)


def test_retransmitted_invite_is_answered_again_but_offered_once(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    endpoint = start_endpoint()
    invite = peer.request("INVITE", "155", "retrans", body=peer.sdp())
    peer.send(invite, endpoint)
    first = peer.expect(200)
    peer.send(invite, endpoint)
    second = peer.expect(200)

    assert first.body == second.body
    # Barrier: the call's CallEnded is queued after anything the second INVITE could have emitted.
    peer.send(peer.request("ACK", "155", "retrans", to_tag=_to_tag(first), branch="z9hG4bKack"), endpoint)
    peer.send(
        peer.request("BYE", "155", "retrans", to_tag=_to_tag(first), cseq=2, branch="z9hG4bKb"), endpoint
    )
    recorder.wait_for(CallEnded, call_ref="retrans")
    assert len(recorder.of(CallOffered)) == 1


def test_cancel_before_answer_gets_487_and_the_call_ends_abandoned_never_answered(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    endpoint = start_endpoint(answer_after_s=0.6)
    invited_at = time.monotonic()
    peer.send(peer.request("INVITE", "158", "cancel-raw", body=peer.sdp()), endpoint)
    peer.expect(180)
    peer.send(peer.request("CANCEL", "158", "cancel-raw"), endpoint)

    peer.expect(200)
    terminated = peer.expect(487)
    assert terminated.cseq == (1, "INVITE")
    ended = recorder.wait_for(CallEnded)[0]
    assert ended.reason is EndReason.ABANDONED
    # Past the ring time: the answer timer must not fire for a cancelled call. Barrier: the endpoint's
    # timers ran beyond the ring time, then stop() delivers every event it emitted.
    ring_over = invited_at + 0.6
    wait_until(lambda: endpoint.timers_ran_until > ring_over, timeout=10)
    endpoint.stop()
    assert recorder.of(CallAnswered) == []
    assert all(m.status != 200 or m.cseq[1] != "INVITE" for m in peer.received)
    assert recorder.sequence("cancel-raw") == ["CallOffered", "CallEnded"]


def test_sip_info_dtmf_is_reported(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    endpoint = start_endpoint()
    call_id, ok = peer.establish(endpoint)
    for cseq, (content_type, body) in enumerate(
        [("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"), ("application/dtmf", b"#")], start=2
    ):
        peer.send(
            peer.request(
                "INFO",
                "155",
                call_id,
                body=body,
                to_tag=_to_tag(ok),
                cseq=cseq,
                content_type=content_type,
                branch=f"z9hG4bKinfo{cseq}",
            ),
            endpoint,
        )
        peer.expect(200)

    digits = [e.digit for e in recorder.wait_for(DtmfReceived, 2)]
    assert digits == ["5", "#"]


def test_bye_for_unknown_call_gets_481(start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer) -> None:
    endpoint = start_endpoint()
    peer.send(peer.request("BYE", "155", "never-existed", to_tag="x"), endpoint)
    peer.expect(481)


def test_call_in_progress_keeps_receiving_frames_while_garbage_and_floods_arrive(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    endpoint = start_endpoint()
    call_id, ok = peer.establish(endpoint)
    answer = parse_sdp(ok.body).audio_address()
    assert answer is not None
    sender = _rtp_sender(peer, ("127.0.0.1", answer[1]), _tone_packets(2.0))

    attacker = RawSipPeer()
    rng = np.random.default_rng(7)
    try:
        huge = peer.request("INVITE", "112", "huge", body=peer.sdp(), extra=(("X-Huge", "a" * 30_000),))
        for index in range(300):
            attacker.sock.sendto(rng.bytes(int(rng.integers(1, 1400))), ("127.0.0.1", endpoint.address[1]))
            attacker.rtp.sendto(rng.bytes(int(rng.integers(1, 300))), ("127.0.0.1", answer[1]))
            if index % 50 == 0:
                attacker.sock.sendto(huge, ("127.0.0.1", endpoint.address[1]))
                attacker.sock.sendto(os.urandom(60_000), ("127.0.0.1", endpoint.address[1]))
        # An RTP flood from the caller's own address: rate-limited, not a crash.
        flood = _tone_packets(0.02, ssrc=99)[0]
        for _ in range(3000):
            peer.rtp.sendto(flood, ("127.0.0.1", answer[1]))
        sender.join()
    finally:
        attacker.close()

    _await_rtp_handled(peer, ("127.0.0.1", answer[1]), recorder, call_id)
    frames = recorder.of(AudioFrame, call_id)
    # The 2 s tone is 100 packets; the flood (another SSRC) is neither mixed into the caller's audio nor
    # allowed to use up its packet budget, so only what the kernel dropped while the flood filled the
    # socket buffer is missing, however busy the machine.
    assert 90 <= len(frames) <= 105
    assert endpoint.rejected_datagrams >= 300
    assert call_id in endpoint.active_calls()

    peer.send(peer.request("BYE", "155", call_id, to_tag=_to_tag(ok), cseq=2, branch="z9hG4bKbye"), endpoint)
    peer.expect(200)
    assert recorder.wait_for(CallEnded, call_ref=call_id)[0].reason is EndReason.CALLER_HANGUP
    assert recorder.of(CallOffered, "huge") == []


def test_silent_caller_is_ended_as_media_lost_with_bye(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    endpoint = start_endpoint(media_timeout_s=0.5)
    call_id, _ = peer.establish(endpoint)

    peer.expect("BYE", timeout=3)
    assert recorder.wait_for(CallEnded, call_ref=call_id)[0].reason is EndReason.MEDIA_LOST


def test_unacknowledged_answer_is_retransmitted_then_ended(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    endpoint = start_endpoint(ack_timeout_s=1.2)
    peer.send(peer.request("INVITE", "155", "no-ack", body=peer.sdp()), endpoint)
    peer.expect(200)
    peer.expect(200, timeout=1.5)  # retransmitted after T1

    ended = recorder.wait_for(CallEnded, call_ref="no-ack", timeout=5)[0]
    assert ended.reason is EndReason.ERROR


def test_intake_hangup_sends_bye_and_rejects_ringing_calls(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    endpoint = start_endpoint()
    call_id, _ = peer.establish(endpoint)
    endpoint.hangup_sync(call_id)
    peer.expect("BYE")
    assert recorder.wait_for(CallEnded, call_ref=call_id)[0].reason is EndReason.TAKER_HANGUP


def test_rfc2833_telephone_events_are_reported_once_per_key_press(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    endpoint = start_endpoint()
    call_id, ok = peer.establish(endpoint)
    answer = parse_sdp(ok.body).audio_address()
    assert answer is not None
    from telephony.sip.rtp import build_telephone_event

    seq = 0
    for digit, timestamp in (("1", 1000), ("2", 3000)):
        for duration, end in ((160, False), (320, False), (480, True), (480, True), (480, True)):
            packet = RtpPacket(101, seq, timestamp, 5, build_telephone_event(digit, end, duration))
            peer.rtp.sendto(packet.to_bytes(), ("127.0.0.1", answer[1]))
            seq += 1
            time.sleep(0.005)

    assert [e.digit for e in recorder.wait_for(DtmfReceived, 2, call_ref=call_id)] == ["1", "2"]
    # Barrier: a last key press; RTP on one socket is handled in order, so once "9" is reported every
    # retransmitted end packet before it has been handled (and must not have been reported again).
    for duration, end in ((160, False), (480, True)):
        packet = RtpPacket(101, seq, 5000, 5, build_telephone_event("9", end, duration))
        peer.rtp.sendto(packet.to_bytes(), ("127.0.0.1", answer[1]))
        seq += 1
    assert [e.digit for e in recorder.wait_for(DtmfReceived, 3, call_ref=call_id)] == ["1", "2", "9"]


def test_prompt_is_sent_as_rtp_in_the_negotiated_codec(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer
) -> None:
    endpoint = start_endpoint()
    call_id = "prompt-pcma"
    peer.send(peer.request("INVITE", "155", call_id, body=peer.sdp("8 0 101")), endpoint)
    ok = peer.expect(200)
    assert parse_sdp(ok.body).media[0].formats[0] == "8"
    tone = (np.sin(np.arange(1600) * 2 * np.pi * 500 / 8000) * 10000).astype("<i2")
    endpoint.play_prompt_sync(call_id, tone.tobytes(), 8000, loop=False)

    packets: list[RtpPacket] = []
    deadline = time.monotonic() + 2
    while len(packets) < 10 and time.monotonic() < deadline:
        try:
            packets.append(parse_rtp(peer.rtp.recvfrom(2048)[0]))
        except TimeoutError:
            continue
    assert len(packets) == 10
    assert {p.payload_type for p in packets} == {8}
    assert packets[0].payload == encode(tone[:160].tobytes(), 8)


def _answer_invite(
    taker: RawSipPeer, invite: SipMessage, status: int, reason: str, body: bytes = b""
) -> None:
    headers = [("Via", v) for v in invite.header_values("Via")]
    headers += [
        ("From", invite.header("From") or ""),
        ("To", (invite.header("To") or "") + ";tag=taker1"),
        ("Call-ID", invite.call_id),
        ("CSeq", invite.header("CSeq") or ""),
        ("Contact", f"<sip:taker@127.0.0.1:{taker.port}>"),
    ]
    if body:
        headers.append(("Content-Type", "application/sdp"))
    response = SipMessage(status=status, reason=reason, headers=tuple(headers), body=body)
    via_host_port = invite.header_values("Via")[0].split()[1].split(";")[0]
    host, port = via_host_port.split(":")
    taker.sock.sendto(response.to_bytes(), (host, int(port)))


def test_busy_taker_phone_raises_taker_unavailable_and_the_call_stays_up(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    from telephony.sip import TakerUnavailableError

    endpoint = start_endpoint()
    call_id, _ = peer.establish(endpoint)
    taker = RawSipPeer()
    try:
        future = endpoint.begin_connect_to_taker(call_id, f"sip:taker@127.0.0.1:{taker.port}", 1)
        invite = taker.expect("INVITE")
        assert invite.header("Priority") == "emergency"
        assert invite.header("X-IZS-Call-Ref") == call_id
        _answer_invite(taker, invite, 486, "Busy Here")
        with pytest.raises(TakerUnavailableError) as caught:
            future.result(timeout=3)
        assert caught.value.status == 486
        ack = taker.expect("ACK")
        assert ack.cseq == (1, "ACK")
    finally:
        taker.close()
    assert call_id in endpoint.active_calls()
    assert recorder.of(CallEnded) == []


def test_taker_that_never_answers_is_cancelled_after_the_timeout(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer
) -> None:
    from telephony.sip import TakerUnavailableError

    endpoint = start_endpoint(taker_answer_timeout_s=0.5)
    call_id, _ = peer.establish(endpoint)
    taker = RawSipPeer()
    try:
        future = endpoint.begin_connect_to_taker(call_id, f"sip:taker@127.0.0.1:{taker.port}", 3)
        invite = taker.expect("INVITE")
        assert invite.header("Priority") == "normal"
        _answer_invite(taker, invite, 180, "Ringing")
        with pytest.raises(TakerUnavailableError):
            future.result(timeout=3)
        cancel = taker.expect("CANCEL")
        assert cancel.header_values("Via")[0] == invite.header_values("Via")[0]  # same transaction
        _answer_invite(taker, invite, 487, "Request Terminated")
        assert taker.expect("ACK").cseq == (1, "ACK")  # the late 487 is still acknowledged
    finally:
        taker.close()
    assert call_id in endpoint.active_calls()


def test_taker_hangup_ends_the_call_and_hangs_up_the_caller(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    from telephony.events import CallConnected

    endpoint = start_endpoint()
    call_id, _ = peer.establish(endpoint)
    taker = RawSipPeer()
    try:
        future = endpoint.begin_connect_to_taker(call_id, f"sip:taker@127.0.0.1:{taker.port}", 1)
        invite = taker.expect("INVITE")
        _answer_invite(taker, invite, 200, "OK", taker.sdp("0 101"))
        future.result(timeout=3)
        taker.expect("ACK")
        assert recorder.wait_for(CallConnected)[0].taker == f"sip:taker@127.0.0.1:{taker.port}"
        bye = SipMessage(
            method="BYE",
            uri=f"sip:intake@127.0.0.1:{endpoint.address[1]}",
            headers=(
                ("Via", f"SIP/2.0/UDP 127.0.0.1:{taker.port};branch=z9hG4bKtbye;rport"),
                ("From", (invite.header("To") or "") + ";tag=taker1"),
                ("To", invite.header("From") or ""),
                ("Call-ID", invite.call_id),
                ("CSeq", "2 BYE"),
            ),
        )
        taker.send(bye.to_bytes(), endpoint)
        taker.expect(200)
    finally:
        taker.close()
    peer.expect("BYE")
    assert recorder.wait_for(CallEnded, call_ref=call_id)[0].reason is EndReason.TAKER_HANGUP


def test_slow_event_sink_does_not_delay_answers(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer
) -> None:
    from telephony.sip import SipEndpoint as Endpoint
    from telephony.sip import SipEndpointConfig

    def slow_sink(event: object) -> None:
        time.sleep(0.5)

    endpoint = Endpoint(SipEndpointConfig(host="127.0.0.1", port=0), slow_sink)
    endpoint.start()
    try:
        started = time.monotonic()
        peer.send(peer.request("INVITE", "155", "slow-sink", body=peer.sdp()), endpoint)
        peer.expect(200)
        assert time.monotonic() - started < 0.4  # answered while the sink still sleeps on AdapterStatus
    finally:
        endpoint.stop()


def test_invite_with_pidf_lo_location_is_offered_with_the_fix(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    from test_sip_multipart_location import PIDF

    endpoint = start_endpoint()
    boundary = "loc-boundary"
    body = (
        f"--{boundary}\r\nContent-Type: application/sdp\r\n\r\n".encode()
        + peer.sdp()
        + f"\r\n--{boundary}\r\nContent-Type: application/pidf+xml\r\nContent-ID: <fix@caller>\r\n\r\n".encode()
        + PIDF
        + f"\r\n--{boundary}--\r\n".encode()
    )
    invite = peer.request(
        "INVITE",
        "112",
        "with-location",
        body=body,
        content_type=f'multipart/mixed; boundary="{boundary}"',
        extra=(("Geolocation", "<cid:fix@caller>"), ("Geolocation-Routing", "no")),
    )
    peer.send(
        invite.replace(b"INVITE sip:112@127.0.0.1 SIP/2.0", b"INVITE urn:service:sos SIP/2.0"), endpoint
    )

    peer.expect(200)
    offered = recorder.wait_for(CallOffered)[0]
    assert offered.dialled == "112"  # RFC 5031 urn:service:sos
    assert offered.headers["Geolocation-Body"] == PIDF.decode()
    assert offered.location is not None
    assert (round(offered.location.lat, 4), round(offered.location.lon, 4)) == (50.2306, 12.8711)


def test_reinvite_for_an_unknown_dialog_gets_481(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer
) -> None:
    endpoint = start_endpoint()
    peer.send(peer.request("INVITE", "155", "stale-dialog", body=peer.sdp(), to_tag="gone"), endpoint)
    peer.expect(481)


def test_mutated_invites_over_udp_never_break_the_endpoint(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, caplog: pytest.LogCaptureFixture
) -> None:
    import random

    endpoint = start_endpoint(max_calls=50)
    template = (FIXTURES / "baresip-invite.sip").read_bytes()
    rng = random.Random(1155)
    for index in range(600):
        wire = bytearray(template.replace(b"dcec9b6d868ba38c", f"fuzz-{index % 40}".encode()))
        for _ in range(rng.randint(1, 6)):
            choice = rng.random()
            position = rng.randrange(len(wire))
            if choice < 0.5:
                wire[position] = rng.randrange(256)
            elif choice < 0.8:
                del wire[position : position + rng.randint(1, 20)]
            else:
                wire[position:position] = rng.choice([b":", b"\r\n", b";", b"<", b"@", b" ", b"\x00", b"="])
        peer.sock.sendto(bytes(wire), ("127.0.0.1", endpoint.address[1]))
    # Still alive: OPTIONS is answered. Sent again every second as a UAC retransmits a request over UDP
    # (RFC 3261 Timer E): under load the kernel drops datagrams of the burst above on either side.
    deadline = time.monotonic() + 30.0
    answered = False
    while not answered and time.monotonic() < deadline:
        peer.send(peer.request("OPTIONS", "intake", "still-alive"), endpoint)
        window = time.monotonic() + 1.0
        with contextlib.suppress(AssertionError):
            while not answered and time.monotonic() < window:
                answered = (
                    peer.expect(200, timeout=max(0.05, window - time.monotonic())).call_id == "still-alive"
                )
    assert answered, "the endpoint no longer answers OPTIONS after the mutated INVITEs"
    assert [r for r in caplog.records if "unexpected error" in r.getMessage()] == []


CIRCLE_AND_CIVIC = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"
  xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0"
  xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr" entity="pres:caller@example.cz">
 <tuple id="t1"><status><gp:geopriv><gp:location-info>
  <gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>50.1817 12.6402</gml:pos>
   <gs:radius uom="urn:ogc:def:uom:EPSG::9001">85</gs:radius></gs:Circle>
  <ca:civicAddress><ca:country>CZ</ca:country><ca:A1>Karlovarsk\xc3\xbd kraj</ca:A1><ca:A3>Sokolov</ca:A3>
   <ca:RD>Hlavn\xc3\xad</ca:RD><ca:HNO>12</ca:HNO><ca:PC>35601</ca:PC></ca:civicAddress>
 </gp:location-info></gp:geopriv></status></tuple></presence>"""


def test_circle_and_civic_address_in_pidf_lo_become_location_and_location_reported(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    from telephony.events import LocationReported

    endpoint = start_endpoint()
    body = (
        b"--b1\r\nContent-Type: application/sdp\r\n\r\n"
        + peer.sdp()
        + b"\r\n--b1\r\nContent-Type: application/pidf+xml\r\nContent-ID: <civic@caller>\r\n\r\n"
        + CIRCLE_AND_CIVIC
        + b"\r\n--b1--\r\n"
    )
    peer.send(
        peer.request(
            "INVITE",
            "150",
            "circle-civic",
            body=body,
            content_type="multipart/mixed;boundary=b1",
            extra=(("Geolocation", "<cid:civic@caller>"),),
        ),
        endpoint,
    )
    peer.expect(200)

    offered = recorder.wait_for(CallOffered)[0]
    fixes = [offered.location] + [e.fix for e in recorder.wait_for(LocationReported, call_ref="circle-civic")]
    circle = next(f for f in fixes if f is not None and f.radius_m is not None)
    civic = next(f for f in fixes if f is not None and f.civic)
    assert (round(circle.lat, 4), round(circle.lon, 4), circle.radius_m) == (50.1817, 12.6402, 85.0)
    assert civic.civic["A3"] == "Sokolov" and civic.civic["HNO"] == "12"


async def test_cancelling_connect_to_taker_cancels_the_ringing_phone(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer
) -> None:
    import asyncio

    endpoint = start_endpoint()
    call_id, _ = await asyncio.to_thread(peer.establish, endpoint)
    taker = RawSipPeer()
    try:
        task = asyncio.create_task(endpoint.connect_to_taker(call_id, f"sip:taker@127.0.0.1:{taker.port}", 2))
        invite = await asyncio.to_thread(taker.expect, "INVITE")
        assert invite.header("Priority") == "urgent"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(taker.expect, "CANCEL")
    finally:
        taker.close()
    assert call_id in endpoint.active_calls()


def test_sink_backlog_drops_audio_frames_but_never_call_events(peer: RawSipPeer) -> None:
    from sip_events import EventRecorder as Recorder

    from telephony.sip import SipEndpoint as Endpoint
    from telephony.sip import SipEndpointConfig

    recorded = Recorder()

    def slow_sink(event: object) -> None:
        time.sleep(0.01)
        recorded(event)  # type: ignore[arg-type]

    endpoint = Endpoint(SipEndpointConfig(host="127.0.0.1", port=0, max_event_backlog=5), slow_sink)
    endpoint.start()
    try:
        call_id, ok = peer.establish(endpoint)
        answer = parse_sdp(ok.body).audio_address()
        assert answer is not None
        for packet in _tone_packets(1.0):
            peer.rtp.sendto(packet, ("127.0.0.1", answer[1]))
            time.sleep(0.002)
        peer.send(
            peer.request("BYE", "155", call_id, to_tag=_to_tag(ok), cseq=2, branch="z9hG4bKbye2"), endpoint
        )
        peer.expect(200)
        assert recorded.wait_for(CallEnded, timeout=10)[0].reason is EndReason.CALLER_HANGUP
    finally:
        endpoint.stop()
    assert endpoint.dropped_frames > 0
    assert recorded.sequence(call_id)[:2] == ["CallOffered", "CallAnswered"]


def test_ecall_invite_carries_the_vehicle_position_and_facts_from_its_msd(
    start_endpoint: Callable[..., SipEndpoint], peer: RawSipPeer, recorder: EventRecorder
) -> None:
    """RFC 8147: an eCall's MSD travels as a body part of the INVITE; the endpoint decodes it (EN 15722)."""
    from datetime import UTC, datetime

    from telephony.location.ecall import encode_msd

    msd = encode_msd(
        {
            "msdStructure": {
                "messageIdentifier": 1,
                "control": {
                    "automaticActivation": True,
                    "testCall": False,
                    "positionCanBeTrusted": True,
                    "vehicleType": "passengerVehicleClassM1",
                },
                "vehicleIdentificationNumber": {
                    "isowmi": "TMB",
                    "isovds": "JJ7NE1",
                    "isovisModelyear": "L",
                    "isovisSeqPlant": "0123456",
                },
                "vehiclePropulsionStorageType": {"dieselTankPresent": True},
                "timestamp": int(datetime(2026, 11, 27, 10, 47, 2, tzinfo=UTC).timestamp()),
                "vehicleLocation": {
                    "positionLatitude": round(50.23112 * 3_600_000),
                    "positionLongitude": round(12.87234 * 3_600_000),
                },
                "vehicleDirection": 45,
                "numberOfPassengers": 3,
            }
        },
        version=2,
    )
    endpoint = start_endpoint()
    boundary = "ecall-boundary"
    body = (
        f"--{boundary}\r\nContent-Type: application/sdp\r\n\r\n".encode()
        + peer.sdp()
        + f"\r\n--{boundary}\r\nContent-Type: application/EmergencyCallData.eCall.MSD\r\n"
        "Content-Disposition: by-reference\r\nContent-ID: <msd@car>\r\n\r\n".encode()
        + msd
        + f"\r\n--{boundary}--\r\n".encode()
    )
    invite = peer.request(
        "INVITE",
        "112",
        "ecall",
        body=body,
        content_type=f'multipart/mixed; boundary="{boundary}"',
        extra=(("Call-Info", "<cid:msd@car>;purpose=EmergencyCallData.eCall.MSD"),),
    )
    peer.send(invite, endpoint)

    peer.expect(200)
    offered = recorder.wait_for(CallOffered)[0]
    assert offered.location is not None and offered.location.source == "ecall"
    assert (round(offered.location.lat, 4), round(offered.location.lon, 4)) == (50.2311, 12.8723)
    facts = offered.ecall
    assert facts is not None and facts.decoded
    assert facts.vin == "TMBJJ7NE1L0123456"
    assert facts.automatic_activation is True
    assert facts.passengers == 3
    assert facts.msd_hex == msd.hex()  # the raw MSD stays with the call for the record
    assert "eCall-Facts" not in offered.headers
