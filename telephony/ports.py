"""The commands intake gives a telephony adapter, and the sink adapters deliver events into."""

from __future__ import annotations

from typing import Protocol

from telephony.events import TelephonyEvent


class EventSink(Protocol):
    """Where an adapter hands its events. Must be cheap and thread-safe: adapters call it from their
    own threads (pyVoIP) or tasks (AMI); the implementation hops onto the event loop."""

    def __call__(self, event: TelephonyEvent) -> None: ...


class CallControl(Protocol):
    """What intake can ask of whichever adapter holds a call."""

    async def play_prompt(self, call_ref: str, pcm: bytes, sample_rate: int, loop: bool = True) -> None: ...

    async def connect_to_taker(self, call_ref: str, taker_uri: str, priority: int) -> None: ...

    async def hangup(self, call_ref: str) -> None: ...
