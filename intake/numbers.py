"""Caller numbers: parsed once, with phonenumbers, into E.164, country and line type."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from intake.domain import WITHHELD_CALLER_IDS, CallerNumber, LineType

_LINE_TYPES = {
    PhoneNumberType.MOBILE: LineType.MOBILE,
    PhoneNumberType.FIXED_LINE: LineType.FIXED,
    PhoneNumberType.FIXED_LINE_OR_MOBILE: LineType.FIXED_OR_MOBILE,
    PhoneNumberType.VOIP: LineType.VOIP,
}


def parse_caller_number(raw: str | None, default_region: str = "CZ") -> CallerNumber:
    """Never raises: a withheld or garbled number is still a call, just one without a parsed number."""
    text = (raw or "").strip()
    if text.lower() in WITHHELD_CALLER_IDS:
        return CallerNumber(raw=text)
    candidate = text
    # SIP user parts often carry the international prefix as 00; phonenumbers wants + for foreign numbers.
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        number = phonenumbers.parse(candidate, default_region)
    except NumberParseException:
        return CallerNumber(raw=text)
    valid = phonenumbers.is_valid_number(number)
    country = phonenumbers.region_code_for_number(number)
    return CallerNumber(
        raw=text,
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        country=country if country and country != "ZZ" else None,
        line_type=_LINE_TYPES.get(
            phonenumbers.number_type(number), LineType.OTHER if valid else LineType.UNKNOWN
        ),
        valid=valid,
    )
