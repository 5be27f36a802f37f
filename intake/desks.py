"""Desk routing (ACD) on shared live state: queues per desk in Redis, call takers' states in Redis.

Every rule of order and choice is routing's (:mod:`routing.acd`); this module applies them to the shared
state so that any intake node can queue, offer and claim calls without two nodes ever handing one call to
two people.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from intake.bus import LiveEvent
from intake.domain import CallTaker, TakerState
from intake.errors import LiveStateError, ValidationFailed
from intake.live import LiveTaker, QueueEntry
from intake.ports import Clock, DeskState, JsonObject, Publisher, SystemClock, TakerRecords
from routing import acd
from routing.vocabulary import DeskCode

log = logging.getLogger(__name__)

TAKER_TRANSITIONS: dict[TakerState, frozenset[TakerState]] = {
    TakerState.OFFLINE: frozenset({TakerState.AVAILABLE, TakerState.PAUSED}),
    TakerState.AVAILABLE: frozenset({TakerState.BUSY, TakerState.PAUSED, TakerState.OFFLINE}),
    # BUSY -> PAUSED: an offered call was not taken (phone failed, nobody answered).
    TakerState.BUSY: frozenset({TakerState.WRAP_UP, TakerState.AVAILABLE, TakerState.PAUSED}),
    TakerState.WRAP_UP: frozenset({TakerState.AVAILABLE, TakerState.PAUSED, TakerState.OFFLINE}),
    TakerState.PAUSED: frozenset({TakerState.AVAILABLE, TakerState.OFFLINE}),
}


@dataclass(frozen=True, slots=True)
class Offer:
    call_id: str
    taker_id: str
    desk: DeskCode
    priority: int


class DeskService:
    def __init__(
        self,
        takers: TakerRecords,
        live: DeskState,
        bus: Publisher,
        overflow_after: timedelta,
        wrap_up: timedelta,
        offer_timeout: timedelta = timedelta(seconds=20),
        clock: Clock | None = None,
    ) -> None:
        self._records = takers
        self._live = live
        self._bus = bus
        self._clock = clock or SystemClock()
        self._overflow_after = overflow_after
        self._wrap_up = wrap_up
        self._offer_timeout = offer_timeout
        self._dispatch_lock = asyncio.Lock()
        self.on_offer: Callable[[Offer], Awaitable[None]] | None = None
        # PBX mode: the console's log-in / pause / log-out mirrored into the PBX's desk queues.
        self.on_taker_state: Callable[[CallTaker, TakerState, str], Awaitable[None]] | None = None
        # A move (overflow to the 112 desk, a supervisor's move) or a supervisor's new priority, carried out
        # where the call is held (PBX: Redirect / QueueChangePriorityCaller). Triage's own changes are not
        # reported here: the call service applies them itself.
        self.on_moved: Callable[[str, DeskCode, DeskCode], Awaitable[None]] | None = None
        self.on_reprioritised: Callable[[str, DeskCode, int, bool], Awaitable[None]] | None = None

    @property
    def offer_timeout_seconds(self) -> float:
        return self._offer_timeout.total_seconds()

    @property
    def wrap_up_seconds(self) -> float:
        return self._wrap_up.total_seconds()

    # ------------------------------------------------------------------------------- call takers

    async def register_takers(self, takers: list[CallTaker]) -> None:
        for taker in takers:
            await asyncio.to_thread(self._records.upsert_taker, taker)
            states = await self._live.taker_states()
            if taker.id not in states:
                await self._live.set_taker_state(taker.id, TakerState.OFFLINE.value, self._clock.now(), {})

    async def takers(self) -> list[JsonObject]:
        """Every call taker with their live state (offline when Redis cannot say), for the REST answer."""
        takers = await asyncio.to_thread(self._records.list_takers)
        states = await self._safe_live_takers()
        out: list[JsonObject] = []
        for taker in takers:
            live = states.get(taker.id) or LiveTaker.of(None)
            out.append(
                {
                    "id": taker.id,
                    "name": taker.name,
                    "desks": [d.value for d in taker.desks],
                    "languages": list(taker.languages),
                    "state": live.state.value,
                    "since": live.since_iso,
                    "call_id": live.call_id,
                    "sip_uri": taker.sip_uri,
                }
            )
        return out

    async def _safe_live_takers(self) -> dict[str, LiveTaker]:
        try:
            return await self._live.live_takers()
        except LiveStateError as exc:
            log.error("call-taker states unavailable: %s", exc)
            return {}

    async def set_taker_state(self, taker_id: str, target: TakerState, actor: str, reason: str = "") -> None:
        taker = await asyncio.to_thread(self._records.get_taker, taker_id)  # NotFound for unknown ids
        mine = (await self._live.live_takers()).get(taker_id) or LiveTaker.of(None)
        current = mine.state
        if target is not current and target not in TAKER_TRANSITIONS[current]:
            raise ValidationFailed(f"call taker {taker_id}: {current.value} -> {target.value} is not allowed")
        data: JsonObject = {"by": actor, "reason": reason}
        if target is TakerState.BUSY:
            data["call_id"] = mine.call_id
        await self._live.set_taker_state(taker_id, target.value, self._clock.now(), data)
        await self._bus.publish(
            LiveEvent(
                "taker.state", {"state": target.value, "by": actor, "reason": reason}, taker_id=taker_id
            )
        )
        if self.on_taker_state is not None and target is not current:
            await self.on_taker_state(taker, target, reason)
        if target is TakerState.AVAILABLE:
            await self.dispatch()

    async def start_wrap_up(self, taker_id: str) -> None:
        await self._live.set_taker_state(taker_id, TakerState.WRAP_UP.value, self._clock.now(), {})
        await self._bus.publish(
            LiveEvent("taker.state", {"state": TakerState.WRAP_UP.value}, taker_id=taker_id)
        )

    # ------------------------------------------------------------------------------------ queues

    async def enqueue(
        self,
        call_id: str,
        desk: DeskCode,
        priority: int,
        arrival: datetime,
        front: bool,
        data: dict[str, object],
    ) -> None:
        await self._live.enqueue(desk.value, call_id, priority, arrival, front=front, data=data)
        await self._bus.publish(
            LiveEvent(
                "queue.changed", {"action": "joined", "priority": priority}, call_id=call_id, desk=desk.value
            )
        )
        await self.dispatch()

    async def leave_queue(self, call_id: str, desk: DeskCode | None) -> None:
        desks = [desk.value] if desk else [d.value for d in DeskCode]
        # Where it really waits (an overflow or a move may have taken it off ``desk``): never left behind.
        waiting_on = await self._live.queued_desk(call_id)
        if waiting_on is not None and waiting_on not in desks:
            desks.append(waiting_on)
        for code in desks:
            await self._live.dequeue_specific(code, call_id)
        await self._bus.publish(
            LiveEvent("queue.changed", {"action": "left"}, call_id=call_id, desk=desk.value if desk else None)
        )

    async def reprioritise(
        self, call_id: str, desk: DeskCode, priority: int, front: bool, actor: str
    ) -> None:
        if priority not in (1, 2, 3):
            raise ValidationFailed("priority must be 1, 2 or 3")
        await self._live.reprioritise(desk.value, call_id, priority, front=front)
        await self._bus.publish(
            LiveEvent(
                "queue.changed",
                {"action": "reprioritised", "priority": priority, "front": front, "by": actor},
                call_id=call_id,
                desk=desk.value,
            )
        )
        if self.on_reprioritised is not None and actor != "triage":
            await self.on_reprioritised(call_id, desk, priority, front)

    async def move(
        self, call_id: str, from_desk: DeskCode, to_desk: DeskCode, actor: str, reason: str
    ) -> None:
        await self._live.move(call_id, from_desk.value, to_desk.value)
        await self._bus.publish(
            LiveEvent(
                "queue.changed",
                {
                    "action": "moved",
                    "from": from_desk.value,
                    "to": to_desk.value,
                    "by": actor,
                    "reason": reason,
                },
                call_id=call_id,
                desk=to_desk.value,
            )
        )
        if self.on_moved is not None and actor != "triage":
            await self.on_moved(call_id, from_desk, to_desk)
        await self.dispatch()

    async def queues(self) -> dict[str, list[JsonObject]]:
        """Every desk's queue in serving order, as the REST answer and the supervisor's board show it."""
        now = self._clock.now()
        return {
            desk.value: [_entry_json(e, now) for e in await self._live.queue(desk.value)] for desk in DeskCode
        }

    async def overflow_due(self) -> list[str]:
        """Calls that waited too long on an agency desk go to the 112 desk (leader-only duty)."""
        moved: list[str] = []
        now = self._clock.now().timestamp()
        limit = self._overflow_after.total_seconds()
        for desk in DeskCode:
            for entry in await self._live.queue(desk.value):
                if acd.should_overflow(desk, entry.arrival.timestamp(), now, limit):
                    await self.move(entry.call_id, desk, DeskCode.D112, "system", "overflow: waited too long")
                    moved.append(entry.call_id)
        return moved

    # ---------------------------------------------------------------------------------- dispatch

    async def dispatch(self) -> list[Offer]:
        """Offer waiting calls to free call takers by routing's ACD rule (:func:`routing.acd.assign`): the
        most urgent call first, whatever desk it waits on, to the best free taker for it (a speaker of the
        caller's language first, then the one idle longest).

        Claiming is atomic in Redis, so two nodes dispatching at once never offer one call twice: a call
        another node took meanwhile is skipped and its taker stays free for the next round.
        """
        offers: list[Offer] = []
        async with self._dispatch_lock:
            try:
                takers = await asyncio.to_thread(self._records.list_takers)
                states = await self._live.live_takers()
                waiting = {
                    entry.call_id: (desk, entry)
                    for desk in DeskCode
                    for entry in await self._live.queue(desk.value)
                }
            except LiveStateError as exc:
                log.error("dispatch skipped, live state unavailable: %s", exc)
                return offers
            plan = acd.assign(
                # A call held by the PBX is rung by its own desk queue; intake never claims it.
                [_acd_entry(d, e) for d, e in waiting.values() if (e.data or {}).get("source") != "ami"],
                # A taker with a PBX interface is rung by the PBX's desk queues, never offered by intake.
                [
                    _acd_taker(t, states.get(t.id) or LiveTaker.of(None))
                    for t in takers
                    if t.interface is None
                ],
            )
            for planned, taker in plan:
                desk, entry = waiting[planned.call_ref]
                if await self._live.dequeue_specific(desk.value, entry.call_id) is None:
                    continue  # another node took it
                log.info("desk %s: call %s claimed for call taker %s", desk.value, entry.call_id, taker.id)
                await self._live.set_taker_state(
                    taker.id,
                    TakerState.BUSY.value,
                    self._clock.now(),
                    {"call_id": entry.call_id, "offered": True},
                )
                await self._bus.publish(
                    LiveEvent(
                        "taker.state",
                        {"state": TakerState.BUSY.value, "call_id": entry.call_id},
                        taker_id=taker.id,
                    )
                )
                offers.append(
                    Offer(call_id=entry.call_id, taker_id=taker.id, desk=desk, priority=entry.priority)
                )
        for offer in offers:
            await self._bus.publish(
                LiveEvent(
                    "call.offered_to_taker",
                    {"priority": offer.priority},
                    call_id=offer.call_id,
                    desk=offer.desk.value,
                    taker_id=offer.taker_id,
                )
            )
            if self.on_offer is not None:
                await self.on_offer(offer)
        return offers


def _acd_entry(desk: DeskCode, entry: QueueEntry) -> acd.QueueEntry:
    """A Redis queue entry as routing's ACD rule sees it."""
    language = (entry.data or {}).get("language")
    return acd.QueueEntry(
        call_ref=entry.call_id,
        desk=desk,
        priority=entry.priority,
        arrived_at=entry.arrival.timestamp(),
        language=language if isinstance(language, str) else None,
        front=entry.front,
    )


def _acd_taker(taker: CallTaker, live: LiveTaker) -> acd.CallTaker:
    """A call taker with their live state as routing's ACD rule sees them (no record of since when: idle
    longest, never skipped)."""
    since = live.since.timestamp() if live.since is not None else 0.0
    return acd.CallTaker(taker.id, frozenset(taker.desks), frozenset(taker.languages), live.state, since)


def _entry_json(entry: QueueEntry, now: datetime) -> JsonObject:
    """A queue entry as the REST answer shows it: the entry's own data (caller, language, ...) merged in."""
    return {
        "call_id": entry.call_id,
        "priority": entry.priority,
        "front": entry.front,
        "arrival": entry.arrival.isoformat() if entry.arrival else None,
        "wait_s": round((now - entry.arrival).total_seconds(), 1) if entry.arrival else None,
        **dict(entry.data or {}),
    }
