"""Pure SDP (RFC 4566) parsing/building for the offer/answer the endpoint does (RFC 3264), no sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

from telephony.sip.errors import ParseError

MAX_SDP_BYTES = 16_384

# Static RTP payload types (RFC 3551) the endpoint can decode.
PCMU = 0
PCMA = 8
STATIC_CODECS: dict[int, str] = {PCMU: "PCMU", PCMA: "PCMA"}
TELEPHONE_EVENT = "telephone-event"
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(frozen=True, slots=True)
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None = None
    rtpmap: dict[int, str] = field(default_factory=dict)  # pt -> "PCMU/8000"
    fmtp: dict[int, str] = field(default_factory=dict)
    ptime: int | None = None
    direction: str = "sendrecv"
    other_attributes: tuple[str, ...] = ()

    def codec_name(self, payload_type: int) -> str | None:
        """Encoding name of a payload type: from a=rtpmap, else the RFC 3551 static table."""
        mapped = self.rtpmap.get(payload_type)
        if mapped is not None:
            return mapped.split("/", 1)[0]
        return STATIC_CODECS.get(payload_type)

    def payload_types(self) -> list[int]:
        return [int(f) for f in self.formats if f.isdigit()]


@dataclass(frozen=True, slots=True)
class SessionDescription:
    origin: str = "- 0 0 IN IP4 0.0.0.0"
    session_name: str = "-"
    connection: str | None = None  # session-level c= address
    media: tuple[MediaDescription, ...] = ()

    def audio(self) -> MediaDescription | None:
        for media in self.media:
            if media.media == "audio" and media.port != 0:
                return media
        return None

    def audio_address(self) -> tuple[str, int] | None:
        audio = self.audio()
        if audio is None:
            return None
        address = audio.connection or self.connection
        if address is None:
            return None
        return address, audio.port


def _connection_address(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6") or not parts[2]:
        raise ParseError(f"malformed c= line {value[:80]!r}")
    return parts[2].split("/", 1)[0]


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body; ParseError (only) on anything malformed."""
    if len(data) > MAX_SDP_BYTES:
        raise ParseError(f"SDP too large ({len(data)} bytes)")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"SDP is not UTF-8: {exc.reason}") from exc
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise ParseError("SDP must start with v=0")
    origin = "- 0 0 IN IP4 0.0.0.0"
    session_name = "-"
    connection: str | None = None
    media: list[_MediaBuilder] = []
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise ParseError(f"malformed SDP line {line[:80]!r}")
        kind, value = line[0], line[2:].strip()
        current = media[-1] if media else None
        if kind == "m":
            media.append(_parse_media_line(value))
        elif kind == "o" and current is None:
            origin = value
        elif kind == "s" and current is None:
            session_name = value
        elif kind == "c":
            if current is None:
                connection = _connection_address(value)
            else:
                current.connection = _connection_address(value)
        elif kind == "a" and current is not None:
            _apply_media_attribute(current, value)
    return SessionDescription(
        origin=origin,
        session_name=session_name,
        connection=connection,
        media=tuple(m.build() for m in media),
    )


@dataclass(slots=True)
class _MediaBuilder:
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None = None
    rtpmap: dict[int, str] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    ptime: int | None = None
    direction: str = "sendrecv"
    other: list[str] = field(default_factory=list)

    def build(self) -> MediaDescription:
        return MediaDescription(
            self.media,
            self.port,
            self.proto,
            self.formats,
            self.connection,
            dict(self.rtpmap),
            dict(self.fmtp),
            self.ptime,
            self.direction,
            tuple(self.other),
        )


def _parse_media_line(value: str) -> _MediaBuilder:
    parts = value.split()
    if len(parts) < 3:
        raise ParseError(f"malformed m= line {value[:80]!r}")
    port_text = parts[1].split("/", 1)[0]
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ParseError(f"bad media port {parts[1]!r}")
    return _MediaBuilder(parts[0], int(port_text), parts[2], tuple(parts[3:]))


def _payload_type(text: str) -> int:
    if not text.isdigit() or int(text) > 127:
        raise ParseError(f"bad RTP payload type {text!r}")
    return int(text)


def _apply_media_attribute(media: _MediaBuilder, value: str) -> None:
    name, _, rest = value.partition(":")
    if name == "rtpmap":
        pt, _, encoding = rest.partition(" ")
        if not encoding.strip():
            raise ParseError(f"malformed rtpmap {value[:80]!r}")
        media.rtpmap[_payload_type(pt)] = encoding.strip()
    elif name == "fmtp":
        pt, _, params = rest.partition(" ")
        media.fmtp[_payload_type(pt)] = params.strip()
    elif name == "ptime":
        if not rest.strip().isdigit() or not 0 < int(rest.strip()) <= 1000:
            raise ParseError(f"bad ptime {rest[:20]!r}")
        media.ptime = int(rest.strip())
    elif name in DIRECTIONS and not rest:
        media.direction = name
    else:
        media.other.append(value)


def build_sdp(session: SessionDescription) -> bytes:
    ip_version = "IP6" if session.connection and ":" in session.connection else "IP4"
    lines = ["v=0", f"o={session.origin}", f"s={session.session_name}"]
    if session.connection is not None:
        lines.append(f"c=IN {ip_version} {session.connection}")
    lines.append("t=0 0")
    for media in session.media:
        lines.append(f"m={media.media} {media.port} {media.proto} {' '.join(media.formats)}".rstrip())
        if media.connection is not None:
            version = "IP6" if ":" in media.connection else "IP4"
            lines.append(f"c=IN {version} {media.connection}")
        lines.extend(f"a=rtpmap:{pt} {enc}" for pt, enc in media.rtpmap.items())
        lines.extend(f"a=fmtp:{pt} {params}" for pt, params in media.fmtp.items())
        if media.ptime is not None:
            lines.append(f"a=ptime:{media.ptime}")
        lines.extend(f"a={attr}" for attr in media.other_attributes)
        lines.append(f"a={media.direction}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    remote_address: tuple[str, int]
    payload_type: int  # PCMU (0) or PCMA (8)
    event_payload_type: int | None  # RFC 4733 telephone-event, when offered
    ptime: int


def negotiate_audio(offer: SessionDescription) -> NegotiatedMedia | None:
    """Pick the first G.711 codec in the offerer's preference order; None when nothing usable (→ 488)."""
    audio = offer.audio()
    address = offer.audio_address()
    if audio is None or address is None or not audio.proto.startswith("RTP/AVP"):
        return None
    chosen: int | None = None
    event: int | None = None
    for pt in audio.payload_types():
        name = (audio.codec_name(pt) or "").upper()
        if chosen is None and name in ("PCMU", "PCMA") and pt in STATIC_CODECS:
            chosen = pt
        elif name == TELEPHONE_EVENT.upper() and event is None:
            event = pt
    if chosen is None:
        return None
    return NegotiatedMedia(address, chosen, event, audio.ptime or 20)


def audio_session(
    address: str, port: int, payload_types: list[int], event_payload_type: int | None, session_id: int
) -> SessionDescription:
    formats = [str(pt) for pt in payload_types]
    rtpmap = {pt: f"{STATIC_CODECS[pt]}/8000" for pt in payload_types}
    fmtp: dict[int, str] = {}
    if event_payload_type is not None:
        formats.append(str(event_payload_type))
        rtpmap[event_payload_type] = f"{TELEPHONE_EVENT}/8000"
        fmtp[event_payload_type] = "0-16"
    return SessionDescription(
        origin=f"izs-intake {session_id} {session_id} IN IP4 {address}",
        session_name="izs-intake",
        connection=address,
        media=(MediaDescription("audio", port, "RTP/AVP", tuple(formats), None, rtpmap, fmtp, 20),),
    )
