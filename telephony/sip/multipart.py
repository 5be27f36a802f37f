"""Pure extraction of body parts from a SIP body (RFC 2046 multipart/mixed), e.g. SDP + PIDF-LO (RFC 6442)."""

from __future__ import annotations

from dataclasses import dataclass, field

from telephony.sip.errors import ParseError

MAX_PARTS = 16


@dataclass(frozen=True, slots=True)
class BodyPart:
    content_type: str  # lower-case media type without parameters, e.g. "application/sdp"
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names

    @property
    def content_id(self) -> str:
        return self.headers.get("content-id", "").strip().strip("<>")


def _media_type_and_params(content_type: str) -> tuple[str, dict[str, str]]:
    media, *raw_params = content_type.split(";")
    params: dict[str, str] = {}
    for raw in raw_params:
        key, _, value = raw.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), params


def split_body(content_type: str | None, body: bytes) -> list[BodyPart]:
    """The parts of a SIP body: one part for a simple body, the sub-parts of a multipart one."""
    if not body:
        return []
    media, params = _media_type_and_params(content_type or "application/octet-stream")
    if not media.startswith("multipart/"):
        return [BodyPart(media, body)]
    boundary = params.get("boundary")
    if not boundary:
        raise ParseError("multipart body without boundary parameter")
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise ParseError("multipart body without parts")
    parts: list[BodyPart] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        if len(parts) >= MAX_PARTS:
            raise ParseError(f"multipart body has more than {MAX_PARTS} parts")
        parts.append(_parse_part(chunk))
    return parts


def _parse_part(chunk: bytes) -> BodyPart:
    chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n")
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, content = chunk.partition(separator)
        if found:
            break
    else:
        head, content = b"", chunk
    if content.endswith(b"\r\n"):
        content = content[:-2]
    elif content.endswith(b"\n"):
        content = content[:-1]
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    media, _ = _media_type_and_params(headers.get("content-type", "text/plain"))
    return BodyPart(media, content, headers)


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
