"""Safety by construction: rules every triage decision passes through, whatever produced it.

Pure functions over plain values (routing.types). Two kinds:

* :func:`safeguard` — applied to one decision for one transcript (rules or model, the same for both):
  nothing heard yet is ``UNKNOWN`` with the dialled number's agency; the dialled agency stays unless the
  caller's words clearly point elsewhere; an emergency number never ends with no agency unless the caller
  was positively heard to prank, pocket-dial or only ask for information (and the decision names the words);
  an unsure decision carries its two best alternatives.
* :func:`carry_forward` — applied between successive decisions of one call: a suspected cardiac arrest,
  once raised, stays raised (a later, worse transcript — the final that lost "ne-" — never clears it; only a
  call taker does, on the incident) and the priority is never lowered automatically during the call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from routing.types import Evidence, Scored, TriageDecision, TriageInput
from routing.vocabulary import (
    AGENCY_BY_DIALLED,
    DESK_BY_AGENCY,
    DESK_BY_DIALLED,
    Agency,
    DeskCode,
    IncidentType,
)

# Signals that are positive evidence that nobody needs an agency: a prank, a pocket dial / nobody there,
# a caller who only wants information. Without one of these an emergency call keeps an agency.
NO_EMERGENCY_SIGNALS = ("hoax_laughter", "no_danger", "information_request")
NO_EMERGENCY_TYPES = (IncidentType.SILENT_OR_HOAX, IncidentType.NON_EMERGENCY)
# Types the dialled number falls back to while nothing reliable was heard (the first two alternatives).
FALLBACK_TYPES: Mapping[str, tuple[IncidentType, IncidentType]] = {
    "150": (IncidentType.FIRE_OTHER, IncidentType.TECH_RESCUE),
    "155": (IncidentType.MED_OTHER, IncidentType.MED_UNCONSCIOUS),
    "158": (IncidentType.POLICE_OTHER, IncidentType.POLICE_PUBLIC_ORDER),
    "156": (IncidentType.POLICE_OTHER, IncidentType.POLICE_PUBLIC_ORDER),
    "112": (IncidentType.MED_OTHER, IncidentType.FIRE_OTHER),
}
UNHEARD_PRIORITY = 2  # not heard yet: urgent until words say otherwise, never "non-urgent" by default
MIN_ALTERNATIVES = 2


def dialled_agency(dialled: str) -> Agency | None:
    """The agency behind an emergency number, None for a number we do not take."""
    return AGENCY_BY_DIALLED.get(dialled.strip())


def dialled_desk(dialled: str) -> DeskCode:
    return DESK_BY_DIALLED.get(dialled.strip(), DeskCode.D112)


def desk_for(dialled: str, agencies: Sequence[Scored[Agency]], unsure: bool) -> DeskCode:
    """The desk that takes a call: the first agency's desk; while the decision is unsure, the dialled
    number's desk — but only when that desk serves one of the decision's agencies (or is the joint 112 desk),
    so desk and agencies never disagree (a fall on 158 whose agencies are [ZZS] goes to the ZZS desk, not
    to the police desk that cannot send an ambulance)."""
    by_dialled = dialled_desk(dialled)
    if not agencies:
        return by_dialled
    if unsure and (
        by_dialled is DeskCode.D112 or any(DESK_BY_AGENCY[a.value] is by_dialled for a in agencies)
    ):
        return by_dialled
    return DESK_BY_AGENCY[agencies[0].value]


def unheard(inp: TriageInput, rules_version: str = "") -> TriageDecision:
    """The decision for a call with no transcript yet: UNKNOWN, routed by the dialled number."""
    agency = dialled_agency(inp.dialled)
    fallback = FALLBACK_TYPES.get(inp.dialled.strip(), FALLBACK_TYPES["112"])
    return TriageDecision(
        agencies=(Scored(agency, 0.1),) if agency is not None else (),
        incident_type=Scored(IncidentType.UNKNOWN, 0.0),
        priority=Scored(UNHEARD_PRIORITY, 0.0),
        tcpr=Scored(False, 0.0),
        location=None,
        desk=dialled_desk(inp.dialled),
        alternatives=tuple(Scored(t, 0.0) for t in fallback),
        unsure=True,
        rules_version=rules_version,
        notes=(f"not yet heard: routed by the dialled number {inp.dialled.strip()}",),
    )


def no_emergency_proof(heard: Mapping[str, Sequence[Evidence]]) -> tuple[Evidence, ...]:
    """The protocol's positive evidence that nobody needs an agency, with its words."""
    return tuple(ev for signal in NO_EMERGENCY_SIGNALS for ev in heard.get(signal, ()))


def safeguard(
    decision: TriageDecision,
    inp: TriageInput,
    proof: Sequence[Evidence],
    *,
    clear: bool,
) -> TriageDecision:
    """Apply the per-transcript safety rules to a decision.

    `proof`: positive evidence, with the caller's words, that the call needs no agency (the protocol's
    prank / nobody-there / information signals, or the words a confident model weighed most for
    SILENT_OR_HOAX or NON_EMERGENCY). `clear`: whether the caller's words clearly point at the decision's
    agencies (calibrated model probability or confident rule score above the protocol's threshold); when
    not, the dialled agency is kept in the list, first.
    """
    if not inp.transcript.strip():
        return unheard(inp, decision.rules_version)
    agency = dialled_agency(inp.dialled)
    agencies = decision.agencies
    notes = list(decision.notes)
    itype = decision.incident_type
    alternatives = decision.alternatives
    unsure = decision.unsure
    if agency is not None and not agencies:
        words = [w for ev in proof for w in ev.words]
        if words and itype.value in NO_EMERGENCY_TYPES:
            notes.append(f"no agency: the caller said {' '.join(words)!r}")
            itype = Scored(itype.value, itype.confidence, _dedupe((*itype.evidence, *proof)))
        else:
            # An emergency number and nothing positive against an emergency: the dialled agency stays, and
            # the type is not guessed ("not yet recognised"), its candidates shown.
            agencies = (Scored(agency, 0.1),)
            notes.append("no agency recognised and no sign of a prank or pocket dial: dialled agency kept")
            if itype.value in NO_EMERGENCY_TYPES:
                alternatives = (itype, *(a for a in alternatives if a.value is not itype.value))
                itype = Scored(IncidentType.UNKNOWN, 0.0)
                unsure = True
    elif agency is not None and not clear and all(a.value is not agency for a in agencies):
        agencies = (Scored(agency, 0.1), *agencies)
        notes.append("the words do not clearly point elsewhere: dialled agency kept first")
    if decision.tcpr.value and all(a.value is not Agency.ZZS for a in agencies):
        # whatever else the call is about, a suspected cardiac arrest needs the ambulance first
        agencies = (Scored(Agency.ZZS, 0.9, decision.tcpr.evidence), *agencies)
    desk = desk_for(inp.dialled, agencies, unsure)
    if unsure:
        alternatives = _enough_alternatives(alternatives, itype.value, inp.dialled)
    return replace(
        decision,
        agencies=agencies,
        incident_type=itype,
        desk=desk,
        alternatives=alternatives,
        unsure=unsure,
        notes=tuple(notes),
    )


def _enough_alternatives(
    alternatives: tuple[Scored[IncidentType], ...], chosen: IncidentType, dialled: str
) -> tuple[Scored[IncidentType], ...]:
    out = [a for a in alternatives if a.value is not chosen]
    for fallback in FALLBACK_TYPES.get(dialled.strip(), FALLBACK_TYPES["112"]):
        if len(out) >= MIN_ALTERNATIVES:
            break
        if fallback is not chosen and all(a.value is not fallback for a in out):
            out.append(Scored(fallback, 0.0))
    return tuple(out)


def carry_forward(previous: TriageDecision | None, current: TriageDecision) -> TriageDecision:
    """The decision to apply to a call, given what was applied before (None for the first).

    Suspected cardiac arrest is sticky and the priority never drops: only a call taker lowers either, on
    the incident record. Everything else follows the newest transcript.
    """
    if previous is None:
        return current
    decision = current
    notes = list(current.notes)
    if previous.tcpr.value and not current.tcpr.value:
        notes.append("suspected cardiac arrest kept from an earlier transcript (only a call taker clears it)")
        agencies = current.agencies
        if all(a.value is not Agency.ZZS for a in agencies):
            agencies = (Scored(Agency.ZZS, 0.9, previous.tcpr.evidence), *agencies)
        decision = replace(
            decision,
            tcpr=previous.tcpr,
            agencies=agencies,
            desk=DESK_BY_AGENCY[Agency.ZZS],
        )
    if previous.priority.value < decision.priority.value:
        notes.append(f"priority {previous.priority.value} kept (never lowered automatically during a call)")
        decision = replace(decision, priority=previous.priority)
    if decision is current:
        return current
    return replace(decision, notes=tuple(notes))


def _dedupe(evidence: Sequence[Evidence]) -> tuple[Evidence, ...]:
    out: list[Evidence] = []
    for ev in evidence:
        if ev not in out:
            out.append(ev)
    return tuple(out)
