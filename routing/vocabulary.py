"""The IZS vocabulary shared by triage, routing, the telephony adapters and the incident record.

Plain values only (no imports from the rest of the project), so every package may import it.
"""

from __future__ import annotations

import enum


class Agency(enum.StrEnum):
    HZS = "HZS"  # fire rescue service, 150
    ZZS = "ZZS"  # emergency medical service, 155
    PCR = "PCR"  # police, 158


class DeskCode(enum.StrEnum):
    HZS = "HZS"
    ZZS = "ZZS"
    PCR = "PCR"
    D112 = "112"  # the joint 112 desk: languages, overflow, unclear calls


# The desk a dialled number lands on before triage knows better (a prior, never the answer).
DESK_BY_DIALLED: dict[str, DeskCode] = {
    "150": DeskCode.HZS,
    "155": DeskCode.ZZS,
    "158": DeskCode.PCR,
    "156": DeskCode.PCR,  # municipal police: taken by the police desk in the joint centre
    "112": DeskCode.D112,
}

# The numbers this centre answers: the one list every package uses (settings, SIP endpoint, demo, desks).
EMERGENCY_NUMBERS: tuple[str, ...] = tuple(DESK_BY_DIALLED)

# The number whose queue a desk answers on the PBX (`desk-<number>`): 156 shares the police desk's queue.
QUEUE_NUMBER_BY_DESK: dict[DeskCode, str] = {
    DeskCode.HZS: "150",
    DeskCode.ZZS: "155",
    DeskCode.PCR: "158",
    DeskCode.D112: "112",
}

DESK_BY_AGENCY: dict[Agency, DeskCode] = {
    Agency.HZS: DeskCode.HZS,
    Agency.ZZS: DeskCode.ZZS,
    Agency.PCR: DeskCode.PCR,
}


class IncidentType(enum.StrEnum):
    FIRE_BUILDING = "FIRE_BUILDING"
    FIRE_VEHICLE = "FIRE_VEHICLE"
    FIRE_WILDLAND = "FIRE_WILDLAND"
    FIRE_OTHER = "FIRE_OTHER"
    TRAFFIC_ACCIDENT = "TRAFFIC_ACCIDENT"
    MED_CARDIAC_ARREST = "MED_CARDIAC_ARREST"
    MED_BREATHING = "MED_BREATHING"
    MED_CHEST_PAIN = "MED_CHEST_PAIN"
    MED_STROKE = "MED_STROKE"
    MED_TRAUMA = "MED_TRAUMA"
    MED_UNCONSCIOUS = "MED_UNCONSCIOUS"
    MED_SEIZURE = "MED_SEIZURE"
    MED_CHILDBIRTH = "MED_CHILDBIRTH"
    MED_POISONING = "MED_POISONING"
    MED_ALLERGY = "MED_ALLERGY"
    MED_PSYCHIATRIC = "MED_PSYCHIATRIC"
    MED_OTHER = "MED_OTHER"
    POLICE_BURGLARY = "POLICE_BURGLARY"
    POLICE_ASSAULT = "POLICE_ASSAULT"
    POLICE_DOMESTIC_VIOLENCE = "POLICE_DOMESTIC_VIOLENCE"
    POLICE_THEFT = "POLICE_THEFT"
    POLICE_WEAPON = "POLICE_WEAPON"
    POLICE_MISSING_PERSON = "POLICE_MISSING_PERSON"
    POLICE_TRAFFIC = "POLICE_TRAFFIC"
    POLICE_PUBLIC_ORDER = "POLICE_PUBLIC_ORDER"
    POLICE_OTHER = "POLICE_OTHER"
    TECH_RESCUE = "TECH_RESCUE"
    HAZMAT_GAS = "HAZMAT_GAS"
    HAZMAT_CHEMICAL = "HAZMAT_CHEMICAL"
    WEATHER_FLOOD = "WEATHER_FLOOD"
    NON_EMERGENCY = "NON_EMERGENCY"
    SILENT_OR_HOAX = "SILENT_OR_HOAX"
    # Nothing heard yet (no transcript): not a situation, the absence of one. Shown as "not yet heard";
    # never a label in the scenario files and never a reason to drop the dialled agency.
    UNKNOWN = "UNKNOWN"


# The agency behind each emergency number: kept while the caller's words do not clearly point elsewhere.
# 112 in Czechia is answered by the fire rescue service's operations centres (HZS ČR runs the 112 PSAPs),
# so an unheard or unclear 112 call stays with HZS until words say otherwise.
AGENCY_BY_DIALLED: dict[str, Agency] = {
    "150": Agency.HZS,
    "155": Agency.ZZS,
    "158": Agency.PCR,
    "156": Agency.PCR,
    "112": Agency.HZS,
}
