"""The name ``telephony.sip.location`` imports the PIDF-LO parser by (see :mod:`telephony.location.pidf_lo`)."""

from telephony.location.pidf_lo import extract_pidf_from_multipart, parse_pidf_lo

__all__ = ["extract_pidf_from_multipart", "parse_pidf_lo"]
