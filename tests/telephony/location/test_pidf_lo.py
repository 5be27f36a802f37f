from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.location.errors import MultipartError, PidfLoError
from telephony.location.pidf_lo import (
    MAX_PIDF_BYTES,
    extract_pidf_from_multipart,
    haversine_m,
    parse_pidf_lo,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "location"
RECEIVED = datetime(2026, 11, 27, 10, 47, 30, tzinfo=UTC)

HEAD = (
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" '
    'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
    'xmlns:gml="http://www.opengis.net/gml" '
    'xmlns:gs="http://www.opengis.net/pidflo/1.0" '
    'xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr" '
    'xmlns:con="urn:ietf:params:xml:ns:geopriv:conf" '
    'entity="pres:caller@example.cz">'
)


def pidf(location_info: str, timestamp: str = "") -> bytes:
    stamp = f"<timestamp>{timestamp}</timestamp>" if timestamp else ""
    return (
        f'{HEAD}<tuple id="t1"><status><gp:geopriv><gp:location-info>{location_info}'
        f"</gp:location-info><gp:usage-rules/></gp:geopriv></status>{stamp}</tuple></presence>"
    ).encode()


def test_circle_and_civic_address_of_a_handset_decode_with_confidence_and_times() -> None:
    circle, civic = parse_pidf_lo((FIXTURES / "pidf_circle_civic.xml").read_bytes(), RECEIVED)
    assert circle.source == "pidf-lo"
    assert (circle.lat, circle.lon, circle.radius_m, circle.confidence) == (50.23112, 12.87234, 35.0, 0.68)
    assert circle.at == datetime(2026, 11, 27, 10, 47, 2, tzinfo=UTC)
    assert civic.lat is None and civic.confidence is None
    assert civic.civic == {
        "country": "CZ",
        "A1": "Karlovarský kraj",
        "A2": "Karlovy Vary",
        "A3": "Karlovy Vary",
        "A4": "Drahovice",
        "RD": "Vítězná",
        "HNO": "52",
        "PC": "36001",
    }
    assert civic.at == datetime(2026, 11, 27, 10, 47, 5, tzinfo=UTC)


def test_rfc_4119_point_example_decodes_without_radius() -> None:
    (fix,) = parse_pidf_lo(
        pidf(
            '<gml:Point srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-34.407 150.88001</gml:pos></gml:Point>',
            "2003-06-22T20:57:29Z",
        ),
        RECEIVED,
    )
    assert (fix.lat, fix.lon, fix.radius_m) == (-34.407, 150.88001, None)
    assert fix.at == datetime(2003, 6, 22, 20, 57, 29, tzinfo=UTC)


def test_document_without_timestamp_uses_the_reception_time() -> None:
    (fix,) = parse_pidf_lo(pidf("<gml:Point><gml:pos>50.1 12.3 450</gml:pos></gml:Point>"), RECEIVED)
    assert fix.at == RECEIVED and (fix.lat, fix.lon) == (50.1, 12.3)


@pytest.mark.parametrize(
    ("uom", "value", "metres"),
    [
        ("urn:ogc:def:uom:EPSG::9001", "850", 850.0),
        ("urn:ogc:def:uom:EPSG::9036", "1.5", 1500.0),
        ("urn:ogc:def:uom:EPSG::9002", "100", 30.48),
    ],
)
def test_circle_radius_units_are_converted_to_metres(uom: str, value: str, metres: float) -> None:
    (fix,) = parse_pidf_lo(
        pidf(
            f'<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>50.0 12.5</gml:pos>'
            f'<gs:radius uom="{uom}">{value}</gs:radius></gs:Circle>'
        )
    )
    assert fix.radius_m == pytest.approx(metres)


def test_ellipse_uses_its_semi_major_axis_as_radius() -> None:
    (fix,) = parse_pidf_lo(
        pidf(
            '<gs:Ellipse srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>50.0 12.5</gml:pos>'
            '<gs:semiMajorAxis uom="urn:ogc:def:uom:EPSG::9001">1275</gs:semiMajorAxis>'
            '<gs:semiMinorAxis uom="urn:ogc:def:uom:EPSG::9001">670</gs:semiMinorAxis>'
            '<gs:orientation uom="urn:ogc:def:uom:EPSG::9102">43.2</gs:orientation></gs:Ellipse>'
        )
    )
    assert fix.radius_m == 1275.0


def test_polygon_gives_its_centroid_and_the_distance_to_the_farthest_vertex() -> None:
    # A square of about 1.1 km around Cheb's square, as posList, closed by repeating the first point.
    ring = "50.075 12.365 50.075 12.380 50.085 12.380 50.085 12.365 50.075 12.365"
    (fix,) = parse_pidf_lo(
        pidf(
            '<gml:Polygon srsName="urn:ogc:def:crs:EPSG::4326"><gml:exterior><gml:LinearRing>'
            f"<gml:posList>{ring}</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"
            '<con:confidence pdf="unknown">90</con:confidence>'
        )
    )
    assert fix.lat == pytest.approx(50.080, abs=1e-5)
    assert fix.lon == pytest.approx(12.3725, abs=1e-5)
    assert fix.radius_m == pytest.approx(haversine_m(50.080, 12.3725, 50.085, 12.380), rel=1e-3)
    assert fix.confidence == 0.9


def test_polygon_of_gml_pos_elements_is_accepted() -> None:
    points = "".join(f"<gml:pos>{p}</gml:pos>" for p in ("50.0 12.0", "50.0 12.01", "50.01 12.0"))
    (fix,) = parse_pidf_lo(
        pidf(
            f"<gml:Polygon><gml:exterior><gml:LinearRing>{points}</gml:LinearRing></gml:exterior></gml:Polygon>"
        )
    )
    assert fix.lat == pytest.approx(50.00333, abs=1e-4) and fix.lon == pytest.approx(12.00333, abs=1e-4)


def test_a_bad_shape_is_skipped_when_another_location_is_usable() -> None:
    fixes = parse_pidf_lo(
        pidf(
            '<gml:Point srsName="urn:ogc:def:crs:EPSG::3857"><gml:pos>1 2</gml:pos></gml:Point>'
            "<ca:civicAddress><ca:country>CZ</ca:country><ca:A3>Sokolov</ca:A3></ca:civicAddress>"
        )
    )
    assert [fix.civic.get("A3") for fix in fixes] == ["Sokolov"]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf">&lol3;</presence>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE presence [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf">&xxe;</presence>"""


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (BILLION_LAUGHS, "unsafe XML refused"),
        (EXTERNAL_ENTITY, "unsafe XML refused"),
        (b'<!DOCTYPE presence SYSTEM "http://evil.example/x.dtd"><presence/>', "unsafe XML refused"),
        (b"<presence", "not well-formed"),
        (b"", "not well-formed"),
        (b'<foo xmlns="urn:x"/>', "not a PIDF presence document"),
        (pidf(""), "no usable location"),
        (pidf("<gml:Point><gml:pos>95 12</gml:pos></gml:Point>"), "outside WGS84"),
        (pidf("<gml:Point><gml:pos>50.1</gml:pos></gml:Point>"), "latitude and longitude"),
        (pidf("<gml:Point><gml:pos>north east</gml:pos></gml:Point>"), "not a list of numbers"),
        (pidf("<gml:Point><gml:pos>nan 12</gml:pos></gml:Point>"), "non-finite"),
        (pidf("<gml:Point/>"), "Point without pos"),
        (
            pidf(
                '<gs:Circle><gml:pos>50 12</gml:pos><gs:radius uom="urn:x:furlong">3</gs:radius></gs:Circle>'
            ),
            "not a supported length unit",
        ),
        (
            pidf('<gml:Point srsName="urn:ogc:def:crs:EPSG::3857"><gml:pos>1 2</gml:pos></gml:Point>'),
            "not WGS84",
        ),
        (pidf("<gs:ArcBand><gml:pos>50 12</gml:pos></gs:ArcBand>"), "ArcBand is not supported"),
        (pidf("<ca:civicAddress/>"), "civicAddress without any element"),
        (b"<presence>" + b" " * MAX_PIDF_BYTES + b"</presence>", "exceeds"),
    ],
)
def test_malformed_or_hostile_documents_raise_pidf_lo_error(document: bytes, reason: str) -> None:
    with pytest.raises(PidfLoError) as caught:
        parse_pidf_lo(document, RECEIVED)
    assert reason in caught.value.reason


def test_xml_parser_errors_are_chained() -> None:
    with pytest.raises(PidfLoError) as caught:
        parse_pidf_lo(BILLION_LAUGHS)
    assert caught.value.__cause__ is not None


def test_pidf_part_is_extracted_from_a_sip_multipart_body() -> None:
    document = (FIXTURES / "pidf_circle_civic.xml").read_bytes()
    body = (
        b"--uniqueBoundary\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"
        b"--uniqueBoundary\r\nContent-Type: application/pidf+xml; charset=UTF-8\r\n"
        b"Content-ID: <target123@atlanta.example.com>\r\n\r\n" + document + b"\r\n--uniqueBoundary--\r\n"
    )
    extracted = extract_pidf_from_multipart(body, 'multipart/mixed; boundary="uniqueBoundary"')
    assert extracted == document
    assert len(parse_pidf_lo(extracted)) == 2


def test_a_non_multipart_pidf_body_is_returned_as_it_is_and_others_give_none() -> None:
    assert extract_pidf_from_multipart(b"<presence/>", "application/pidf+xml") == b"<presence/>"
    assert extract_pidf_from_multipart(b"v=0", "application/sdp") is None


def test_lf_only_multipart_bodies_are_split_too() -> None:
    body = b"--b\nContent-Type: application/pidf+xml\n\n<presence/>\n--b--\n"
    assert extract_pidf_from_multipart(body, "multipart/mixed; boundary=b") == b"<presence/>"


def test_deeply_nested_multipart_is_refused() -> None:
    body = b"x"
    content_type = "application/pidf+xml"
    for level in range(6):
        boundary = f"b{level}"
        body = (
            f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
            + body
            + f"\r\n--{boundary}--".encode()
        )
        content_type = f"multipart/mixed; boundary={boundary}"
    with pytest.raises(MultipartError, match="nested deeper"):
        extract_pidf_from_multipart(body, content_type)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_either_parse_or_raise_pidf_lo_error(data: bytes) -> None:
    with contextlib.suppress(PidfLoError):
        parse_pidf_lo(data)


xml_text = st.text(alphabet=st.sampled_from(list('0123456789 .-+eE abc<>/"=:&;')), max_size=40)


@settings(max_examples=400, deadline=None)
@given(
    shape=st.sampled_from(["gml:Point", "gs:Circle", "gml:Polygon", "ca:civicAddress", "gs:Ellipse"]),
    inner=xml_text,
    pos=xml_text,
    attribute=xml_text,
)
def test_near_valid_documents_never_raise_anything_but_pidf_lo_error(
    shape: str, inner: str, pos: str, attribute: str
) -> None:
    document = pidf(
        f'<{shape} srsName="{attribute}"><gml:pos>{pos}</gml:pos>'
        f'<gs:radius uom="{attribute}">{inner}</gs:radius>'
        f"<gml:exterior><gml:LinearRing><gml:posList>{pos}</gml:posList></gml:LinearRing></gml:exterior>"
        f"<ca:A3>{inner}</ca:A3></{shape}>"
    )
    with contextlib.suppress(PidfLoError):
        parse_pidf_lo(document)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.text(max_size=60))
def test_any_body_and_content_type_either_split_or_raise_multipart_error(
    body: bytes, content_type: str
) -> None:
    try:
        extract_pidf_from_multipart(body, content_type)
        extract_pidf_from_multipart(b"--b\r\n" + body + b"\r\n--b--", "multipart/mixed; boundary=b")
    except MultipartError:
        pass


@pytest.mark.parametrize("encoding", [b"x-nope", b"ebcdic-xx"])
def test_unknown_xml_encoding_is_a_pidf_lo_error_not_a_lookup_error(encoding: bytes) -> None:
    """Issue 13: LookupError escaped parse_pidf_lo and, through the INVITE path, silenced an emergency call."""
    document = (
        (FIXTURES / "pidf_circle_civic.xml")
        .read_bytes()
        .replace(b'encoding="UTF-8"', b'encoding="' + encoding + b'"', 1)
    )
    with pytest.raises(PidfLoError, match="does not decode") as caught:
        parse_pidf_lo(document, RECEIVED)
    assert isinstance(caught.value.__cause__, LookupError | ValueError)
