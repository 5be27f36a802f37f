"""PIDF-LO decoder (RFC 4119, shapes of RFC 5491, civic address of RFC 5139, conveyance RFC 6442).

Every ``gp:location-info`` in the document (in ``tuple``, ``dm:device`` or ``dm:person``) yields one
:class:`GeoFix` per shape or civic address it holds:

- ``gml:Point``: the point, no radius;
- ``gs:Circle`` / ``gs:Sphere``: centre and radius (``uom`` metres, kilometres or feet);
- ``gs:Ellipse`` / ``gs:Ellipsoid``: centre, radius = semi-major axis (the pessimistic circle);
- ``gml:Polygon``: area centroid, radius = distance to the farthest vertex;
- ``ca:civicAddress``: the RFC 5139 elements (country, A1..A6, PRD, POD, STS, HNO, HNS, LMK, LOC, NAM, PC,
  RD, ...) in ``GeoFix.civic``.

Confidence comes from an RFC 7459 ``con:confidence`` element when present (percent -> 0..1); otherwise it
is left ``None`` (RFC 7459 says a receiver may assume 95 %; fusion treats ``None`` as unknown).

Safety: the document comes from outside the centre. It is parsed with defusedxml (no DTD, no entities,
no external references) after a size check, and any parser failure becomes a :class:`PidfLoError`.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime

import defusedxml
import defusedxml.ElementTree as SafeET

from telephony.events import GeoFix, utc_now
from telephony.location.errors import PidfLoError
from telephony.location.multipart import find_part

PIDF_CONTENT_TYPE = "application/pidf+xml"
MAX_PIDF_BYTES = 64 * 1024
MAX_POLYGON_POINTS = 1000
MAX_CIVIC_VALUE = 200

NS_PIDF = "urn:ietf:params:xml:ns:pidf"
NS_GP = "urn:ietf:params:xml:ns:pidf:geopriv10"
NS_GML = "http://www.opengis.net/gml"
NS_GS = "http://www.opengis.net/pidflo/1.0"
NS_CA = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"
NS_CON = "urn:ietf:params:xml:ns:geopriv:conf"

WGS84_SRS = frozenset(
    {
        "urn:ogc:def:crs:EPSG::4326",
        "urn:ogc:def:crs:EPSG::4979",
        "urn:ogc:def:crs:EPSG:6.6:4326",
        "urn:ogc:def:crs:EPSG:6.6:4979",
        "EPSG:4326",
    }
)
UOM_TO_METRES = {
    "urn:ogc:def:uom:EPSG::9001": 1.0,  # metre
    "urn:ogc:def:uom:EPSG::9036": 1000.0,  # kilometre
    "urn:ogc:def:uom:EPSG::9002": 0.3048,  # international foot
    "urn:ogc:def:uom:EPSG::9003": 1200.0 / 3937.0,  # US survey foot
}
EARTH_RADIUS_M = 6_371_008.8


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def parse_pidf_lo(xml: bytes, received_at: datetime | None = None) -> list[GeoFix]:
    """All locations in a PIDF-LO document; raise :class:`PidfLoError` if malformed or without location.

    ``received_at`` is used as the fix time when the document carries no ``timestamp``.
    """
    if not isinstance(xml, bytes | bytearray):
        raise PidfLoError(f"expected bytes, got {type(xml).__name__}")
    if len(xml) > MAX_PIDF_BYTES:
        raise PidfLoError(f"document of {len(xml)} bytes exceeds {MAX_PIDF_BYTES}")
    try:
        root = SafeET.fromstring(bytes(xml), forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise PidfLoError(f"unsafe XML refused ({type(exc).__name__})") from exc
    except ET.ParseError as exc:
        raise PidfLoError(f"not well-formed XML: {exc}") from exc
    except (ValueError, LookupError) as exc:
        # LookupError: the XML declaration names an encoding Python does not know (encoding="x-nope").
        raise PidfLoError(f"XML does not decode: {type(exc).__name__}: {exc}") from exc

    if root.tag != _q(NS_PIDF, "presence"):
        raise PidfLoError(f"root element is {root.tag!r}, not a PIDF presence document")
    fallback_time = received_at or utc_now()
    raw = bytes(xml).decode("utf-8", "replace")
    fixes: list[GeoFix] = []
    problems: list[str] = []
    for info, at in _location_infos(root, fallback_time):
        confidence = _confidence(info, problems)
        for element in info:
            try:
                fix = _shape_or_civic(element, confidence, at, raw)
            except PidfLoError as exc:
                problems.append(exc.reason)
                continue
            if fix is not None:
                fixes.append(fix)
    if not fixes:
        detail = f": {'; '.join(problems)}" if problems else ""
        raise PidfLoError(f"no usable location in the document{detail}")
    return fixes


def extract_pidf_from_multipart(body: bytes, content_type: str) -> bytes | None:
    """The PIDF-LO part (``application/pidf+xml``) of a SIP body, or ``None`` when there is none.

    Raises :class:`~telephony.location.errors.MultipartError` when the multipart body is malformed.
    """
    return find_part(body, content_type, PIDF_CONTENT_TYPE)


def _location_infos(root: ET.Element, fallback: datetime) -> Iterator[tuple[ET.Element, datetime]]:
    # A location-info belongs to the nearest enclosing tuple/device/person, whose timestamp dates it.
    for holder in root:
        at = _timestamp(holder, fallback)
        for info in holder.iter(_q(NS_GP, "location-info")):
            yield info, at


def _timestamp(holder: ET.Element, fallback: datetime) -> datetime:
    for element in holder.iter():
        if isinstance(element.tag, str) and element.tag.endswith("}timestamp") and element.text:
            text = element.text.strip().replace("Z", "+00:00")
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                return fallback
            return parsed if parsed.tzinfo is not None else fallback
    return fallback


def _confidence(info: ET.Element, problems: list[str]) -> float | None:
    element = info.find(_q(NS_CON, "confidence"))
    if element is None or not element.text:
        return None
    try:
        value = float(element.text.strip())
    except ValueError:
        problems.append(f"confidence {element.text.strip()[:20]!r} is not a number")
        return None
    if not 0.0 < value <= 100.0:
        problems.append(f"confidence {value} outside 0..100")
        return None
    return value / 100.0


def _shape_or_civic(element: ET.Element, confidence: float | None, at: datetime, raw: str) -> GeoFix | None:
    tag = element.tag
    if tag == _q(NS_CA, "civicAddress"):
        return _civic(element, confidence, at, raw)
    if tag == _q(NS_GML, "Point"):
        lat, lon = _pos(_child(element, NS_GML, "pos"), element)
        return GeoFix("pidf-lo", lat=lat, lon=lon, confidence=confidence, at=at, raw=raw)
    if tag in (_q(NS_GS, "Circle"), _q(NS_GS, "Sphere")):
        lat, lon = _pos(_child(element, NS_GML, "pos"), element)
        radius = _length(_child(element, NS_GS, "radius"))
        return GeoFix("pidf-lo", lat=lat, lon=lon, radius_m=radius, confidence=confidence, at=at, raw=raw)
    if tag in (_q(NS_GS, "Ellipse"), _q(NS_GS, "Ellipsoid")):
        lat, lon = _pos(_child(element, NS_GML, "pos"), element)
        radius = _length(_child(element, NS_GS, "semiMajorAxis"))
        return GeoFix("pidf-lo", lat=lat, lon=lon, radius_m=radius, confidence=confidence, at=at, raw=raw)
    if tag == _q(NS_GML, "Polygon"):
        lat, lon, radius = _polygon(element)
        return GeoFix("pidf-lo", lat=lat, lon=lon, radius_m=radius, confidence=confidence, at=at, raw=raw)
    if tag in (_q(NS_GS, "ArcBand"), _q(NS_GS, "Prism")):
        raise PidfLoError(f"shape {tag.rsplit('}', 1)[-1]} is not supported")
    return None  # usage-rules, method, provided-by, confidence: not a location


def _child(element: ET.Element, namespace: str, name: str) -> ET.Element:
    child = element.find(_q(namespace, name))
    if child is None:
        shape = element.tag.rsplit("}", 1)[-1]
        raise PidfLoError(f"{shape} without {name}")
    return child


def _check_srs(shape: ET.Element) -> None:
    srs = shape.get("srsName")
    if srs is not None and srs.strip() not in WGS84_SRS:
        raise PidfLoError(f"coordinate reference system {srs[:60]!r} is not WGS84 (EPSG 4326/4979)")


def _numbers(text: str | None, what: str, limit: int) -> list[float]:
    parts = (text or "").split()
    if not parts:
        raise PidfLoError(f"{what} is empty")
    if len(parts) > limit:
        raise PidfLoError(f"{what} has more than {limit} numbers")
    try:
        values = [float(part) for part in parts]
    except ValueError as exc:
        raise PidfLoError(f"{what} {(text or '')[:40]!r} is not a list of numbers") from exc
    if not all(math.isfinite(value) for value in values):
        raise PidfLoError(f"{what} holds a non-finite number")
    return values


def _checked(lat: float, lon: float) -> tuple[float, float]:
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise PidfLoError(f"position {lat}, {lon} is outside WGS84 latitude/longitude ranges")
    return lat, lon


def _pos(pos: ET.Element, shape: ET.Element) -> tuple[float, float]:
    _check_srs(shape)
    values = _numbers(pos.text, "gml:pos", 3)
    if len(values) < 2:
        raise PidfLoError("gml:pos needs latitude and longitude")
    return _checked(values[0], values[1])


def _length(element: ET.Element) -> float:
    uom = (element.get("uom") or "").strip()
    factor = UOM_TO_METRES.get(uom)
    if factor is None:
        raise PidfLoError(f"unit of measure {uom[:60]!r} is not a supported length unit")
    value = _numbers(element.text, "distance", 1)[0]
    if value < 0:
        raise PidfLoError(f"negative distance {value}")
    return value * factor


def _polygon(polygon: ET.Element) -> tuple[float, float, float]:
    _check_srs(polygon)
    ring = polygon.find(f"{_q(NS_GML, 'exterior')}/{_q(NS_GML, 'LinearRing')}")
    if ring is None:
        raise PidfLoError("Polygon without gml:exterior/gml:LinearRing")
    pos_list = ring.find(_q(NS_GML, "posList"))
    points: list[tuple[float, float]] = []
    if pos_list is not None:
        values = _numbers(pos_list.text, "gml:posList", 3 * MAX_POLYGON_POINTS)
        dimension = 3 if pos_list.get("srsDimension", "").strip() == "3" else 2
        if len(values) % dimension:
            raise PidfLoError("gml:posList has an incomplete coordinate")
        points = [_checked(values[i], values[i + 1]) for i in range(0, len(values), dimension)]
    else:
        for pos in ring.findall(_q(NS_GML, "pos"))[: MAX_POLYGON_POINTS + 1]:
            values = _numbers(pos.text, "gml:pos", 3)
            if len(values) < 2:
                raise PidfLoError("gml:pos needs latitude and longitude")
            points.append(_checked(values[0], values[1]))
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()  # the ring repeats its first point to close
    if len(points) < 3:
        raise PidfLoError("Polygon needs at least three distinct points")
    if len(points) > MAX_POLYGON_POINTS:
        raise PidfLoError(f"Polygon has more than {MAX_POLYGON_POINTS} points")
    return polygon_centroid_and_radius(points)


def polygon_centroid_and_radius(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Area centroid of a small lat/lon polygon and the distance (m) from it to the farthest vertex."""
    lat0 = sum(lat for lat, _ in points) / len(points)
    lon0 = sum(lon for _, lon in points) / len(points)
    scale_x = math.cos(math.radians(lat0))
    # Local equirectangular plane around the vertex mean: exact enough for areas of a few km.
    xy = [((lon - lon0) * scale_x, lat - lat0) for lat, lon in points]
    area2 = 0.0
    cx = cy = 0.0
    for (x1, y1), (x2, y2) in zip(xy, xy[1:] + xy[:1], strict=True):
        cross = x1 * y2 - x2 * y1
        area2 += cross
        cx += (x1 + x2) * cross
        cy += (y1 + y2) * cross
    if abs(area2) < 1e-18:
        centre_lat, centre_lon = lat0, lon0  # degenerate (collinear) ring: use the vertex mean
    else:
        centre_lat = lat0 + cy / (3.0 * area2)
        centre_lon = lon0 + cx / (3.0 * area2) / scale_x if scale_x > 1e-12 else lon0
    radius = max(haversine_m(centre_lat, centre_lon, lat, lon) for lat, lon in points)
    return centre_lat, centre_lon, radius


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _civic(element: ET.Element, confidence: float | None, at: datetime, raw: str) -> GeoFix | None:
    civic: dict[str, str] = {}
    for child in element:
        if not isinstance(child.tag, str) or not child.tag.startswith(f"{{{NS_CA}}}"):
            continue
        name = child.tag.rsplit("}", 1)[-1]
        value = " ".join((child.text or "").split())[:MAX_CIVIC_VALUE]
        if value and name not in civic:
            civic[name] = value
    if not civic:
        raise PidfLoError("civicAddress without any element")
    return GeoFix("pidf-lo", civic=civic, confidence=confidence, at=at, raw=raw)
