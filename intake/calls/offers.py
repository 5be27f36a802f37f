"""A waiting call in the desk queues and its offers to call takers: ringing the taker's phone, an offer
nobody took going back to the queue, a waiting PBX caller moved or reprioritised with intake's queue."""

from __future__ import annotations

import asyncio
import logging

from intake.calls.controls import CallControls, triaged_from_words
from intake.calls.records import CallRecords
from intake.calls.session import BackgroundTasks, CallSession, SessionRegistry, urgent_front
from intake.desks import Offer
from intake.domain import CallState
from intake.errors import LiveStateError, NotFound, StorageError
from intake.ports import CallReader, Clock, Desks, NodeChannel, QueueState
from routing.acd import TakerState
from routing.vocabulary import DeskCode
from telephony.errors import AdapterError

log = logging.getLogger(__name__)


class Offers:
    def __init__(
        self,
        registry: SessionRegistry,
        records: CallRecords,
        controls: CallControls,
        desks: Desks,
        store: CallReader,
        node: str,
        clock: Clock,
        background: BackgroundTasks,
        nodes: NodeChannel | None = None,
        queues: QueueState | None = None,
    ) -> None:
        self._registry = registry
        self._records = records
        self._controls = controls
        self._desks = desks
        self._store = store
        self._node = node
        self._clock = clock
        self._background = background
        self._nodes = nodes
        self._queues = queues

    async def enqueue(self, session: CallSession) -> None:
        call = session.call
        decision = session.decision
        desk = call.desk or DeskCode.D112
        front = urgent_front(decision)
        self._controls.tell_recognition(
            call,
            waiting=True,
            priority=1 if front else (call.priority or 2),
            triaged=triaged_from_words(decision, session.caller_text),
        )
        try:
            await self._desks.enqueue(
                call.id,
                desk,
                1 if front else (call.priority or 2),
                call.offered_at,
                front=front,
                data={
                    "language": call.language,
                    "caller": call.caller.display,
                    "dialled": call.dialled,
                    "incident_type": decision.incident_type.value.value if decision else None,
                    "first_words": session.caller_text[:120],
                    "source": call.source,
                },
            )
        except LiveStateError as exc:
            log.error(
                "call %s: queue unavailable (%s); call stays answered and listed as queued", call.id, exc
            )

    async def requeue_missing(self) -> None:
        """Queued calls missing from the Redis queue (Redis was down or lost its data) are queued again."""
        if self._queues is None:
            return
        for session in self._registry.sessions():
            call = session.call
            if call.state is not CallState.QUEUED or call.taker_id is not None:
                continue
            try:
                if await self._queues.queued_desk(call.id) is None:
                    log.warning("call %s was missing from the %s queue: queued again", call.id, call.desk)
                    await self.enqueue(session)
            except LiveStateError as exc:
                log.debug("requeue check skipped, Redis still unavailable: %s", exc)
                return

    async def on_offer(self, offer: Offer) -> None:
        session = self._registry.by_id(offer.call_id)
        if session is None:
            await self._forward_offer(offer)
            return
        call = session.call
        call.taker_id = offer.taker_id
        session.offered_at = self._clock.monotonic()
        await self._records.save(call)
        uri = self._controls.taker_uri(offer.taker_id)
        if uri and self._controls.control_for(call) is not None:
            # Ringing the phone takes as long as the taker needs to pick up: never inside dispatch.
            self._background.start(self._ring_taker(session, offer, uri))

    async def _ring_taker(self, session: CallSession, offer: Offer, uri: str) -> None:
        call = session.call
        control = self._controls.control_for(call)
        if control is None:
            return
        try:
            await control.connect_to_taker(call.call_ref, uri, offer.priority)
        except AdapterError as exc:
            if call.state is not CallState.QUEUED or call.taker_id != offer.taker_id:
                return
            log.error("call %s: could not ring %s (%s): back to the queue", call.id, offer.taker_id, exc)
            await self.withdraw(session, offer.taker_id, f"phone failed: {exc}")

    async def withdraw(self, session: CallSession, taker_id: str, reason: str) -> None:
        """The offered call taker did not take the call: it goes back to the queue at its old place and the
        taker is paused (a supervisor sees why)."""
        call = session.call
        call.taker_id = None
        await self._records.save(call)
        await self._desks.set_taker_state(taker_id, TakerState.PAUSED, "system", reason)
        await self.enqueue(session)

    async def _forward_offer(self, offer: Offer) -> None:
        """The call's media is on another node: that node rings the taker's phone."""
        try:
            call = await asyncio.to_thread(self._store.get_call, offer.call_id)
        except (StorageError, NotFound) as exc:
            log.error("offer of %s to %s not forwarded: %s", offer.call_id, offer.taker_id, exc)
            return
        if self._nodes is not None and call.node and call.node != self._node:
            await self._nodes.publish(
                f"node:{call.node}",
                {
                    "command": "offer",
                    "call_id": offer.call_id,
                    "taker_id": offer.taker_id,
                    "desk": offer.desk.value,
                    "priority": offer.priority,
                },
            )

    async def expire(self, timeout_s: float = 20.0) -> list[str]:
        """Offers this node made that nobody took within ``timeout_s`` go back to the queue; returns the
        ids of those calls."""
        now = self._clock.monotonic()
        expired: list[str] = []
        for session in self._registry.sessions():
            call = session.call
            if (
                call.state is CallState.QUEUED
                and call.taker_id is not None
                and session.offered_at is not None
                and now - session.offered_at > timeout_s
            ):
                taker_id = call.taker_id
                session.offered_at = None
                log.warning("call %s: %s did not take the offer in %.0f s", call.id, taker_id, timeout_s)
                await self.withdraw(session, taker_id, "offer not answered")
                expired.append(call.id)
        return expired

    async def on_desk_moved(self, call_id: str, from_desk: DeskCode, to_desk: DeskCode) -> None:
        """A waiting call moved by the leader (overflow to the 112 desk) or a supervisor: a PBX caller is
        moved there too (in the background: a Redirect waits for the caller to join)."""
        session = self._registry.by_id(call_id)
        if session is None or session.call.source == "sip":
            return  # intake's own queue is the one that rings for SIP calls
        call = session.call
        log.warning("call %s moves from %s to %s on the PBX", call_id, from_desk.value, to_desk.value)
        self._background.start(self._controls.move_in_pbx(call, to_desk, urgent_front(session.decision)))

    async def on_reprioritised(self, call_id: str, desk: DeskCode, priority: int, front: bool) -> None:
        """A supervisor's new priority for a waiting PBX caller: its place in the PBX queue too."""
        session = self._registry.by_id(call_id)
        if session is None or session.call.source == "sip":
            return
        self._background.start(self._controls.reprioritise_in_pbx(session.call, desk, front, priority))
