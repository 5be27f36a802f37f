"""Asterisk Manager Interface bridge: follows emergency calls on an Asterisk PBX and carries out intake's
commands there. See docs/telephony-ami.md."""

from telephony.ami.bridge import AmiBridge, AmiConfig, MediaForkResult, RedirectResult
from telephony.ami.client import ActionResult, AmiConnection
from telephony.ami.errors import (
    AmiActionError,
    AmiConnectionError,
    AmiError,
    AmiLoginError,
    AmiTimeoutError,
)
from telephony.ami.framing import AmiMessage, encode_action, parse_frames
from telephony.ami.tracker import AmiCallTracker

__all__ = [
    "ActionResult",
    "AmiActionError",
    "AmiBridge",
    "AmiCallTracker",
    "AmiConfig",
    "AmiConnection",
    "AmiConnectionError",
    "AmiError",
    "AmiLoginError",
    "AmiMessage",
    "AmiTimeoutError",
    "MediaForkResult",
    "RedirectResult",
    "encode_action",
    "parse_frames",
]
