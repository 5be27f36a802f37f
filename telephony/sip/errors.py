"""Errors raised by the SIP endpoint and its pure parsers."""

from __future__ import annotations

from telephony.errors import AdapterError


class SipError(AdapterError):
    """Base of everything the SIP endpoint raises on purpose."""


class ParseError(SipError, ValueError):
    """Bytes from the network that are not a valid SIP message / SDP body / RTP packet.

    The only exception the pure parsers raise for bad input, whatever the bytes are.
    """


class CallNotFoundError(SipError, LookupError):
    """A CallControl command named a call the endpoint does not (or no longer) hold."""


class TakerUnavailableError(SipError):
    """The call taker's phone rejected, did not answer in time, or could not be reached."""

    def __init__(self, taker_uri: str, status: int | None, detail: str) -> None:
        super().__init__(f"call taker {taker_uri} unavailable: {status or ''} {detail}".strip())
        self.taker_uri = taker_uri
        self.status = status
        self.detail = detail


class EndpointNotRunningError(SipError, RuntimeError):
    """A command was given before start() or after stop()."""
