"""The SIP endpoint's machines behind one door: datagrams, RTP packets, timer ticks and intake's commands
in (each with ``now``); the actions for the I/O shell out.

Pure - no sockets, no threads, no clock (RTP ports come from an injected :class:`RtpPorts`). Not
thread-safe: :class:`~telephony.sip.endpoint.SipEndpoint` calls it under one lock. Bad input never raises:
a datagram that is not SIP but names its sender gets a 400 with the reason; anything less is counted.
"""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any

import numpy as np

from telephony.events import EndReason
from telephony.sip.config import SipEndpointConfig
from telephony.sip.dialog import Action, Call, CallState, CallTable, Local, MediaLeg, Outbox, RtpPorts, Send
from telephony.sip.errors import ParseError
from telephony.sip.incoming import IncomingCalls
from telephony.sip.media import MediaPath
from telephony.sip.message import SipMessage, parse_message
from telephony.sip.taker_legs import TakerLegs
from telephony.sip.timers import Retransmissions
from telephony.sip.wire import answer_unparseable

log = logging.getLogger(__name__)

Address = tuple[str, int]
_LOG_FIRST_REJECTS = 20


class SipCore:
    def __init__(self, local: Local, config: SipEndpointConfig, ports: RtpPorts) -> None:
        self.local = local
        self.table = CallTable()
        self.timers = Retransmissions()
        self._out = Outbox()
        self.media = MediaPath(self.table, self._out, config.max_rtp_packets_per_second)
        self.takers = TakerLegs(local, config, self.table, self.timers, self.media, self._out, ports)
        self.incoming = IncomingCalls(
            local, config, self.table, self.timers, self.media, self.takers, self._out, ports
        )
        self.rejected_datagrams = 0

    # ------------------------------------------------------------------------------ wire input

    def on_datagram(self, data: bytes, source: Address, now: float) -> list[Action]:
        """One datagram from the SIP socket."""
        if not data.strip(b"\r\n"):
            return []  # RFC 5626 CRLF keep-alive
        try:
            message = parse_message(data)
        except ParseError as exc:
            self._reject(data, source, str(exc), None)
            return self._out.drain()
        try:
            if message.is_request:
                self.incoming.on_request(message, source, now)
            else:
                self.takers.on_response(message, now)
        except ParseError as exc:
            self._reject(data, source, str(exc), message)
        return self._out.drain()

    def _reject(self, data: bytes, source: Address, why: str, message: SipMessage | None) -> None:
        self.rejected_datagrams += 1
        answer = None
        if message is None or (message.is_request and message.method != "ACK"):
            answer = answer_unparseable(data, source, why, self.local.user_agent)
        if answer is not None:
            self._out.send(*answer)
        if message is not None:
            what = message.method or message.status
            log.warning("rejected SIP %s %r from %s:%d: %s", what, message.call_id, *source, why)
        elif self.rejected_datagrams <= _LOG_FIRST_REJECTS or self.rejected_datagrams % 1000 == 0:
            log.warning(
                "rejected SIP datagram #%d from %s:%d (%d bytes)%s: %s",
                self.rejected_datagrams,
                source[0],
                source[1],
                len(data),
                " with 400" if answer is not None else "",
                why,
            )

    def answer_after_bug(self, data: bytes, source: Address, exc: Exception) -> list[Action]:
        """A request that hit a bug still gets a final answer (500 with the reason), never silence: the
        handset then tries again or falls back, instead of ringing into nothing."""
        self.rejected_datagrams += 1
        # What the failed handling did before the bug still happens (a 100 Trying, an offered call's event
        # or media), as it did when each action was carried out at once.
        actions = self._out.drain()
        why = f"{type(exc).__name__}: {exc}"
        answer = answer_unparseable(data, source, why, self.local.user_agent, 500, "Server Internal Error")
        return actions if answer is None else [*actions, Send(*answer)]

    def on_rtp(self, leg: MediaLeg, data: bytes, source: Address, now: float) -> list[Action]:
        self.media.on_rtp(leg, data, source, now)
        return self._out.drain()

    def tick(self, now: float) -> list[Action]:
        self.incoming.tick(now)
        return self._out.drain()

    # ------------------------------------------------------------------------------ commands

    def active_calls(self) -> list[str]:
        return [ref for ref, call in self.table.calls.items() if call.state != CallState.ENDED]

    def call(self, call_ref: str) -> Call:
        """The live call; raises CallNotFoundError."""
        return self.incoming.require(call_ref)

    def play_prompt(
        self, call_ref: str, samples: np.ndarray[Any, np.dtype[np.int16]], loop: bool, now: float
    ) -> list[Action]:
        call = self.incoming.require(call_ref)
        if call.state == CallState.RINGING:
            self.incoming.answer(call, now)
        self.media.set_prompt(call, samples, loop)
        return self._out.drain()

    def hangup(self, call_ref: str, now: float) -> list[Action]:
        self.incoming.hangup(call_ref, now)
        return self._out.drain()

    def connect_to_taker(
        self,
        call_ref: str,
        taker_uri: str,
        address: Address,
        priority: int,
        future: concurrent.futures.Future[None],
        now: float,
    ) -> list[Action]:
        """Answer the call if still ringing and INVITE the taker (raises TakerUnavailableError, CallNotFound)."""
        call = self.incoming.require(call_ref)
        if call.state == CallState.RINGING:
            self.incoming.answer(call, now)
        try:
            self.takers.begin(call, taker_uri, address, priority, future, now)
        finally:
            actions = self._out.drain()
        return actions

    def give_up_taker(
        self, call_ref: str, future: concurrent.futures.Future[None], now: float
    ) -> list[Action]:
        call = self.table.calls.get(call_ref)
        if call is not None:
            self.takers.give_up(call, future, now)
        return self._out.drain()

    def stop_all(self, now: float) -> list[Action]:
        """The endpoint stops: refuse new calls, end every call (BYE/480)."""
        self.incoming.accepting = False
        for call in list(self.table.calls.values()):
            self.incoming.terminate(call, EndReason.ERROR, "SIP endpoint stopping", hang_up=True, now=now)
        return self._out.drain()
