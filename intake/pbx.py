"""Call control for calls that an Asterisk PBX holds (PBX mode), over the AMI bridge.

Asterisk's own desk queues ring the call takers' phones; intake follows every call, moves a caller to the
desk triage chose (Redirect with a queue priority), forks the caller's audio to the SIP endpoint for
transcription (Originate ChanSpy), and mirrors call takers' log-in and pause into the queues. When the AMI
link is down Asterisk's dialplan still queues every call by its dialled number.
"""

from __future__ import annotations

import logging
from typing import Any

from routing.vocabulary import QUEUE_NUMBER_BY_DESK, DeskCode
from telephony.errors import AdapterError

log = logging.getLogger(__name__)

# app_queue serves a higher QUEUE_PRIO first; ours is 1 (immediate threat to life) .. 3.
QUEUE_PRIO = {1: 10, 2: 5, 3: 0}
FRONT_PRIO = 20  # suspected cardiac arrest, people trapped


def queue_priority(priority: int, front: bool) -> int:
    return FRONT_PRIO if front else QUEUE_PRIO.get(priority, 0)


class PbxCallControl:
    def __init__(self, bridge: Any) -> None:
        self._bridge = bridge

    def _channel(self, call_ref: str) -> str:
        channel: str | None = self._bridge.channel_for(call_ref)
        if channel is None:
            raise AdapterError(f"no Asterisk channel known for call {call_ref}")
        return channel

    async def play_prompt(self, call_ref: str, pcm: bytes, sample_rate: int, loop: bool = True) -> None:
        """Asterisk plays the queue's announcement and music on hold itself (queues.conf)."""
        return None

    async def connect_to_taker(self, call_ref: str, taker_uri: str, priority: int) -> None:
        """The taker's phone is a member of its desk queue in Asterisk: putting the caller at the head of
        that queue makes Asterisk ring it (``taker_uri`` is ``desk:<number>`` or the taker's desk code)."""
        number = taker_uri.removeprefix("desk:")
        if number in DeskCode.__members__:
            number = QUEUE_NUMBER_BY_DESK[DeskCode[number]]
        await self._bridge.redirect_to_queue(self._channel(call_ref), number, queue_priority(priority, False))

    async def move_to_desk(self, call_ref: str, desk: DeskCode, priority: int, front: bool) -> None:
        result = await self._bridge.redirect_to_queue(
            self._channel(call_ref), QUEUE_NUMBER_BY_DESK[desk], queue_priority(priority, front)
        )
        if not getattr(result, "priority_applied", True):
            log.warning("call %s moved to %s but Asterisk kept its queue priority", call_ref, desk.value)

    async def start_media_fork(self, call_ref: str) -> None:
        await self._bridge.originate_media_fork(self._channel(call_ref))

    async def hangup(self, call_ref: str) -> None:
        await self._bridge.hangup(self._channel(call_ref))

    async def taker_logged_in(self, interface: str, member_name: str, desks: tuple[DeskCode, ...]) -> None:
        for desk in desks:
            await self._bridge.queue_add(f"desk-{QUEUE_NUMBER_BY_DESK[desk]}", interface, member_name)

    async def taker_paused(
        self, interface: str, desks: tuple[DeskCode, ...], paused: bool, reason: str
    ) -> None:
        for desk in desks:
            await self._bridge.queue_pause(f"desk-{QUEUE_NUMBER_BY_DESK[desk]}", interface, paused, reason)
