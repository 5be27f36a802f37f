"""Wire-independent call events emitted by every telephony adapter (SIP endpoint, AMI bridge).

These are plain frozen dataclasses so that ``intake`` can consume them without knowing whether a call
came over SIP or through Asterisk, and so that tests can build them without sockets.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


class CallSource(enum.StrEnum):
    SIP = "sip"
    AMI = "ami"


class Leg(enum.StrEnum):
    """Which side of a call a piece of audio or transcript belongs to."""

    CALLER = "caller"
    TAKER = "taker"


# CallOffered header an adapter sets when a location body (PIDF-LO, eCall MSD) came with the call but could
# not be used; its value is the reason. The call goes on; intake records it on the call.
LOCATION_REFUSED_HEADER = "Location-Refused"


class EndReason(enum.StrEnum):
    CALLER_HANGUP = "caller_hangup"
    TAKER_HANGUP = "taker_hangup"
    # The caller gave up before anybody answered (SIP CANCEL, AMI QueueCallerAbandon + Hangup).
    ABANDONED = "abandoned"
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    MEDIA_LOST = "media_lost"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class GeoFix:
    """A position the network or the caller's device delivered (PIDF-LO, AML, eCall)."""

    source: str  # "pidf-lo", "aml-gnss", "aml-cell", "aml-wifi", "ecall", ...
    lat: float | None = None
    lon: float | None = None
    radius_m: float | None = None
    confidence: float | None = None  # 0..1 where the source states it (PIDF-LO / AML confidence %)
    civic: dict[str, str] = field(default_factory=dict)  # RFC 5139 civic address elements
    at: datetime = field(default_factory=utc_now)
    raw: str = ""


@dataclass(frozen=True, slots=True)
class EcallFacts:
    """What an eCall's Minimum Set of Data (RFC 8147, EN 15722) tells the call taker, decoded at the
    adapter. ``msd_hex`` is the raw MSD, always kept for the record; ``error`` says why the rest is empty
    when the MSD could not be decoded (the call goes on without it)."""

    msd_hex: str
    automatic_activation: bool = False
    test_call: bool = False
    position_trusted: bool = False
    vehicle_type: str = ""
    vin: str = ""
    propulsion: tuple[str, ...] = ()
    timestamp: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    direction_deg: int | None = None
    passengers: int | None = None
    error: str | None = None

    @property
    def decoded(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, object]:
        """The facts as the live event and the record carry them."""
        out: dict[str, object] = {"msd_hex": self.msd_hex}
        if self.error is not None:
            out["error"] = self.error
            return out
        out.update(
            automatic_activation=self.automatic_activation,
            test_call=self.test_call,
            position_trusted=self.position_trusted,
            vehicle_type=self.vehicle_type,
            vin=self.vin,
            propulsion=list(self.propulsion),
            timestamp=self.timestamp.isoformat() if self.timestamp else None,
            lat=self.lat,
            lon=self.lon,
            direction_deg=self.direction_deg,
            passengers=self.passengers,
        )
        return out


@dataclass(frozen=True, slots=True)
class CallOffered:
    call_ref: str  # adapter-unique reference: SIP Call-ID or Asterisk Uniqueid
    dialled: str
    caller: str  # caller number as it came on the wire (From user part / CallerIDNum)
    source: CallSource
    at: datetime = field(default_factory=utc_now)
    channel: str | None = None  # Asterisk channel name, when following a PBX
    caller_name: str | None = None
    location: GeoFix | None = None
    fork_of: str | None = None  # media fork: channel whose audio this leg carries
    headers: dict[str, str] = field(default_factory=dict)
    ecall: EcallFacts | None = None  # an eCall's MSD, decoded (or the reason it was not)


@dataclass(frozen=True, slots=True)
class CallAnswered:
    call_ref: str
    at: datetime = field(default_factory=utc_now)
    by: str = "endpoint"  # "endpoint" (intake answered to prompt/record) or a call-taker id / interface


@dataclass(frozen=True, slots=True)
class CallQueued:
    call_ref: str
    queue: str
    position: int | None = None
    at: datetime = field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class CallConnected:
    """A human call taker is now talking to the caller."""

    call_ref: str
    taker: str
    at: datetime = field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """20 ms of 16-bit little-endian mono PCM."""

    call_ref: str
    pcm: bytes
    sample_rate: int = 8000
    leg: Leg = Leg.CALLER
    seq: int = 0


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    call_ref: str
    digit: str
    at: datetime = field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class LocationReported:
    call_ref: str
    fix: GeoFix


@dataclass(frozen=True, slots=True)
class CallEnded:
    call_ref: str
    reason: EndReason
    at: datetime = field(default_factory=utc_now)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AdapterStatus:
    """Health of an adapter (AMI connected / lost, SIP socket up): shown to supervisors."""

    adapter: str
    healthy: bool
    detail: str = ""
    at: datetime = field(default_factory=utc_now)


TelephonyEvent = (
    CallOffered
    | CallAnswered
    | CallQueued
    | CallConnected
    | AudioFrame
    | DtmfReceived
    | LocationReported
    | CallEnded
    | AdapterStatus
)
