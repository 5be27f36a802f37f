"""Location carried in the INVITE (RFC 6442 Geolocation + PIDF-LO body, RFC 4119/5491)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from telephony.events import GeoFix
from telephony.sip.message import SipMessage
from telephony.sip.multipart import BodyPart, find_part, geolocation_references

log = logging.getLogger(__name__)

PIDF_MEDIA_TYPE = "application/pidf+xml"
PidfParser = Callable[[bytes], list[GeoFix]]


def _pidf_parser() -> PidfParser | None:
    """The PIDF-LO parser of telephony.location, when that package provides it."""
    try:
        module = importlib.import_module("telephony.location.pidf")
    except ImportError:
        return None
    parser = getattr(module, "parse_pidf_lo", None)
    return parser if callable(parser) else None


def extract_location(
    request: SipMessage, parts: list[BodyPart], call_ref: str
) -> tuple[GeoFix | None, list[GeoFix], dict[str, str]]:
    """(first fix, further fixes, extra CallOffered headers) from an INVITE's Geolocation and body parts.

    The raw PIDF-LO document is always passed on in the ``Geolocation-Body`` pseudo-header so nothing is lost
    when it cannot be parsed; by-reference locations (http/https URIs) are passed on in ``Geolocation`` as-is
    (they are never fetched from the call path).
    """
    references = geolocation_references(request.header("Geolocation"))
    pidf: BodyPart | None = None
    for reference in references:
        if reference.lower().startswith("cid:"):
            pidf = find_part(parts, PIDF_MEDIA_TYPE, reference[4:]) or pidf
    if pidf is None:
        pidf = find_part(parts, PIDF_MEDIA_TYPE)
    if pidf is None:
        return None, [], {}
    extra = {"Geolocation-Body": pidf.body.decode("utf-8", "replace")}
    parser = _pidf_parser()
    if parser is None:
        return None, [], extra
    try:
        fixes = parser(pidf.body)
    except ValueError as exc:  # telephony.location's errors derive from ValueError
        log.warning("call %s: PIDF-LO not usable, passed on raw: %s", call_ref, exc)
        extra["Geolocation-Error"] = str(exc)
        return None, [], extra
    if not fixes:
        return None, [], extra
    return fixes[0], list(fixes[1:]), extra
