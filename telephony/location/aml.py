"""Advanced Mobile Location (AML) SMS decoder, ETSI TS 103 625.

A handset that dials an emergency number sends an SMS whose text is a ``;``-separated list of
``key=value`` pairs, forwarded by the operator's gateway, e.g.::

    A"ML=1;lt=+50.23112;lg=+12.87234;rd=14;top=20261127104702;lc=68;pm=G;si=...;ei=...;mcc=230;mnc=03;ml=124

Fields (version 1): ``A"ML`` header with the format version, ``lt``/``lg`` WGS84 latitude/longitude in
degrees, ``rd`` radius of the uncertainty circle in metres, ``top`` time of positioning (UTC,
YYYYMMDDhhmmss), ``lc`` level of confidence in percent, ``pm`` positioning method (G GNSS, W Wi-Fi,
C cell, N no location), ``si`` IMSI, ``ei`` IMEI, ``mcc``/``mnc`` network codes and ``ml`` the length of
the whole message in characters (header and the ``ml`` pair included), which detects truncation.
Reference for the field list and examples: ETSI TS 103 625 as summarised in Google's Emergency Location
Service SMS specification (ELS V1 = AML version 1; the experimental "ELS beta" version 2 is not AML and is
refused as an unsupported version).

The SMS's originating number is matched to a call by the integrator; this module only decodes the text.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from telephony.events import GeoFix
from telephony.location.errors import AmlError

# A concatenated SMS may carry a few hundred characters; anything far beyond is not an AML message and
# must not cost parsing time.
MAX_AML_LENGTH = 640
SUPPORTED_VERSIONS = frozenset({1})
MAX_RADIUS_M = 1_000_000.0

_LATITUDE = re.compile(r"(?a)[+-]?\d{1,2}(?:\.\d{1,10})?")
_LONGITUDE = re.compile(r"(?a)[+-]?\d{1,3}(?:\.\d{1,10})?")
_RADIUS = re.compile(r"(?a)\d{1,7}(?:\.\d{1,3})?")
_TIME = re.compile(r"(?a)\d{14}")
_CONFIDENCE = re.compile(r"(?a)\d{1,3}")
_IMSI = re.compile(r"(?a)\d{6,15}")
_IMEI = re.compile(r"(?a)\d{14,16}")  # IMEI (15, or 14 without check digit) or IMEISV (16)
_MCC = re.compile(r"(?a)\d{3}")
_MNC = re.compile(r"(?a)\d{2,3}")
_LENGTH = re.compile(r"(?a)\d{1,4}")
_KEY = re.compile(r'(?a)[A-Za-z"]{1,8}')
_HEADER_KEYS = ('A"ML', "AML")  # some gateways drop the quote character of the header


class PositioningMethod(enum.StrEnum):
    GNSS = "G"
    WIFI = "W"
    CELL = "C"
    NONE = "N"  # the handset had no position to send


GEOFIX_SOURCE = {
    PositioningMethod.GNSS: "aml-gnss",
    PositioningMethod.WIFI: "aml-wifi",
    PositioningMethod.CELL: "aml-cell",
}


@dataclass(frozen=True, slots=True)
class AmlMessage:
    version: int
    method: PositioningMethod
    length: int
    received_at: datetime
    raw: str
    lat: float | None = None
    lon: float | None = None
    radius_m: float | None = None
    positioned_at: datetime | None = None
    confidence_pct: int | None = None
    imsi: str | None = None
    imei: str | None = None
    mcc: str | None = None
    mnc: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # keys of later format versions, kept verbatim
    warnings: tuple[str, ...] = ()  # accepted irregularities, to show next to the position

    @property
    def has_position(self) -> bool:
        return self.method is not PositioningMethod.NONE and self.lat is not None and self.lon is not None

    def to_geofix(self) -> GeoFix | None:
        """The position as a :class:`GeoFix`, or ``None`` for a "no location" (pm=N) message."""
        if not self.has_position:
            return None
        return GeoFix(
            source=GEOFIX_SOURCE[self.method],
            lat=self.lat,
            lon=self.lon,
            radius_m=self.radius_m,
            confidence=None if self.confidence_pct is None else self.confidence_pct / 100.0,
            at=self.positioned_at or self.received_at,
            raw=self.raw,
        )


def decode_aml(text: str, received_at: datetime, *, strict_length: bool = False) -> AmlMessage:
    """Decode the text of an AML SMS; raise :class:`AmlError` with the reason when it is malformed.

    A message whose ``ml`` disagrees with its real length is rejected only with ``strict_length``;
    otherwise it is decoded and the mismatch is listed in :attr:`AmlMessage.warnings`.
    """
    if not isinstance(text, str):
        raise AmlError(f"expected the SMS text as str, got {type(text).__name__}")
    # Gateways append line ends or pad; the length field counts the message proper.
    message = text.strip()
    if not message:
        raise AmlError("empty message")
    if len(message) > MAX_AML_LENGTH:
        raise AmlError(f"message of {len(message)} characters is longer than {MAX_AML_LENGTH}")
    pairs = _split_pairs(message)

    header_key, header_value = pairs[0]
    if header_key not in _HEADER_KEYS:
        raise AmlError(f'message does not start with the A"ML header (starts with {header_key!r})')
    version = _parse_int(header_value, _LENGTH, "version")
    if version not in SUPPORTED_VERSIONS:
        raise AmlError(f"unsupported AML version {version}")

    fields: dict[str, str] = {}
    for key, value in pairs[1:]:
        if key in _HEADER_KEYS:
            raise AmlError("header repeated inside the message")
        if key in fields:
            raise AmlError(f"field {key!r} appears twice")
        fields[key] = value

    if "ml" not in fields:
        raise AmlError("message length field ml is missing")
    length = _parse_int(fields.pop("ml"), _LENGTH, "ml")
    warnings: list[str] = []
    if length != len(message):
        mismatch = f"message length field says {length} characters but the message has {len(message)}"
        if strict_length:
            raise AmlError(f"{mismatch} (truncated or altered on the way)")
        # Handsets in the field miscount (Google's published ELS example is one short); ml comes last,
        # so a message that still ends in a valid ml was not truncated: keep the position, say so.
        warnings.append(mismatch)

    if "pm" not in fields:
        raise AmlError("positioning method field pm is missing")
    method_text = fields.pop("pm")
    try:
        method = PositioningMethod(method_text)
    except ValueError as exc:
        raise AmlError(f"unknown positioning method pm={method_text!r} (expected G, W, C or N)") from exc

    lat_text = fields.pop("lt", "")
    lon_text = fields.pop("lg", "")
    radius_text = fields.pop("rd", "")
    time_text = fields.pop("top", "")
    confidence_text = fields.pop("lc", "")

    imsi = _optional(fields.pop("si", ""), _IMSI, "IMSI si")
    imei = _optional(fields.pop("ei", ""), _IMEI, "IMEI ei")
    mcc = _optional(fields.pop("mcc", ""), _MCC, "mcc")
    mnc = _optional(fields.pop("mnc", ""), _MNC, "mnc")
    base = AmlMessage(
        version=version,
        method=method,
        length=length,
        received_at=received_at,
        raw=message,
        imsi=imsi,
        imei=imei,
        mcc=mcc,
        mnc=mnc,
        extra=dict(fields),
        warnings=tuple(warnings),
    )
    if method is PositioningMethod.NONE:
        # No position: whatever the position fields hold is not a position, but a time is still useful.
        return replace(base, positioned_at=_parse_time(time_text) if time_text else None)

    for name, value in (("lt", lat_text), ("lg", lon_text), ("rd", radius_text), ("top", time_text)):
        if not value:
            raise AmlError(f"positioning method {method.value} but field {name} is missing or empty")
    lat = _parse_float(lat_text, _LATITUDE, "latitude lt")
    lon = _parse_float(lon_text, _LONGITUDE, "longitude lg")
    if not -90.0 <= lat <= 90.0:
        raise AmlError(f"latitude {lat} outside -90..90")
    if not -180.0 <= lon <= 180.0:
        raise AmlError(f"longitude {lon} outside -180..180")
    if lat == 0.0 and lon == 0.0:
        # Handsets without a fix fill in zeros (Google's "no location" example does); a fix at 0°, 0° in
        # the Gulf of Guinea would outrank every real source, so it is no position at all.
        warnings.append("position 0, 0 is a placeholder, not a fix")
        return replace(base, warnings=tuple(warnings))
    radius = _parse_float(radius_text, _RADIUS, "radius rd")
    if radius > MAX_RADIUS_M:
        raise AmlError(f"radius {radius} m is not a plausible uncertainty")
    confidence = None
    if confidence_text:
        confidence = _parse_int(confidence_text, _CONFIDENCE, "level of confidence lc")
        if not 0 <= confidence <= 100:
            raise AmlError(f"level of confidence {confidence} outside 0..100 %")
    return replace(
        base,
        lat=lat,
        lon=lon,
        radius_m=radius,
        positioned_at=_parse_time(time_text),
        confidence_pct=confidence,
    )


def _split_pairs(message: str) -> list[tuple[str, str]]:
    chunks = message.split(";")
    if len(chunks) > 1 and chunks[-1] == "":
        chunks.pop()  # a trailing separator
    pairs: list[tuple[str, str]] = []
    for index, chunk in enumerate(chunks):
        key, sep, value = chunk.partition("=")
        if not sep:
            raise AmlError(f"element {index + 1} ({chunk[:20]!r}) is not key=value")
        if not _KEY.fullmatch(key):
            raise AmlError(f"element {index + 1} has an invalid key {key[:20]!r}")
        pairs.append((key, value))
    if not pairs:
        raise AmlError("no key=value elements")
    return pairs


def _parse_int(text: str, pattern: re.Pattern[str], name: str) -> int:
    if not pattern.fullmatch(text):
        raise AmlError(f"{name} {text[:20]!r} is not a valid number")
    return int(text)


def _parse_float(text: str, pattern: re.Pattern[str], name: str) -> float:
    if not pattern.fullmatch(text):
        raise AmlError(f"{name} {text[:20]!r} is not a valid number")
    return float(text)


def _optional(text: str, pattern: re.Pattern[str], name: str) -> str | None:
    if not text:
        return None
    if not pattern.fullmatch(text):
        raise AmlError(f"{name} {text[:20]!r} is malformed")
    return text


def _parse_time(text: str) -> datetime:
    if not _TIME.fullmatch(text):
        raise AmlError(f"time of positioning top={text[:20]!r} is not YYYYMMDDhhmmss")
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise AmlError(f"time of positioning top={text!r} is not a valid date and time") from exc
