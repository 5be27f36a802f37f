"""Triage decisions: cardiac arrest, negation, inflection, noisy input, languages, the dialled-number prior,
the unsure fallback and explainable evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.triage import Triage
from routing.types import TriageDecision, TriageInput
from routing.vocabulary import Agency, DeskCode, IncidentType

DEV_SET = Path(__file__).resolve().parents[1] / "fixtures" / "calls" / "dev.jsonl"


def decide(triage: Triage, text: str, dialled: str = "112", language: str = "cs") -> TriageDecision:
    return triage.decide(TriageInput(dialled=dialled, language=language, transcript=text, is_final=True))


def agencies(decision: TriageDecision) -> list[Agency]:
    return [a.value for a in decision.agencies]


# ------------------------------------------------------------------------------------------- cardiac arrest


def test_cardiac_arrest_call_is_flagged_for_tcpr(triage: Triage) -> None:
    d = decide(triage, "Prosím rychle, babička spadla v obýváku, nereaguje a vůbec nedýchá.", dialled="155")
    assert d.tcpr.value is True
    assert d.incident_type.value is IncidentType.MED_CARDIAC_ARREST
    assert d.priority.value == 1
    assert agencies(d) == [Agency.ZZS]
    assert d.desk is DeskCode.ZZS


def test_gasping_unconscious_patient_is_cardiac_arrest(triage: Triage) -> None:
    d = decide(triage, "leží na zemi, nereaguje, jen občas tak divně lapá po dechu")
    assert d.tcpr.value is True


def test_unconscious_but_breathing_normally_is_not_cardiac_arrest(triage: Triage) -> None:
    d = decide(triage, "Soused leží na chodníku, nereaguje, ale dýchá normálně, pravidelně.")
    assert d.tcpr.value is False
    assert d.incident_type.value is IncidentType.MED_UNCONSCIOUS


def test_breathing_and_not_breathing_are_told_apart(triage: Triage) -> None:
    assert decide(triage, "manžel nedýchá").tcpr.value is True
    assert decide(triage, "manžel dýchá, mluví s námi").tcpr.value is False


def test_tcpr_rises_while_the_caller_is_still_speaking(triage: Triage) -> None:
    text = "Haló, můj táta se sesunul ze židle, nereaguje, nedýchá, jsme v Chebu, Evropská dvanáct"
    words = text.split(" ")
    flags = [decide(triage, " ".join(words[:n])).tcpr.value for n in range(1, len(words) + 1)]
    first = flags.index(True)
    assert first < len(words) - 4  # before the address is even given
    assert all(flags[first:])


# ------------------------------------------------------------------------------------------- negation


def test_negated_fire_does_not_make_a_fire(triage: Triage) -> None:
    d = decide(triage, "Ne, nehoří to, jen se kouří z kanálu.", dialled="150")
    assert d.incident_type.value is not IncidentType.FIRE_BUILDING
    assert any("negated fire" in note for note in d.notes)


def test_nobody_injured_means_no_ambulance_at_a_crash(triage: Triage) -> None:
    d = decide(triage, "Ťukli jsme do sebe na křižovatce, nikdo není zraněný, jen nárazník.", dialled="158")
    assert d.incident_type.value is IncidentType.TRAFFIC_ACCIDENT
    assert agencies(d) == [Agency.PCR]
    assert d.priority.value == 3


def test_injured_at_a_crash_brings_the_ambulance_first(triage: Triage) -> None:
    d = decide(triage, "Bouračka dvou aut na křižovatce, řidič krvácí z hlavy.", dialled="158")
    assert agencies(d)[:2] == [Agency.ZZS, Agency.PCR]
    assert d.priority.value == 1


def test_weapon_denied_is_not_a_weapon_call(triage: Triage) -> None:
    d = decide(triage, "Zadrželi jsme zloděje v obchodě, zbraň u sebe nemá, ukradl kosmetiku.", dialled="158")
    assert d.incident_type.value is IncidentType.POLICE_THEFT


# ------------------------------------------------------------------------------------------- inflection, noise


@pytest.mark.parametrize(
    "text",
    [
        "manžela strašně bolí na hrudi a vystřeluje mu to do ruky",
        "má silnou bolest na prsou, tlak na hrudi",
        "manzel ma bolest na hrudi, tlak na hrudi",  # no diacritics
        "MANŽEL MÁ BOLEST NA HRUDI",
    ],
)
def test_chest_pain_in_any_form(triage: Triage, text: str) -> None:
    assert decide(triage, text, dialled="155").incident_type.value is IncidentType.MED_CHEST_PAIN


def test_transcript_without_diacritics_still_finds_cardiac_arrest(triage: Triage) -> None:
    d = decide(triage, "manzel spadl, nereaguje, nedycha, hrudnik se nehybe")
    assert d.tcpr.value is True


def test_misheard_word_matches_fuzzily_with_lower_weight(triage: Triage) -> None:
    d = decide(triage, "manželka rodí, má kontrahce každé dvě minuty", dialled="155")
    assert d.incident_type.value is IncidentType.MED_CHILDBIRTH
    fuzzy = [e for e in d.incident_type.evidence if "kontrahce" in e.words]
    assert fuzzy and fuzzy[0].weight < 1.0


# ------------------------------------------------------------------------------------------- languages


@pytest.mark.parametrize(
    ("language", "text", "itype", "primary", "tcpr"),
    [
        (
            "de",
            "Mein Vater ist zusammengebrochen, er reagiert nicht und atmet nicht mehr!",
            IncidentType.MED_CARDIAC_ARREST,
            Agency.ZZS,
            True,
        ),
        (
            "en",
            "There is a fire in our apartment building, the kitchen is in flames, smoke everywhere",
            IncidentType.FIRE_BUILDING,
            Agency.HZS,
            False,
        ),
        (
            "en",
            "My husband collapsed, he is unresponsive and not breathing",
            IncidentType.MED_CARDIAC_ARREST,
            Agency.ZZS,
            True,
        ),
        (
            "ru",
            "Помогите, мужа избили на улице, у него кровь на голове",
            IncidentType.POLICE_ASSAULT,
            Agency.PCR,
            False,
        ),
        ("ru", "Мама упала, не реагирует и не дышит", IncidentType.MED_CARDIAC_ARREST, Agency.ZZS, True),
        ("uk", "Мій батько без свідомості і не дихає", IncidentType.MED_CARDIAC_ARREST, Agency.ZZS, True),
        (
            "uk",
            "Сталася аварія, машина перекинулася, водій затиснутий",
            IncidentType.TRAFFIC_ACCIDENT,
            Agency.ZZS,
            False,
        ),
        ("sk", "Horí dom, vnútri sú ešte ľudia", IncidentType.FIRE_BUILDING, Agency.HZS, False),
        ("sk", "Otec nereaguje a nedýcha", IncidentType.MED_CARDIAC_ARREST, Agency.ZZS, True),
        (
            "vi",
            "Cứu với, nhà tôi đang cháy, có khói rất nhiều",
            IncidentType.FIRE_BUILDING,
            Agency.HZS,
            False,
        ),
        ("vi", "Chồng tôi bất tỉnh và không thở", IncidentType.MED_CARDIAC_ARREST, Agency.ZZS, True),
    ],
)
def test_other_languages(
    triage: Triage, language: str, text: str, itype: IncidentType, primary: Agency, tcpr: bool
) -> None:
    d = decide(triage, text, language=language)
    assert d.incident_type.value is itype
    assert d.primary_agency is primary
    assert d.tcpr.value is tcpr


# ------------------------------------------------------------------------------------------- dialled number


def test_dialled_number_is_a_prior_not_the_answer(triage: Triage) -> None:
    d = decide(triage, "Hasiči? Manžel má hroznou bolest na hrudi, je celý zpocený.", dialled="150")
    assert d.primary_agency is Agency.ZZS
    assert d.desk is DeskCode.ZZS
    assert not d.unsure


def test_nothing_heard_yet_routes_by_dialled_number(triage: Triage) -> None:
    d = decide(triage, "", dialled="150")
    assert d.unsure
    assert d.desk is DeskCode.HZS
    assert d.alternatives


def test_unclear_short_call_goes_to_dialled_desk_with_candidates(triage: Triage) -> None:
    d = decide(triage, "haló, prosím vás, pomozte", dialled="158")
    assert d.unsure
    assert d.desk is DeskCode.PCR
    assert d.incident_type.value is IncidentType.POLICE_OTHER
    assert d.alternatives


def test_long_call_with_no_emergency_keeps_the_dialled_agency(triage: Triage) -> None:
    # Safety rule (issue 12): words the phrase lists do not know are no proof of a pocket dial; the type is
    # not guessed, SILENT_OR_HOAX is the first candidate and the dialled agency (112 -> HZS) stays.
    text = (
        "no a von říkal že to přiveze až ve čtvrtek, jo jo, vezmi ten větší, je ve slevě, "
        "a kolik tam máš těch rohlíků, to nechci, to je drahý, tak zítra u nás, ahoj, měj se"
    )
    d = decide(triage, text, dialled="112")
    assert d.unsure
    assert d.incident_type.value is IncidentType.UNKNOWN
    assert d.alternatives[0].value is IncidentType.SILENT_OR_HOAX
    assert [a.value for a in d.agencies] == [Agency.HZS]
    assert d.desk is DeskCode.D112


def test_laughing_prank_caller_is_a_hoax(triage: Triage) -> None:
    d = decide(triage, "Hoří nám škola, hahaha, ty vole, dělám si srandu", dialled="150")
    assert d.incident_type.value is IncidentType.SILENT_OR_HOAX


# ------------------------------------------------------------------------------------------- explainability


def _dev_calls() -> list[dict]:
    return [json.loads(line) for line in DEV_SET.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_every_evidence_points_at_words_of_the_transcript(triage: Triage) -> None:
    for call in _dev_calls():
        text = call["caller"]
        d = decide(triage, text, dialled=call["dialed"], language=call["language"])
        evidence = [
            *d.incident_type.evidence,
            *d.tcpr.evidence,
            *d.priority.evidence,
            *(e for a in d.agencies for e in a.evidence),
            *(d.location.evidence if d.location else ()),
        ]
        for ev in evidence:
            assert ev.rule and ev.span is not None, (call["id"], ev)
            start, end = ev.span
            for word in ev.words:
                assert word in text[start:end], (call["id"], ev)


def test_decision_names_the_rule_and_words_behind_the_type(triage: Triage) -> None:
    d = decide(triage, "Hoří stodola u souseda, plameny jsou vidět ze silnice.", dialled="150")
    assert d.incident_type.value is IncidentType.FIRE_BUILDING
    rules = {e.rule.split("/")[0] for e in d.incident_type.evidence}
    assert rules == {"type.FIRE_BUILDING.building_fire"}
    words = {w for e in d.incident_type.evidence for w in e.words}
    assert {"Hoří", "stodola"} <= words
    assert d.rules_version.startswith(triage.protocol.version)


# ------------------------------------------------------------------------------------------- robustness


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(max_size=300),
    dialled=st.sampled_from(["112", "150", "155", "158", "156", "999", ""]),
    language=st.sampled_from(["cs", "de", "en", "ru", "uk", "sk", "vi", "xx", ""]),
)
def test_any_input_gives_a_decision(triage: Triage, text: str, dialled: str, language: str) -> None:
    d = triage.decide(TriageInput(dialled=dialled, language=language, transcript=text))
    assert d.desk in set(DeskCode)
    assert 1 <= d.priority.value <= 3
    assert 0.0 <= d.incident_type.confidence <= 1.0


def test_cut_off_breathing_word_still_raises_tcpr(triage: Triage) -> None:
    """ASR cut "nedejchá" short: T-CPR words are matched harder than the rest (a false alarm is cheaper)."""
    d = decide(triage, "manžel se zhroutil, leží na koberci a nedejc")
    assert d.tcpr.value is True
    assert d.tcpr.evidence and any("nedejc" in e.words for e in d.tcpr.evidence)


def test_misheard_german_breathing_word_still_raises_tcpr(triage: Triage) -> None:
    d = decide(triage, "Mein Mann admet nicht mehr und reagiert nicht", language="de")
    assert d.tcpr.value is True


@pytest.mark.parametrize(
    "heard",
    ["nedíhá", "nedíka", "nedejká", "nedíká"],  # "nedýchá" / "nedejchá" as Whisper returned them (corpus)
)
def test_breathing_word_as_whisper_mishears_it_still_raises_tcpr(triage: Triage, heard: str) -> None:
    """y/i sound alike in Czech, and "ch" comes back as "h" or "k" on telephone audio."""
    d = decide(triage, f"Manžel leží na zemi, nereaguje a {heard}, pomozte", dialled="155")
    assert d.tcpr.value is True
    assert any(heard in e.words for e in d.tcpr.evidence)


def test_sound_alike_breathing_word_without_the_negation_is_breathing(triage: Triage) -> None:
    d = decide(triage, "Manžel leží na zemi, nereaguje, ale díhá normálně", dialled="155")
    assert d.tcpr.value is False


def test_real_word_near_a_critical_word_is_not_bent_into_it(triage: Triage) -> None:
    d = decide(triage, "V koupelně teče sprcha a na chodbě je dusno.", dialled="155")
    assert d.tcpr.value is False


def test_obvious_death_gets_police_and_no_cpr(triage: Triage) -> None:
    d = decide(triage, "Babička nereaguje, nedýchá, je studená a ztuhlá, asi už je mrtvá několik hodin.")
    assert d.tcpr.value is False
    assert Agency.PCR in agencies(d)


def test_panic_attack_is_psychiatric_without_police(triage: Triage) -> None:
    d = decide(triage, "Mám záchvat paniky, buší mi srdce a bojím se, že umřu.", dialled="155")
    assert d.incident_type.value is IncidentType.MED_PSYCHIATRIC
    assert agencies(d) == [Agency.ZZS]


def test_cardiac_arrest_always_brings_the_ambulance(triage: Triage) -> None:
    d = decide(triage, "Na přejezdu srazil vlak auto, řidič nereaguje a nedýchá.", dialled="158")
    assert d.tcpr.value is True
    assert d.primary_agency is Agency.ZZS
    assert d.priority.value == 1
