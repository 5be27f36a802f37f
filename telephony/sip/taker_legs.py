"""The UAC legs to call takers' phones, pure: INVITE with retransmission, provisional and final answers,
CANCEL when intake gives up, late answers to a leg already given up, BYE.

The clock is passed in; actions go out through the shared outbox. The caller's side of the call is
:mod:`telephony.sip.incoming`'s; this machine only ever touches ``call.taker`` and the taker tables.
"""

from __future__ import annotations

import concurrent.futures
import logging
import random
import uuid

from telephony.events import CallConnected, Leg
from telephony.sip.config import SipEndpointConfig
from telephony.sip.dialog import (
    Call,
    CallState,
    CallTable,
    Local,
    MediaLeg,
    Outbox,
    RtpPorts,
    SettleTaker,
    StartMedia,
    StopMedia,
)
from telephony.sip.errors import ParseError, TakerUnavailableError
from telephony.sip.media import MediaPath
from telephony.sip.message import SipMessage, parse_name_addr
from telephony.sip.multipart import find_part, split_body
from telephony.sip.sdp import PCMA, PCMU, audio_session, build_sdp, negotiate_audio, parse_sdp
from telephony.sip.timers import TRANSACTION_LIFETIME_S, Retransmissions
from telephony.sip.wire import (
    ALLOW,
    cancel_for,
    in_dialog_request,
    name_addr_or_raw,
    new_branch,
    new_tag,
    non_2xx_ack,
    sip_priority,
)

log = logging.getLogger(__name__)

EVENT_PAYLOAD_TYPE = 101


class TakerLegs:
    def __init__(
        self,
        local: Local,
        config: SipEndpointConfig,
        table: CallTable,
        timers: Retransmissions,
        media: MediaPath,
        outbox: Outbox,
        ports: RtpPorts,
    ) -> None:
        self._local = local
        self._config = config
        self._table = table
        self._timers = timers
        self._media = media
        self._out = outbox
        self._ports = ports

    def begin(
        self,
        call: Call,
        taker_uri: str,
        address: tuple[str, int],
        priority: int,
        future: concurrent.futures.Future[None],
        now: float,
    ) -> None:
        """INVITE the taker's phone (an earlier taker leg of the call is dropped first).

        Raises TakerUnavailableError when no RTP port is free for the leg.
        """
        if call.taker is not None:
            self.drop(call, "replaced by another call taker", cancel=True, now=now)
        caller_media = call.caller.media
        first = caller_media.payload_type if caller_media else PCMU
        codecs = [first, PCMA if first == PCMU else PCMU]
        try:
            rtp_port = self._ports.open()
        except OSError as exc:
            raise TakerUnavailableError(taker_uri, None, f"no RTP port for the taker leg: {exc}") from exc
        local = self._local
        leg = MediaLeg(
            kind=Leg.TAKER,
            call_id=f"{uuid.uuid4().hex}@{local.host}",
            local_port=rtp_port,
            local_tag=new_tag(),
            local_uri=f'"IZS {name_addr_or_raw(call.invite.header("To") or "").uri}" '
            f"<sip:intake@{local.host}:{local.port}>",
            remote_uri=f"<{taker_uri}>",
            remote_target=taker_uri,
            signal_address=address,
            invite_uri=taker_uri,
        )
        leg.allowed_rtp_hosts.add(address[0])
        sdp = build_sdp(
            audio_session(local.host, leg.local_port, codecs, EVENT_PAYLOAD_TYPE, random.getrandbits(31))
        )
        leg.invite_branch = new_branch()
        invite = SipMessage(
            method="INVITE",
            uri=taker_uri,
            headers=(
                ("Via", local.via(leg.invite_branch)),
                ("Max-Forwards", "70"),
                ("From", f"{leg.local_uri};tag={leg.local_tag}"),
                ("To", leg.remote_uri),
                ("Call-ID", leg.call_id),
                ("CSeq", f"{leg.local_cseq} INVITE"),
                ("Contact", local.contact),
                ("Priority", sip_priority(priority)),
                ("X-IZS-Call-Ref", call.call_ref),
                ("X-IZS-Priority", str(priority)),
                ("Allow", ALLOW),
                ("User-Agent", local.user_agent),
                ("Content-Type", "application/sdp"),
            ),
            body=sdp,
        ).to_bytes()
        call.taker = leg
        call.taker_uri = taker_uri
        call.taker_future = future
        call.taker_deadline = now + self._config.taker_answer_timeout_s
        self._table.taker_calls[leg.call_id] = call
        self._out.add(StartMedia(leg))
        self._out.send(invite, address)
        self._timers.start(f"{leg.call_id}/invite", invite, address, now, TRANSACTION_LIFETIME_S)

    def give_up(self, call: Call, future: concurrent.futures.Future[None], now: float) -> None:
        """Intake stopped waiting for this connect: do not leave the phone ringing."""
        taker = call.taker if call.taker_future is future else None
        if taker is not None and not taker.established:
            self.drop(call, "connect_to_taker cancelled by intake", cancel=True, now=now)

    def on_response(self, response: SipMessage, now: float) -> None:
        """A response to one of our client transactions (taker INVITE, BYE)."""
        _, method = response.cseq
        call_id = response.call_id
        self._timers.stop(f"{call_id}/{method.lower()}")
        if method != "INVITE":
            return
        call = self._table.taker_calls.get(call_id)
        leg = call.taker if call is not None else None
        status = response.status or 0
        if call is None or leg is None or leg.call_id != call_id:
            self._on_late_response(response, now)
            return
        to_tag = parse_name_addr(response.header("To") or "").tag
        if status < 200:
            leg.remote_tag = leg.remote_tag or to_tag
            return
        if status >= 300:
            self._out.send(non_2xx_ack(self._local, leg, response), leg.signal_address)
            self.fail(call, status, response.reason, now)
            return
        leg.remote_tag = to_tag
        contact = response.header_values("Contact")
        if contact:
            leg.remote_target = parse_name_addr(contact[0]).uri
        self._out.send(in_dialog_request(self._local, leg, "ACK", cseq=leg.local_cseq), leg.signal_address)
        if leg.established:
            return  # retransmitted 2xx: ACKed again above
        self._connect_media(call, leg, response, status, now)

    def _connect_media(
        self, call: Call, leg: MediaLeg, response: SipMessage, status: int, now: float
    ) -> None:
        try:
            parts = split_body(response.header("Content-Type"), response.body)
            sdp_part = find_part(parts, "application/sdp")
            negotiated = negotiate_audio(parse_sdp(sdp_part.body)) if sdp_part is not None else None
        except ParseError as exc:
            log.warning("call %s: taker answer has bad SDP: %s", call.call_ref, exc)
            negotiated = None
        if negotiated is None:
            self._out.send(in_dialog_request(self._local, leg, "BYE"), leg.signal_address)
            self.fail(call, status, "taker answered without usable G.711 audio", now)
            return
        leg.media = negotiated
        leg.remote_rtp = negotiated.remote_address
        leg.allowed_rtp_hosts.add(negotiated.remote_address[0])
        leg.established = True
        leg.last_rx = now
        if call.state != CallState.ANSWERED:
            self._out.send(in_dialog_request(self._local, leg, "BYE"), leg.signal_address)
            self.fail(call, status, "caller gone before the taker answered", now)
            return
        call.prompt = None
        self._out.emit(CallConnected(call.call_ref, call.taker_uri))
        log.info("call %s connected to taker %s", call.call_ref, call.taker_uri)
        if call.taker_future is not None:
            self._out.add(SettleTaker(call.taker_future, None))

    def _on_late_response(self, response: SipMessage, now: float) -> None:
        entry = self._table.abandoned_takers.get(response.call_id)
        status = response.status or 0
        if entry is None or status < 200:
            return  # a response to a transaction we no longer hold
        leg = entry[0]
        if status >= 300:
            self._out.send(non_2xx_ack(self._local, leg, response), leg.signal_address)
            return
        # The phone answered although we had cancelled (the CANCEL crossed its 200 OK): ACK, then BYE.
        leg.remote_tag = parse_name_addr(response.header("To") or "").tag
        contact = response.header_values("Contact")
        if contact:
            leg.remote_target = parse_name_addr(contact[0]).uri
        self._out.send(in_dialog_request(self._local, leg, "ACK", cseq=1), leg.signal_address)
        self.send_bye(leg, now)
        del self._table.abandoned_takers[response.call_id]

    def on_bye(self, call_id: str) -> Call | None:
        """The taker hung up (BYE on its leg): the leg is closed; the call it served, to be ended."""
        call = self._table.taker_calls.pop(call_id, None)
        if call is not None and call.taker is not None and call.taker.call_id == call_id:
            self._out.add(StopMedia(call.taker))
            call.taker = None
        return call

    def fail(self, call: Call, status: int | None, detail: str, now: float) -> None:
        leg = call.taker
        if leg is not None:
            if not leg.established and status is None:
                self._table.abandoned_takers[leg.call_id] = (leg, now)
            self._table.taker_calls.pop(leg.call_id, None)
            self._timers.stop(f"{leg.call_id}/invite")
            self._out.add(StopMedia(leg))
        call.taker = None
        future = call.taker_future
        if future is not None and not future.done():
            log.warning(
                "call %s: taker %s unavailable: %s %s", call.call_ref, call.taker_uri, status or "", detail
            )
            self._out.add(SettleTaker(future, TakerUnavailableError(call.taker_uri, status, detail)))
        else:
            log.info("call %s: taker leg %s closed: %s", call.call_ref, call.taker_uri, detail)

    def drop(self, call: Call, detail: str, cancel: bool, now: float) -> None:
        leg = call.taker
        if leg is None:
            return
        if leg.established:
            self.send_bye(leg, now)
        elif cancel:
            self._out.send(cancel_for(self._local, leg), leg.signal_address)
        self.fail(call, None, detail, now)

    def send_bye(self, leg: MediaLeg, now: float) -> None:
        bye = in_dialog_request(self._local, leg, "BYE")
        self._out.send(bye, leg.signal_address)
        self._timers.start(f"{leg.call_id}/bye", bye, leg.signal_address, now, TRANSACTION_LIFETIME_S)

    def tick(self, call: Call, now: float) -> None:
        taker = call.taker
        if taker is not None and not taker.established and now > call.taker_deadline:
            self.drop(call, "call taker did not answer in time", cancel=True, now=now)
