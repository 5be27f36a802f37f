"""The call service: the collaborators of a call's life wired together behind the interface the rest of
intake, the API and the tests use (:class:`CallService`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from intake.calls.cluster import ClusterMembership
from intake.calls.commands import NodeCommands
from intake.calls.controls import CallControls
from intake.calls.offers import Offers
from intake.calls.records import CallRecords
from intake.calls.recovery import Recovery
from intake.calls.router import EventRouter
from intake.calls.session import BackgroundTasks, CallSession, SessionRegistry
from intake.calls.transcript import TranscriptHandler
from intake.calls.triage import CallTriageFlow
from intake.calls.worker import CallWorker
from intake.domain import Call
from intake.location import CallLocations, LocatedCall, PlaceGazetteer
from intake.metrics import Metrics
from intake.ports import (
    CallControl,
    Clock,
    Desks,
    Incidents,
    Journal,
    LiveCalls,
    Publisher,
    RecentCalls,
    Recorder,
    SystemClock,
    Transcriber,
    Triager,
)
from intake.ports import CallStore as CallStorePort
from routing.types import TriageDecision
from telephony.events import AdapterStatus, GeoFix, TelephonyEvent
from transcription.events import TranscriptEvent

log = logging.getLogger(__name__)


class CallRepository(CallStorePort, RecentCalls, Protocol):
    """The call records the service reads and writes (structural: :class:`intake.storage.Repository`)."""


class _Directory:
    """The live calls of this node, as the location service sees them."""

    def __init__(self, registry: SessionRegistry) -> None:
        self._registry = registry

    def located(self, call_id: str) -> LocatedCall | None:
        return self._registry.by_id(call_id)

    def live_calls(self) -> list[Call]:
        return [s.call for s in self._registry.sessions()]


class CallService:
    def __init__(
        self,
        repo: CallRepository,
        live: LiveCalls | None,
        bus: Publisher,
        desks: Desks,
        incidents: Incidents,
        triage: Triager,
        node: str,
        transcriber: Transcriber | None = None,
        prompt: tuple[bytes, int] | None = None,
        taker_uri: Callable[[str], str | None] | None = None,
        metrics: Metrics | None = None,
        places: PlaceGazetteer | None = None,
        journal: Journal | None = None,
        takers_by_interface: dict[str, str] | None = None,
        recorder: Recorder | None = None,
        clock: Clock | None = None,
    ) -> None:
        clock = clock or SystemClock()
        metrics = metrics or Metrics()
        self._node = node
        self._live = live
        self._registry = SessionRegistry()
        self._background = BackgroundTasks()
        self._records = CallRecords(repo, bus, live, journal)
        self._controls = CallControls(taker_uri, takers_by_interface, prompt)
        self.locations = CallLocations(
            repo, incidents, self._records.save, self._records.publish, clock, places
        )
        self.locations.directory = _Directory(self._registry)
        self._triage = CallTriageFlow(
            triage, self._registry, self._records, self._controls, desks, incidents, self.locations, repo, bus,
            node, nodes=live, metrics=metrics,
        )  # fmt: skip
        self._offers = Offers(
            self._registry, self._records, self._controls, desks, repo, node, clock, self._background,
            nodes=live, queues=live,
        )  # fmt: skip
        self._transcript = TranscriptHandler(
            self._registry, self._records, repo, repo, bus, self._triage.retriage, clock
        )
        self._worker = CallWorker(
            self._registry, self._records, self._controls, self._offers, self._triage, self._transcript,
            self.locations, desks, repo, node, clock, self._background, takers=live, metrics=metrics,
        )  # fmt: skip
        self._commands = NodeCommands(
            self._registry, repo, node, clock, self._worker.connect, self._offers.on_offer,
            self._follow_incident_command, nodes=live,
        )  # fmt: skip
        self._cluster = (
            ClusterMembership(self._registry, repo, live, desks, bus, node, clock)
            if live is not None
            else None
        )
        self._recovery = Recovery(self._records, self._offers, self._triage, desks)
        self._router = EventRouter(
            self._registry, self._transcript, self._worker.start, bus, self._background
        )
        self._use_recorder(recorder)
        if transcriber is not None:
            self.use_transcriber(transcriber)
        desks.on_offer = self._offers.on_offer
        incidents.on_changed = self._triage.follow_incident_change
        desks.on_moved = self._offers.on_desk_moved
        desks.on_reprioritised = self._offers.on_reprioritised

    # --------------------------------------------------------------------------- wiring

    def attach(self, source: str, control: CallControl) -> None:
        """Register the adapter that holds calls from ``source`` ("sip" / "ami")."""
        self._controls.attach(source, control)

    def use_transcriber(self, transcriber: Transcriber) -> None:
        self._controls.transcriber = transcriber
        self._transcript.transcriber = transcriber

    def use_recorder(self, recorder: Recorder) -> None:
        self._use_recorder(recorder)

    def _use_recorder(self, recorder: Recorder | None) -> None:
        self._worker.recorder = recorder
        self._transcript.recorder = recorder

    def use_prompt(self, prompt: tuple[bytes, int]) -> None:
        """The greeting a queued caller hears (PCM, sample rate)."""
        self._controls.prompt = prompt

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._router.bind_loop(loop)

    def submit(self, event: TelephonyEvent | TranscriptEvent) -> None:
        """Thread-safe entry for adapters and transcription workers. Never blocks the caller."""
        self._router.submit(event)

    @property
    def adapter_health(self) -> dict[str, AdapterStatus]:
        return self._router.adapter_health

    @property
    def _recent_refs(self) -> dict[str, str]:  # tests: as if this process never held a call
        return self._registry.recent_refs

    # ---------------------------------------------------------------------------- reads

    def session_by_id(self, call_id: str) -> CallSession | None:
        return self._registry.by_id(call_id)

    async def get(self, call_id: str) -> Call:
        return await self._commands.get(call_id)

    def current_decision(self, call_id: str) -> TriageDecision | None:
        session = self._registry.by_id(call_id)
        return session.decision if session else None

    def live_calls(self) -> list[Call]:
        return [s.call for s in self._registry.sessions()]

    # ------------------------------------------------------------------------- commands

    async def accept(self, call_id: str, taker_id: str) -> Call:
        """A call taker takes the call from the console (see :meth:`NodeCommands.accept`)."""
        return await self._commands.accept(call_id, taker_id)

    async def serve_commands(self, stopping: asyncio.Event) -> None:
        await self._commands.serve(stopping)

    async def _follow_incident_command(self, session: CallSession) -> None:
        await self._triage.follow_incident(session.call, session=session)
        await self._records.save(session.call)

    async def report_aml(
        self, sender: str, text: str, received_at: datetime | None = None
    ) -> dict[str, object]:
        return await self.locations.report_aml(sender, text, received_at)

    async def report_location(self, call_id: str, fix: GeoFix) -> Call:
        return await self.locations.report_location(call_id, fix)

    # ------------------------------------------------------------------- upkeep, cluster

    async def upkeep(self) -> None:
        await self._recovery.upkeep()

    async def drain_journal(self) -> tuple[int, int]:
        return await self._records.drain_journal()

    async def expire_offers(self, timeout_s: float = 20.0) -> None:
        await self._offers.expire(timeout_s)

    async def heartbeat(self, ttl_ms: int = 5000) -> None:
        if self._cluster is not None:
            await self._cluster.heartbeat(ttl_ms)

    async def reap_lost_calls(self) -> list[str]:
        return await self._cluster.reap_lost_calls() if self._cluster is not None else []

    async def close(self) -> None:
        pending: list[asyncio.Future[None]] = self._background.pending()
        pending += [s.worker for s in self._registry.sessions() if s.worker is not None]
        for task in pending:
            task.cancel()
        if pending:
            # A cancellation swallowed inside a client library must not hang shutdown.
            _, stuck = await asyncio.wait(pending, timeout=5.0)
            for task in stuck:
                log.error("call task did not stop in time: %r", task)


__all__ = ["CallRepository", "CallService"]
