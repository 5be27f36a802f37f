"""Caller location from the network and the device: AML SMS, eCall MSD and PIDF-LO decoders.

Pure functions from bytes/text to values (:class:`telephony.events.GeoFix`); see ``docs/location.md``.
"""

from telephony.location.aml import AmlMessage, PositioningMethod, decode_aml
from telephony.location.ecall import EcallMsd, decode_msd, extract_msd_from_multipart
from telephony.location.errors import AmlError, LocationDecodeError, MsdError, MultipartError, PidfLoError
from telephony.location.pidf_lo import extract_pidf_from_multipart, parse_pidf_lo

__all__ = [
    "AmlError",
    "AmlMessage",
    "EcallMsd",
    "LocationDecodeError",
    "MsdError",
    "MultipartError",
    "PidfLoError",
    "PositioningMethod",
    "decode_aml",
    "decode_msd",
    "extract_msd_from_multipart",
    "extract_pidf_from_multipart",
    "parse_pidf_lo",
]
