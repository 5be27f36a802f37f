"""Finding one body part of a SIP message body by its content type (RFC 2046 multipart, RFC 5621).

An emergency INVITE carries SDP, PIDF-LO (RFC 6442) and, for eCall, the MSD (RFC 8147) as parts of a
``multipart/mixed`` body, possibly nested. Binary parts (the MSD) must come out byte for byte, so this
splits on the boundary itself instead of going through a text-oriented mail parser.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from telephony.location.errors import MultipartError

MAX_BODY_BYTES = 256 * 1024
MAX_DEPTH = 4
MAX_PARTS = 16

_BOUNDARY = re.compile(r'boundary\s*=\s*(?:"([^"]{1,70})"|([^\s;,"]{1,70}))', re.IGNORECASE)


def media_type(content_type: str) -> str:
    """``application/pidf+xml;charset=utf-8`` -> ``application/pidf+xml`` (lower case)."""
    return content_type.split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Part:
    """One leaf part of a body: its media type (lower case, no parameters), its headers (lower-case
    names; empty for a body that is not multipart) and its content after Content-Transfer-Encoding."""

    media_type: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


def split_parts(body: bytes, content_type: str) -> list[Part]:
    """The leaf parts of ``body`` in order: the body itself when it is not multipart, the parts of a
    multipart body (nested ones flattened, at most MAX_DEPTH deep and MAX_PARTS in all).

    Liberal where the emergency call path needs it: a multipart body whose final boundary is missing ends
    at the end of the body, and a part without headers is plain text. Raises :class:`MultipartError` for
    what cannot be read (no boundary, boundary absent from the body, too large, too deep, too many parts,
    a transfer encoding that does not decode).
    """
    if len(body) > MAX_BODY_BYTES:
        raise MultipartError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    parts: list[Part] = []
    _collect(body, content_type, {}, 0, parts)
    return parts


def find_part(body: bytes, content_type: str, wanted: str) -> bytes | None:
    """The decoded content of the first part of type ``wanted`` in ``body``, or ``None`` if there is none.

    ``content_type`` is the Content-Type header of the whole body. A body that is itself of the wanted type
    is returned as it is. Raises :class:`MultipartError` when a multipart body cannot be read.
    """
    wanted = wanted.lower()
    return next((part.body for part in split_parts(body, content_type) if part.media_type == wanted), None)


def _collect(body: bytes, content_type: str, headers: Mapping[str, str], depth: int, out: list[Part]) -> None:
    kind = media_type(content_type)
    if not kind.startswith("multipart/"):
        if len(out) >= MAX_PARTS:
            raise MultipartError(f"more than {MAX_PARTS} body parts")
        out.append(Part(kind, body, headers))
        return
    if depth >= MAX_DEPTH:
        raise MultipartError(f"multipart nested deeper than {MAX_DEPTH} levels")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise MultipartError(f"{kind} without a boundary parameter")
    boundary = (match.group(1) or match.group(2)).encode("ascii", "replace")
    for part_headers, content in _split(body, boundary):
        part_type = part_headers.get("content-type", "text/plain")
        encoding = part_headers.get("content-transfer-encoding", "binary").strip().lower()
        _collect(_decode_transfer(content, encoding), part_type, part_headers, depth + 1, out)


def _split(body: bytes, boundary: bytes) -> list[tuple[dict[str, str], bytes]]:
    delimiter = b"--" + boundary
    start = body.find(delimiter)
    if start < 0:
        raise MultipartError("boundary not found in the body")
    parts: list[tuple[dict[str, str], bytes]] = []
    position = start
    while True:
        position += len(delimiter)
        if body.startswith(b"--", position):
            break  # close delimiter
        line_end = body.find(b"\n", position)
        if line_end < 0:
            break  # a delimiter at the very end without the closing dashes: nothing follows
        next_delimiter = _find_delimiter(body, b"\n" + delimiter, line_end)
        if next_delimiter < 0:
            # No final boundary (a sloppy sender): the last part runs to the end of the body.
            parts.append(_parse_part(body[line_end + 1 :].removesuffix(b"\n").removesuffix(b"\r")))
            break
        # The line break before a delimiter belongs to the delimiter (RFC 2046 section 5.1.1).
        end = (
            next_delimiter - 1
            if next_delimiter > 0 and body[next_delimiter - 1 : next_delimiter] == b"\r"
            else next_delimiter
        )
        parts.append(_parse_part(body[line_end + 1 : max(end, line_end + 1)]))
        position = next_delimiter + 1
    return parts


def _find_delimiter(body: bytes, marker: bytes, start: int) -> int:
    # "--boundary" only delimits when followed by "--", white space or the line end: a longer token
    # that merely starts with the boundary is content (RFC 2046 section 5.1.1).
    position = body.find(marker, start)
    while position >= 0:
        after = body[position + len(marker) : position + len(marker) + 2]
        if after in (b"", b"--") or after[:1] in (b"\r", b"\n", b" ", b"\t"):
            return position
        position = body.find(marker, position + 1)
    return -1


def _parse_part(part: bytes) -> tuple[dict[str, str], bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        if part.startswith(separator[len(separator) // 2 :]):
            return {}, part[len(separator) // 2 :]  # no headers at all: default type
        index = part.find(separator)
        if index >= 0:
            return _parse_headers(part[:index]), part[index + len(separator) :]
    return {}, part  # no blank line: no headers, the part is plain text (RFC 2046 default)


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    text = block.decode("utf-8", "replace").replace("\r\n", "\n")
    # Unfold continuation lines (a line starting with white space continues the previous header).
    for line in re.sub(r"\n[ \t]+", " ", text).split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    return headers


def _decode_transfer(content: bytes, encoding: str) -> bytes:
    if encoding in ("binary", "8bit", "7bit", ""):
        return content
    if encoding == "base64":
        try:
            return base64.b64decode(b"".join(content.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MultipartError(f"base64 body part does not decode: {exc}") from exc
    raise MultipartError(f"unsupported Content-Transfer-Encoding {encoding!r}")
