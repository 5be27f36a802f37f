"""Recorded Asterisk 20 AMI sessions (tests/fixtures/ami/sessions, copied from the shared recordings)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from telephony.ami.framing import AmiMessage, parse_frames

SESSIONS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "ami" / "sessions"
SESSION_NAMES = (
    "answered-155",
    "abandoned-158",
    "redirect-150-to-155",
    "media-fork-112",
    "admin-actions",
    "bad-login",
)


@dataclass(frozen=True)
class WireLine:
    t: float
    direction: str  # "recv" (Asterisk -> client) / "send" (client -> Asterisk)
    text: str

    @property
    def message(self) -> AmiMessage:
        messages, rest = parse_frames(self.text.encode())
        assert len(messages) == 1 and rest == b"", self.text
        return messages[0]


def load_session(name: str) -> list[WireLine]:
    lines = []
    for raw in (SESSIONS_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        if raw.strip():
            d = json.loads(raw)
            lines.append(WireLine(float(d["t"]), d["dir"], d["text"]))
    return lines


def recv_wire(name: str) -> bytes:
    return "".join(w.text for w in load_session(name) if w.direction == "recv").encode()
