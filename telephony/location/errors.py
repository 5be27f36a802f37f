"""Errors of the location decoders.

Every decoder raises only its own subclass of :class:`LocationDecodeError`; third-party errors (asn1tools,
the XML parser) are mapped with ``raise ... from exc`` so a caller needs exactly one ``except`` per decoder
and always gets a human-readable ``reason`` to log next to the call reference.
"""

from __future__ import annotations


class LocationDecodeError(ValueError):
    """A location message from outside (SMS, SIP body) could not be used."""

    kind = "location"

    def __init__(self, reason: str) -> None:
        super().__init__(f"{self.kind}: {reason}")
        self.reason = reason


class AmlError(LocationDecodeError):
    """An Advanced Mobile Location SMS (ETSI TS 103 625) is malformed."""

    kind = "AML"


class MsdError(LocationDecodeError):
    """An eCall Minimum Set of Data (EN 15722) is malformed or of an unsupported version."""

    kind = "eCall MSD"


class PidfLoError(LocationDecodeError):
    """A PIDF-LO document (RFC 4119 / 5491) is malformed, unsafe or carries no usable location."""

    kind = "PIDF-LO"


class MultipartError(LocationDecodeError):
    """A SIP multipart body could not be split into its parts."""

    kind = "multipart"
