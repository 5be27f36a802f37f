"""Settings of the SIP intake endpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

from routing.vocabulary import EMERGENCY_NUMBERS


@dataclass(frozen=True, slots=True)
class SipEndpointConfig:
    host: str = "0.0.0.0"
    port: int = 5060  # 0 = any free port (tests); read the bound one from SipEndpoint.address
    # Address put into Via/Contact/SDP; defaults to ``host`` (127.0.0.1 when host is a wildcard).
    public_host: str | None = None
    accepted_numbers: frozenset[str] = frozenset(EMERGENCY_NUMBERS)
    # Asterisk media forks (Originate SIP/intake + ChanSpy) dial the peer name, not an emergency number;
    # an INVITE carrying X-IZS-Fork-Of is accepted whatever its Request-URI user.
    accept_media_forks: bool = True
    # RTP ports are taken from [rtp_port_min, rtp_port_max]; both 0 = let the OS choose (tests).
    rtp_port_min: int = 0
    rtp_port_max: int = 0
    # Ring this long before answering (0 = answer at once). The caller can abandon (CANCEL) meanwhile.
    answer_after_s: float = 0.0
    taker_uris: tuple[str, ...] = field(default_factory=tuple)  # known call-taker phones, informational
    taker_answer_timeout_s: float = 30.0
    media_timeout_s: float = 60.0  # no RTP from the caller this long on an answered call → MEDIA_LOST
    ack_timeout_s: float = 32.0  # RFC 3261 64*T1: 200 OK never ACKed → call ended with ERROR
    max_calls: int = 1000
    max_rtp_packets_per_second: int = 250  # per leg; G.711 at 20 ms is 50/s, beyond this is a flood
    # Events waiting for a slow sink beyond this are AudioFrames dropped (counted, logged); call-control events
    # (offered/answered/ended/DTMF/...) are never dropped. 100 000 ≈ 5 s of 1000 calls.
    max_event_backlog: int = 100_000
    user_agent: str = "izs-intake"

    def advertised_host(self) -> str:
        if self.public_host:
            return self.public_host
        if self.host in ("", "0.0.0.0", "::"):
            return "127.0.0.1"
        return self.host
