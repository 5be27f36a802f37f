"""An incident as an OASIS Common Alerting Protocol 1.2 message (restricted to the IZS agencies).

CAP is an alerting format, not an incident record: the message says what happened, where, how urgent,
and which agencies are alerted. Element order follows the CAP 1.2 schema (``schemas/CAP-v1.2.xsd``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from intake.domain import Incident, IncidentStatus, utc_now
from routing.vocabulary import Agency, IncidentType

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"

# Characters XML 1.0 cannot carry at all (control characters, surrogates, U+FFFE/U+FFFF): dropped, since
# notes and places come from people and recognisers.
NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: str) -> str:
    return NOT_XML.sub("", value)


CATEGORY_BY_PREFIX = (
    ("FIRE_", "Fire"),
    ("MED_", "Health"),
    ("POLICE_", "Security"),
    ("HAZMAT_", "CBRNE"),
    ("TRAFFIC_", "Transport"),
    ("TECH_", "Rescue"),
    ("WEATHER_", "Met"),
)

EVENT_CS: dict[str, str] = {
    "FIRE_BUILDING": "Požár budovy",
    "FIRE_VEHICLE": "Požár vozidla",
    "FIRE_WILDLAND": "Požár v přírodě",
    "FIRE_OTHER": "Požár",
    "TRAFFIC_ACCIDENT": "Dopravní nehoda",
    "MED_CARDIAC_ARREST": "Zástava oběhu",
    "MED_BREATHING": "Dušnost",
    "MED_CHEST_PAIN": "Bolest na hrudi",
    "MED_STROKE": "Cévní mozková příhoda",
    "MED_TRAUMA": "Úraz",
    "MED_UNCONSCIOUS": "Bezvědomí",
    "MED_SEIZURE": "Křeče",
    "MED_CHILDBIRTH": "Porod",
    "MED_POISONING": "Otrava",
    "MED_ALLERGY": "Alergická reakce",
    "MED_PSYCHIATRIC": "Psychiatrický stav",
    "MED_OTHER": "Zdravotní potíže",
    "POLICE_BURGLARY": "Vloupání",
    "POLICE_ASSAULT": "Napadení",
    "POLICE_DOMESTIC_VIOLENCE": "Domácí násilí",
    "POLICE_THEFT": "Krádež",
    "POLICE_WEAPON": "Ozbrojená osoba",
    "POLICE_MISSING_PERSON": "Pohřešovaná osoba",
    "POLICE_TRAFFIC": "Dopravní přestupek",
    "POLICE_PUBLIC_ORDER": "Narušení veřejného pořádku",
    "POLICE_OTHER": "Policejní událost",
    "TECH_RESCUE": "Technická pomoc",
    "HAZMAT_GAS": "Únik plynu",
    "HAZMAT_CHEMICAL": "Únik nebezpečné látky",
    "WEATHER_FLOOD": "Povodeň",
    "NON_EMERGENCY": "Nejde o tísňovou událost",
    "SILENT_OR_HOAX": "Tiché / zneužité volání",
}

URGENCY = {1: "Immediate", 2: "Immediate", 3: "Expected"}
SEVERITY = {1: "Extreme", 2: "Severe", 3: "Moderate"}


def cap_category(incident_type: IncidentType) -> str:
    for prefix, category in CATEGORY_BY_PREFIX:
        if incident_type.value.startswith(prefix):
            return category
    return "Other"


def cap_time(value: datetime) -> str:
    """CAP wants an explicit offset, never "Z", and whole seconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        element.text = xml_text(text)
    return element


def incident_to_cap(
    incident: Incident,
    *,
    sender: str = "izs-intake@kvk.izs.cz",
    now: datetime | None = None,
    version: int | None = None,
) -> bytes:
    """The CAP 1.2 alert for ``incident`` as UTF-8 XML. ``version`` distinguishes successive messages
    about the same incident (an Update references the first Alert)."""
    now = now or utc_now()
    version = version if version is not None else (incident.timeline[-1].seq if incident.timeline else 0)
    ET.register_namespace("", CAP_NS)
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    first_id = f"{incident.id}-0"
    identifier = f"{incident.id}-{version}"
    _sub(alert, "identifier", identifier)
    _sub(alert, "sender", sender)
    _sub(alert, "sent", cap_time(now))
    _sub(alert, "status", "Actual")
    msg_type = (
        "Alert" if version == 0 else ("Cancel" if incident.status is IncidentStatus.CLOSED else "Update")
    )
    _sub(alert, "msgType", msg_type)
    _sub(alert, "source", "izs-intake")
    _sub(alert, "scope", "Restricted")
    _sub(alert, "restriction", "Integrovaný záchranný systém: " + " ".join(a.value for a in Agency))
    _sub(alert, "code", "IZS")
    if msg_type != "Alert":
        _sub(alert, "references", f"{sender},{first_id},{cap_time(incident.created_at)}")
    _sub(alert, "incidents", incident.id)

    info = _sub(alert, "info")
    _sub(info, "language", "cs-CZ")
    _sub(info, "category", cap_category(incident.incident_type))
    _sub(info, "event", EVENT_CS.get(incident.incident_type.value, incident.incident_type.value))
    _sub(info, "responseType", "Monitor" if incident.status is IncidentStatus.CLOSED else "Execute")
    _sub(info, "urgency", "Past" if incident.status is IncidentStatus.CLOSED else URGENCY[incident.priority])
    _sub(info, "severity", SEVERITY[incident.priority])
    _sub(info, "certainty", "Observed" if incident.confirmed_by else "Likely")
    _sub(info, "audience", ", ".join(a.value for a in incident.agency_codes) or "IZS")
    event_code = _sub(info, "eventCode")
    _sub(event_code, "valueName", "IZS-INCIDENT-TYPE")
    _sub(event_code, "value", incident.incident_type.value)
    _sub(info, "effective", cap_time(incident.created_at))
    _sub(info, "senderName", "Operační středisko IZS")
    headline = EVENT_CS.get(incident.incident_type.value, incident.incident_type.value)
    if incident.location is not None and incident.location.text():
        headline = f"{headline}: {incident.location.text()}"
    _sub(info, "headline", headline[:160])
    if incident.notes:
        _sub(info, "description", "\n".join(incident.notes))
    if incident.tcpr:
        _sub(info, "instruction", "Podezření na zástavu oběhu: probíhá telefonicky asistovaná KPR.")
    for name, value in (
        ("priority", str(incident.priority)),
        ("status", incident.status.value),
        ("agencies", " ".join(a.value for a in incident.agency_codes)),
    ):
        parameter = _sub(info, "parameter")
        _sub(parameter, "valueName", name)
        _sub(parameter, "value", value)
    area = _sub(info, "area")
    location = incident.location
    _sub(area, "areaDesc", (location.text() if location is not None else "") or "neznámé místo")
    if location is not None and location.lat is not None and location.lon is not None:
        radius_km = (location.radius_m or 50.0) / 1000.0
        _sub(area, "circle", f"{location.lat:.6f},{location.lon:.6f} {radius_km:.3f}")
    return ET.tostring(alert, encoding="utf-8", xml_declaration=True)
