"""AML SMS and location fusion for live calls (intake.location.CallLocations), built directly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from calls_fakes import Effects, FakeBus, FakeClock, FakeIncidents, FakeLive, FakeStore, a_call

from intake.calls.records import CallRecords
from intake.calls.session import CallSession, SessionRegistry
from intake.domain import Call, LocationSource
from intake.errors import ValidationFailed
from intake.location import CallLocations, LocatedCall
from routing.types import SpokenLocation
from telephony.events import GeoFix, LocationReported


def with_length(body: str) -> str:
    """An AML SMS whose ml field counts the whole message, itself included."""
    prefix = f"{body};ml="
    for digits in range(1, 5):
        total = len(prefix) + digits
        if len(str(total)) == digits:
            return f"{prefix}{total}"
    raise AssertionError("unreachable")


class Directory:
    def __init__(self, registry: SessionRegistry) -> None:
        self._registry = registry

    def located(self, call_id: str) -> LocatedCall | None:
        return self._registry.by_id(call_id)

    def live_calls(self) -> list[Call]:
        return [s.call for s in self._registry.sessions()]


def rig() -> tuple[CallLocations, SessionRegistry, FakeStore, FakeIncidents, FakeBus, FakeClock]:
    effects, clock = Effects(), FakeClock()
    store, live, bus = FakeStore(effects), FakeLive(effects), FakeBus(effects)
    incidents = FakeIncidents(effects)
    records = CallRecords(store, bus, live)
    locations = CallLocations(store, incidents, records.save, records.publish, clock)
    registry = SessionRegistry()
    locations.directory = Directory(registry)
    return locations, registry, store, incidents, bus, clock


async def test_an_aml_sms_reaches_its_callers_live_call_and_outranks_the_spoken_place() -> None:
    locations, registry, _store, incidents, bus, clock = rig()
    session = CallSession(call=a_call("a1", caller="+420603224590", offered_at=clock.now()))
    session.call.incident_id = "KVK-1"
    registry.add(session)
    locations.start(session, None)
    assert session.call.location is not None and session.call.location.source is LocationSource.CALLER_COUNTRY

    await locations.on_spoken(session, SpokenLocation(municipality="Sokolov", confidence=0.8))
    assert session.call.location.source is LocationSource.SPOKEN
    assert incidents.locations == []  # a spoken place is triage's, the incident hears it from triage

    sms = with_length(
        f'A"ML=1;lt=+50.23112;lg=+12.87234;rd=14;top={clock.now():%Y%m%d%H%M%S};lc=68;pm=G;'
        "si=230031234567890;ei=356708041746734;mcc=230;mnc=03"
    )
    result = await locations.report_aml("+420603224590", sms, clock.now() + timedelta(seconds=5))
    assert result["matched"] is True and result["call_id"] == "a1" and result["position"] is True
    reported = session.inbox.get_nowait()  # into the call's own ordered stream
    assert isinstance(reported, LocationReported)

    await locations.on_fix(session, reported.fix)
    assert session.call.location.source is LocationSource.AML_GNSS
    assert bus.kinds()[-1] == "location.updated"
    assert [(i, loc.source) for i, loc, _ in incidents.locations] == [("KVK-1", LocationSource.AML_GNSS)]


async def test_an_aml_sms_that_matches_no_call_is_answered_unmatched_and_a_malformed_one_rejected() -> None:
    locations, _registry, _store, _incidents, _bus, clock = rig()
    sms = with_length(f'A"ML=1;lt=+50.23112;lg=+12.87234;rd=14;top={clock.now():%Y%m%d%H%M%S};lc=68;pm=G')
    result = await locations.report_aml("+420777000111", sms, clock.now())
    assert result["matched"] is False
    with pytest.raises(ValidationFailed):
        await locations.report_aml("+420777000111", "not an AML message", clock.now())


async def test_a_fix_for_a_call_this_node_no_longer_holds_goes_on_its_incident() -> None:
    locations, _registry, store, incidents, _bus, clock = rig()
    ended = a_call("a2")
    ended.incident_id = "KVK-9"
    store.calls["a2"] = ended
    fix = GeoFix(source="ecall", lat=50.2, lon=12.8, radius_m=50, at=clock.now())
    assert (await locations.report_location("a2", fix)).id == "a2"
    assert incidents.locations[0][0] == "KVK-9" and incidents.locations[0][2] == "location:ecall"


async def test_a_fix_from_an_unknown_source_is_ignored_and_the_call_keeps_its_location() -> None:
    locations, _registry, _store, _incidents, _bus, clock = rig()
    session = CallSession(call=a_call("a3"))
    locations.start(session, GeoFix(source="pidf-lo", lat=50.1, lon=12.4, radius_m=30, at=clock.now()))
    before = session.call.location
    await locations.on_fix(session, GeoFix(source="carrier-pigeon", lat=1.0, lon=1.0, at=clock.now()))
    assert session.call.location == before and len(session.locations) == 2  # country + PIDF-LO
