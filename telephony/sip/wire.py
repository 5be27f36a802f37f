"""Pure SIP message builders and header helpers of the endpoint (no state, no I/O, no clock)."""

from __future__ import annotations

import uuid

from telephony.sip.dialog import Local, MediaLeg
from telephony.sip.errors import ParseError
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
from telephony.sip.sdp import PCMU, NegotiatedMedia

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
DTMF_KEYS = "0123456789*#ABCD"


def new_tag() -> str:
    return uuid.uuid4().hex[:16]


def new_branch() -> str:
    return f"z9hG4bK{uuid.uuid4().hex[:20]}"


def name_addr_or_raw(value: str) -> NameAddr:
    """The name-addr, or the raw header value as its URI when it does not parse (so it stays visible)."""
    try:
        return parse_name_addr(value)
    except ParseError:
        return NameAddr("", value.strip())


def warning_text(text: str) -> str:
    """A reason fit for a Warning header's quoted string: one printable line, no quotes, bounded."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text.replace('"', "'").replace("\\", "/"))
    return " ".join(printable.split())[:200]


def strip_tag(name_addr: str) -> str:
    parts = [p for p in name_addr.split(";") if not p.strip().lower().startswith("tag=")]
    return ";".join(parts)


def stamp_received(via_value: str, source: tuple[str, int]) -> str:
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


def build_response(
    request: SipMessage,
    source: tuple[str, int],
    server: str,
    status: int,
    reason: str,
    to_tag: str = "",
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> bytes:
    vias = request.header_values("Via")
    headers: list[tuple[str, str]] = [("Via", stamp_received(vias[0], source))]
    headers.extend(("Via", v) for v in vias[1:])
    to_value = request.header("To") or ""
    if to_tag and "tag=" not in to_value:
        to_value = f"{to_value};tag={to_tag}"
    headers += [
        ("From", request.header("From") or ""),
        ("To", to_value),
        ("Call-ID", request.call_id),
        ("CSeq", request.header("CSeq") or ""),
        ("Server", server),
    ]
    headers.extend(extra)
    return SipMessage(status=status, reason=reason, headers=tuple(headers), body=body).to_bytes()


def answer_unparseable(
    data: bytes,
    source: tuple[str, int],
    why: str,
    server: str,
    status: int = 400,
    reason: str = "Bad Request",
) -> tuple[bytes, tuple[str, int]] | None:
    """The answer to a request that is not valid SIP (or hit a bug) but still names who sent it (Via,
    Call-ID, CSeq): ``status`` with the reason in a Warning, so the sender learns why. None when it cannot
    be answered (RFC 3261 18.2.1), when it is an ACK, or when the answer would itself not be valid SIP."""
    salvaged = salvage_request(data)
    if salvaged is None or salvaged.method == "ACK":
        return None
    try:
        reply_to = response_address(parse_via(salvaged.header_values("Via")[0]), source)
        response = build_response(
            salvaged,
            source,
            server,
            status,
            reason,
            new_tag(),
            (("Warning", f'399 - "{warning_text(why)}"'),),
        )
        parse_message(response)  # only an answer that is itself valid SIP is sent
    except ParseError:
        return None
    return response, reply_to


def non_2xx_ack(local: Local, leg: MediaLeg, response: SipMessage) -> bytes:
    """The ACK of our INVITE's non-2xx final answer: same branch as the INVITE (RFC 3261 17.1.1.3)."""
    return SipMessage(
        method="ACK",
        uri=leg.invite_uri,
        headers=(
            ("Via", local.via(leg.invite_branch)),
            ("Max-Forwards", "70"),
            ("From", f"{leg.local_uri};tag={leg.local_tag}"),
            ("To", response.header("To") or leg.remote_uri),
            ("Call-ID", leg.call_id),
            ("CSeq", f"{leg.local_cseq} ACK"),
        ),
    ).to_bytes()


def cancel_for(local: Local, leg: MediaLeg) -> bytes:
    return SipMessage(
        method="CANCEL",
        uri=leg.invite_uri,
        headers=(
            ("Via", local.via(leg.invite_branch)),
            ("Max-Forwards", "70"),
            ("From", f"{leg.local_uri};tag={leg.local_tag}"),
            ("To", leg.remote_uri),
            ("Call-ID", leg.call_id),
            ("CSeq", f"{leg.local_cseq} CANCEL"),
        ),
    ).to_bytes()


def in_dialog_request(local: Local, leg: MediaLeg, method: str, cseq: int | None = None) -> bytes:
    """A request inside the leg's dialog; without ``cseq`` the leg's CSeq is advanced."""
    if cseq is None:
        leg.local_cseq += 1
        cseq = leg.local_cseq
    ours = f"{leg.local_uri};tag={leg.local_tag}"
    theirs = strip_tag(leg.remote_uri) + (f";tag={leg.remote_tag}" if leg.remote_tag else "")
    return SipMessage(
        method=method,
        uri=leg.remote_target,
        headers=(
            ("Via", local.via(new_branch())),
            ("Max-Forwards", "70"),
            ("From", ours),
            ("To", theirs),
            ("Call-ID", leg.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("User-Agent", local.user_agent),
        ),
    ).to_bytes()


def dialled_number(request: SipMessage) -> str:
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


def caller_identity(from_value: str) -> tuple[str, str | None]:
    """(caller number or host, display name) from a From header; the raw value when it does not parse."""
    from_addr = name_addr_or_raw(from_value)
    try:
        caller_uri = parse_uri(from_addr.uri)
    except ParseError:
        return from_addr.uri, from_addr.display or None
    return caller_uri.user or caller_uri.host, from_addr.display or None


def info_digit(request: SipMessage) -> str | None:
    content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
    text = request.body.decode("utf-8", "replace").strip()
    if content_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                digit = value.strip().upper()
                return digit if len(digit) == 1 and digit in DTMF_KEYS else None
        return None
    if content_type == "application/dtmf" and len(text) == 1 and text.upper() in DTMF_KEYS:
        return text.upper()
    return None


def sip_priority(priority: int) -> str:
    if priority <= 1:
        return "emergency"
    if priority == 2:
        return "urgent"
    return "normal"


def codec_name(media: NegotiatedMedia) -> str:
    return "PCMU" if media.payload_type == PCMU else "PCMA"
