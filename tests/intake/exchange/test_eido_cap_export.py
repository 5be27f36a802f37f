"""Incidents exported as NENA EIDO JSON and OASIS CAP 1.2 validate against the published schemas."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intake.domain import (
    AgencyAssignment,
    AgencyStatus,
    Call,
    CallerNumber,
    CallState,
    Incident,
    IncidentStatus,
    LineType,
    Location,
    LocationSource,
    TimelineEntry,
)
from intake.exchange.cap import CAP_NS, incident_to_cap
from intake.exchange.eido import incident_to_eido
from intake.exchange.validation import cap_errors, eido_errors
from routing.vocabulary import Agency, DeskCode, IncidentType

T0 = datetime(2026, 11, 27, 9, 30, 5, tzinfo=UTC)


def cardiac_arrest_incident() -> Incident:
    return Incident(
        id="KVK-2026-000042",
        incident_type=IncidentType.MED_CARDIAC_ARREST,
        priority=1,
        status=IncidentStatus.ACTIVE,
        agencies=[
            AgencyAssignment(Agency.ZZS, AgencyStatus.DISPATCHED, T0),
            AgencyAssignment(Agency.HZS, AgencyStatus.ALERTED, T0),
        ],
        location=Location(
            source=LocationSource.AML_GNSS,
            lat=50.1802,
            lon=12.6401,
            radius_m=12,
            municipality="Sokolov",
            street="Husitská",
            house_number="12",
            at=T0,
        ),
        call_ids=["c1"],
        notes=["Manžel nedýchá, <b>chrčí</b> & nereaguje"],
        tcpr=True,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=40),
        confirmed_by="jana",
        timeline=[
            TimelineEntry(T0, "triage", "created", {}, 1),
            TimelineEntry(T0, "jana", "triage_confirmed", {}, 2),
        ],
    )


def answered_call() -> Call:
    return Call(
        id="c1",
        call_ref="sip-1",
        source="sip",
        dialled="155",
        caller=CallerNumber("+420603224590", "+420603224590", "CZ", LineType.MOBILE, True),
        state=CallState.CONNECTED,
        offered_at=T0,
        answered_at=T0 + timedelta(seconds=6),
        desk=DeskCode.ZZS,
        priority=1,
        tcpr=True,
    )


def test_cardiac_arrest_incident_exports_as_valid_eido():
    document = incident_to_eido(cardiac_arrest_incident(), [answered_call()], now=T0)
    assert eido_errors(document) == []
    assert document["eidoVersion"] == "1.0"
    incident = document["incidentComponent"]
    assert incident["internalIncidentId"] == "KVK-2026-000042"
    assert incident["incidentTypeInternalCode"] == "MED_CARDIAC_ARREST"
    assert incident["incidentCommonPriorityNumber"] == 1
    assert [a["agencyType"] for a in document["agencyComponent"]] == [["psap"], ["ems"], ["fire"]]
    assert document["callbackComponent"][0]["callBackInformationUri"] == ["tel:+420603224590"]
    pidf = document["locationComponent"][0]["locationByValue"]
    ET.fromstring(pidf)  # well-formed PIDF-LO
    assert "Husitská" in pidf and "50.180200 12.640100" in pidf
    assert "&lt;b&gt;" in document["notesComponent"][0]["notesActionComments"]


def test_eido_validation_catches_a_broken_document():
    document = incident_to_eido(cardiac_arrest_incident(), [answered_call()], now=T0)
    del document["agencyComponent"]
    document["callComponent"][0]["direction"] = "sideways"
    errors = eido_errors(document)
    assert any("agencyComponent" in e for e in errors)
    assert any("sideways" in e for e in errors)


def test_cardiac_arrest_incident_exports_as_valid_cap():
    xml = incident_to_cap(cardiac_arrest_incident(), now=T0)
    assert cap_errors(xml) == []
    root = ET.fromstring(xml)
    ns = {"cap": CAP_NS}
    assert root.findtext("cap:msgType", namespaces=ns) == "Update"
    assert root.findtext("cap:scope", namespaces=ns) == "Restricted"
    assert root.findtext("cap:sent", namespaces=ns) == "2026-11-27T09:30:05+00:00"
    info = root.find("cap:info", ns)
    assert info is not None
    assert info.findtext("cap:category", namespaces=ns) == "Health"
    assert info.findtext("cap:urgency", namespaces=ns) == "Immediate"
    assert info.findtext("cap:severity", namespaces=ns) == "Extreme"
    assert info.findtext("cap:area/cap:circle", namespaces=ns) == "50.180200,12.640100 0.012"


def test_cap_validation_catches_a_broken_message():
    xml = incident_to_cap(cardiac_arrest_incident(), now=T0).replace(
        b"<status>Actual</status>", b"<status>Bogus</status>"
    )
    assert cap_errors(xml)


def test_first_message_about_an_incident_is_an_alert_and_a_closed_one_a_cancel():
    incident = cardiac_arrest_incident()
    incident.timeline = []
    first = ET.fromstring(incident_to_cap(incident, now=T0))
    assert first.findtext(f"{{{CAP_NS}}}msgType") == "Alert"
    incident.status = IncidentStatus.CLOSED
    closed = incident_to_cap(incident, now=T0, version=5)
    assert ET.fromstring(closed).findtext(f"{{{CAP_NS}}}msgType") == "Cancel"
    assert cap_errors(closed) == []


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    incident_type=st.sampled_from(list(IncidentType)),
    priority=st.sampled_from([1, 2, 3]),
    status=st.sampled_from(list(IncidentStatus)),
    agencies=st.lists(st.sampled_from(list(Agency)), unique=True, max_size=3),
    municipality=st.none() | texts,
    street=st.none() | texts,
    coords=st.none() | st.tuples(st.floats(-90, 90), st.floats(-180, 180)),
    notes=st.lists(texts, max_size=3),
    confirmed_by=st.none() | st.from_regex(r"[a-z]{1,12}", fullmatch=True),
    with_call=st.booleans(),
)
def test_any_incident_exports_as_valid_eido_and_cap(
    incident_type, priority, status, agencies, municipality, street, coords, notes, confirmed_by, with_call
):
    location = None
    if municipality or street or coords:
        location = Location(
            source=LocationSource.SPOKEN,
            municipality=municipality,
            street=street,
            lat=coords[0] if coords else None,
            lon=coords[1] if coords else None,
            at=T0,
        )
    incident = Incident(
        id="KVK-2026-000001",
        incident_type=incident_type,
        priority=priority,
        status=status,
        agencies=[AgencyAssignment(a, AgencyStatus.ALERTED, T0) for a in agencies],
        location=location,
        notes=notes,
        created_at=T0,
        updated_at=T0,
        confirmed_by=confirmed_by,
    )
    calls = [answered_call()] if with_call else []
    assert eido_errors(incident_to_eido(incident, calls, now=T0)) == []
    assert cap_errors(incident_to_cap(incident, now=T0)) == []
