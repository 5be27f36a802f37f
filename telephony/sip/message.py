"""Pure SIP message parsing and building (RFC 3261 wire format), no sockets.

``parse_message(bytes)`` returns a :class:`SipMessage` or raises :class:`ParseError`; it never raises anything
else, whatever the bytes (property-tested). It accepts what real peers send and pyVoIP 1.6.8 rejects: empty
header values (baresip's ``Supported:``), compact header names (``v:``, ``i:``, ...), no space after the colon,
folded lines, bare LF line ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from telephony.sip.errors import ParseError

SIP_VERSION = "SIP/2.0"
MAX_MESSAGE_BYTES = 65_535
MAX_HEADER_COUNT = 200
MAX_HEADER_LINE = 8_192

# RFC 3261 7.3.3 plus the registered compact forms (IANA SIP parameters).
COMPACT_HEADER_NAMES: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL_NAMES: dict[str, str] = {
    name.lower(): name
    for name in (
        *COMPACT_HEADER_NAMES.values(),
        "Accept",
        "Allow",
        "Authorization",
        "CSeq",
        "Content-Disposition",
        "Date",
        "Expires",
        "Geolocation",
        "Geolocation-Routing",
        "Max-Forwards",
        "Min-Expires",
        "P-Asserted-Identity",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Reason",
        "Record-Route",
        "Require",
        "Route",
        "Server",
        "Unsupported",
        "User-Agent",
        "WWW-Authenticate",
        "Warning",
        "X-IZS-Fork-Of",
    )
}

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) (SIP/\d+\.\d+)$")
_STATUS_LINE = re.compile(r"^(SIP/\d+\.\d+) (\d{3})(?: (.*))?$")
REQUIRED_REQUEST_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")


def canonical_header_name(name: str) -> str:
    lowered = name.lower()
    if lowered in COMPACT_HEADER_NAMES:
        return COMPACT_HEADER_NAMES[lowered]
    return _CANONICAL_NAMES.get(lowered, name)


@dataclass(frozen=True, slots=True)
class SipMessage:
    """One SIP request or response. Header names are canonical (long form, canonical case)."""

    method: str | None = None  # requests only
    uri: str | None = None  # requests only
    status: int | None = None  # responses only
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def header(self, name: str) -> str | None:
        wanted = canonical_header_name(name).lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """All values of a header, comma-separated lists split (for Via, Contact, Route, ...)."""
        wanted = canonical_header_name(name).lower()
        values: list[str] = []
        for key, value in self.headers:
            if key.lower() == wanted:
                values.extend(split_header_list(value))
        return values

    @property
    def call_id(self) -> str:
        return self.header("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.header("CSeq") or "")

    def with_headers(self, *extra: tuple[str, str], drop: tuple[str, ...] = ()) -> SipMessage:
        dropped = {canonical_header_name(d).lower() for d in drop}
        kept = tuple((k, v) for k, v in self.headers if k.lower() not in dropped)
        return SipMessage(self.method, self.uri, self.status, self.reason, kept + tuple(extra), self.body)

    def to_bytes(self) -> bytes:
        if self.method is not None:
            start = f"{self.method} {self.uri} {SIP_VERSION}"
        else:
            start = f"{SIP_VERSION} {self.status} {self.reason}"
        lines = [start]
        lines.extend(f"{k}: {v}" for k, v in self.headers if k.lower() != "content-length")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


def parse_message(data: bytes) -> SipMessage:
    """Parse one SIP datagram. Raises ParseError (only) for anything that is not a usable SIP message."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ParseError("SIP message must be bytes")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise ParseError(f"SIP message too large ({len(data)} bytes)")
    head, body = _split_head_body(data)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"SIP header section is not UTF-8: {exc.reason}") from exc
    lines = _unfold(text.replace("\r\n", "\n").split("\n"))
    if not lines or not lines[0]:
        raise ParseError("empty SIP message")
    if len(lines) - 1 > MAX_HEADER_COUNT:
        raise ParseError(f"too many SIP headers ({len(lines) - 1})")
    start = lines[0]
    method = uri = None
    status: int | None = None
    reason = ""
    request = _REQUEST_LINE.match(start)
    if request is not None:
        method, uri, version = request.group(1).upper(), request.group(2), request.group(3)
    else:
        response = _STATUS_LINE.match(start)
        if response is None:
            raise ParseError(f"not a SIP request or status line: {start[:80]!r}")
        version, status, reason = response.group(1), int(response.group(2)), response.group(3) or ""
        if not 100 <= status <= 699:
            raise ParseError(f"SIP status {status} out of range")
    if version != SIP_VERSION:
        raise ParseError(f"unsupported SIP version {version!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if len(line) > MAX_HEADER_LINE:
            raise ParseError(f"SIP header line too long ({len(line)} chars)")
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.match(name):
            raise ParseError(f"malformed SIP header line: {line[:80]!r}")
        headers.append((canonical_header_name(name), value.strip(" \t")))
    message = SipMessage(method, uri, status, reason, tuple(headers), body)
    _check_mandatory(message)
    length_header = message.header("Content-Length")
    if length_header is not None:
        if not length_header.isdigit():
            raise ParseError(f"bad Content-Length {length_header!r}")
        length = int(length_header)
        if length > len(body):
            raise ParseError(f"body shorter ({len(body)}) than Content-Length ({length})")
        message = SipMessage(method, uri, status, reason, message.headers, body[:length])
    return message


_SALVAGED_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")


def salvage_request(data: bytes) -> SipMessage | None:
    """What a response needs (request line, Via, From, To, Call-ID, CSeq) from a request that
    :func:`parse_message` refused, read leniently; ``None`` when the datagram is not even that (then there is
    nobody to answer). Never raises: it runs on input already known to be bad."""
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) > MAX_MESSAGE_BYTES:
        return None
    head, _ = _split_head_body(bytes(data))
    lines = _unfold(head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"))
    request = _REQUEST_LINE.match(lines[0]) if lines else None
    if request is None:
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1 : MAX_HEADER_COUNT + 1]:
        name, sep, value = line[:MAX_HEADER_LINE].partition(":")
        canonical = canonical_header_name(name.strip()) if sep and _TOKEN.match(name.strip()) else ""
        if canonical in _SALVAGED_HEADERS:
            headers.append((canonical, value.strip(" \t")))
    message = SipMessage(request.group(1).upper(), request.group(2), None, "", tuple(headers), b"")
    vias = message.header_values("Via")
    if not vias or not message.call_id or message.header("CSeq") is None:
        return None
    try:
        parse_via(vias[0])
        parse_cseq(message.header("CSeq") or "")
    except ParseError:
        return None
    return message


def _split_head_body(data: bytes) -> tuple[bytes, bytes]:
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        return data[:crlf], data[crlf + 4 :]
    if lf >= 0:
        return data[:lf], data[lf + 2 :]
    # A datagram without the blank line: all headers, no body (seen from keep-alive-ish senders).
    return data.rstrip(b"\r\n"), b""


def _unfold(lines: list[str]) -> list[str]:
    unfolded: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and len(unfolded) > 1:
            unfolded[-1] = unfolded[-1] + " " + line.strip(" \t")
        else:
            unfolded.append(line)
    return unfolded


def _check_mandatory(message: SipMessage) -> None:
    for name in REQUIRED_REQUEST_HEADERS:
        if message.header(name) is None:
            raise ParseError(f"SIP message lacks mandatory header {name}")
    number, method = parse_cseq(message.header("CSeq") or "")
    if message.method is not None and method != message.method and message.method != "ACK":
        raise ParseError(f"CSeq method {method!r} does not match request method {message.method!r}")
    if not message.call_id:
        raise ParseError("empty Call-ID")
    parse_via(message.header_values("Via")[0] if message.header_values("Via") else "")
    del number


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not _TOKEN.match(parts[1]):
        raise ParseError(f"malformed CSeq {value!r}")
    number = int(parts[0])
    if number >= 2**31:
        raise ParseError(f"CSeq number out of range {number}")
    return number, parts[1].upper()


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas inside quotes and angle brackets."""
    items: list[str] = []
    current: list[str] = []
    in_quotes = False
    in_angle = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif in_quotes and char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif not in_quotes and char == "<":
            in_angle = True
        elif not in_quotes and char == ">":
            in_angle = False
        elif char == "," and not in_quotes and not in_angle:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return params


@dataclass(frozen=True, slots=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")


def parse_via(value: str) -> Via:
    match = re.match(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+([^;\s]+)\s*(;.*)?$", value)
    if match is None:
        raise ParseError(f"malformed Via {value[:80]!r}")
    host, port = _split_host_port(match.group(2))
    return Via(match.group(1).upper(), host, port, _parse_params(match.group(3) or ""))


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError(f"bad IPv6 host {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ParseError(f"bad host:port {text!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ParseError(f"empty host in {text!r}")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ParseError(f"bad port in {text!r}")
    return host, int(port_text)


def response_address(via: Via, source: tuple[str, int]) -> tuple[str, int]:
    """Where a response to this request goes (RFC 3261 18.2.2, RFC 3581 rport): the sender, not a server.

    With ``rport`` the reply goes to the packet's source address and port (NAT-safe); without it to the
    source address (``received``) at the Via port.
    """
    if "rport" in via.params:
        return source
    return source[0], via.port or 5060


@dataclass(frozen=True, slots=True)
class SipUri:
    scheme: str
    user: str
    host: str
    port: int | None = None
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"{self.scheme}:{user}{host}{port}{params}"


def parse_uri(uri: str) -> SipUri:
    scheme, sep, rest = uri.strip().partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("sip", "sips", "tel"):
        raise ParseError(f"unsupported URI {uri[:80]!r}")
    rest = rest.split("?", 1)[0]
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not number:
            raise ParseError(f"empty tel URI {uri[:80]!r}")
        return SipUri(scheme, number, "", None, _parse_params(params))
    address, _, params = rest.partition(";")
    user, at, hostport = address.rpartition("@")
    if not at:
        user, hostport = "", address
    host, port = _split_host_port(hostport)
    return SipUri(scheme, user, host, port, _parse_params(params))


@dataclass(frozen=True, slots=True)
class NameAddr:
    display: str
    uri: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return self.params.get("tag", "")


def parse_name_addr(value: str) -> NameAddr:
    value = value.strip()
    if "<" in value:
        display, _, rest = value.partition("<")
        uri, close, params = rest.partition(">")
        if not close:
            raise ParseError(f"unterminated name-addr {value[:80]!r}")
        return NameAddr(display.strip().strip('"'), uri.strip(), _parse_params(params))
    uri, _, params = value.partition(";")
    if not uri:
        raise ParseError("empty address")
    return NameAddr("", uri.strip(), _parse_params(params))
