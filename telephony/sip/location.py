"""Location carried in the INVITE (RFC 6442 Geolocation + PIDF-LO body, RFC 4119/5491)."""

from __future__ import annotations

import logging

from telephony.events import LOCATION_REFUSED_HEADER, EcallFacts, GeoFix
from telephony.location.pidf_lo import parse_pidf_lo
from telephony.sip.message import SipMessage
from telephony.sip.multipart import BodyPart, find_part, geolocation_references

log = logging.getLogger(__name__)

PIDF_MEDIA_TYPE = "application/pidf+xml"
ECALL_MSD_MEDIA_TYPE = "application/emergencycalldata.ecall.msd"  # RFC 8147 (media types are lower-cased)


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
    try:
        fixes = parse_pidf_lo(pidf.body)
    except ValueError as exc:  # telephony.location's errors derive from ValueError
        log.warning("call %s: PIDF-LO not usable, passed on raw: %s", call_ref, exc)
        extra["Geolocation-Error"] = str(exc)
        extra[LOCATION_REFUSED_HEADER] = str(exc)
        return None, [], extra
    if not fixes:
        return None, [], extra
    return fixes[0], list(fixes[1:]), extra


def extract_ecall(parts: list[BodyPart], call_ref: str) -> tuple[GeoFix | None, EcallFacts | None]:
    """An eCall's Minimum Set of Data (RFC 8147 body part, EN 15722 UPER): the vehicle position and the
    facts the call taker needs. The raw MSD is always kept; when it does not decode, the facts carry the
    reason and the call goes on."""
    part = find_part(parts, ECALL_MSD_MEDIA_TYPE)
    if part is None:
        return None, None
    from telephony.location.ecall import decode_msd  # asn1tools loads only for a call that carries an MSD

    try:
        msd = decode_msd(part.body)
    except ValueError as exc:  # MsdError: the call goes on, the raw MSD stays with it
        log.warning("call %s: eCall MSD not decodable, passed on raw: %s", call_ref, exc)
        return None, EcallFacts(msd_hex=part.body.hex(), error=str(exc))
    facts = EcallFacts(
        msd_hex=part.body.hex(),
        automatic_activation=msd.automatic_activation,
        test_call=msd.test_call,
        position_trusted=msd.position_trusted,
        vehicle_type=msd.vehicle_type_text,
        vin=msd.vin,
        propulsion=tuple(msd.propulsion),
        timestamp=msd.timestamp,
        lat=msd.lat,
        lon=msd.lon,
        direction_deg=msd.direction_deg,
        passengers=msd.passengers,
    )
    return msd.to_geofix(), facts


def decode_invite_location(
    request: SipMessage, parts: list[BodyPart], call_ref: str
) -> tuple[GeoFix | None, list[GeoFix], dict[str, str], EcallFacts | None]:
    """The INVITE's location (PIDF-LO, then an eCall MSD) behind a boundary no decoder failure crosses.

    Location is an optional part of an emergency INVITE: whatever a decoder raises (its own error, or a
    third-party one it failed to map: a parser bug must not decide whether an emergency call is answered),
    the reason is logged with the call id and handed on as ``Location-Refused`` so intake records
    "location body refused: ..." on the call, and the call itself goes on to be answered and queued.
    """
    refused: list[str] = []
    location: GeoFix | None = None
    fixes: list[GeoFix] = []
    headers: dict[str, str] = {}
    try:
        location, fixes, headers = extract_location(request, parts, call_ref)
    except Exception as exc:  # the boundary: logged with the call id, the call goes on without it
        log.exception("call %s: PIDF-LO decoder failed, call goes on without it", call_ref)
        refused.append(f"PIDF-LO: {type(exc).__name__}: {exc}")
        headers = {}
        pidf = find_part(parts, PIDF_MEDIA_TYPE)
        if pidf is not None:
            headers["Geolocation-Body"] = pidf.body.decode("utf-8", "replace")
    if LOCATION_REFUSED_HEADER in headers:
        refused.append(headers.pop(LOCATION_REFUSED_HEADER))
    ecall: EcallFacts | None
    try:
        ecall_fix, ecall = extract_ecall(parts, call_ref)
    except Exception as exc:  # the boundary: logged with the call id, the call goes on without it
        log.exception("call %s: eCall MSD decoder failed, call goes on without it", call_ref)
        refused.append(f"eCall MSD: {type(exc).__name__}: {exc}")
        ecall_fix = None
        part = find_part(parts, ECALL_MSD_MEDIA_TYPE)
        ecall = None if part is None else EcallFacts(msd_hex=part.body.hex(), error=refused[-1])
    else:
        if ecall is not None and ecall.error is not None:
            refused.append(ecall.error)
    if ecall_fix is not None:
        if location is None:
            location = ecall_fix
        else:
            fixes.append(ecall_fix)
    if refused:
        headers[LOCATION_REFUSED_HEADER] = "; ".join(refused)
    return location, fixes, headers, ecall
