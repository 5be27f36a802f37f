from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from telephony.location.aml import AmlMessage, PositioningMethod, decode_aml
from telephony.location.errors import AmlError, LocationDecodeError

RECEIVED = datetime(2026, 11, 27, 10, 47, 10, tzinfo=UTC)


def with_length(body: str) -> str:
    """Append the ml field so that it counts the whole message, itself included."""
    prefix = f"{body};ml="
    for digits in range(1, 5):
        total = len(prefix) + digits
        if len(str(total)) == digits:
            return f"{prefix}{total}"
    raise AssertionError("unreachable")


KV_GNSS = with_length(
    'A"ML=1;lt=+50.23112;lg=+12.87234;rd=14;top=20261127104702;lc=68;pm=G;'
    "si=230031234567890;ei=356708041746734;mcc=230;mnc=03"
)


def test_gnss_message_from_karlovy_vary_decodes_every_field() -> None:
    message = decode_aml(KV_GNSS, RECEIVED)
    assert message.version == 1
    assert message.method is PositioningMethod.GNSS
    assert (message.lat, message.lon, message.radius_m) == (50.23112, 12.87234, 14.0)
    assert message.positioned_at == datetime(2026, 11, 27, 10, 47, 2, tzinfo=UTC)
    assert message.confidence_pct == 68
    assert (message.imsi, message.imei) == ("230031234567890", "356708041746734")
    assert (message.mcc, message.mnc) == ("230", "03")
    assert message.length == len(KV_GNSS) == 128
    assert message.received_at == RECEIVED


def test_gnss_message_becomes_an_aml_gnss_geofix_with_confidence_as_fraction() -> None:
    fix = decode_aml(KV_GNSS, RECEIVED).to_geofix()
    assert fix is not None
    assert fix.source == "aml-gnss"
    assert (fix.lat, fix.lon, fix.radius_m, fix.confidence) == (50.23112, 12.87234, 14.0, 0.68)
    assert fix.at == datetime(2026, 11, 27, 10, 47, 2, tzinfo=UTC)
    assert fix.raw == KV_GNSS


@pytest.mark.parametrize(
    ("text", "source"),
    [
        # Published examples (a French AML test tool's README and a UK PSAP simulator).
        (
            'A"ML=1;lt=+48.902963;lg=+2.516582;rd=1964;top=20220210134654;lc=95;pm=G;'
            "si=234302543446355;ei=357365093474415;mcc=208;mnc=01;ml=131",
            "aml-gnss",
        ),
        (
            'A"ML=1;lt=+55.74297;lg=-4.26880;rd=10;top=20130717175329;lc=95;pm=G;'
            "si=234302543446355;ei=356708041746734;mcc=234;mnc=30;ml=127",
            "aml-gnss",
        ),
        (
            with_length('A"ML=1;lt=+50.08;lg=+12.37;rd=850;top=20261127104702;lc=68;pm=C;mcc=230;mnc=01'),
            "aml-cell",
        ),
        (
            with_length('A"ML=1;lt=+50.17;lg=+12.64;rd=40;top=20261127104702;lc=68;pm=W;mcc=230;mnc=02'),
            "aml-wifi",
        ),
    ],
)
def test_published_and_cell_and_wifi_messages_map_to_their_source(text: str, source: str) -> None:
    fix = decode_aml(text, RECEIVED).to_geofix()
    assert fix is not None and fix.source == source


def test_no_fix_message_says_there_is_no_position() -> None:
    text = with_length('A"ML=1;lt=;lg=;rd=;top=20261127104702;lc=;pm=N;si=230031234567890;mcc=230;mnc=03')
    message = decode_aml(text, RECEIVED)
    assert message.method is PositioningMethod.NONE
    assert not message.has_position
    assert message.to_geofix() is None
    assert message.positioned_at == datetime(2026, 11, 27, 10, 47, 2, tzinfo=UTC)


def test_no_fix_message_without_position_fields_at_all_is_accepted() -> None:
    message = decode_aml(with_length('A"ML=1;pm=N;mcc=230;mnc=03'), RECEIVED)
    assert message.to_geofix() is None and message.positioned_at is None


def test_gateway_line_end_and_trailing_separator_are_tolerated() -> None:
    body = 'A"ML=1;lt=-33.5;lg=-70.25;rd=5;top=20261127104702;lc=90;pm=G;ei=3567080417467340;'
    text = f"{body}ml={len(body) + 5}"  # "ml=NN" adds 5 characters
    message = decode_aml(f"  {text}\r\n", RECEIVED)
    assert (message.lat, message.lon) == (-33.5, -70.25)
    assert message.imei == "3567080417467340"  # IMEISV, 16 digits


def test_header_without_quote_and_unknown_future_keys_are_kept() -> None:
    text = with_length("AML=1;lt=50.1;lg=12.3;rd=20;top=20261127104702;pm=G;al=450")
    message = decode_aml(text, RECEIVED)
    assert message.confidence_pct is None
    assert message.extra == {"al": "450"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \r\n", "empty"),
        (KV_GNSS[:-7], "ml is missing"),
        (with_length('A"ML=1;lt=50.1;lg=12.3;rd=20;top=20261127104702'), "pm is missing"),
        (with_length('A"ML=1;lt=50.1;lg=12.3;rd=20;top=20261127104702;pm=X'), "unknown positioning method"),
        (with_length('A"ML=1;lt=95.1;lg=12.3;rd=20;top=20261127104702;pm=G'), "outside -90..90"),
        (with_length('A"ML=1;lt=50.1;lg=190.3;rd=20;top=20261127104702;pm=G'), "outside -180..180"),
        (with_length('A"ML=1;lt=50,1;lg=12.3;rd=20;top=20261127104702;pm=G'), "latitude lt"),
        (with_length('A"ML=1;lt=50.1;lg=12.3;rd=-5;top=20261127104702;pm=G'), "radius rd"),
        (with_length('A"ML=1;lt=50.1;lg=12.3;rd=20;top=20261331104702;pm=G'), "not a valid date"),
        (with_length('A"ML=1;lt=50.1;lg=12.3;rd=20;top=2026112710;pm=G'), "YYYYMMDDhhmmss"),
        (with_length('A"ML=1;lt=50.1;lg=12.3;rd=20;top=20261127104702;lc=101;pm=G'), "outside 0..100"),
        (with_length('A"ML=1;lt=50.1;lg=12.3;rd=20;pm=G'), "field top is missing"),
        (with_length('A"ML=1;lg=12.3;rd=20;top=20261127104702;pm=G'), "field lt is missing"),
        (with_length('A"ML=1;lt=50.1;lt=50.2;lg=12.3;rd=20;top=20261127104702;pm=G'), "appears twice"),
        (with_length('A"ML=2;lt=50.1;lg=12.3;rd=20;top=20261127104702;pm=G'), "unsupported AML version 2"),
        (with_length("HELLO=1;pm=N"), "header"),
        (with_length('A"ML=1;garbage;pm=N'), "not key=value"),
        (with_length('A"ML=1;pm=N;si=12AB'), "IMSI"),
        (with_length('A"ML=1;pm=N;mcc=23'), "mcc"),
        (with_length('A"ML=1;lt=٥٠.1;lg=12.3;rd=20;top=20261127104702;pm=G'), "latitude lt"),
        ("A" * 5000, "longer than"),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(AmlError) as caught:
        decode_aml(text, RECEIVED)
    assert reason in caught.value.reason


def test_aml_error_is_a_location_decode_error_with_a_readable_message() -> None:
    with pytest.raises(LocationDecodeError, match="AML: message length"):
        decode_aml(KV_GNSS.replace("ml=128", "ml=99"), RECEIVED, strict_length=True)


GOOGLE_ELS_NO_LOCATION = (
    'A"ML=1;lt=+00.00000;lg=+000.00000;rd=N;top=20220131173734;lc=0;pm=N;'
    "si=234159000000000;ei=123456789012345;mcc=234;mnc=15;ml=127"
)
# Published with ml=126 although the text has 127 characters.
GOOGLE_ELS_WIFI = (
    'A"ML=1;lt=+51.53321;lg=-0.12601;rd=14;top=20220131171748;lc=68;pm=W;'
    "si=234159000000000;ei=123456789012345;mcc=234;mnc=15;ml=126"
)


def test_google_els_no_location_example_with_placeholder_values_has_no_position() -> None:
    message = decode_aml(GOOGLE_ELS_NO_LOCATION, RECEIVED)
    assert message.method is PositioningMethod.NONE and message.to_geofix() is None
    assert message.warnings == ()


def test_a_miscounted_length_keeps_the_position_and_says_so() -> None:
    message = decode_aml(GOOGLE_ELS_WIFI, RECEIVED)
    fix = message.to_geofix()
    assert fix is not None and (fix.source, fix.lat, fix.lon, fix.radius_m) == (
        "aml-wifi",
        51.53321,
        -0.12601,
        14.0,
    )
    assert message.warnings == ("message length field says 126 characters but the message has 127",)


def test_a_zero_zero_position_is_a_placeholder_not_a_fix() -> None:
    text = with_length('A"ML=1;lt=+00.00000;lg=+000.00000;rd=10;top=20261127104702;lc=68;pm=G')
    message = decode_aml(text, RECEIVED)
    assert message.to_geofix() is None and not message.has_position
    assert message.warnings == ("position 0, 0 is a placeholder, not a fix",)


def test_strict_length_rejects_a_miscounted_message() -> None:
    with pytest.raises(AmlError, match="says 126 characters but the message has 127"):
        decode_aml(GOOGLE_ELS_WIFI, RECEIVED, strict_length=True)


def test_experimental_els_beta_version_2_is_refused_as_not_aml() -> None:
    text = with_length('A"ML=2;en=112;et=1593187189;lo=37.42175,-122.08461,20.1;lc=68;ls=W')
    with pytest.raises(AmlError, match="unsupported AML version 2"):
        decode_aml(text, RECEIVED)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_any_text_either_decodes_or_raises_aml_error(text: str) -> None:
    for strict in (False, True):
        try:
            result = decode_aml(text, RECEIVED, strict_length=strict)
        except AmlError:
            continue
        assert isinstance(result, AmlMessage)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["lt", "lg", "rd", "top", "lc", "pm", "si", "ei", "mcc", "mnc", "ml", "x"]),
            st.text(alphabet="0123456789+-.GWCN;=", max_size=16),
        ),
        max_size=14,
    )
)
def test_near_valid_messages_never_raise_anything_but_aml_error(pairs: list[tuple[str, str]]) -> None:
    text = 'A"ML=1;' + ";".join(f"{key}={value}" for key, value in pairs)
    for candidate in (text, with_length(text)):
        with contextlib.suppress(AmlError):
            decode_aml(candidate, RECEIVED)


@settings(max_examples=200, deadline=None)
@given(
    lat=st.floats(min_value=-90, max_value=90, allow_nan=False),
    lon=st.floats(min_value=-180, max_value=180, allow_nan=False),
    radius=st.integers(min_value=0, max_value=99999),
    confidence=st.integers(min_value=0, max_value=100),
    method=st.sampled_from("GWC"),
)
def test_valid_generated_messages_round_trip_their_position(
    lat: float, lon: float, radius: int, confidence: int, method: str
) -> None:
    assume(round(lat, 5) != 0 or round(lon, 5) != 0)  # 0, 0 is the no-fix placeholder
    text = with_length(
        f'A"ML=1;lt={lat:+.5f};lg={lon:+.5f};rd={radius};top=20261127104702;lc={confidence};pm={method}'
    )
    fix = decode_aml(text, RECEIVED).to_geofix()
    assert fix is not None
    assert fix.lat == pytest.approx(round(lat, 5)) and fix.lon == pytest.approx(round(lon, 5))
    assert fix.radius_m == radius and fix.confidence == pytest.approx(confidence / 100)
