"""An incident as a NENA EIDO JSON document (NENA-STA-021.1, EIDO version 1.0).

The mapping keeps to what the incident record really knows: the centre as the issuing agency, the alerted
agencies, the incident type and priority (our own codes as "internal", a coarse common category), every
call with its callback number, the current location as a PIDF-LO document, notes and the confirming call
taker. Identifiers are URNs in the ``urn:emergency:uid:`` space with the centre's domain.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from intake.domain import Call, CallState, Incident, IncidentStatus, Location, utc_now
from intake.exchange.cap import xml_text
from routing.vocabulary import Agency, IncidentType

EIDO_VERSION = "1.0"

# IANA "urn:emergency:service:responder" sub-registry values, without the prefix.
RESPONDER_TYPE: dict[Agency, str] = {Agency.HZS: "fire", Agency.ZZS: "ems", Agency.PCR: "police"}

AGENCY_NAME: dict[Agency, str] = {
    Agency.HZS: "Hasičský záchranný sbor ČR",
    Agency.ZZS: "Zdravotnická záchranná služba",
    Agency.PCR: "Policie České republiky",
}

STATUS_TEXT: dict[IncidentStatus, str] = {
    IncidentStatus.NEW: "Pending",
    IncidentStatus.ACTIVE: "Active",
    IncidentStatus.CLOSED: "Closed",
}

CALL_STATE_TEXT: dict[CallState, str] = {
    CallState.RINGING: "callBegin",
    CallState.QUEUED: "queued",
    CallState.CONNECTED: "callAnswered",
    CallState.ENDED: "callEnd",
    CallState.ABANDONED: "callEnd",
}

PRIORITY_TEXT = {1: "highest", 2: "high", 3: "normal"}


def common_incident_category(incident_type: IncidentType) -> str:
    """A coarse common category; the exact IZS type travels as the internal code."""
    name = incident_type.value
    if name.startswith("FIRE_"):
        return "Fire"
    if name.startswith("MED_"):
        return "Medical"
    if name.startswith("POLICE_"):
        return "Law Enforcement"
    if name.startswith("HAZMAT_"):
        return "Hazardous Materials"
    if name == "TRAFFIC_ACCIDENT":
        return "Traffic Accident"
    if name == "TECH_RESCUE":
        return "Rescue"
    if name == "WEATHER_FLOOD":
        return "Natural Disaster"
    return "Other"


def _ts(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def pidf_lo(location: Location, entity: str) -> str:
    """A minimal PIDF-LO (RFC 4119 / RFC 5491) document with the civic address and, if known, a point or
    circle in WGS 84."""
    civic_parts = [
        ("country", location.country or "CZ"),
        ("A3", location.municipality),
        ("A4", location.part),
        ("RD", location.street),
        ("HNO", location.house_number),
        ("LMK", location.landmark),
    ]
    civic = "".join(
        f"<ca:{tag}>{escape(xml_text(str(value)))}</ca:{tag}>" for tag, value in civic_parts if value
    )
    geo = ""
    if location.lat is not None and location.lon is not None:
        pos = f"<gml:pos>{location.lat:.6f} {location.lon:.6f}</gml:pos>"
        if location.radius_m:
            geo = (
                '<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326">'
                f'{pos}<gs:radius uom="urn:ogc:def:uom:EPSG::9001">{location.radius_m:.0f}</gs:radius>'
                "</gs:Circle>"
            )
        else:
            geo = f'<gml:Point srsName="urn:ogc:def:crs:EPSG::4326">{pos}</gml:Point>'
    return (
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" '
        'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
        'xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr" '
        'xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0" '
        f'entity="{escape(entity)}"><tuple id="loc"><status><gp:geopriv><gp:location-info>'
        f"<ca:civicAddress>{civic}</ca:civicAddress>{geo}"
        f"</gp:location-info><gp:method>{escape(location.source.value)}</gp:method>"
        f"</gp:geopriv></status><timestamp>{_ts(location.at)}</timestamp></tuple></presence>"
    )


def incident_to_eido(
    incident: Incident,
    calls: list[Call],
    *,
    domain: str = "kvk.izs.cz",
    issuer: str = "izs-intake",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The EIDO document of ``incident`` and its ``calls``, as plain JSON values."""
    now = now or utc_now()
    updated = _ts(incident.updated_at) or _ts(now)
    centre_id = f"urn:emergency:uid:agencyid:{domain}"
    centre_ref = {"$ref": centre_id}

    def prologue(component_id: str, when: str | None = None) -> dict[str, Any]:
        return {
            "$id": component_id,
            "lastUpdateTimeStamp": when or updated,
            "updatedByAgencyReference": centre_ref,
        }

    agencies: list[dict[str, Any]] = [
        {
            **prologue(centre_id),
            "agencyRoleDescriptionRegistryText": ["PSAP"],
            "agencyType": ["psap"],
            "incidentOwningAgencyIndicator": True,
            "agencyJcard": f"Operační středisko IZS ({domain})",
        }
    ]
    for assignment in incident.agencies:
        agencies.append(
            {
                **prologue(
                    f"urn:emergency:uid:agencyid:{assignment.agency.value.lower()}.{domain}",
                    _ts(assignment.updated_at),
                ),
                "agencyRoleDescriptionRegistryText": ["Responding"],
                "agencyType": [RESPONDER_TYPE[assignment.agency]],
                "incidentOwningAgencyIndicator": False,
                "agencyJcard": AGENCY_NAME[assignment.agency],
            }
        )

    agents: list[dict[str, Any]] = []
    agent_refs: list[dict[str, str]] = []
    if incident.confirmed_by:
        agent_id = f"urn:emergency:uid:agentid:{incident.confirmed_by}@{domain}"
        agents.append(
            {**prologue(agent_id), "agentRoleRegistryText": ["Call Taker"], "agencyReference": centre_ref}
        )
        agent_refs.append({"$ref": agent_id})

    locations: list[dict[str, Any]] = []
    location_refs: list[dict[str, str]] = []
    if incident.location is not None:
        location_id = f"urn:emergency:uid:locationid:{incident.id}-1:{domain}"
        entry: dict[str, Any] = {
            **prologue(location_id, _ts(incident.location.at)),
            "locationTypeDescriptionRegistryText": "Incident",
            "locationByValue": pidf_lo(incident.location, f"pres:{incident.id}@{domain}"),
        }
        text = incident.location.text()
        if text:
            entry["locationDescriptionText"] = text
        locations.append(entry)
        location_refs.append({"$ref": location_id})

    notes = [
        {
            **prologue(f"urn:emergency:uid:notesid:{incident.id}-{n}:{domain}"),
            "notesActionComments": escape(text),
        }
        for n, text in enumerate(incident.notes, start=1)
    ]
    note_refs = [{"$ref": n["$id"]} for n in notes]

    call_components: list[dict[str, Any]] = []
    callbacks: list[dict[str, Any]] = []
    for call in calls:
        call_id = f"urn:emergency:uid:callid:{call.id}:{domain}"
        component: dict[str, Any] = {
            **prologue(call_id, _ts(call.ended_at or call.answered_at or call.offered_at)),
            "standardPrimaryCallType": "emergency",
            "localCallType": f"dialled {call.dialled}",
            "direction": "incoming",
            "callStartTimestamp": _ts(call.offered_at),
            "callStateRegistryText": CALL_STATE_TEXT[call.state],
            "priorityIdentifier": PRIORITY_TEXT.get(call.priority or 2, "normal"),
        }
        if call.desk is not None:
            component["queueIdentifier"] = call.desk.value
        if call.answered_at is not None:
            component["answerDate"] = _ts(call.answered_at)
        if location_refs:
            component["locationReference"] = location_refs
        if call.caller.e164:
            callback_id = f"urn:emergency:uid:callbackid:{call.id}:{domain}"
            callbacks.append({**prologue(callback_id), "callBackInformationUri": [f"tel:{call.caller.e164}"]})
            component["callBackReference"] = {"$ref": callback_id}
        call_components.append(component)

    incident_component: dict[str, Any] = {
        **prologue(f"urn:emergency:uid:incidentid:{incident.id}:{domain}"),
        "incidentTypeCommonRegistryText": common_incident_category(incident.incident_type),
        "incidentTypeInternalCode": incident.incident_type.value,
        "incidentStatusCommonRegistryText": [STATUS_TEXT[incident.status]],
        "incidentStatusInternalText": [incident.status.value],
        "internalIncidentId": incident.id,
        "incidentCommonPriorityNumber": incident.priority,
        "incidentPriorityInternalText": f"P{incident.priority}" + (" T-CPR" if incident.tcpr else ""),
    }
    if location_refs:
        incident_component["locationReference"] = location_refs
    if agent_refs:
        incident_component["agentReference"] = agent_refs
    if note_refs:
        incident_component["notesReference"] = note_refs

    document: dict[str, Any] = {
        **prologue(f"urn:emergency:uid:eidoid:{incident.id}-{incident.updated_at:%Y%m%dT%H%M%S}:{domain}"),
        "eidoVersion": EIDO_VERSION,
        "issuingElementIdentification": issuer,
        "incidentComponent": incident_component,
        "agencyComponent": agencies,
    }
    if call_components:
        document["callComponent"] = call_components
    if callbacks:
        document["callbackComponent"] = callbacks
    if agents:
        document["agentComponent"] = agents
    if locations:
        document["locationComponent"] = locations
    if notes:
        document["notesComponent"] = notes
    return document
