"""Call control for calls that an Asterisk PBX holds (PBX mode), over the AMI bridge.

Asterisk's own desk queues ring the call takers' phones; intake follows every call, moves a caller to the
desk triage chose (Redirect with a queue priority), keeps the caller's queue priority equal to the current
triage (QueueChangePriorityCaller), carries out overflow to the 112 desk on the PBX, forks the caller's
audio to the SIP endpoint for transcription (Originate ChanSpy), and owns desk membership: the console's
log-in / pause / log-out become QueueAdd / QueuePause / QueueRemove (member name = the taker's id), put
back after every AMI reconnect or Asterisk restart. When the AMI link is down Asterisk's dialplan still
queues every call by its dialled number.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from intake.domain import CallTaker, TakerState
from intake.errors import LiveStateError
from intake.live import LiveTaker
from routing.vocabulary import QUEUE_NUMBER_BY_DESK, DeskCode
from telephony.errors import AdapterError

log = logging.getLogger(__name__)

# app_queue serves a higher QUEUE_PRIO first; ours is 1 (immediate threat to life) .. 3.
QUEUE_PRIO = {1: 10, 2: 5, 3: 0}
FRONT_PRIO = 20  # suspected cardiac arrest, people trapped

# Intake states in which a taker's phone is a queue member, and whether it is paused there.
_MEMBER_PAUSED: dict[TakerState, bool] = {
    TakerState.AVAILABLE: False,
    TakerState.BUSY: False,
    TakerState.WRAP_UP: False,  # the PBX's own wrapuptime (queues.conf) keeps the phone quiet meanwhile
    TakerState.PAUSED: True,
}


# app_queue's answers when the member already is as requested.
_ALREADY_DONE: dict[str, tuple[str, ...]] = {
    "add": ("Already there",),
    "remove": ("Not there",),
    "pause": (),
    "unpause": (),
}


def queue_priority(priority: int, front: bool) -> int:
    return FRONT_PRIO if front else QUEUE_PRIO.get(priority, 0)


def desk_queue(desk: DeskCode) -> str:
    return f"desk-{QUEUE_NUMBER_BY_DESK[desk]}"


class QueueMember(Protocol):
    queue: str
    interface: str
    name: str
    paused: bool
    reason: str

    @property
    def ready(self) -> bool: ...


class PbxBridge(Protocol):
    """What PBX mode needs from :class:`telephony.ami.AmiBridge`."""

    def channel_for(self, call_ref: str) -> str | None: ...

    async def redirect_to_queue(self, channel: str, desk_number: str, priority: int = 0) -> Any: ...

    async def change_priority(self, channel: str, desk_number: str, priority: int) -> Any: ...

    async def originate_media_fork(self, channel: str) -> Any: ...

    async def hangup(self, channel: str) -> Any: ...

    async def queue_add(
        self, queue: str, interface: str, member_name: str, penalty: int = 0, paused: bool = False
    ) -> Any: ...

    async def queue_pause(self, queue: str, interface: str, paused: bool, reason: str = "") -> Any: ...

    async def queue_remove(self, queue: str, interface: str) -> Any: ...

    def members(self, queue: str | None = None) -> Iterable[QueueMember]: ...

    def is_ready_member(self, queue: str, interface: str) -> bool: ...

    def add_connected_hook(self, hook: Callable[[], Awaitable[object]]) -> None: ...


@dataclass(frozen=True, slots=True)
class MembershipChange:
    taker_id: str
    queue: str
    action: str  # "add", "pause", "unpause", "remove"
    ok: bool
    detail: str = ""


class PbxCallControl:
    def __init__(
        self,
        bridge: PbxBridge,
        takers: Iterable[CallTaker] = (),
        taker_states: Callable[[], Awaitable[dict[str, dict[str, Any]]]] | None = None,
    ) -> None:
        self._bridge = bridge
        self._takers = {t.id: t for t in takers if t.interface}
        self._taker_states = taker_states
        self._membership_lock = asyncio.Lock()
        bridge.add_connected_hook(self.resync_membership)

    def _channel(self, call_ref: str) -> str:
        channel: str | None = self._bridge.channel_for(call_ref)
        if channel is None:
            raise AdapterError(f"no Asterisk channel known for call {call_ref}")
        return channel

    # ------------------------------------------------------------------------------ calls

    async def play_prompt(self, call_ref: str, pcm: bytes, sample_rate: int, loop: bool = True) -> None:
        """Asterisk plays the queue's announcement and music on hold itself (queues.conf)."""
        return None

    async def connect_to_taker(self, call_ref: str, taker_uri: str, priority: int) -> None:
        """The taker's phone is a member of its desk queue in Asterisk: putting the caller into that queue
        makes Asterisk ring it (``taker_uri`` is ``desk:<number>`` or the taker's desk code)."""
        number = taker_uri.removeprefix("desk:")
        if number in DeskCode.__members__:
            number = QUEUE_NUMBER_BY_DESK[DeskCode[number]]
        if not number.isdigit():
            raise AdapterError(f"a PBX call is rung through a desk queue, not {taker_uri!r}")
        await self._bridge.redirect_to_queue(self._channel(call_ref), number, queue_priority(priority, False))

    async def move_to_desk(self, call_ref: str, desk: DeskCode, priority: int, front: bool) -> None:
        result = await self._bridge.redirect_to_queue(
            self._channel(call_ref), QUEUE_NUMBER_BY_DESK[desk], queue_priority(priority, front)
        )
        if not getattr(result, "priority_applied", True):
            log.warning(
                "call %s moved to %s; queue priority not applied: %s",
                call_ref,
                desk.value,
                getattr(result, "detail", ""),
            )

    async def set_priority(self, call_ref: str, desk: DeskCode, priority: int, front: bool) -> None:
        """The caller's place in its desk queue follows the current triage (a cardiac arrest jumps ahead)."""
        result = await self._bridge.change_priority(
            self._channel(call_ref), QUEUE_NUMBER_BY_DESK[desk], queue_priority(priority, front)
        )
        log.info(
            "call %s: queue priority %d on %s: %s",
            call_ref,
            queue_priority(priority, front),
            desk_queue(desk),
            "applied" if getattr(result, "applied", False) else getattr(result, "detail", "not applied"),
        )

    async def start_media_fork(self, call_ref: str) -> None:
        await self._bridge.originate_media_fork(self._channel(call_ref))

    async def hangup(self, call_ref: str) -> None:
        await self._bridge.hangup(self._channel(call_ref))

    # ------------------------------------------------------------------------------ desk membership

    async def taker_state_changed(self, taker: CallTaker, state: TakerState, reason: str = "") -> None:
        """The console's log-in / pause / log-out, mirrored on the PBX (DeskService hook)."""
        if taker.interface is None:
            return
        self._takers.setdefault(taker.id, taker)
        async with self._membership_lock:
            changes = await self._apply(taker, state, reason)
        failed = [c for c in changes if not c.ok]
        if failed:
            raise AdapterError(
                f"call taker {taker.id}: PBX membership not updated: "
                + "; ".join(f"{c.action} {c.queue}: {c.detail}" for c in failed)
            )

    async def resync_membership(self) -> list[MembershipChange]:
        """After every AMI (re)connect: make the PBX's desk queues match intake's taker states."""
        if self._taker_states is None or not self._takers:
            return []
        try:
            states = await self._taker_states()
        except LiveStateError as exc:
            log.error("desk membership not resynced, call-taker states unavailable: %s", exc)
            return []
        changes: list[MembershipChange] = []
        async with self._membership_lock:
            for taker in self._takers.values():
                live = LiveTaker.of(states.get(taker.id))
                changes += await self._apply(taker, live.state, live.reason)
        done = [c for c in changes if c.ok]
        if done:
            log.warning(
                "desk membership resynced with the PBX: %s",
                ", ".join(f"{c.action} {c.taker_id} {c.queue}" for c in done),
            )
        for change in changes:
            if not change.ok:
                log.error(
                    "desk membership of %s in %s not resynced (%s): %s",
                    change.taker_id,
                    change.queue,
                    change.action,
                    change.detail,
                )
        return changes

    async def _apply(self, taker: CallTaker, state: TakerState, reason: str) -> list[MembershipChange]:
        assert taker.interface is not None
        interface = taker.interface
        changes: list[MembershipChange] = []
        wanted = {desk_queue(d) for d in taker.desks if d in QUEUE_NUMBER_BY_DESK}
        current = {m.queue: m for m in self._bridge.members() if m.interface == interface}
        paused = _MEMBER_PAUSED.get(state)
        for queue in sorted(wanted | set(current)):
            member = current.get(queue)
            if paused is None or queue not in wanted:
                if member is not None:
                    changes.append(
                        await self._do(taker, queue, "remove", self._bridge.queue_remove(queue, interface))
                    )
                continue
            if member is None:
                changes.append(
                    await self._do(
                        taker,
                        queue,
                        "add",
                        self._bridge.queue_add(queue, interface, taker.id, paused=paused),
                    )
                )
                if paused and reason:
                    changes.append(
                        await self._do(
                            taker, queue, "pause", self._bridge.queue_pause(queue, interface, True, reason)
                        )
                    )
            elif member.paused != paused:
                changes.append(
                    await self._do(
                        taker,
                        queue,
                        "pause" if paused else "unpause",
                        self._bridge.queue_pause(queue, interface, paused, reason if paused else ""),
                    )
                )
        return changes

    @staticmethod
    async def _do(taker: CallTaker, queue: str, action: str, command: Awaitable[Any]) -> MembershipChange:
        try:
            result = await command
        except AdapterError as exc:
            # A membership event still on its way: the PBX already is where we want it.
            if any(text in str(exc) for text in _ALREADY_DONE[action]):
                return MembershipChange(taker.id, queue, action, True, str(exc))
            return MembershipChange(taker.id, queue, action, False, str(exc))
        log.info("call taker %s: %s %s on the PBX", taker.id, action, queue)
        return MembershipChange(taker.id, queue, action, True, getattr(result, "message", ""))
