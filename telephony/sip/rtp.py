"""Pure RTP (RFC 3550) and RFC 4733 telephone-event packet handling, no sockets."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from telephony.sip.errors import ParseError

RTP_HEADER = struct.Struct("!BBHII")
DTMF_EVENTS = "0123456789*#ABCD"


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        header = RTP_HEADER.pack(0x80, second, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)
        return header + self.payload


def parse_rtp(data: bytes) -> RtpPacket:
    if len(data) < RTP_HEADER.size:
        raise ParseError(f"RTP packet too short ({len(data)} bytes)")
    first, second, sequence, timestamp, ssrc = RTP_HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise ParseError(f"RTP version {first >> 6} is not 2")
    offset = RTP_HEADER.size + 4 * (first & 0x0F)
    if first & 0x10:
        if len(data) < offset + 4:
            raise ParseError("RTP extension header truncated")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data)
    if first & 0x20:
        padding = data[-1] if data else 0
        end -= padding
    if offset > end or padding_invalid(first, data, offset):
        raise ParseError("RTP header/padding longer than packet")
    return RtpPacket(second & 0x7F, sequence, timestamp, ssrc, bytes(data[offset:end]), bool(second & 0x80))


def padding_invalid(first: int, data: bytes, offset: int) -> bool:
    return bool(first & 0x20) and (data[-1] == 0 or len(data) - data[-1] < offset)


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    digit: str
    end: bool
    volume: int
    duration: int


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < 4:
        raise ParseError(f"telephone-event payload too short ({len(payload)} bytes)")
    event, flags, duration = struct.unpack_from("!BBH", payload)
    if event >= len(DTMF_EVENTS):
        raise ParseError(f"telephone-event {event} is not a DTMF digit")
    return TelephoneEvent(DTMF_EVENTS[event], bool(flags & 0x80), flags & 0x3F, duration)


def build_telephone_event(digit: str, end: bool, duration: int, volume: int = 10) -> bytes:
    return struct.pack("!BBH", DTMF_EVENTS.index(digit), (0x80 if end else 0) | volume, duration)
