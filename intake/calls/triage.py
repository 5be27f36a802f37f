"""Triage of a live call as the caller speaks, and the call's incident: opened once (retried while the
database is away), followed by the call record, opened at once for an eCall."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress

from intake.bus import LiveEvent
from intake.calls.controls import CallControls, triaged_from_words
from intake.calls.records import CallRecords
from intake.calls.session import CallSession, SessionRegistry, call_triage_from_decision, urgent_front
from intake.domain import Call, CallState, CallTriage, Incident
from intake.errors import LiveStateError, NotFound, StorageError
from intake.location import CallLocations
from intake.metrics import Metrics
from intake.ports import CallStore, Desks, Incidents, NodeChannel, Publisher, Triager
from intake.serialize import decision_json, decision_summary
from routing.safety import carry_forward
from routing.types import TriageDecision, TriageInput
from routing.vocabulary import Agency, IncidentType
from telephony.events import EcallFacts

log = logging.getLogger(__name__)


class CallTriageFlow:
    def __init__(
        self,
        triage: Triager,
        registry: SessionRegistry,
        records: CallRecords,
        controls: CallControls,
        desks: Desks,
        incidents: Incidents,
        locations: CallLocations,
        store: CallStore,
        bus: Publisher,
        node: str,
        nodes: NodeChannel | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._triage = triage
        self._registry = registry
        self._records = records
        self._controls = controls
        self._desks = desks
        self._incidents = incidents
        self._locations = locations
        self._store = store
        self._bus = bus
        self._node = node
        self._nodes = nodes
        self._metrics = metrics or Metrics()
        self._incident_retry: dict[str, tuple[Call, TriageDecision]] = {}
        self._incident_locks: dict[str, asyncio.Lock] = {}

    async def retriage(self, session: CallSession, force: bool = False) -> None:
        call = session.call
        started = time.perf_counter()
        # carry_forward: suspected cardiac arrest stays raised, priority never drops during the call
        decision: TriageDecision = carry_forward(
            session.decision,
            self._triage.decide(
                TriageInput(
                    dialled=call.dialled,
                    caller_number=call.caller.e164,
                    caller_country=call.caller.country,
                    language=call.language or "cs",
                    transcript=session.caller_text,
                    speech_seconds=session.speech_s,
                )
            ),
        )
        self._metrics.triage_latency.observe(time.perf_counter() - started)
        previous = session.decision
        session.decision = decision
        if not force and previous is not None and decision_summary(previous) == decision_summary(decision):
            return
        old_priority, old_front, old_desk = call.priority, urgent_front(previous), call.desk
        call.priority = decision.priority.value
        call.tcpr = decision.tcpr.value
        call.triage = call_triage_from_decision(decision)
        if (
            not decision.unsure
            and call.state in (CallState.RINGING, CallState.QUEUED)
            and call.taker_id is None
        ):
            call.desk = decision.desk
        # Intake's queue first: a waiting caller's new place is what matters most, and a console that sees
        # the decision on the live bus then sees a queue that already follows it. The PBX follows after the
        # publish (a Redirect waits for the caller to join the new queue).
        moved_in_queue = reprioritised = False
        front = urgent_front(decision)
        if call.state is CallState.QUEUED and call.taker_id is None:
            try:
                if old_desk is not None and call.desk is not None and old_desk != call.desk:
                    await self._desks.move(call.id, old_desk, call.desk, "triage", "triage changed desk")
                    moved_in_queue = True
                heard = triaged_from_words(decision, session.caller_text)
                if heard != triaged_from_words(previous, session.caller_text) or (
                    (old_priority, old_front) != (call.priority, front)
                ):
                    self._controls.tell_recognition(
                        call, waiting=True, priority=1 if front else call.priority, triaged=heard
                    )
                if (old_priority, old_front) != (call.priority, front) and call.desk is not None:
                    await self._desks.reprioritise(
                        call.id, call.desk, 1 if front else call.priority, front, "triage"
                    )
                    reprioritised = True
            except LiveStateError as exc:
                log.error("call %s: queue update failed: %s", call.id, exc)
        await self._records.publish(call, "triage.updated", decision_json(decision))
        if moved_in_queue and call.desk is not None:
            await self._controls.move_in_pbx(call, call.desk, front)
        elif reprioritised and call.desk is not None:  # a move already carries the new priority
            await self._controls.reprioritise_in_pbx(call, call.desk, front)
        if decision.location is not None:
            await self._locations.on_spoken(session, decision.location)
        if not decision.unsure:
            if call.incident_id is None:
                await self.open_incident(call, decision)
            elif previous is not None:
                await self._incidents.record_triage_update(call.incident_id, decision)
        await self.follow_incident(call, session=session)
        await self._records.save(call)

    async def follow_incident(
        self, call: Call, incident: Incident | None = None, session: CallSession | None = None
    ) -> None:
        """The call record shows its incident's current decision (after the incident's own rules and the
        call takers' corrections), so the call and incident views never tell two different emergencies.
        With the call's ``session``, a read of the incident older than one already followed is ignored."""
        if call.incident_id is None:
            return
        if incident is None:
            try:
                incident = await self._incidents.get(call.incident_id)
            except (StorageError, NotFound) as exc:
                log.error(
                    "call %s: incident %s not read, call keeps triage's decision: %s",
                    call.id,
                    call.incident_id,
                    exc,
                )
                return
        if session is not None:
            if session.incident_seen_at is not None and incident.updated_at < session.incident_seen_at:
                return
            session.incident_seen_at = incident.updated_at
        call.priority = incident.priority
        call.tcpr = incident.tcpr
        call.triage = CallTriage(
            incident_type=incident.incident_type.value,
            priority=incident.priority,
            tcpr=incident.tcpr,
            agencies=tuple(a.agency.value for a in incident.agencies),
            rules_version=call.triage.rules_version if call.triage is not None else "",
            source="incident",
        )

    async def follow_incident_change(self, incident: Incident) -> None:
        """An incident changed (triage, a call taker, a supervisor): its calls follow. Calls this node holds
        are updated here; a live call held by another node is updated there (node command); a call that has
        ended is updated in the database."""
        for call_id in incident.call_ids:
            session = self._registry.by_id(call_id)
            if session is not None:
                if session.call.incident_id is None:
                    session.call.incident_id = incident.id  # linked just now (by triage or a person)
                if session.call.incident_id == incident.id:
                    await self.follow_incident(session.call, incident, session)
                    await self._records.save(session.call)
                continue
            try:
                call = await asyncio.to_thread(self._store.get_call, call_id)
            except (StorageError, NotFound) as exc:
                log.error("call %s not updated from incident %s: %s", call_id, incident.id, exc)
                continue
            if call.is_live and call.node and call.node != self._node and self._nodes is not None:
                with suppress(LiveStateError):
                    await self._nodes.publish(
                        f"node:{call.node}", {"command": "follow_incident", "call_id": call_id}
                    )
                continue
            if call.incident_id is None:
                call.incident_id = incident.id
            await self.follow_incident(call, incident)
            try:
                await asyncio.to_thread(self._store.save_call, call)
            except StorageError as exc:
                log.error("call %s not updated from incident %s: %s", call_id, incident.id, exc)

    async def open_incident(self, call: Call, decision: TriageDecision) -> None:
        """Give the call its incident once; while the database is away the attempt is kept and retried
        (:meth:`retry_incidents`), also after the call itself has ended."""
        lock = self._incident_locks.setdefault(call.id, asyncio.Lock())
        async with lock:
            if call.incident_id is not None:
                return
            try:
                incident, linked = await self._incidents.open_for_call(call, decision)
            except StorageError as exc:
                self._incident_retry[call.id] = (call, decision)
                log.error("call %s: incident not opened yet, will retry: %s", call.id, exc)
                return
            self._incident_retry.pop(call.id, None)
            call.incident_id = incident.id
        self._incident_locks.pop(call.id, None)
        await self._records.save(call)
        await self._bus.publish(
            LiveEvent(
                "call.updated",
                {"incident_id": incident.id, "linked": linked},
                call_id=call.id,
                incident_id=incident.id,
                desk=call.desk.value if call.desk else None,
                taker_id=call.taker_id,
            )
        )

    def incidents_to_retry(self) -> int:
        return len(self._incident_retry)

    async def retry_incidents(self) -> None:
        for call, decision in list(self._incident_retry.values()):
            await self.open_incident(call, decision)

    async def on_ecall(self, session: CallSession, ecall: EcallFacts) -> None:
        """An eCall (RFC 8147 MSD in the INVITE) is a traffic accident from its first second: the incident
        is opened at once with the vehicle's facts, before anybody has said a word."""
        call = session.call
        await self._records.publish(call, "call.updated", {"ecall": ecall.to_json()})
        note = "eCall {kind}{test}: {vehicle}, VIN {vin}, {passengers} occupants, {propulsion}".format(
            kind="automatic" if ecall.automatic_activation else "manual",
            test=" (TEST CALL)" if ecall.test_call else "",
            vehicle=ecall.vehicle_type or "vehicle",
            vin=ecall.vin or "?",
            passengers="?" if ecall.passengers is None else ecall.passengers,
            propulsion=", ".join(ecall.propulsion) or "propulsion unknown",
        )
        try:
            incident = await self._incidents.create(
                actor="ecall",
                incident_type=IncidentType.TRAFFIC_ACCIDENT,
                priority=1 if ecall.automatic_activation else 2,
                agencies=[Agency.ZZS, Agency.PCR],
                location=call.location,
                note=note,
                call_id=call.id,
            )
        except StorageError as exc:
            log.error("call %s: eCall incident not opened yet (triage will open one): %s", call.id, exc)
            return
        call.incident_id = incident.id
        await self._records.save(call)
        await self._records.publish(call, "call.updated", {"incident_id": incident.id, "linked": False})
