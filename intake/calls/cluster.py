"""Cluster membership: this node's heartbeat and its calls' media leases, and the reaping of calls whose
node died (ended or abandoned for call-back, never left 'queued')."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from intake.bus import LiveEvent
from intake.calls.session import SessionRegistry, media_lease
from intake.domain import Call, CallState
from intake.errors import LiveStateError
from intake.ports import CallStore, Clock, ClusterState, Desks, Publisher

log = logging.getLogger(__name__)

MEDIA_RECENT_S = 3.0  # a caller leg with audio this recent is alive
MEDIA_LEASE_MS = 6_000  # a call's media lease outlives its last renewal (every second) by a few missed beats


class ClusterMembership:
    def __init__(
        self,
        registry: SessionRegistry,
        store: CallStore,
        live: ClusterState,
        desks: Desks,
        bus: Publisher,
        node: str,
        clock: Clock,
    ) -> None:
        self._registry = registry
        self._store = store
        self._live = live
        self._desks = desks
        self._bus = bus
        self._node = node
        self._clock = clock

    async def heartbeat(self, ttl_ms: int = 5000) -> None:
        """This node is alive (its lease), and so is each call whose media still arrives (a lease per call,
        written in Redis): evidence another node's reaper weighs before it calls a call lost."""
        await self._live.acquire_lease(f"node:{self._node}", self._node, ttl_ms)
        now = self._clock.monotonic()
        for session in self._registry.sessions():
            if session.last_media_at is not None and now - session.last_media_at <= MEDIA_RECENT_S:
                await self._live.acquire_lease(media_lease(session.call.id), self._node, MEDIA_LEASE_MS)

    async def _still_served(self, call: Call, node: str) -> str | None:
        """Why ``call`` must not be reaped although its node's heartbeat is gone, or None: its media still
        arrives (the holding node renews the call's media lease), or the node still listens on its command
        channel (its process and Redis connection are alive: it is slow, not dead)."""
        holder = await self._live.lease_holder(media_lease(call.id))
        if holder is not None:
            return f"media still arriving at {holder}"
        if node and await self._live.subscriber_count(f"node:{node}") > 0:
            return f"node {node} still answers on its command channel"
        return None

    async def reap_lost_calls(self) -> list[str]:
        """Calls whose media died with their node (its heartbeat is gone, or it is this node restarted) end
        as abandoned, if no call taker had them, and go on the call-back list; never left 'queued'."""
        live_calls = await asyncio.to_thread(
            self._store.calls_in_states, [CallState.RINGING, CallState.QUEUED, CallState.CONNECTED]
        )
        alive: dict[str, bool] = {self._node: True}
        lost: list[str] = []
        for call in live_calls:
            if self._registry.holds(call.id) or call.source != "sip":
                # A PBX keeps its calls when intake restarts: the AMI bridge re-offers them on resync.
                continue
            node = call.node or ""
            if node == self._node:
                dead = True  # this process holds no such call: it died with our previous process
            else:
                if node not in alive:
                    alive[node] = await self._live.lease_holder(f"node:{node}") is not None
                dead = not alive[node]
            if not dead:
                continue
            if node != self._node:
                evidence = await self._still_served(call, node)
                if evidence is not None:
                    log.warning(
                        "call %s: node %s misses its heartbeat but is not reaped: %s", call.id, node, evidence
                    )
                    continue
            await self._reap(call, node)
            lost.append(call.id)
        return lost

    async def _reap(self, call: Call, node: str) -> None:
        target = CallState.ENDED if call.state is CallState.CONNECTED else CallState.ABANDONED
        call.transition(target, self._clock.now())
        call.end_reason = "node_lost"
        with suppress(LiveStateError):
            await self._desks.leave_queue(call.id, call.desk)
        await asyncio.to_thread(self._store.save_call, call)
        with suppress(LiveStateError):
            await self._live.remove_active_call(call.id)
        kind = "call.abandoned" if target is CallState.ABANDONED else "call.ended"
        log.error("call %s lost with node %s: %s for call-back", call.id, node or "?", target.value)
        await self._bus.publish(
            LiveEvent(
                kind,
                {"reason": "node_lost", "node": node},
                call_id=call.id,
                incident_id=call.incident_id,
                desk=call.desk.value if call.desk else None,
                taker_id=call.taker_id,
            )
        )
        if call.taker_id:
            with suppress(LiveStateError):
                await self._desks.start_wrap_up(call.taker_id)
