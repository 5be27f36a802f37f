"""The per-call worker built directly from its collaborators, with fakes at their ports."""

from __future__ import annotations

from calls_fakes import (
    Effects,
    FakeBus,
    FakeClock,
    FakeDesks,
    FakeIncidents,
    FakeLive,
    FakeStore,
    ScriptedTriage,
    a_call,
    decision,
)

from intake.calls.controls import CallControls
from intake.calls.offers import Offers
from intake.calls.records import CallRecords
from intake.calls.session import BackgroundTasks, SessionRegistry, call_triage_from_decision
from intake.calls.transcript import TranscriptHandler
from intake.calls.triage import CallTriageFlow
from intake.calls.worker import CallWorker
from intake.domain import CallState
from intake.location import CallLocations
from routing.vocabulary import DeskCode, IncidentType
from telephony.events import CallOffered, CallSource
from transcription.events import TranscriptFinal


class WorkerRig:
    def __init__(self, triage: ScriptedTriage, node: str = "node-b") -> None:
        self.effects, self.clock = Effects(), FakeClock()
        self.store, self.live, self.bus = (
            FakeStore(self.effects),
            FakeLive(self.effects),
            FakeBus(self.effects),
        )
        self.desks, self.incidents = FakeDesks(self.effects, self.live), FakeIncidents(self.effects)
        self.registry, background = SessionRegistry(), BackgroundTasks()
        records = CallRecords(self.store, self.bus, self.live)
        controls = CallControls()
        locations = CallLocations(self.store, self.incidents, records.save, records.publish, self.clock)
        flow = CallTriageFlow(
            triage, self.registry, records, controls, self.desks, self.incidents, locations, self.store, self.bus,
            node, nodes=self.live,
        )  # fmt: skip
        offers = Offers(
            self.registry, records, controls, self.desks, self.store, node, self.clock, background,
            nodes=self.live, queues=self.live,
        )  # fmt: skip
        transcript = TranscriptHandler(
            self.registry, records, self.store, self.store, self.bus, flow.retriage, self.clock
        )
        self.worker = CallWorker(
            self.registry, records, controls, offers, flow, transcript, locations, self.desks, self.store, node,
            self.clock, background, takers=self.live,
        )  # fmt: skip


async def test_a_call_resumed_after_a_restart_keeps_its_raised_tcpr_and_priority() -> None:
    arrest = decision(IncidentType.MED_CARDIAC_ARREST, priority=1, tcpr=True, desk=DeskCode.ZZS)
    worse = decision(IncidentType.MED_OTHER, priority=3, tcpr=False)
    rig = WorkerRig(ScriptedTriage(worse))
    stored = a_call("r1", source="ami", state=CallState.CONNECTED, node="node-a", desk=DeskCode.ZZS)
    stored.triage = call_triage_from_decision(arrest)
    stored.tcpr, stored.priority, stored.taker_id = True, 1, "jana"
    rig.store.calls["r1"] = stored

    offered = CallOffered(
        call_ref=stored.call_ref, dialled="155", caller="+420603224590", source=CallSource.AMI
    )
    session = rig.worker.start(offered)
    assert session.worker is not None
    session.worker.cancel()  # driven step by step below
    await rig.worker.handle(session, offered)
    assert session.call.id == "r1" and session.call.node == "node-b"  # carried on, not a second record
    assert rig.registry.by_id("r1") is session

    final = TranscriptFinal(call_ref=stored.call_ref, leg="caller", text="už je to dobrý", start_s=0, end_s=2)
    await rig.worker.handle(session, final)
    assert session.call.tcpr is True and session.call.priority == 1
    assert rig.store.calls["r1"].tcpr is True


async def test_a_new_call_is_recorded_queued_and_announced_in_that_order() -> None:
    rig = WorkerRig(ScriptedTriage(decision(unsure=True)), node="node-a")
    offered = CallOffered(call_ref="n1", dialled="155", caller="+420603224590", source=CallSource.SIP)
    session = rig.worker.start(offered)
    assert session.worker is not None
    session.worker.cancel()
    await rig.worker.handle(session, offered)
    call_id = session.call.id
    assert session.call.state is CallState.QUEUED and session.no_transcript  # no transcriber plugged in
    log = rig.effects.log
    assert (
        log.index(f"save {call_id} ringing")
        < log.index("publish call.offered")
        < log.index(f"enqueue {call_id} ZZS p2")
    )


async def test_an_invite_taken_after_another_node_refused_it_settles_the_refused_record() -> None:
    """Issue 13: node A answered 503 at its call limit and filed the attempt; the front tried this node with
    the same INVITE (same Call-ID): the call goes on here, and A's record leaves the call-back list."""
    rig = WorkerRig(ScriptedTriage(decision(unsure=True)), node="node-b")
    refused = a_call("refused-on-a", state=CallState.ABANDONED, node="node-a")
    refused.end_reason = "rejected"
    rig.store.calls[refused.id] = refused
    offered = CallOffered(
        call_ref=refused.call_ref, dialled="155", caller="+420603224590", source=CallSource.SIP
    )
    session = rig.worker.start(offered)
    assert session.worker is not None
    session.worker.cancel()
    await rig.worker.handle(session, offered)
    assert session.call.id != refused.id and session.call.state is CallState.QUEUED
    assert refused.callback_done_at is not None and session.call.id in (refused.callback_by or "")
    updates = [e for e in rig.bus.events if e.type == "call.updated" and e.call_id == refused.id]
    assert updates and updates[0].data["callback_by"] == refused.callback_by
