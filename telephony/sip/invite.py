"""What an initial INVITE asks for, decided without state: served number, SDP offer, or why it is refused.

Pure and never raising on bad input: a body that does not parse is a :class:`Refusal` (400 with the reason),
an offer without G.711 a 488. The optional location/eCall parts are not looked at here; they are decoded by
:func:`telephony.sip.location.decode_invite_location`, which never stops the call either.
"""

from __future__ import annotations

from dataclasses import dataclass

from telephony.sip.errors import ParseError
from telephony.sip.message import SipMessage
from telephony.sip.multipart import BodyPart, find_part, split_body
from telephony.sip.sdp import NegotiatedMedia, negotiate_audio, parse_sdp
from telephony.sip.wire import dialled_number, warning_text

FORK_HEADER = "X-IZS-Fork-Of"


@dataclass(frozen=True, slots=True)
class NotServed:
    """Not an emergency number served here (and not a media fork): 404."""

    dialled: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """An emergency INVITE that cannot become a media call: answered ``status`` and filed as a call."""

    dialled: str
    status: int
    reason: str
    warning: str  # the Warning header's value, "" for none
    why: str


@dataclass(frozen=True, slots=True)
class Acceptable:
    """An emergency INVITE with usable audio."""

    dialled: str
    fork_of: str | None
    parts: list[BodyPart]
    media: NegotiatedMedia


def examine_invite(
    request: SipMessage, accepted_numbers: frozenset[str], accept_media_forks: bool
) -> NotServed | Refusal | Acceptable:
    dialled = dialled_number(request)
    fork_of = request.header(FORK_HEADER)
    if dialled not in accepted_numbers and (fork_of is None or not accept_media_forks):
        return NotServed(dialled)
    try:
        parts = split_body(request.header("Content-Type"), request.body)
        sdp_part = find_part(parts, "application/sdp")
        offer = parse_sdp(sdp_part.body) if sdp_part is not None else None
    except ParseError as exc:
        return Refusal(dialled, 400, "Bad Request", f'399 - "{warning_text(str(exc))}"', f"bad body: {exc}")
    negotiated = negotiate_audio(offer) if offer is not None else None
    if negotiated is None:
        why = "no SDP offer" if offer is None else "no PCMU/PCMA audio offered"
        return Refusal(dialled, 488, "Not Acceptable Here", f'304 - "{why}"', why)
    return Acceptable(dialled, fork_of, parts, negotiated)
