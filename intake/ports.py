"""What the intake services need from their collaborators, as structural types.

The concrete classes live in :mod:`intake.storage` (database), :mod:`intake.live` (Redis),
:mod:`transcription.service` and :mod:`telephony`; the composition root (:mod:`intake.app`) plugs them in.
"""

from __future__ import annotations

from typing import Any, Protocol


class FlushDone(Protocol):
    """Set when a closed leg's last words are decoded (a ``threading.Event``)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Transcriber(Protocol):
    def open_leg(
        self,
        call_ref: str,
        leg: str,
        sample_rate: int,
        language_hint: str | None = None,
        country_hint: str | None = None,
    ) -> None: ...

    def feed(self, call_ref: str, leg: str, pcm: bytes) -> object: ...

    def close_leg(self, call_ref: str, leg: str) -> FlushDone: ...

    def backlog_s(self, call_ref: str, leg: str) -> float:
        """Seconds of audio queued for the leg and not decoded yet."""
        ...

    def processed_s(self, call_ref: str, leg: str) -> float:
        """Seconds of the leg's audio the decoder has consumed: grows while it makes progress."""
        ...

    def set_leg_queue(
        self, call_ref: str, leg: str, waiting: bool, priority: int = 3, waiting_since: float | None = None
    ) -> None:
        """Where the caller is (waiting in a queue with its priority, or with a call taker): recognition
        capacity goes to waiting callers first."""


class Recorder(Protocol):
    """Voice logging (:class:`intake.recording.CallRecorder`): called on the event loop, never blocks."""

    def begin(self, call_id: str) -> None: ...

    def feed(self, call_id: str, leg: str, pcm: bytes, seq: int) -> None: ...

    def end(self, call_id: str, at: Any = None) -> None: ...


class CallControl(Protocol):
    """Commands to whichever adapter holds a call (SIP endpoint in standalone mode, AMI bridge in PBX mode)."""

    async def play_prompt(self, call_ref: str, pcm: bytes, sample_rate: int, loop: bool = True) -> None: ...

    async def connect_to_taker(self, call_ref: str, taker_uri: str, priority: int) -> None: ...

    async def hangup(self, call_ref: str) -> None: ...


class Clock(Protocol):
    def __call__(self) -> Any: ...
