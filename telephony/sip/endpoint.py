"""The SIP intake endpoint: a registrar-less SIP UAS (and UAC towards call-taker phones) with G.711 RTP.

Threads (all owned by one SipEndpoint, none at import time):
- ``sip``: receives SIP datagrams, runs the INVITE/CANCEL/ACK/BYE/OPTIONS/INFO server side and the responses
  of our own client transactions (taker INVITE, BYE).
- ``media``: one selector over every call's RTP socket plus a 20 ms tick that answers calls whose ring time is
  over, retransmits unacknowledged 2xx/requests, plays prompts and watches media timeouts.
- ``events``: hands events to the EventSink from a queue, so a slow sink never stalls SIP or RTP.

Why not pyVoIP's VoIPPhone: see docs/telephony-sip.md (measured defects; pyVoIP's parser drops baresip's
INVITEs, replies go to the configured server instead of the Via address, CANCEL leads to an answered call, and
the package imports the removed-in-3.13 ``audioop``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import queue
import random
import selectors
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from telephony.events import (
    AdapterStatus,
    AudioFrame,
    CallAnswered,
    CallConnected,
    CallEnded,
    CallOffered,
    CallSource,
    DtmfReceived,
    EndReason,
    Leg,
    LocationReported,
    TelephonyEvent,
)
from telephony.ports import EventSink
from telephony.sip import g711
from telephony.sip.config import SipEndpointConfig
from telephony.sip.errors import (
    CallNotFoundError,
    EndpointNotRunningError,
    ParseError,
    TakerUnavailableError,
)
from telephony.sip.location import decode_invite_location
from telephony.sip.message import (
    NameAddr,
    SipMessage,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    response_address,
    salvage_request,
)
from telephony.sip.multipart import find_part, split_body
from telephony.sip.rtp import RtpPacket, parse_rtp, parse_telephone_event
from telephony.sip.sdp import (
    PCMA,
    PCMU,
    NegotiatedMedia,
    audio_session,
    build_sdp,
    negotiate_audio,
    parse_sdp,
)

log = logging.getLogger(__name__)

ADAPTER_NAME = "sip"
SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = FRAME_SAMPLES * 2
TICK_S = 0.020
T1_S = 0.5
T2_S = 4.0
TERMINATED_KEEP_S = 32.0  # keep ended calls this long to absorb retransmitted INVITE/CANCEL/BYE/ACK
EVENT_PAYLOAD_TYPE = 101
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
MAX_GAP_FILL_SAMPLES = SAMPLE_RATE  # fill up to 1 s of lost packets with silence, resync beyond


class _State:
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass(slots=True)
class _RetransmittedMessage:
    """A message sent again at T1, 2T1, ... (capped at T2) until stopped or its deadline passes."""

    data: bytes
    address: tuple[str, int]
    next_at: float
    interval: float
    deadline: float
    on_timeout: str = ""  # what to do at the deadline: "" (nothing) or "no-ack"


@dataclass(eq=False, slots=True)
class _MediaLeg:
    """One side of a call: a SIP dialog and its RTP socket."""

    kind: Leg
    call_id: str
    rtp_socket: socket.socket
    local_tag: str
    remote_tag: str = ""
    local_uri: str = ""  # our From (UAC) / To (UAS) name-addr without tag
    remote_uri: str = ""
    remote_target: str = ""  # Request-URI for in-dialog requests (the peer's Contact)
    signal_address: tuple[str, int] = ("127.0.0.1", 5060)
    local_cseq: int = 1
    media: NegotiatedMedia | None = None
    remote_rtp: tuple[str, int] | None = None
    allowed_rtp_hosts: set[str] = field(default_factory=set)
    rtp_latched: bool = False
    rtp_ssrc: int | None = None  # the stream the caller's audio comes in; a second one is never mixed in
    rtp_ssrc_last_rx: float = 0.0
    out_ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    out_seq: int = field(default_factory=lambda: random.getrandbits(16))
    out_ts: int = field(default_factory=lambda: random.getrandbits(32))
    rx_buffer: bytearray = field(default_factory=bytearray)
    rx_expected_ts: int | None = None
    frame_seq: int = 0
    last_rx: float = field(default_factory=time.monotonic)
    last_dtmf_ts: int | None = None
    window_start: float = 0.0
    window_packets: int = 0
    dropped_packets: int = 0
    established: bool = False
    invite_branch: str = ""  # UAC legs: our INVITE's branch, reused by CANCEL and the non-2xx ACK
    invite_uri: str = ""

    @property
    def local_port(self) -> int:
        port: int = self.rtp_socket.getsockname()[1]
        return port


@dataclass(eq=False, slots=True)
class _Call:
    call_ref: str
    caller: _MediaLeg
    invite: SipMessage
    invite_source: tuple[str, int]
    invite_reply_address: tuple[str, int]
    state: str = _State.RINGING
    answer_at: float | None = None
    last_invite_response: bytes = b""
    invite_acked: bool = False
    taker: _MediaLeg | None = None
    taker_uri: str = ""
    taker_address: tuple[str, int] | None = None
    taker_invite: bytes = b""
    taker_future: concurrent.futures.Future[None] | None = None
    taker_deadline: float = 0.0
    prompt: np.ndarray[Any, np.dtype[np.int16]] | None = None
    prompt_pos: int = 0
    prompt_loop: bool = False
    ended_at: float = 0.0


class SipEndpoint:
    """Registrar-less SIP intake endpoint. Implements ``telephony.ports.CallControl``.

    ``start()``/``stop()`` are synchronous (start returns once the SIP socket is bound). The CallControl
    commands are ``async`` wrappers around thread-safe synchronous methods (``play_prompt_sync``,
    ``begin_connect_to_taker``, ``hangup_sync``) that never block the event loop.
    """

    def __init__(self, config: SipEndpointConfig, sink: EventSink) -> None:
        self._config = config
        self._sink = sink
        self._host = config.advertised_host()
        self._lock = threading.RLock()
        self._calls: dict[str, _Call] = {}  # by the caller leg's Call-ID (== call_ref)
        self._taker_calls: dict[str, _Call] = {}  # by the taker leg's Call-ID
        self._terminated: dict[str, _Call] = {}
        # Emergency INVITEs refused before a dialog existed (bad body, no usable audio, no RTP port): their
        # final answer, resent to a retransmission instead of offering the call a second time.
        self._refused: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        # Taker legs we gave up on before they answered: their late 487/2xx still need an ACK (and a BYE).
        self._abandoned_takers: dict[str, tuple[_MediaLeg, float]] = {}
        self._retransmits: dict[str, _RetransmittedMessage] = {}  # key: "<call-id>/<what>"
        self._events: queue.SimpleQueue[TelephonyEvent | None] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._media_commands: queue.SimpleQueue[tuple[str, _MediaLeg]] = queue.SimpleQueue()
        self._sip_socket: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._running = threading.Event()
        self._rejected_datagrams = 0
        self._dropped_frames = 0

    # ----------------------------------------------------------------------------------- lifecycle

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the SIP socket is bound to."""
        if self._sip_socket is None:
            raise EndpointNotRunningError("SIP endpoint not started")
        host, port = self._sip_socket.getsockname()[:2]
        return host, port

    @property
    def rejected_datagrams(self) -> int:
        return self._rejected_datagrams

    def active_calls(self) -> list[str]:
        with self._lock:
            return [ref for ref, call in self._calls.items() if call.state != _State.ENDED]

    def start(self) -> None:
        if self._running.is_set():
            return
        sip_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sip_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:
            sip_socket.bind((self._config.host, self._config.port))
        except OSError as exc:
            sip_socket.close()
            raise EndpointNotRunningError(
                f"cannot bind SIP socket {self._config.host}:{self._config.port}: {exc}"
            ) from exc
        sip_socket.settimeout(0.2)
        self._sip_socket = sip_socket
        self._running.set()
        for name, target in (
            ("events", self._dispatch_loop),
            ("sip", self._sip_loop),
            ("media", self._media_loop),
        ):
            thread = threading.Thread(target=target, name=f"sip-endpoint-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        host, port = self.address
        log.info("SIP endpoint listening on %s:%d (UDP)", host, port)
        self._emit(AdapterStatus(ADAPTER_NAME, True, f"listening on udp {host}:{port}"))

    def stop(self) -> None:
        if not self._running.is_set():
            return
        with self._lock:
            calls = list(self._calls.values())
        for call in calls:
            self._terminate(call, EndReason.ERROR, "SIP endpoint stopping", hang_up=True)
        self._emit(AdapterStatus(ADAPTER_NAME, False, "stopped"))
        self._running.clear()
        self._events.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        if self._sip_socket is not None:
            self._sip_socket.close()
        self._selector.close()

    def __enter__(self) -> SipEndpoint:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ CallControl

    async def play_prompt(self, call_ref: str, pcm: bytes, sample_rate: int, loop: bool = True) -> None:
        self.play_prompt_sync(call_ref, pcm, sample_rate, loop)

    async def connect_to_taker(self, call_ref: str, taker_uri: str, priority: int) -> None:
        """Call the taker's phone; returns when it answered and audio is relayed both ways.

        Raises TakerUnavailableError when the phone rejects, does not answer in time or the caller hangs up.
        """
        begin = asyncio.ensure_future(
            asyncio.to_thread(self.begin_connect_to_taker, call_ref, taker_uri, priority)
        )
        try:
            future = await asyncio.shield(begin)
        except asyncio.CancelledError:
            # Cancelled while the INVITE was being sent: give up as soon as it is out.
            begin.add_done_callback(lambda done: self._give_up_started_taker(call_ref, done))
            raise
        try:
            await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            self._give_up_taker(call_ref, future)  # intake stopped waiting: do not leave the phone ringing
            raise

    def _give_up_started_taker(
        self, call_ref: str, begin: asyncio.Future[concurrent.futures.Future[None]]
    ) -> None:
        if not begin.cancelled() and begin.exception() is None:
            self._give_up_taker(call_ref, begin.result())

    def _give_up_taker(self, call_ref: str, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            call = self._calls.get(call_ref)
            taker = call.taker if call is not None and call.taker_future is future else None
            if call is not None and taker is not None and not taker.established:
                self._drop_taker(call, "connect_to_taker cancelled by intake", cancel=True)

    async def hangup(self, call_ref: str) -> None:
        self.hangup_sync(call_ref)

    def play_prompt_sync(self, call_ref: str, pcm: bytes, sample_rate: int, loop: bool = True) -> None:
        """Play 16-bit mono PCM to the caller in the call's codec (answering it first if still ringing).

        Empty ``pcm`` stops the prompt. The prompt is muted while a call taker is connected.
        """
        samples = _resample_to_8k(pcm, sample_rate)
        with self._lock:
            call = self._require_call(call_ref)
            if call.state == _State.RINGING:
                self._answer(call)
            call.prompt = samples if len(samples) else None
            call.prompt_pos = 0
            call.prompt_loop = loop

    def hangup_sync(self, call_ref: str) -> None:
        with self._lock:
            call = self._require_call(call_ref)
            if call.state == _State.RINGING:
                self._terminate(call, EndReason.REJECTED, "rejected by intake", hang_up=True)
            else:
                self._terminate(call, EndReason.TAKER_HANGUP, "hangup requested by intake", hang_up=True)

    def begin_connect_to_taker(
        self, call_ref: str, taker_uri: str, priority: int
    ) -> concurrent.futures.Future[None]:
        """Send the INVITE to the taker's phone; the future completes when it answers (or fails)."""
        uri = parse_uri(taker_uri)
        port = uri.port or 5060
        try:
            address = socket.getaddrinfo(uri.host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4][:2]
        except OSError as exc:
            raise TakerUnavailableError(taker_uri, None, f"cannot resolve {uri.host}: {exc}") from exc
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            call = self._require_call(call_ref)
            if call.state == _State.RINGING:
                self._answer(call)
            if call.taker is not None:
                self._drop_taker(call, "replaced by another call taker", cancel=True)
            caller_media = call.caller.media
            first = caller_media.payload_type if caller_media else PCMU
            codecs = [first, PCMA if first == PCMU else PCMU]
            try:
                rtp_socket = self._open_rtp_socket()
            except OSError as exc:
                raise TakerUnavailableError(taker_uri, None, f"no RTP port for the taker leg: {exc}") from exc
            leg = _MediaLeg(
                kind=Leg.TAKER,
                call_id=f"{uuid.uuid4().hex}@{self._host}",
                rtp_socket=rtp_socket,
                local_tag=uuid.uuid4().hex[:16],
                local_uri=f'"IZS {_name_addr_or_raw(call.invite.header("To") or "").uri}" '
                f"<sip:intake@{self._host}:{self.address[1]}>",
                remote_uri=f"<{taker_uri}>",
                remote_target=taker_uri,
                signal_address=(str(address[0]), int(address[1])),
                invite_uri=taker_uri,
            )
            leg.allowed_rtp_hosts.add(str(address[0]))
            sdp = build_sdp(
                audio_session(self._host, leg.local_port, codecs, EVENT_PAYLOAD_TYPE, random.getrandbits(31))
            )
            branch = _branch()
            leg.invite_branch = branch
            invite = SipMessage(
                method="INVITE",
                uri=taker_uri,
                headers=(
                    ("Via", f"SIP/2.0/UDP {self._host}:{self.address[1]};branch={branch};rport"),
                    ("Max-Forwards", "70"),
                    ("From", f"{leg.local_uri};tag={leg.local_tag}"),
                    ("To", leg.remote_uri),
                    ("Call-ID", leg.call_id),
                    ("CSeq", f"{leg.local_cseq} INVITE"),
                    ("Contact", f"<sip:intake@{self._host}:{self.address[1]}>"),
                    ("Priority", _sip_priority(priority)),
                    ("X-IZS-Call-Ref", call_ref),
                    ("X-IZS-Priority", str(priority)),
                    ("Allow", ALLOW),
                    ("User-Agent", self._config.user_agent),
                    ("Content-Type", "application/sdp"),
                ),
                body=sdp,
            ).to_bytes()
            call.taker = leg
            call.taker_uri = taker_uri
            call.taker_address = leg.signal_address
            call.taker_invite = invite
            call.taker_future = future
            call.taker_deadline = time.monotonic() + self._config.taker_answer_timeout_s
            self._taker_calls[leg.call_id] = call
            self._media_commands.put(("add", leg))
            self._send(invite, leg.signal_address)
            self._retransmit(f"{leg.call_id}/invite", invite, leg.signal_address, T1_S * 64)
        log.info("call %s: calling taker %s (priority %d)", call_ref, taker_uri, priority)
        return future

    def _require_call(self, call_ref: str) -> _Call:
        if not self._running.is_set():
            raise EndpointNotRunningError("SIP endpoint not running")
        call = self._calls.get(call_ref)
        if call is None or call.state == _State.ENDED:
            raise CallNotFoundError(f"no active SIP call {call_ref}")
        return call

    # ------------------------------------------------------------------------------ event sink

    def _emit(self, event: TelephonyEvent) -> None:
        if isinstance(event, AudioFrame) and self._events.qsize() >= self._config.max_event_backlog:
            self._dropped_frames += 1
            if self._dropped_frames % 1000 == 1:
                log.error(
                    "event sink too slow: %d audio frames dropped so far (backlog %d)",
                    self._dropped_frames,
                    self._events.qsize(),
                )
            return
        self._events.put(event)

    @property
    def dropped_frames(self) -> int:
        """AudioFrames dropped because the sink fell more than ``max_event_backlog`` events behind."""
        return self._dropped_frames

    def _dispatch_loop(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            try:
                self._sink(event)
            except Exception:  # the sink is the integrator's code: log it, keep delivering the calls' events
                log.exception("event sink failed on %s", type(event).__name__)

    # ---------------------------------------------------------------------------------- SIP I/O

    def _send(self, data: bytes, address: tuple[str, int]) -> None:
        sip_socket = self._sip_socket
        if sip_socket is None:
            return
        try:
            sip_socket.sendto(data, address)
        except OSError as exc:
            log.warning("SIP send to %s:%d failed: %s", address[0], address[1], exc)

    def _retransmit(
        self, key: str, data: bytes, address: tuple[str, int], lifetime: float, on_timeout: str = ""
    ) -> None:
        now = time.monotonic()
        self._retransmits[key] = _RetransmittedMessage(
            data, address, now + T1_S, T1_S, now + lifetime, on_timeout
        )

    def _sip_loop(self) -> None:
        assert self._sip_socket is not None
        while self._running.is_set():
            try:
                data, source = self._sip_socket.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError as exc:
                if self._running.is_set():
                    log.error("SIP socket receive failed: %s", exc)
                    self._emit(AdapterStatus(ADAPTER_NAME, False, f"SIP socket error: {exc}"))
                return
            address = (str(source[0]), int(source[1]))
            try:
                self._on_datagram(data, address)
            except Exception as exc:  # a bug on one datagram must not stop SIP for other calls: log, go on
                self._rejected_datagrams += 1
                log.exception("unexpected error handling a SIP datagram from %s:%s", source[0], source[1])
                self._answer_after_bug(data, address, exc)

    def _answer_after_bug(self, data: bytes, source: tuple[str, int], exc: Exception) -> None:
        """A request that hit a bug still gets a final answer (500 with the reason), never silence: the
        handset then tries again or falls back, instead of ringing into nothing."""
        try:
            message = parse_message(data)
            if not message.is_request or message.method == "ACK":
                return
            via = parse_via(message.header_values("Via")[0])
            self._reply(
                message,
                source,
                response_address(via, source),
                500,
                "Server Internal Error",
                _tag(),
                (("Warning", f'399 - "{_warning_text(f"{type(exc).__name__}: {exc}")}"'),),
            )
        except Exception:  # nothing more can be done for this datagram; the bug is already logged
            log.exception("no answer possible to the datagram from %s:%s", source[0], source[1])

    def _on_datagram(self, data: bytes, source: tuple[str, int]) -> None:
        if not data.strip(b"\r\n"):
            return  # RFC 5626 CRLF keep-alive
        try:
            message = parse_message(data)
        except ParseError as exc:
            self._rejected_datagrams += 1
            answered = self._answer_unparseable(data, source, exc)
            if self._rejected_datagrams <= 20 or self._rejected_datagrams % 1000 == 0:
                log.warning(
                    "rejected SIP datagram #%d from %s:%d (%d bytes)%s: %s",
                    self._rejected_datagrams,
                    source[0],
                    source[1],
                    len(data),
                    " with 400" if answered else "",
                    exc,
                )
            return
        try:
            if message.is_request:
                self._on_request(message, source)
            else:
                self._on_response(message, source)
        except ParseError as exc:
            self._rejected_datagrams += 1
            log.warning(
                "rejected SIP %s %r from %s:%d: %s",
                message.method or message.status,
                message.call_id,
                *source,
                exc,
            )
            if message.is_request and message.method != "ACK":
                self._answer_unparseable(data, source, exc)

    def _answer_unparseable(self, data: bytes, source: tuple[str, int], exc: ParseError) -> bool:
        """A request that is not valid SIP but still names who sent it (Via, Call-ID, CSeq) is answered
        400 with the reason, so the sender learns why; anything less cannot be answered (RFC 3261 18.2.1)."""
        salvaged = salvage_request(data)
        if salvaged is None or salvaged.method == "ACK":
            return False
        try:
            reply_to = response_address(parse_via(salvaged.header_values("Via")[0]), source)
            response = self._build_response(
                salvaged,
                source,
                400,
                "Bad Request",
                _tag(),
                (("Warning", f'399 - "{_warning_text(str(exc))}"'),),
            )
            parse_message(response)  # only an answer that is itself valid SIP is sent
        except ParseError:
            return False
        self._send(response, reply_to)
        return True

    # --------------------------------------------------------------------------- UAS requests

    def _on_request(self, request: SipMessage, source: tuple[str, int]) -> None:
        via = parse_via(request.header_values("Via")[0])
        reply_to = response_address(via, source)
        method = request.method
        if method == "INVITE":
            self._on_invite(request, source, reply_to)
        elif method == "ACK":
            self._on_ack(request)
        elif method == "CANCEL":
            self._on_cancel(request, source, reply_to)
        elif method == "BYE":
            self._on_bye(request, source, reply_to)
        elif method == "OPTIONS":
            self._reply(
                request,
                source,
                reply_to,
                200,
                "OK",
                extra=(("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", "")),
            )
        elif method == "INFO":
            self._on_info(request, source, reply_to)
        else:
            self._reply(request, source, reply_to, 405, "Method Not Allowed", extra=(("Allow", ALLOW),))

    def _reply(
        self,
        request: SipMessage,
        source: tuple[str, int],
        reply_to: tuple[str, int],
        status: int,
        reason: str,
        to_tag: str = "",
        extra: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> bytes:
        data = self._build_response(request, source, status, reason, to_tag, extra, body)
        self._send(data, reply_to)
        return data

    def _build_response(
        self,
        request: SipMessage,
        source: tuple[str, int],
        status: int,
        reason: str,
        to_tag: str = "",
        extra: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> bytes:
        vias = request.header_values("Via")
        headers: list[tuple[str, str]] = [("Via", _stamp_received(vias[0], source))]
        headers.extend(("Via", v) for v in vias[1:])
        to_value = request.header("To") or ""
        if to_tag and "tag=" not in to_value:
            to_value = f"{to_value};tag={to_tag}"
        headers += [
            ("From", request.header("From") or ""),
            ("To", to_value),
            ("Call-ID", request.call_id),
            ("CSeq", request.header("CSeq") or ""),
            ("Server", self._config.user_agent),
        ]
        headers.extend(extra)
        return SipMessage(status=status, reason=reason, headers=tuple(headers), body=body).to_bytes()

    def _on_invite(self, request: SipMessage, source: tuple[str, int], reply_to: tuple[str, int]) -> None:
        call_ref = request.call_id
        with self._lock:
            known = self._calls.get(call_ref) or self._terminated.get(call_ref)
            refused = self._refused.get(call_ref)
            if known is None and refused is not None:
                self._send(refused, reply_to)  # a retransmission of an INVITE already refused
                return
            if known is not None:
                if "tag=" in (request.header("To") or "") and known.state == _State.ANSWERED:
                    self._on_reinvite(known, request, source, reply_to)
                elif known.last_invite_response:
                    self._send(known.last_invite_response, reply_to)  # retransmitted INVITE
                return
            if "tag=" in (request.header("To") or ""):
                self._reply(request, source, reply_to, 481, "Call/Transaction Does Not Exist")
                return  # a re-INVITE for a dialog we do not hold (e.g. after a restart)
            if not self._running.is_set() or len(self._calls) >= self._config.max_calls:
                self._reply(request, source, reply_to, 503, "Service Unavailable", _tag())
                log.warning("call %s refused: endpoint full or stopping", call_ref)
                return
        dialled = _dialled_number(request)
        fork_of = request.header("X-IZS-Fork-Of")
        accepted = dialled in self._config.accepted_numbers or (
            fork_of is not None and self._config.accept_media_forks
        )
        if not accepted:
            log.info("call %s to %r rejected: not an emergency number served here", call_ref, dialled)
            self._reply(request, source, reply_to, 404, "Not Found", _tag())
            return
        try:
            parts = split_body(request.header("Content-Type"), request.body)
            sdp_part = find_part(parts, "application/sdp")
            offer = parse_sdp(sdp_part.body) if sdp_part is not None else None
        except ParseError as exc:
            self._refuse_emergency_call(
                request,
                source,
                reply_to,
                dialled,
                400,
                "Bad Request",
                f'399 - "{_warning_text(str(exc))}"',
                f"bad body: {exc}",
            )
            return
        negotiated = negotiate_audio(offer) if offer is not None else None
        if negotiated is None:
            why = "no SDP offer" if offer is None else "no PCMU/PCMA audio offered"
            self._refuse_emergency_call(
                request, source, reply_to, dialled, 488, "Not Acceptable Here", f'304 - "{why}"', why
            )
            return
        try:
            rtp_socket = self._open_rtp_socket()
        except OSError as exc:
            self._refuse_emergency_call(
                request, source, reply_to, dialled, 503, "Service Unavailable", "", f"no RTP port: {exc}"
            )
            return
        # A caller's From/Contact that does not parse is no reason to drop an emergency call: taken as is.
        from_addr = _name_addr_or_raw(request.header("From") or "")
        contact = request.header_values("Contact")
        leg = _MediaLeg(
            kind=Leg.CALLER,
            call_id=call_ref,
            rtp_socket=rtp_socket,
            local_tag=_tag(),
            remote_tag=from_addr.tag,
            local_uri=_strip_tag(request.header("To") or ""),
            remote_uri=request.header("From") or "",
            remote_target=_name_addr_or_raw(contact[0]).uri if contact else from_addr.uri,
            signal_address=reply_to,
            media=negotiated,
            remote_rtp=negotiated.remote_address,
            allowed_rtp_hosts={negotiated.remote_address[0], source[0]},
        )
        call = _Call(call_ref, leg, request, source, reply_to)
        location, extra_fixes, location_headers, ecall = decode_invite_location(request, parts, call_ref)
        try:
            caller_uri = parse_uri(from_addr.uri)
            caller = caller_uri.user or caller_uri.host
        except ParseError:
            caller = from_addr.uri
        headers = {name: value for name, value in reversed(request.headers)}
        headers.update(location_headers)
        with self._lock:
            self._calls[call_ref] = call
            self._media_commands.put(("add", leg))
            call.last_invite_response = self._reply(request, source, reply_to, 100, "Trying")
            self._emit(
                CallOffered(
                    call_ref=call_ref,
                    dialled=dialled,
                    caller=caller,
                    source=CallSource.SIP,
                    caller_name=from_addr.display or None,
                    location=location,
                    fork_of=fork_of,
                    headers=headers,
                    ecall=ecall,
                )
            )
            for fix in extra_fixes:
                self._emit(LocationReported(call_ref, fix))
            if self._config.answer_after_s <= 0:
                self._answer(call)
            else:
                call.answer_at = time.monotonic() + self._config.answer_after_s
                call.last_invite_response = self._reply(
                    request, source, reply_to, 180, "Ringing", leg.local_tag
                )
        log.info("call %s from %s to %s offered (%s)", call_ref, caller, dialled, _codec_name(negotiated))

    def _refuse_emergency_call(
        self,
        request: SipMessage,
        source: tuple[str, int],
        reply_to: tuple[str, int],
        dialled: str,
        status: int,
        reason: str,
        warning: str,
        why: str,
    ) -> None:
        """An emergency INVITE that cannot become a media call still leaves a call record: it is offered and
        ended at once with the reason, so intake files it (and the caller's number lands on the call-back
        list) instead of the attempt vanishing with a 4xx nobody at the centre saw."""
        call_ref = request.call_id
        log.warning("call %s to %s refused with %d: %s", call_ref, dialled, status, why)
        extra = (("Warning", warning),) if warning else ()
        final = self._reply(request, source, reply_to, status, reason, _tag(), extra)
        if request.header("X-IZS-Fork-Of") is not None:
            return  # a PBX media fork, not a call: the PBX keeps the call's record
        with self._lock:
            if call_ref in self._refused:
                return
            self._refused[call_ref] = final
            while len(self._refused) > 1000:
                self._refused.popitem(last=False)
        from_addr_text = request.header("From") or ""
        try:
            from_addr = parse_name_addr(from_addr_text)
            caller_uri = parse_uri(from_addr.uri)
            caller, name = caller_uri.user or caller_uri.host, from_addr.display or None
        except ParseError:
            caller, name = from_addr_text, None
        headers = {name_: value for name_, value in reversed(request.headers)}
        self._emit(
            CallOffered(
                call_ref=call_ref,
                dialled=dialled,
                caller=caller,
                source=CallSource.SIP,
                caller_name=name,
                headers=headers,
            )
        )
        self._emit(CallEnded(call_ref, EndReason.REJECTED, detail=f"SIP {status}: {why}"))

    def _local_sdp(self, leg: _MediaLeg) -> bytes:
        assert leg.media is not None
        return build_sdp(
            audio_session(
                self._host,
                leg.local_port,
                [leg.media.payload_type],
                leg.media.event_payload_type,
                abs(hash(leg.call_id)) % (2**31),
            )
        )

    def _answer(self, call: _Call) -> None:
        """Send 200 OK with our SDP answer. Caller holds the lock; a CANCELled call is never answered."""
        if call.state != _State.RINGING:
            return
        call.state = _State.ANSWERED
        call.answer_at = None
        leg = call.caller
        leg.last_rx = time.monotonic()
        data = self._build_response(
            call.invite,
            call.invite_source,
            200,
            "OK",
            leg.local_tag,
            (
                ("Contact", f"<sip:intake@{self._host}:{self.address[1]}>"),
                ("Allow", ALLOW),
                ("Content-Type", "application/sdp"),
            ),
            self._local_sdp(leg),
        )
        call.last_invite_response = data
        self._send(data, call.invite_reply_address)
        self._retransmit(
            f"{call.call_ref}/2xx", data, call.invite_reply_address, self._config.ack_timeout_s, "no-ack"
        )
        leg.established = True
        self._emit(CallAnswered(call.call_ref))
        log.info("call %s answered", call.call_ref)

    def _on_reinvite(
        self, call: _Call, request: SipMessage, source: tuple[str, int], reply_to: tuple[str, int]
    ) -> None:
        leg = call.caller
        try:
            parts = split_body(request.header("Content-Type"), request.body)
            sdp_part = find_part(parts, "application/sdp")
            if sdp_part is not None:
                negotiated = negotiate_audio(parse_sdp(sdp_part.body))
                if negotiated is not None and leg.media is not None:
                    leg.remote_rtp = negotiated.remote_address
                    leg.allowed_rtp_hosts.add(negotiated.remote_address[0])
                    leg.rtp_latched = False
        except ParseError as exc:
            log.warning("call %s: bad re-INVITE body ignored: %s", call.call_ref, exc)
        self._reply(
            request,
            source,
            reply_to,
            200,
            "OK",
            leg.local_tag,
            (
                ("Contact", f"<sip:intake@{self._host}:{self.address[1]}>"),
                ("Content-Type", "application/sdp"),
            ),
            self._local_sdp(leg),
        )

    def _on_ack(self, request: SipMessage) -> None:
        with self._lock:
            call = self._calls.get(request.call_id) or self._terminated.get(request.call_id)
            if call is None:
                return
            call.invite_acked = True
            self._retransmits.pop(f"{call.call_ref}/2xx", None)
            self._retransmits.pop(f"{call.call_ref}/final", None)

    def _on_cancel(self, request: SipMessage, source: tuple[str, int], reply_to: tuple[str, int]) -> None:
        with self._lock:
            call = self._calls.get(request.call_id) or self._terminated.get(request.call_id)
            if call is None:
                self._reply(request, source, reply_to, 481, "Call/Transaction Does Not Exist")
                return
            self._reply(request, source, reply_to, 200, "OK", call.caller.local_tag)
            if call.state != _State.RINGING:
                return  # already answered or ended: CANCEL has no effect (RFC 3261 9.2)
            # RFC 3261 9.2: the INVITE gets 487 and the call is over before it was ever answered.
            terminated = self._build_response(
                call.invite, call.invite_source, 487, "Request Terminated", call.caller.local_tag
            )
            call.last_invite_response = terminated
            self._send(terminated, call.invite_reply_address)
            self._retransmit(f"{call.call_ref}/final", terminated, call.invite_reply_address, 32.0)
            self._terminate(call, EndReason.ABANDONED, "caller cancelled before answer", hang_up=False)
        log.info("call %s abandoned (CANCEL before answer)", request.call_id)

    def _on_bye(self, request: SipMessage, source: tuple[str, int], reply_to: tuple[str, int]) -> None:
        with self._lock:
            call_id = request.call_id
            call = self._calls.get(call_id)
            taker_call = self._taker_calls.get(call_id)
            if call is not None:
                self._reply(request, source, reply_to, 200, "OK")
                self._terminate(call, EndReason.CALLER_HANGUP, "caller sent BYE", hang_up=True)
            elif taker_call is not None:
                self._reply(request, source, reply_to, 200, "OK")
                self._taker_calls.pop(call_id, None)
                if taker_call.taker is not None and taker_call.taker.call_id == call_id:
                    self._close_leg(taker_call.taker)
                    taker_call.taker = None
                self._terminate(taker_call, EndReason.TAKER_HANGUP, "call taker hung up", hang_up=True)
            elif call_id in self._terminated:
                self._reply(request, source, reply_to, 200, "OK")
            else:
                self._reply(request, source, reply_to, 481, "Call/Transaction Does Not Exist")

    def _on_info(self, request: SipMessage, source: tuple[str, int], reply_to: tuple[str, int]) -> None:
        with self._lock:
            call = self._calls.get(request.call_id)
            taker_call = self._taker_calls.get(request.call_id)
            if call is None and taker_call is None:
                self._reply(request, source, reply_to, 481, "Call/Transaction Does Not Exist")
                return
            self._reply(request, source, reply_to, 200, "OK")
            digit = _info_digit(request)
            if call is not None and digit is not None and call.state == _State.ANSWERED:
                self._emit(DtmfReceived(call.call_ref, digit))

    # --------------------------------------------------------------------------- UAC responses

    def _on_response(self, response: SipMessage, source: tuple[str, int]) -> None:
        _, method = response.cseq
        call_id = response.call_id
        with self._lock:
            self._retransmits.pop(f"{call_id}/{method.lower()}", None)
            if method != "INVITE":
                return
            call = self._taker_calls.get(call_id)
            leg = call.taker if call is not None else None
            status = response.status or 0
            if call is None or leg is None or leg.call_id != call_id:
                self._on_late_taker_response(response)
                return
            to_tag = parse_name_addr(response.header("To") or "").tag
            if status < 200:
                leg.remote_tag = leg.remote_tag or to_tag
                return
            if status >= 300:
                self._send(self._non_2xx_ack(leg, response), leg.signal_address)
                self._fail_taker(call, status, response.reason)
                return
            leg.remote_tag = to_tag
            contact = response.header_values("Contact")
            if contact:
                leg.remote_target = parse_name_addr(contact[0]).uri
            self._send(self._in_dialog_request(leg, "ACK", cseq=leg.local_cseq), leg.signal_address)
            if leg.established:
                return  # retransmitted 2xx: ACKed again above
            self._connect_taker_media(call, leg, response, status)

    def _connect_taker_media(self, call: _Call, leg: _MediaLeg, response: SipMessage, status: int) -> None:
        try:
            parts = split_body(response.header("Content-Type"), response.body)
            sdp_part = find_part(parts, "application/sdp")
            negotiated = negotiate_audio(parse_sdp(sdp_part.body)) if sdp_part is not None else None
        except ParseError as exc:
            log.warning("call %s: taker answer has bad SDP: %s", call.call_ref, exc)
            negotiated = None
        if negotiated is None:
            self._send(self._in_dialog_request(leg, "BYE"), leg.signal_address)
            self._fail_taker(call, status, "taker answered without usable G.711 audio")
            return
        leg.media = negotiated
        leg.remote_rtp = negotiated.remote_address
        leg.allowed_rtp_hosts.add(negotiated.remote_address[0])
        leg.established = True
        leg.last_rx = time.monotonic()
        if call.state != _State.ANSWERED:
            self._send(self._in_dialog_request(leg, "BYE"), leg.signal_address)
            self._fail_taker(call, status, "caller gone before the taker answered")
            return
        call.prompt = None
        self._emit(CallConnected(call.call_ref, call.taker_uri))
        log.info("call %s connected to taker %s", call.call_ref, call.taker_uri)
        if call.taker_future is not None and not call.taker_future.done():
            call.taker_future.set_result(None)

    def _on_late_taker_response(self, response: SipMessage) -> None:
        entry = self._abandoned_takers.get(response.call_id)
        status = response.status or 0
        if entry is None or status < 200:
            return  # a response to a transaction we no longer hold
        leg = entry[0]
        if status >= 300:
            self._send(self._non_2xx_ack(leg, response), leg.signal_address)
            return
        # The phone answered although we had cancelled (the CANCEL crossed its 200 OK): ACK, then BYE.
        leg.remote_tag = parse_name_addr(response.header("To") or "").tag
        contact = response.header_values("Contact")
        if contact:
            leg.remote_target = parse_name_addr(contact[0]).uri
        self._send(self._in_dialog_request(leg, "ACK", cseq=1), leg.signal_address)
        self._send_bye(leg)
        del self._abandoned_takers[response.call_id]

    def _fail_taker(self, call: _Call, status: int | None, detail: str) -> None:
        leg = call.taker
        if leg is not None:
            if not leg.established and status is None:
                self._abandoned_takers[leg.call_id] = (leg, time.monotonic())
            self._taker_calls.pop(leg.call_id, None)
            self._retransmits.pop(f"{leg.call_id}/invite", None)
            self._close_leg(leg)
        call.taker = None
        future = call.taker_future
        if future is not None and not future.done():
            log.warning(
                "call %s: taker %s unavailable: %s %s", call.call_ref, call.taker_uri, status or "", detail
            )
            future.set_exception(TakerUnavailableError(call.taker_uri, status, detail))
        else:
            log.info("call %s: taker leg %s closed: %s", call.call_ref, call.taker_uri, detail)

    def _drop_taker(self, call: _Call, detail: str, cancel: bool) -> None:
        leg = call.taker
        if leg is None:
            return
        if leg.established:
            self._send_bye(leg)
        elif cancel:
            self._send(self._cancel_for(leg), leg.signal_address)
        self._fail_taker(call, None, detail)

    def _non_2xx_ack(self, leg: _MediaLeg, response: SipMessage) -> bytes:
        return SipMessage(
            method="ACK",
            uri=leg.invite_uri,
            headers=(
                ("Via", f"SIP/2.0/UDP {self._host}:{self.address[1]};branch={leg.invite_branch};rport"),
                ("Max-Forwards", "70"),
                ("From", f"{leg.local_uri};tag={leg.local_tag}"),
                ("To", response.header("To") or leg.remote_uri),
                ("Call-ID", leg.call_id),
                ("CSeq", f"{leg.local_cseq} ACK"),
            ),
        ).to_bytes()

    def _cancel_for(self, leg: _MediaLeg) -> bytes:
        return SipMessage(
            method="CANCEL",
            uri=leg.invite_uri,
            headers=(
                ("Via", f"SIP/2.0/UDP {self._host}:{self.address[1]};branch={leg.invite_branch};rport"),
                ("Max-Forwards", "70"),
                ("From", f"{leg.local_uri};tag={leg.local_tag}"),
                ("To", leg.remote_uri),
                ("Call-ID", leg.call_id),
                ("CSeq", f"{leg.local_cseq} CANCEL"),
            ),
        ).to_bytes()

    def _in_dialog_request(self, leg: _MediaLeg, method: str, cseq: int | None = None) -> bytes:
        if cseq is None:
            leg.local_cseq += 1
            cseq = leg.local_cseq
        ours = f"{leg.local_uri};tag={leg.local_tag}"
        theirs = _strip_tag(leg.remote_uri) + (f";tag={leg.remote_tag}" if leg.remote_tag else "")
        return SipMessage(
            method=method,
            uri=leg.remote_target,
            headers=(
                ("Via", f"SIP/2.0/UDP {self._host}:{self.address[1]};branch={_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", ours),
                ("To", theirs),
                ("Call-ID", leg.call_id),
                ("CSeq", f"{cseq} {method}"),
                ("User-Agent", self._config.user_agent),
            ),
        ).to_bytes()

    def _send_bye(self, leg: _MediaLeg) -> None:
        bye = self._in_dialog_request(leg, "BYE")
        self._send(bye, leg.signal_address)
        self._retransmit(f"{leg.call_id}/bye", bye, leg.signal_address, 32.0)

    # -------------------------------------------------------------------------------- teardown

    def _terminate(self, call: _Call, reason: EndReason, detail: str, hang_up: bool) -> None:
        """End a call exactly once: BYE/480 the legs still up, close RTP, emit CallEnded."""
        with self._lock:
            if call.state == _State.ENDED:
                return
            was_ringing = call.state == _State.RINGING
            call.state = _State.ENDED
            call.ended_at = time.monotonic()
            if hang_up and was_ringing:
                final = self._build_response(
                    call.invite, call.invite_source, 480, "Temporarily Unavailable", call.caller.local_tag
                )
                call.last_invite_response = final
                self._send(final, call.invite_reply_address)
                self._retransmit(f"{call.call_ref}/final", final, call.invite_reply_address, 32.0)
            elif hang_up and reason != EndReason.CALLER_HANGUP:
                self._send_bye(call.caller)
            self._retransmits.pop(f"{call.call_ref}/2xx", None)
            self._flush_frames(call, call.caller)
            self._close_leg(call.caller)
            if call.taker is not None:
                self._flush_frames(call, call.taker)
                self._drop_taker(call, f"call ended: {detail}", cancel=True)
            self._calls.pop(call.call_ref, None)
            self._terminated[call.call_ref] = call
            self._emit(CallEnded(call.call_ref, reason, detail=detail))
        log.info("call %s ended: %s (%s)", call.call_ref, reason.value, detail)

    def _close_leg(self, leg: _MediaLeg) -> None:
        self._media_commands.put(("remove", leg))

    def _flush_frames(self, call: _Call, leg: _MediaLeg) -> None:
        if leg.rx_buffer and call.state != _State.RINGING:
            leg.rx_buffer.extend(bytes(FRAME_BYTES - len(leg.rx_buffer)))
            self._emit(AudioFrame(call.call_ref, bytes(leg.rx_buffer), SAMPLE_RATE, leg.kind, leg.frame_seq))
            leg.frame_seq += 1
            leg.rx_buffer.clear()

    # ----------------------------------------------------------------------------------- media

    def _open_rtp_socket(self) -> socket.socket:
        rtp_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        low, high = self._config.rtp_port_min, self._config.rtp_port_max
        try:
            if low <= 0 or high < low:
                rtp_socket.bind((self._config.host, 0))
            else:
                ports = list(range(low + (low % 2), high + 1, 2))
                random.shuffle(ports)
                for port in ports:
                    try:
                        rtp_socket.bind((self._config.host, port))
                        break
                    except OSError:
                        continue
                else:
                    raise OSError(f"no free RTP port in {low}-{high}")
        except OSError:
            rtp_socket.close()
            raise
        rtp_socket.setblocking(False)
        return rtp_socket

    def _media_loop(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while self._running.is_set():
            self._apply_media_commands()
            timeout = max(0.0, next_tick - time.monotonic())
            ready = self._selector.select(timeout) if self._selector.get_map() else _sleep(timeout)
            try:
                for key, _ in ready:
                    self._drain_rtp(key.data)
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = next_tick + TICK_S if now - next_tick < 0.2 else now + TICK_S
                    self._tick(now)
            except Exception:  # media for every other call must go on: log the bug, keep the thread alive
                log.exception("unexpected error in the RTP/timer loop")
        self._apply_media_commands()
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
            key.data.rtp_socket.close()

    def _apply_media_commands(self) -> None:
        while True:
            try:
                command, leg = self._media_commands.get_nowait()
            except queue.Empty:
                return
            if command == "add":
                self._selector.register(leg.rtp_socket, selectors.EVENT_READ, leg)
            else:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(leg.rtp_socket)
                leg.rtp_socket.close()

    def _drain_rtp(self, leg: _MediaLeg) -> None:
        for _ in range(64):  # bounded so one flooded socket cannot starve the others
            try:
                data, source = leg.rtp_socket.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("RTP receive on call %s failed: %s", leg.call_id, exc)
                return
            self._on_rtp(leg, data, (str(source[0]), int(source[1])))

    def _on_rtp(self, leg: _MediaLeg, data: bytes, source: tuple[str, int]) -> None:
        now = time.monotonic()
        if now - leg.window_start >= 1.0:
            if leg.dropped_packets:
                log.warning(
                    "call %s %s leg: dropped %d RTP packets (flood/foreign/malformed)",
                    leg.call_id,
                    leg.kind.value,
                    leg.dropped_packets,
                )
            leg.window_start, leg.window_packets, leg.dropped_packets = now, 0, 0
        if source[0] not in leg.allowed_rtp_hosts or (
            # Once latched, only the latched address may send, unless it went quiet (NAT rebinding).
            leg.rtp_latched and source != leg.remote_rtp and now - leg.last_rx < 1.0
        ):
            leg.dropped_packets += 1  # foreign packets never use up the caller's budget
            return
        try:
            packet = parse_rtp(data)
        except ParseError:
            leg.dropped_packets += 1
            return
        if leg.rtp_ssrc is not None and packet.ssrc != leg.rtp_ssrc and now - leg.rtp_ssrc_last_rx < 1.0:
            # A second stream while the latched one is alive (a flood, a stray sender): never mixed into the
            # caller's audio and never allowed to use up its budget. A new SSRC after a pause is latched.
            leg.dropped_packets += 1
            return
        leg.window_packets += 1
        if leg.window_packets > self._config.max_rtp_packets_per_second:
            leg.dropped_packets += 1
            return
        with self._lock:
            call = self._calls.get(leg.call_id) or self._taker_calls.get(leg.call_id)
            if call is None or call.state != _State.ANSWERED or leg.media is None:
                return
            if source != leg.remote_rtp or not leg.rtp_latched:
                leg.remote_rtp, leg.rtp_latched = source, True  # symmetric RTP (NAT)
            leg.last_rx = now
            leg.rtp_ssrc, leg.rtp_ssrc_last_rx = packet.ssrc, now
            media = leg.media
            if packet.payload_type == media.event_payload_type:
                self._on_rtp_event(call, leg, packet)
                return
            if packet.payload_type not in (PCMU, PCMA):
                leg.dropped_packets += 1
                return
            self._collect_frames(call, leg, packet)
            taker = call.taker
            if taker is not None and taker.established:
                other = taker if leg.kind == Leg.CALLER else call.caller
                if other.media is not None:
                    payload = g711.transcode(packet.payload, packet.payload_type, other.media.payload_type)
                    self._send_rtp(other, payload, len(packet.payload))

    def _on_rtp_event(self, call: _Call, leg: _MediaLeg, packet: RtpPacket) -> None:
        try:
            event = parse_telephone_event(packet.payload)
        except ParseError:
            return
        if leg.last_dtmf_ts == packet.timestamp:
            return  # continuation / end retransmissions of the same key press
        leg.last_dtmf_ts = packet.timestamp
        if leg.kind == Leg.CALLER:
            self._emit(DtmfReceived(call.call_ref, event.digit))

    def _collect_frames(self, call: _Call, leg: _MediaLeg, packet: RtpPacket) -> None:
        samples = len(packet.payload)
        if leg.rx_expected_ts is not None:
            gap = (packet.timestamp - leg.rx_expected_ts) & 0xFFFFFFFF
            if gap >= 0x80000000:
                return  # older than what we already have: late or duplicate packet
            if 0 < gap <= MAX_GAP_FILL_SAMPLES:
                leg.rx_buffer.extend(bytes(2 * gap))  # lost packets become silence, keeping time
        leg.rx_expected_ts = (packet.timestamp + samples) & 0xFFFFFFFF
        leg.rx_buffer.extend(g711.decode(packet.payload, packet.payload_type))
        while len(leg.rx_buffer) >= FRAME_BYTES:
            frame = bytes(leg.rx_buffer[:FRAME_BYTES])
            del leg.rx_buffer[:FRAME_BYTES]
            self._emit(AudioFrame(call.call_ref, frame, SAMPLE_RATE, leg.kind, leg.frame_seq))
            leg.frame_seq += 1

    def _send_rtp(self, leg: _MediaLeg, payload: bytes, samples: int) -> None:
        if leg.remote_rtp is None or leg.media is None:
            return
        packet = RtpPacket(leg.media.payload_type, leg.out_seq, leg.out_ts, leg.out_ssrc, payload)
        leg.out_seq = (leg.out_seq + 1) & 0xFFFF
        leg.out_ts = (leg.out_ts + samples) & 0xFFFFFFFF
        try:
            leg.rtp_socket.sendto(packet.to_bytes(), leg.remote_rtp)
        except OSError as exc:
            log.debug("RTP send on call %s failed: %s", leg.call_id, exc)

    def _tick(self, now: float) -> None:
        with self._lock:
            for key, message in list(self._retransmits.items()):
                if now >= message.deadline:
                    del self._retransmits[key]
                    if message.on_timeout == "no-ack":
                        self._on_ack_timeout(key.rsplit("/", 1)[0])
                elif now >= message.next_at:
                    self._send(message.data, message.address)
                    message.interval = min(message.interval * 2, T2_S)
                    message.next_at = now + message.interval
            for call in list(self._calls.values()):
                self._tick_call(call, now)
            for call_ref, call in list(self._terminated.items()):
                if now - call.ended_at > TERMINATED_KEEP_S:
                    del self._terminated[call_ref]
            for call_id, (_, given_up_at) in list(self._abandoned_takers.items()):
                if now - given_up_at > TERMINATED_KEEP_S:
                    del self._abandoned_takers[call_id]

    def _tick_call(self, call: _Call, now: float) -> None:
        if call.state == _State.RINGING:
            if call.answer_at is not None and now >= call.answer_at:
                self._answer(call)
            return
        if call.state != _State.ANSWERED:
            return
        if now - call.caller.last_rx > self._config.media_timeout_s:
            self._terminate(call, EndReason.MEDIA_LOST, "no RTP from the caller", hang_up=True)
            return
        taker = call.taker
        if taker is not None and not taker.established and now > call.taker_deadline:
            self._drop_taker(call, "call taker did not answer in time", cancel=True)
        if call.prompt is not None and (taker is None or not taker.established):
            self._play_prompt_frame(call)

    def _play_prompt_frame(self, call: _Call) -> None:
        prompt = call.prompt
        assert prompt is not None
        chunk = prompt[call.prompt_pos : call.prompt_pos + FRAME_SAMPLES]
        call.prompt_pos += FRAME_SAMPLES
        if len(chunk) < FRAME_SAMPLES:
            if call.prompt_loop and len(prompt):
                call.prompt_pos = FRAME_SAMPLES - len(chunk)
                chunk = np.concatenate([chunk, prompt[: call.prompt_pos]])
            else:
                call.prompt = None
                chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), dtype=np.int16)])
        media = call.caller.media
        if media is not None:
            self._send_rtp(
                call.caller, g711.encode(chunk.astype("<i2").tobytes(), media.payload_type), FRAME_SAMPLES
            )

    def _on_ack_timeout(self, call_ref: str) -> None:
        call = self._calls.get(call_ref)
        if call is not None and not call.invite_acked:
            self._terminate(call, EndReason.ERROR, "caller never acknowledged our 200 OK", hang_up=True)


# ---------------------------------------------------------------------------------------- helpers


def _sleep(seconds: float) -> list[tuple[selectors.SelectorKey, int]]:
    time.sleep(seconds)
    return []


def _name_addr_or_raw(value: str) -> NameAddr:
    """The name-addr, or the raw header value as its URI when it does not parse (so it stays visible)."""
    try:
        return parse_name_addr(value)
    except ParseError:
        return NameAddr("", value.strip())


def _warning_text(text: str) -> str:
    """A reason fit for a Warning header's quoted string: one printable line, no quotes, bounded."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text.replace('"', "'").replace("\\", "/"))
    return " ".join(printable.split())[:200]


def _tag() -> str:
    return uuid.uuid4().hex[:16]


def _branch() -> str:
    return f"z9hG4bK{uuid.uuid4().hex[:20]}"


def _strip_tag(name_addr: str) -> str:
    parts = [p for p in name_addr.split(";") if not p.strip().lower().startswith("tag=")]
    return ";".join(parts)


def _stamp_received(via_value: str, source: tuple[str, int]) -> str:
    """RFC 3581: fill in rport= and received= on the top Via of a response."""
    params = via_value.split(";")
    stamped = [params[0]]
    has_received = False
    for param in params[1:]:
        name = param.strip().split("=", 1)[0].lower()
        if name == "rport":
            stamped.append(f"rport={source[1]}")
        elif name == "received":
            has_received = True
            stamped.append(f"received={source[0]}")
        else:
            stamped.append(param)
    if not has_received:
        stamped.append(f"received={source[0]}")
    return ";".join(stamped)


def _dialled_number(request: SipMessage) -> str:
    uri = request.uri or ""
    if uri.lower().startswith("urn:service:sos"):
        return "112"  # RFC 5031 emergency service URN (NG112)
    try:
        user = parse_uri(uri).user
    except ParseError:
        try:
            user = parse_uri(parse_name_addr(request.header("To") or "").uri).user
        except ParseError:
            return ""
    return user.split(";", 1)[0].replace("-", "")


def _info_digit(request: SipMessage) -> str | None:
    content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
    text = request.body.decode("utf-8", "replace").strip()
    if content_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                digit = value.strip().upper()
                return digit if len(digit) == 1 and digit in "0123456789*#ABCD" else None
        return None
    if content_type == "application/dtmf" and len(text) == 1 and text.upper() in "0123456789*#ABCD":
        return text.upper()
    return None


def _sip_priority(priority: int) -> str:
    if priority <= 1:
        return "emergency"
    if priority == 2:
        return "urgent"
    return "normal"


def _codec_name(media: NegotiatedMedia) -> str:
    return "PCMU" if media.payload_type == PCMU else "PCMA"


def _resample_to_8k(pcm: bytes, sample_rate: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    if sample_rate <= 0:
        raise ValueError(f"bad sample rate {sample_rate}")
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.int16)
    if sample_rate == SAMPLE_RATE or not len(samples):
        return samples
    count = int(len(samples) * SAMPLE_RATE / sample_rate)
    positions = np.linspace(0, len(samples) - 1, count)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.int16)
