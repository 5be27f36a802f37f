"""Body parts of a SIP message (RFC 2046 multipart/mixed), e.g. SDP + PIDF-LO (RFC 6442), as the SIP
endpoint uses them: by media type and Content-ID."""

from __future__ import annotations

from dataclasses import dataclass, field

from telephony.location.errors import MultipartError
from telephony.location.multipart import split_parts
from telephony.sip.errors import ParseError


@dataclass(frozen=True, slots=True)
class BodyPart:
    content_type: str  # lower-case media type without parameters, e.g. "application/sdp"
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names

    @property
    def content_id(self) -> str:
        return self.headers.get("content-id", "").strip().strip("<>")


def split_body(content_type: str | None, body: bytes) -> list[BodyPart]:
    """The parts of a SIP body: one part for a simple body, the leaf parts of a multipart one (read by the
    one multipart reader, telephony.location.multipart). Raises ParseError when it cannot be read."""
    if not body:
        return []
    try:
        parts = split_parts(body, content_type or "application/octet-stream")
    except MultipartError as exc:
        raise ParseError(exc.reason) from exc
    return [BodyPart(part.media_type, part.body, dict(part.headers)) for part in parts]


def find_part(parts: list[BodyPart], media_type: str, content_id: str | None = None) -> BodyPart | None:
    for part in parts:
        if part.content_type == media_type and (content_id is None or part.content_id == content_id):
            return part
    return None


def geolocation_references(header: str | None) -> list[str]:
    """URIs in a Geolocation header (RFC 6442): ``<cid:...>`` points into the body, others are by reference."""
    if not header:
        return []
    refs: list[str] = []
    for item in header.split(","):
        item = item.strip()
        if item.startswith("<") and ">" in item:
            refs.append(item[1 : item.index(">")])
    return refs
