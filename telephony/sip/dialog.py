"""The state the SIP machines share: calls, their media legs, and the outbox of actions for the I/O shell.

Pure data, no sockets and no clock: a leg names its RTP socket by the local port the shell bound for it, and
every time stamp here was passed in by the caller of a machine (``now``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from telephony.events import Leg, TelephonyEvent
from telephony.sip.errors import TakerUnavailableError
from telephony.sip.message import SipMessage
from telephony.sip.sdp import NegotiatedMedia

TERMINATED_KEEP_S = 32.0  # keep ended calls this long to absorb retransmitted INVITE/CANCEL/BYE/ACK
REFUSED_MEMORY = 1000


class CallState(StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass(slots=True)
class Local:
    """Who we are on the wire: the address put into Via/Contact/SDP and the User-Agent/Server value."""

    host: str
    port: int
    user_agent: str

    @property
    def contact(self) -> str:
        return f"<sip:intake@{self.host}:{self.port}>"

    def via(self, branch: str) -> str:
        return f"SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport"


@dataclass(eq=False, slots=True)
class MediaLeg:
    """One side of a call: a SIP dialog and its RTP stream (the socket is the shell's, named by its port)."""

    kind: Leg
    call_id: str
    local_port: int
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
    last_rx: float = 0.0
    last_dtmf_ts: int | None = None
    window_start: float = 0.0
    window_packets: int = 0
    dropped_packets: int = 0
    established: bool = False
    invite_branch: str = ""  # UAC legs: our INVITE's branch, reused by CANCEL and the non-2xx ACK
    invite_uri: str = ""


@dataclass(eq=False, slots=True)
class Call:
    """One emergency call: the caller's dialog (we are UAS) and at most one leg to a call taker (UAC)."""

    call_ref: str
    caller: MediaLeg
    invite: SipMessage
    invite_source: tuple[str, int]
    invite_reply_address: tuple[str, int]
    state: CallState = CallState.RINGING
    answer_at: float | None = None
    last_invite_response: bytes = b""
    invite_acked: bool = False
    taker: MediaLeg | None = None
    taker_uri: str = ""
    taker_future: concurrent.futures.Future[None] | None = None
    taker_deadline: float = 0.0
    prompt: np.ndarray[Any, np.dtype[np.int16]] | None = None
    prompt_pos: int = 0
    prompt_loop: bool = False
    ended_at: float = 0.0


class RtpPorts(Protocol):
    """Where RTP sockets come from: the shell binds one and names it by its local port."""

    def open(self) -> int:
        """Bind a new RTP socket; its local port. Raises OSError when none is free."""
        ...


class CallTable:
    """Every call the endpoint knows, by the Call-ID of each of its dialogs."""

    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}  # by the caller leg's Call-ID (== call_ref)
        self.taker_calls: dict[str, Call] = {}  # by the taker leg's Call-ID
        self.terminated: dict[str, Call] = {}
        # Emergency INVITEs refused before a dialog existed (bad body, no usable audio, no RTP port): their
        # final answer, resent to a retransmission instead of offering the call a second time.
        self.refused: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        # Taker legs we gave up on before they answered: their late 487/2xx still need an ACK (and a BYE).
        self.abandoned_takers: dict[str, tuple[MediaLeg, float]] = {}

    def known(self, call_id: str) -> Call | None:
        """The call of this caller Call-ID, live or recently ended."""
        return self.calls.get(call_id) or self.terminated.get(call_id)

    def of_leg(self, call_id: str) -> Call | None:
        """The live call one of whose legs has this Call-ID."""
        return self.calls.get(call_id) or self.taker_calls.get(call_id)

    def remember_refused(self, call_id: str, final: bytes) -> bool:
        """Keep a refused INVITE's final answer; False if it was already refused once."""
        if call_id in self.refused:
            return False
        self.refused[call_id] = final
        while len(self.refused) > REFUSED_MEMORY:
            self.refused.popitem(last=False)
        return True

    def forget_old(self, now: float) -> None:
        for call_ref, call in list(self.terminated.items()):
            if now - call.ended_at > TERMINATED_KEEP_S:
                del self.terminated[call_ref]
        for call_id, (_, given_up_at) in list(self.abandoned_takers.items()):
            if now - given_up_at > TERMINATED_KEEP_S:
                del self.abandoned_takers[call_id]


# ----------------------------------------------------------------------------------------- actions
# What the machines ask the I/O shell to do. The shell executes them in order, under its lock.


@dataclass(frozen=True, slots=True)
class Send:
    """Send a SIP message (bytes) to an address from the SIP socket."""

    data: bytes
    address: tuple[str, int]


@dataclass(frozen=True, slots=True)
class Emit:
    """Hand a telephony event to the event sink."""

    event: TelephonyEvent


@dataclass(frozen=True, slots=True)
class StartMedia:
    """Start receiving RTP on the leg's socket."""

    leg: MediaLeg


@dataclass(frozen=True, slots=True)
class StopMedia:
    """Stop receiving on the leg's socket and close it."""

    leg: MediaLeg


@dataclass(frozen=True, slots=True)
class SendRtp:
    """Send one RTP packet from the leg's socket."""

    leg: MediaLeg
    data: bytes
    address: tuple[str, int]


@dataclass(frozen=True, slots=True)
class SettleTaker:
    """Complete the future of a connect-to-taker request: None = connected, else why not."""

    future: concurrent.futures.Future[None]
    error: TakerUnavailableError | None


Action = Send | Emit | StartMedia | StopMedia | SendRtp | SettleTaker


class Outbox:
    """The actions the machines produced for one input, in order."""

    def __init__(self) -> None:
        self._actions: list[Action] = []

    def add(self, action: Action) -> None:
        self._actions.append(action)

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        self._actions.append(Send(data, address))

    def emit(self, event: TelephonyEvent) -> None:
        self._actions.append(Emit(event))

    def drain(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions
