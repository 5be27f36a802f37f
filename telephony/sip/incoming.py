"""Incoming emergency calls, pure: the UAS side of the SIP endpoint (INVITE server transactions and the
caller's dialog).

Parsed requests and ``now`` in; actions out through the shared outbox (send this response, retransmit the
2xx until its ACK - Timer G/H -, start/stop media, emit this telephony event). No sockets, no clock of its
own; bad input is answered with the right status, never raised. The legs to the call takers are
:class:`~telephony.sip.taker_legs.TakerLegs`', the RTP :class:`~telephony.sip.media.MediaPath`'s.

Call states: RINGING (100/180 sent) → ANSWERED (200 OK sent, retransmitted until ACK) → ENDED (BYE either
way, CANCEL before the answer, 2xx never ACKed, media lost, intake hung up); an ENDED call is kept
``TERMINATED_KEEP_S`` to absorb retransmissions.
"""

from __future__ import annotations

import logging

from telephony.events import (
    CallAnswered,
    CallEnded,
    CallOffered,
    CallSource,
    DtmfReceived,
    EndReason,
    Leg,
    LocationReported,
)
from telephony.sip.config import SipEndpointConfig
from telephony.sip.dialog import (
    Call,
    CallState,
    CallTable,
    Local,
    MediaLeg,
    Outbox,
    RtpPorts,
    StartMedia,
    StopMedia,
)
from telephony.sip.errors import CallNotFoundError, ParseError
from telephony.sip.invite import Acceptable, NotServed, Refusal, examine_invite
from telephony.sip.location import decode_invite_location
from telephony.sip.media import MediaPath
from telephony.sip.message import SipMessage, parse_via, response_address
from telephony.sip.multipart import find_part, split_body
from telephony.sip.sdp import audio_session, build_sdp, negotiate_audio, parse_sdp
from telephony.sip.taker_legs import TakerLegs
from telephony.sip.timers import Retransmissions
from telephony.sip.wire import (
    ALLOW,
    build_response,
    caller_identity,
    codec_name,
    info_digit,
    name_addr_or_raw,
    new_tag,
    strip_tag,
)

log = logging.getLogger(__name__)

Address = tuple[str, int]


class IncomingCalls:
    def __init__(
        self,
        local: Local,
        config: SipEndpointConfig,
        table: CallTable,
        timers: Retransmissions,
        media: MediaPath,
        takers: TakerLegs,
        outbox: Outbox,
        ports: RtpPorts,
    ) -> None:
        self._local = local
        self._config = config
        self._table = table
        self._timers = timers
        self._media = media
        self._takers = takers
        self._out = outbox
        self._ports = ports
        self.accepting = True  # False while the endpoint stops: new INVITEs get 503

    # ------------------------------------------------------------------------------ requests

    def on_request(self, request: SipMessage, source: Address, now: float) -> None:
        """Raises ParseError when the request names no usable Via (the caller answers 400)."""
        reply_to = response_address(parse_via(request.header_values("Via")[0]), source)
        method = request.method
        if method == "INVITE":
            self._on_invite(request, source, reply_to, now)
        elif method == "ACK":
            self._on_ack(request)
        elif method == "CANCEL":
            self._on_cancel(request, source, reply_to, now)
        elif method == "BYE":
            self._on_bye(request, source, reply_to, now)
        elif method == "OPTIONS":
            extra = (("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", ""))
            self._reply(request, source, reply_to, 200, "OK", extra=extra)
        elif method == "INFO":
            self._on_info(request, source, reply_to)
        else:
            self._reply(request, source, reply_to, 405, "Method Not Allowed", extra=(("Allow", ALLOW),))

    def _reply(
        self,
        request: SipMessage,
        source: Address,
        reply_to: Address,
        status: int,
        reason: str,
        to_tag: str = "",
        extra: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> bytes:
        data = build_response(request, source, self._local.user_agent, status, reason, to_tag, extra, body)
        self._out.send(data, reply_to)
        return data

    def _on_invite(self, request: SipMessage, source: Address, reply_to: Address, now: float) -> None:
        call_ref = request.call_id
        known = self._table.known(call_ref)
        refused = self._table.refused.get(call_ref)
        has_to_tag = "tag=" in (request.header("To") or "")
        if known is None and refused is not None:
            self._out.send(refused, reply_to)  # a retransmission of an INVITE already refused
            return
        if known is not None:
            if has_to_tag and known.state == CallState.ANSWERED:
                self._on_reinvite(known, request, source, reply_to)
            elif known.last_invite_response:
                self._out.send(known.last_invite_response, reply_to)  # retransmitted INVITE
            return
        if has_to_tag:
            self._reply(request, source, reply_to, 481, "Call/Transaction Does Not Exist")
            return  # a re-INVITE for a dialog we do not hold (e.g. after a restart)
        verdict = examine_invite(request, self._config.accepted_numbers, self._config.accept_media_forks)
        if isinstance(verdict, NotServed):
            log.info("call %s to %r rejected: not an emergency number served here", call_ref, verdict.dialled)
            self._reply(request, source, reply_to, 404, "Not Found", new_tag())
            return
        if isinstance(verdict, Refusal):
            self._refuse(request, source, reply_to, verdict)
            return
        if not self.accepting or len(self._table.calls) >= self._config.max_calls:
            # 503 lets the front (Kamailio) try the next intake node; the attempt is still filed here, so a
            # caller refused everywhere is on the call-back list (intake settles the record when the same
            # INVITE is taken on another node).
            why = (
                "endpoint stopping"
                if not self.accepting
                else f"endpoint at its limit of {self._config.max_calls} calls"
            )
            self._refuse(
                request, source, reply_to, Refusal(verdict.dialled, 503, "Service Unavailable", "", why)
            )
            return
        try:
            rtp_port = self._ports.open()
        except OSError as exc:
            self._refuse(
                request,
                source,
                reply_to,
                Refusal(verdict.dialled, 503, "Service Unavailable", "", f"no RTP port: {exc}"),
            )
            return
        self._offer(request, source, reply_to, verdict, rtp_port, now)

    def _offer(
        self,
        request: SipMessage,
        source: Address,
        reply_to: Address,
        verdict: Acceptable,
        rtp_port: int,
        now: float,
    ) -> None:
        call_ref = request.call_id
        negotiated = verdict.media
        # A caller's From/Contact that does not parse is no reason to drop an emergency call: taken as is.
        from_addr = name_addr_or_raw(request.header("From") or "")
        contact = request.header_values("Contact")
        leg = MediaLeg(
            kind=Leg.CALLER,
            call_id=call_ref,
            local_port=rtp_port,
            local_tag=new_tag(),
            remote_tag=from_addr.tag,
            local_uri=strip_tag(request.header("To") or ""),
            remote_uri=request.header("From") or "",
            remote_target=name_addr_or_raw(contact[0]).uri if contact else from_addr.uri,
            signal_address=reply_to,
            media=negotiated,
            remote_rtp=negotiated.remote_address,
            allowed_rtp_hosts={negotiated.remote_address[0], source[0]},
            last_rx=now,
        )
        call = Call(call_ref, leg, request, source, reply_to)
        # Issue 13: the optional location/eCall parts never stop the call (the decoder is behind a boundary).
        location, extra_fixes, location_headers, ecall = decode_invite_location(
            request, verdict.parts, call_ref
        )
        caller, caller_name = caller_identity(request.header("From") or "")
        headers = {name: value for name, value in reversed(request.headers)}
        headers.update(location_headers)
        self._table.calls[call_ref] = call
        self._out.add(StartMedia(leg))
        call.last_invite_response = self._reply(request, source, reply_to, 100, "Trying")
        self._out.emit(
            CallOffered(
                call_ref=call_ref,
                dialled=verdict.dialled,
                caller=caller,
                source=CallSource.SIP,
                caller_name=caller_name,
                location=location,
                fork_of=verdict.fork_of,
                headers=headers,
                ecall=ecall,
            )
        )
        for fix in extra_fixes:
            self._out.emit(LocationReported(call_ref, fix))
        if self._config.answer_after_s <= 0:
            self.answer(call, now)
        else:
            call.answer_at = now + self._config.answer_after_s
            call.last_invite_response = self._reply(request, source, reply_to, 180, "Ringing", leg.local_tag)
        log.info(
            "call %s from %s to %s offered (%s)", call_ref, caller, verdict.dialled, codec_name(negotiated)
        )

    def _refuse(self, request: SipMessage, source: Address, reply_to: Address, refusal: Refusal) -> None:
        """An emergency INVITE that cannot become a media call still leaves a call record: it is offered and
        ended at once with the reason, so intake files it (and the caller's number lands on the call-back
        list) instead of the attempt vanishing with a 4xx nobody at the centre saw."""
        call_ref = request.call_id
        log.warning(
            "call %s to %s refused with %d: %s", call_ref, refusal.dialled, refusal.status, refusal.why
        )
        extra = (("Warning", refusal.warning),) if refusal.warning else ()
        final = self._reply(request, source, reply_to, refusal.status, refusal.reason, new_tag(), extra)
        if request.header("X-IZS-Fork-Of") is not None:
            return  # a PBX media fork, not a call: the PBX keeps the call's record
        if not self._table.remember_refused(call_ref, final):
            return
        caller, caller_name = caller_identity(request.header("From") or "")
        headers = {name: value for name, value in reversed(request.headers)}
        self._out.emit(
            CallOffered(
                call_ref=call_ref,
                dialled=refusal.dialled,
                caller=caller,
                source=CallSource.SIP,
                caller_name=caller_name,
                headers=headers,
            )
        )
        self._out.emit(CallEnded(call_ref, EndReason.REJECTED, detail=f"SIP {refusal.status}: {refusal.why}"))

    def _local_sdp(self, leg: MediaLeg) -> bytes:
        assert leg.media is not None
        session = audio_session(
            self._local.host,
            leg.local_port,
            [leg.media.payload_type],
            leg.media.event_payload_type,
            abs(hash(leg.call_id)) % (2**31),
        )
        return build_sdp(session)

    def answer(self, call: Call, now: float) -> None:
        """Send 200 OK with our SDP answer, retransmitted until ACKed (Timer G, H). A CANCELled call is
        never answered."""
        if call.state != CallState.RINGING:
            return
        call.state = CallState.ANSWERED
        call.answer_at = None
        leg = call.caller
        leg.last_rx = now
        extra = (("Contact", self._local.contact), ("Allow", ALLOW), ("Content-Type", "application/sdp"))
        data = build_response(
            call.invite,
            call.invite_source,
            self._local.user_agent,
            200,
            "OK",
            leg.local_tag,
            extra,
            self._local_sdp(leg),
        )
        call.last_invite_response = data
        self._out.send(data, call.invite_reply_address)
        self._timers.start(
            f"{call.call_ref}/2xx", data, call.invite_reply_address, now, self._config.ack_timeout_s, True
        )
        leg.established = True
        self._out.emit(CallAnswered(call.call_ref))
        log.info("call %s answered", call.call_ref)

    def _on_reinvite(self, call: Call, request: SipMessage, source: Address, reply_to: Address) -> None:
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
        extra = (("Contact", self._local.contact), ("Content-Type", "application/sdp"))
        self._reply(request, source, reply_to, 200, "OK", leg.local_tag, extra, self._local_sdp(leg))

    def _on_ack(self, request: SipMessage) -> None:
        call = self._table.known(request.call_id)
        if call is None:
            return
        call.invite_acked = True
        self._timers.stop(f"{call.call_ref}/2xx")
        self._timers.stop(f"{call.call_ref}/final")

    def _on_cancel(self, request: SipMessage, source: Address, reply_to: Address, now: float) -> None:
        call = self._table.known(request.call_id)
        if call is None:
            self._reply(request, source, reply_to, 481, "Call/Transaction Does Not Exist")
            return
        self._reply(request, source, reply_to, 200, "OK", call.caller.local_tag)
        if call.state != CallState.RINGING:
            return  # already answered or ended: CANCEL has no effect (RFC 3261 9.2)
        # RFC 3261 9.2: the INVITE gets 487 and the call is over before it was ever answered.
        terminated = build_response(
            call.invite,
            call.invite_source,
            self._local.user_agent,
            487,
            "Request Terminated",
            call.caller.local_tag,
        )
        call.last_invite_response = terminated
        self._out.send(terminated, call.invite_reply_address)
        self._timers.start(f"{call.call_ref}/final", terminated, call.invite_reply_address, now)
        self.terminate(call, EndReason.ABANDONED, "caller cancelled before answer", hang_up=False, now=now)
        log.info("call %s abandoned (CANCEL before answer)", request.call_id)

    def _on_bye(self, request: SipMessage, source: Address, reply_to: Address, now: float) -> None:
        call_id = request.call_id
        call = self._table.calls.get(call_id)
        if call is not None:
            self._reply(request, source, reply_to, 200, "OK")
            self.terminate(call, EndReason.CALLER_HANGUP, "caller sent BYE", hang_up=True, now=now)
        elif call_id in self._table.taker_calls:
            self._reply(request, source, reply_to, 200, "OK")
            taker_call = self._takers.on_bye(call_id)
            if taker_call is not None:
                self.terminate(
                    taker_call, EndReason.TAKER_HANGUP, "call taker hung up", hang_up=True, now=now
                )
        elif call_id in self._table.terminated:
            self._reply(request, source, reply_to, 200, "OK")
        else:
            self._reply(request, source, reply_to, 481, "Call/Transaction Does Not Exist")

    def _on_info(self, request: SipMessage, source: Address, reply_to: Address) -> None:
        call = self._table.calls.get(request.call_id)
        if call is None and request.call_id not in self._table.taker_calls:
            self._reply(request, source, reply_to, 481, "Call/Transaction Does Not Exist")
            return
        self._reply(request, source, reply_to, 200, "OK")
        digit = info_digit(request)
        if call is not None and digit is not None and call.state == CallState.ANSWERED:
            self._out.emit(DtmfReceived(call.call_ref, digit))

    # ------------------------------------------------------------------------------ commands

    def require(self, call_ref: str) -> Call:
        call = self._table.calls.get(call_ref)
        if call is None or call.state == CallState.ENDED:
            raise CallNotFoundError(f"no active SIP call {call_ref}")
        return call

    def hangup(self, call_ref: str, now: float) -> None:
        call = self.require(call_ref)
        if call.state == CallState.RINGING:
            self.terminate(call, EndReason.REJECTED, "rejected by intake", hang_up=True, now=now)
        else:
            self.terminate(call, EndReason.TAKER_HANGUP, "hangup requested by intake", hang_up=True, now=now)

    def terminate(self, call: Call, reason: EndReason, detail: str, hang_up: bool, now: float) -> None:
        """End a call exactly once: 480 (ringing) or BYE the legs still up, close RTP, emit CallEnded."""
        if call.state == CallState.ENDED:
            return
        was_ringing = call.state == CallState.RINGING
        call.state = CallState.ENDED
        call.ended_at = now
        if hang_up and was_ringing:
            final = build_response(
                call.invite,
                call.invite_source,
                self._local.user_agent,
                480,
                "Temporarily Unavailable",
                call.caller.local_tag,
            )
            call.last_invite_response = final
            self._out.send(final, call.invite_reply_address)
            self._timers.start(f"{call.call_ref}/final", final, call.invite_reply_address, now)
        elif hang_up and reason != EndReason.CALLER_HANGUP:
            self._takers.send_bye(call.caller, now)
        self._timers.stop(f"{call.call_ref}/2xx")
        self._media.flush(call, call.caller)
        self._out.add(StopMedia(call.caller))
        if call.taker is not None:
            self._media.flush(call, call.taker)
            self._takers.drop(call, f"call ended: {detail}", cancel=True, now=now)
        self._table.calls.pop(call.call_ref, None)
        self._table.terminated[call.call_ref] = call
        self._out.emit(CallEnded(call.call_ref, reason, detail=detail))
        log.info("call %s ended: %s (%s)", call.call_ref, reason.value, detail)

    # --------------------------------------------------------------------------------- timers

    def tick(self, now: float) -> None:
        """Timers: retransmissions (and a 2xx never ACKed), ring time over, media lost, taker not answering,
        the next 20 ms of each prompt, forgetting ended calls."""
        due = self._timers.due(now)
        for data, address in due.resend:
            self._out.send(data, address)
        for key in due.expired:
            call = self._table.calls.get(key.rsplit("/", 1)[0])
            if call is not None and not call.invite_acked:
                self.terminate(call, EndReason.ERROR, "caller never acknowledged our 200 OK", True, now)
        for call in list(self._table.calls.values()):
            self._tick_call(call, now)
        self._table.forget_old(now)

    def _tick_call(self, call: Call, now: float) -> None:
        if call.state == CallState.RINGING:
            if call.answer_at is not None and now >= call.answer_at:
                self.answer(call, now)
            return
        if call.state != CallState.ANSWERED:
            return
        if now - call.caller.last_rx > self._config.media_timeout_s:
            self.terminate(call, EndReason.MEDIA_LOST, "no RTP from the caller", hang_up=True, now=now)
            return
        self._takers.tick(call, now)
        taker = call.taker
        if call.prompt is not None and (taker is None or not taker.established):
            self._media.play_prompt_frame(call)
