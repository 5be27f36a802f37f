"""Triage of a live call (queue before publish, sticky facts across a takeover, eCall), built directly."""

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
from intake.calls.records import CallRecords
from intake.calls.session import (
    CallSession,
    SessionRegistry,
    call_triage_from_decision,
    sticky_decision_from_record,
)
from intake.calls.triage import CallTriageFlow
from intake.domain import CallState, CallTriage
from intake.location import CallLocations
from routing.vocabulary import DeskCode, IncidentType
from telephony.events import EcallFacts


def triage_rig(
    triage: ScriptedTriage, controls: CallControls | None = None
) -> tuple[CallTriageFlow, SessionRegistry, FakeIncidents, FakeBus, Effects]:
    effects, clock = Effects(), FakeClock()
    store, live, bus = FakeStore(effects), FakeLive(effects), FakeBus(effects)
    incidents = FakeIncidents(effects)
    records = CallRecords(store, bus, live)
    locations = CallLocations(store, incidents, records.save, records.publish, clock)
    registry = SessionRegistry()
    flow = CallTriageFlow(
        triage, registry, records, controls or CallControls(), FakeDesks(effects, live), incidents, locations,
        store, bus,
        "node-a", nodes=live,
    )  # fmt: skip
    return flow, registry, incidents, bus, effects


async def test_retriage_moves_the_waiting_call_in_the_queue_before_the_decision_is_published() -> None:
    arrest = decision(IncidentType.MED_CARDIAC_ARREST, priority=1, tcpr=True, desk=DeskCode.ZZS)
    flow, _registry, _incidents, _bus, effects = triage_rig(ScriptedTriage(decision(unsure=True), arrest))
    session = CallSession(call=a_call("q1", desk=DeskCode.D112))
    await flow.retriage(session, force=True)
    effects.log.clear()

    session.finals.append("manžel nedýchá")
    await flow.retriage(session)

    moved = effects.log.index("move q1 112->ZZS")
    reprioritised = effects.log.index("reprioritise q1 p1 front")
    published = effects.log.index("publish triage.updated")
    assert moved < reprioritised < published
    assert session.call.tcpr is True and session.call.priority == 1


async def test_sticky_triage_survives_a_takeover_from_the_stored_call_record() -> None:
    """Another node (or a restarted one) takes the call over with no decision in memory: the stored triage
    is the previous decision, so a worse transcript never clears T-CPR nor lowers the priority."""
    arrest = decision(IncidentType.MED_CARDIAC_ARREST, priority=1, tcpr=True, desk=DeskCode.ZZS)
    stored = a_call("s1", state=CallState.CONNECTED, desk=DeskCode.ZZS)
    stored.triage = call_triage_from_decision(arrest)  # what node A wrote before it died
    stored.taker_id = "jana"

    worse = decision(IncidentType.MED_OTHER, priority=3, tcpr=False)
    flow, _registry, _incidents, _bus, _effects = triage_rig(ScriptedTriage(worse))
    taken_over = CallSession(call=stored, decision=sticky_decision_from_record(stored))
    await flow.retriage(taken_over, force=True)
    assert taken_over.call.tcpr is True and taken_over.call.priority == 1
    assert any("kept" in note for note in taken_over.decision.notes)  # type: ignore[union-attr]

    # Without the rebuilt facts the same transcript would have cleared it: the rule is what keeps it.
    fresh = CallSession(call=a_call("s2", state=CallState.CONNECTED))
    await flow.retriage(fresh, force=True)
    assert fresh.call.tcpr is False and fresh.call.priority == 3


def test_sticky_facts_follow_a_call_takers_correction_on_the_incident() -> None:
    call = a_call("s3")
    call.triage = CallTriage(
        incident_type="MED_OTHER", priority=3, tcpr=False, agencies=("ZZS",), source="incident"
    )
    restored = sticky_decision_from_record(call)
    assert restored is not None and restored.tcpr.value is False and restored.priority.value == 3
    assert sticky_decision_from_record(a_call("s4")) is None  # nothing stored: nothing to carry


async def test_an_ecall_opens_a_traffic_accident_with_the_vehicle_facts_before_anyone_speaks() -> None:
    flow, _registry, incidents, bus, _effects = triage_rig(ScriptedTriage(decision(unsure=True)))
    session = CallSession(call=a_call("e1"))
    facts = EcallFacts(
        msd_hex="0a0b", automatic_activation=True, vehicle_type="passenger car (M1)", vin="TMBJJ7NE1L0123456",
        propulsion=("diesel",), passengers=3,
    )  # fmt: skip
    await flow.on_ecall(session, facts)
    [incident] = incidents.incidents.values()
    assert incident.incident_type is IncidentType.TRAFFIC_ACCIDENT and incident.priority == 1
    assert "automatic" in incident.notes[0] and "3 occupants" in incident.notes[0]
    assert session.call.incident_id == incident.id
    first = bus.events[0]
    assert first.type == "call.updated" and first.data["ecall"]["msd_hex"] == "0a0b"


async def test_an_undecodable_msd_still_opens_the_incident_and_keeps_the_raw_msd() -> None:
    flow, _registry, incidents, bus, _effects = triage_rig(ScriptedTriage(decision(unsure=True)))
    session = CallSession(call=a_call("e2"))
    await flow.on_ecall(session, EcallFacts(msd_hex="ff", error="MSD truncated"))
    [incident] = incidents.incidents.values()
    assert incident.priority == 2 and "manual" in incident.notes[0]
    assert bus.events[0].data["ecall"] == {"msd_hex": "ff", "error": "MSD truncated"}


async def test_a_stale_read_of_the_incident_never_undoes_a_call_takers_correction_on_the_call() -> None:
    """The race behind a flaky API test: triage opened the incident and, before its own follow-up read came
    back, a call taker lowered the incident's priority and the call followed. The older read arrives last
    and must not put the old priority back on the call record."""
    import dataclasses
    from datetime import timedelta

    arrest = decision(IncidentType.MED_CARDIAC_ARREST, priority=1, tcpr=True, desk=DeskCode.ZZS)
    flow, registry, incidents, _bus, _effects = triage_rig(ScriptedTriage(arrest))
    session = CallSession(call=a_call("r1", desk=DeskCode.ZZS))
    registry.add(session)
    await flow.retriage(session, force=True)
    (opened,) = incidents.incidents.values()
    stale = dataclasses.replace(opened)
    corrected = dataclasses.replace(opened, priority=2, updated_at=opened.updated_at + timedelta(seconds=1))
    incidents.incidents[opened.id] = corrected

    await flow.follow_incident_change(corrected)
    assert session.call.priority == 2
    await flow.follow_incident(session.call, stale, session)  # the older read, arriving late
    assert session.call.priority == 2 and session.call.triage is not None
    assert session.call.triage.priority == 2 and session.call.triage.source == "incident"


class QueueStates:
    """The recognition side of :class:`CallControls`: what intake told it about each waiting caller."""

    def __init__(self) -> None:
        self.told: list[tuple[str, bool, int, bool | None]] = []

    def set_leg_queue(
        self,
        call_ref: str,
        leg: str,
        waiting: bool,
        priority: int = 3,
        waiting_since: float | None = None,
        triaged: bool | None = None,
    ) -> None:
        self.told.append((call_ref, waiting, priority, triaged))


async def test_recognition_is_told_when_a_waiting_caller_is_triaged_from_their_own_words() -> None:
    """Recognition serves waiting callers nobody has heard yet first; it learns from triage who was heard."""
    unsure, fall = decision(unsure=True), decision(IncidentType.MED_OTHER, priority=2)
    controls, told = CallControls(), QueueStates()
    controls.transcriber = told  # type: ignore[assignment]
    flow, _registry, _incidents, _bus, _effects = triage_rig(
        ScriptedTriage(unsure, unsure, fall, fall), controls
    )
    session = CallSession(call=a_call("w1", desk=DeskCode.ZZS))
    await flow.retriage(session, force=True)
    session.finals.append("dobrý den")
    await flow.retriage(session)
    assert all(triaged is not True for *_, triaged in told.told)
    session.finals.append("babička upadla na chodníku a nemůže vstát")
    await flow.retriage(session)
    assert told.told[-1] == (session.call.call_ref, True, 2, True)
    count = len(told.told)
    await flow.retriage(session)  # nothing new: recognition is not told again
    assert len(told.told) == count
