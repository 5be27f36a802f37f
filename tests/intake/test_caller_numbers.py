from hypothesis import given
from hypothesis import strategies as st

from intake.domain import LineType
from intake.numbers import parse_caller_number


def test_czech_mobile_is_parsed_to_e164_with_country_and_line_type():
    number = parse_caller_number("603224590")
    assert number.e164 == "+420603224590"
    assert number.country == "CZ"
    assert number.line_type is LineType.MOBILE


def test_foreign_number_with_00_prefix_keeps_its_country():
    number = parse_caller_number("00491714829316")
    assert number.e164 == "+491714829316"
    assert number.country == "DE"


def test_withheld_number_is_still_a_caller_without_a_number():
    number = parse_caller_number("anonymous")
    assert number.e164 is None
    assert number.display == "withheld"


@given(st.text(max_size=64))
def test_any_caller_id_text_parses_without_raising(raw):
    number = parse_caller_number(raw)
    assert number.raw == raw.strip()
