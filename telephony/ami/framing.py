"""AMI wire framing: bytes in, ordered key/value messages out; and the reverse for actions.

The Asterisk Manager Interface is a line protocol: ``Key: Value`` lines ending in CRLF, a blank line ends a
message. The first line after connecting is a banner (``Asterisk Call Manager/9.0.0``) with no blank line
after it. Old Asterisk versions (and ``Command`` on them) answer ``Response: Follows`` with raw output lines
ended by ``--END COMMAND--``, which may contain blank lines of their own.

:func:`parse_frames` is pure: it takes whatever bytes arrived so far and returns the complete messages plus
the bytes of the incomplete tail, which the caller prepends to the next read. It never raises on input:
malformed lines are logged and kept aside on the message (:attr:`AmiMessage.rejected`), a block with no
usable header is logged and dropped, and an incomplete message larger than ``max_message_bytes`` is
discarded so that a peer that never sends a blank line cannot grow our buffer without bound.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

BANNER_PREFIX = "Asterisk Call Manager/"
END_COMMAND = "--END COMMAND--"
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
# Asterisk key names are word characters and dashes ("Cause-txt"); old versions add "(...)" suffixes
# such as "ChanVariable(SIP/x-1)".
_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\([^()\r\n]*\))?$")
# Marks a returned tail as "inside a discarded oversized message". NUL never occurs in AMI text.
_SKIPPING = b"\x00ami-discarding\x00\n"
_FOLLOWS_HEADERS = frozenset({"privilege", "actionid", "message", "commandid"})


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One AMI message: its ``Key: Value`` pairs in wire order (keys may repeat, e.g. ``Variable``)."""

    fields: tuple[tuple[str, str], ...]
    rejected: tuple[str, ...] = field(default=())  # lines that were not ``Key: Value``

    def get(self, key: str, default: str | None = None) -> str | None:
        wanted = key.lower()
        for k, v in self.fields:
            if k.lower() == wanted:
                return v
        return default

    def value(self, key: str) -> str:
        """The first value of ``key``, or the empty string when absent (AMI treats both alike)."""
        found = self.get(key)
        return found if found is not None else ""

    def get_all(self, key: str) -> list[str]:
        wanted = key.lower()
        return [v for k, v in self.fields if k.lower() == wanted]

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def response(self) -> str | None:
        if self.event is not None:
            return None  # OriginateResponse events carry a "Response" field too
        return self.get("Response")

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    @property
    def is_banner(self) -> bool:
        return bool(self.fields) and self.fields[0][0] == "Banner"

    def as_dict(self) -> dict[str, str]:
        """First value per key; for logging and tests."""
        out: dict[str, str] = {}
        for k, v in self.fields:
            out.setdefault(k, v)
        return out

    def to_wire(self) -> bytes:
        if self.is_banner:
            return (self.fields[0][1] + "\r\n").encode()
        return b"".join(f"{k}: {v}\r\n".encode() for k, v in self.fields) + b"\r\n"


class ActionEncodingError(ValueError):
    """An action field would break AMI framing (CR/LF inside, empty or odd key)."""


def encode_action(fields: Iterable[tuple[str, str]]) -> bytes:
    """Serialise an action. Refuses CR/LF in keys and values: a channel name or reason coming from a
    console must never be able to inject a second AMI action."""
    lines: list[str] = []
    for key, value in fields:
        if not _KEY.match(key):
            raise ActionEncodingError(f"invalid AMI key {key!r}")
        if "\r" in value or "\n" in value:
            raise ActionEncodingError(f"AMI value for {key!r} contains a line break")
        lines.append(f"{key}: {value}\r\n")
    if not lines or lines[0].split(":", 1)[0].lower() != "action":
        raise ActionEncodingError("an AMI action must start with its Action field")
    return "".join(lines).encode("utf-8") + b"\r\n"


def _lines(data: bytes, start: int) -> Iterator[tuple[str, int]]:
    """Complete lines from ``start``: (decoded line without EOL, offset just after it)."""
    pos = start
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return
        raw = data[pos:nl]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        # Lines are decoded whole, so a multi-byte character is never cut by a TCP read boundary.
        yield raw.decode("utf-8", errors="replace"), nl + 1
        pos = nl + 1


def _split_field(line: str) -> tuple[str, str] | None:
    key, sep, value = line.partition(":")
    if not sep or not _KEY.match(key):
        return None
    return key, value[1:] if value.startswith(" ") else value


def _finish(pairs: list[tuple[str, str]], rejected: list[str], out: list[AmiMessage], offset: int) -> None:
    if not pairs:
        if rejected:
            log.warning(
                "AMI block without a single Key: Value line dropped (at byte %d): %r", offset, rejected[:3]
            )
        return
    head = pairs[0][0].lower()
    if head not in ("event", "response", "action"):
        log.warning("AMI message without Event/Response/Action header dropped: %r", pairs[:3])
        return
    if rejected:
        log.warning(
            "AMI %s %r: %d malformed line(s) ignored: %r",
            pairs[0][0],
            pairs[0][1],
            len(rejected),
            rejected[:3],
        )
    out.append(AmiMessage(tuple(pairs), tuple(rejected)))


def parse_frames(
    data: bytes, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> tuple[list[AmiMessage], bytes]:
    """Split ``data`` into complete AMI messages and the unconsumed tail.

    Feeding the tail back with the next read gives the same messages whatever the chunking.
    """
    out: list[AmiMessage] = []
    msg_start = 0  # offset where the message being collected started
    if data.startswith(_SKIPPING):
        # The rest of a message we discarded as too large: drop lines up to the blank line that ends it.
        resume = None
        for line, after in _lines(data, len(_SKIPPING)):
            if line == "":
                resume = after
                break
        if resume is None:
            partial = (
                data[data.rfind(b"\n") + 1 :] if b"\n" in data[len(_SKIPPING) :] else data[len(_SKIPPING) :]
            )
            return out, _SKIPPING + (partial if len(partial) <= max_message_bytes else b"")
        msg_start = resume
    pairs: list[tuple[str, str]] = []
    rejected: list[str] = []
    follows = False  # inside a "Response: Follows" body
    follows_body = False  # the raw output has started (headers are over)
    follows_done = False  # "--END COMMAND--" seen; the next blank line ends the message
    for line, after in _lines(data, msg_start):
        if not pairs and not rejected and line.startswith(BANNER_PREFIX):
            out.append(AmiMessage((("Banner", line),)))
            msg_start = after
            continue
        if follows and not follows_done:
            if line.endswith(END_COMMAND):
                text = line[: -len(END_COMMAND)]
                if text:
                    pairs.append(("Output", text))
                follows_done = True
                continue
            kv = _split_field(line) if not follows_body else None
            if kv is not None and kv[0].lower() in _FOLLOWS_HEADERS:
                pairs.append(kv)
            else:
                follows_body = True
                pairs.append(("Output", line))
            continue
        if line == "":
            if pairs or rejected:
                _finish(pairs, rejected, out, msg_start)
            pairs, rejected = [], []
            follows = follows_body = follows_done = False
            msg_start = after
            continue
        kv = _split_field(line)
        if kv is None:
            rejected.append(line[:200])
            continue
        if not pairs and kv[0].lower() == "response" and kv[1].strip().lower() == "follows":
            follows = True
        pairs.append(kv)
    tail = data[msg_start:]
    if len(tail) > max_message_bytes:
        # Keep only what follows the last complete line so parsing can resynchronise on the next blank
        # line; the fields already seen belong to a message we will never deliver whole.
        last_nl = tail.rfind(b"\n")
        log.warning(
            "AMI message exceeds %d bytes without ending; discarded up to its blank line", max_message_bytes
        )
        partial = tail[last_nl + 1 :] if last_nl >= 0 else b""
        tail = _SKIPPING + (partial if len(partial) <= max_message_bytes else b"")
    return out, tail
