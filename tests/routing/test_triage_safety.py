"""Safety by construction (issue 12): rules every decision passes through, whatever produced it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.safety import carry_forward, safeguard, unheard
from routing.triage import Triage
from routing.types import Evidence, Scored, TriageDecision, TriageInput
from routing.vocabulary import AGENCY_BY_DIALLED, DESK_BY_AGENCY, Agency, DeskCode, IncidentType

EMERGENCY_NUMBERS = ("112", "150", "155", "158", "156")


def decide(triage: Triage, text: str, dialled: str = "112", language: str = "cs") -> TriageDecision:
    return triage.decide(TriageInput(dialled=dialled, language=language, transcript=text))


@pytest.mark.parametrize("dialled", EMERGENCY_NUMBERS)
@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_no_transcript_is_unknown_with_the_dialled_agency(triage: Triage, dialled: str, text: str) -> None:
    d = decide(triage, text, dialled)
    assert d.incident_type.value is IncidentType.UNKNOWN
    assert d.incident_type.value is not IncidentType.SILENT_OR_HOAX
    assert [a.value for a in d.agencies] == [AGENCY_BY_DIALLED[dialled]]
    assert d.unsure
    assert len(d.alternatives) >= 2
    assert not d.tcpr.value


def test_unknown_routes_155_to_the_medical_desk(triage: Triage) -> None:
    d = decide(triage, "", "155")
    assert d.desk is DeskCode.ZZS
    assert d.primary_agency is Agency.ZZS


def test_ordinary_words_outside_the_phrase_lists_keep_the_dialled_agency(triage: Triage) -> None:
    # an ordinary police matter told in words no phrase list holds: never dropped to "hoax"
    text = (
        "dobrý den, já bych potřeboval, no, ten soused zase, on tady dělá takové věci s tím autem "
        "a s tou holkou, já nevím jak to říct, je to prostě divné a trvá to už hodinu, přijeďte se podívat"
    )
    d = decide(triage, text, "158")
    assert d.agencies, "an emergency number never ends with no agency without proof of a prank"
    assert d.agencies[0].value is Agency.PCR


def test_a_prank_names_the_words_that_prove_it(triage: Triage) -> None:
    d = decide(triage, "Hoří nám škola, hahaha, ty vole, dělám si srandu", "150")
    assert d.incident_type.value is IncidentType.SILENT_OR_HOAX
    assert d.agencies == ()
    assert any("no agency: the caller said" in note for note in d.notes)
    assert any(ev.words for ev in d.incident_type.evidence)


@settings(max_examples=150, deadline=None)
@given(
    dialled=st.sampled_from(EMERGENCY_NUMBERS),
    words=st.lists(
        st.sampled_from(
            [
                "no",
                "jo",
                "tak",
                "prostě",
                "tady",
                "to",
                "ten",
                "on",
                "ona",
                "auto",
                "dům",
                "pes",
                "kočka",
                "zahrada",
                "voda",
                "večer",
                "ráno",
                "soused",
                "babička",
                "děda",
                "kamarád",
                "obchod",
                "ulice",
                "nevím",
                "asi",
                "možná",
                "přijeďte",
                "prosím",
            ]
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_emergency_number_never_yields_no_agency_without_proof(
    triage: Triage, dialled: str, words: list[str]
) -> None:
    d = decide(triage, " ".join(words), dialled)
    assert d.agencies or any("no agency: the caller said" in note for note in d.notes)


def test_dialled_agency_kept_first_when_the_words_are_not_clear() -> None:
    inp = TriageInput(dialled="158", transcript="něco se tady děje")
    weak = TriageDecision(
        agencies=(Scored(Agency.HZS, 0.2),),
        incident_type=Scored(IncidentType.FIRE_OTHER, 0.2),
        priority=Scored(2, 0.2),
        tcpr=Scored(False, 0.0),
        location=None,
        desk=DeskCode.PCR,
        unsure=True,
    )
    out = safeguard(weak, inp, (), clear=False)
    assert [a.value for a in out.agencies] == [Agency.PCR, Agency.HZS]
    assert len(out.alternatives) >= 2
    clear = safeguard(replace(weak, unsure=False), inp, (), clear=True)
    assert [a.value for a in clear.agencies] == [Agency.HZS]


def test_words_pointing_elsewhere_win_over_the_dialled_number(triage: Triage) -> None:
    d = decide(triage, "hoří nám dům, z oken se valí černý kouř, sousedka je ještě uvnitř", "158")
    assert d.agencies[0].value is Agency.HZS


def _decision(
    tcpr: bool, priority: int, itype: IncidentType = IncidentType.MED_UNCONSCIOUS
) -> TriageDecision:
    return TriageDecision(
        agencies=(Scored(Agency.ZZS, 0.8),),
        incident_type=Scored(itype, 0.8),
        priority=Scored(priority, 0.8),
        tcpr=Scored(
            tcpr, 0.9 if tcpr else 0.1, (Evidence("tcpr.not_breathing", ("nedýchá",)),) if tcpr else ()
        ),
        location=None,
        desk=DeskCode.ZZS,
    )


def test_cardiac_arrest_is_sticky_against_a_worse_final(triage: Triage) -> None:
    partial = decide(triage, "manžel upadl, nereaguje a nedýchá", "155")
    assert partial.tcpr.value
    # the final lost the "ne-": "nereaguje a dýchá"; a worse transcript never clears the flag
    final = decide(triage, "manžel upadl, nereaguje a dýchá normálně", "155")
    assert not final.tcpr.value
    applied = carry_forward(partial, final)
    assert applied.tcpr.value
    assert applied.tcpr.evidence == partial.tcpr.evidence
    assert applied.priority.value == 1
    assert applied.agencies[0].value is Agency.ZZS or Agency.ZZS in [a.value for a in applied.agencies]
    assert any("only a call taker clears it" in n for n in applied.notes)


def test_sticky_cardiac_arrest_adds_the_ambulance() -> None:
    previous = _decision(True, 1)
    current = replace(
        _decision(False, 3, IncidentType.POLICE_OTHER),
        agencies=(Scored(Agency.PCR, 0.6),),
        desk=DeskCode.PCR,
    )
    applied = carry_forward(previous, current)
    assert applied.tcpr.value
    assert applied.agencies[0].value is Agency.ZZS
    assert applied.desk is DeskCode.ZZS
    assert applied.priority.value == 1


@given(
    first=st.tuples(st.booleans(), st.sampled_from([1, 2, 3])),
    rest=st.lists(st.tuples(st.booleans(), st.sampled_from([1, 2, 3])), max_size=8),
)
def test_priority_never_drops_and_tcpr_never_clears_along_a_call(
    first: tuple[bool, int], rest: list[tuple[bool, int]]
) -> None:
    applied = carry_forward(None, _decision(*first))
    seen_tcpr, best_priority = applied.tcpr.value, applied.priority.value
    for tcpr, priority in rest:
        applied = carry_forward(applied, _decision(tcpr, priority))
        seen_tcpr = seen_tcpr or tcpr
        best_priority = min(best_priority, priority)
        assert applied.tcpr.value == seen_tcpr
        assert applied.priority.value == best_priority


def test_first_decision_passes_unchanged() -> None:
    current = _decision(False, 3)
    assert carry_forward(None, current) is current


def test_unheard_for_a_number_we_do_not_take_still_decides() -> None:
    d = unheard(TriageInput(dialled="999", transcript=""))
    assert d.incident_type.value is IncidentType.UNKNOWN
    assert d.desk is DeskCode.D112
    assert d.agencies == ()


def _unsure_decision(agencies: tuple[Agency, ...], desk: DeskCode) -> TriageDecision:
    return TriageDecision(
        agencies=tuple(Scored(a, 0.7) for a in agencies),
        incident_type=Scored(IncidentType.MED_TRAUMA, 0.3),
        priority=Scored(2, 0.3),
        tcpr=Scored(False, 0.0),
        location=None,
        desk=desk,
        unsure=True,
    )


def test_desk_follows_the_agencies_when_the_dialled_desk_serves_none_of_them() -> None:
    # dev-023: an elderly fall on 158, the words clearly for the ambulance, the type unsure
    inp = TriageInput(dialled="158", transcript="upadla jsem v koupelně a nemůžu vstát, bolí mě kyčel")
    out = safeguard(_unsure_decision((Agency.ZZS,), DeskCode.PCR), inp, (), clear=True)
    assert [a.value for a in out.agencies] == [Agency.ZZS]
    assert out.desk is DeskCode.ZZS


def test_unsure_decision_keeps_the_dialled_desk_while_it_serves_one_of_the_agencies() -> None:
    inp = TriageInput(dialled="158", transcript="něco se tady děje, někdo je zraněný")
    out = safeguard(_unsure_decision((Agency.ZZS, Agency.PCR), DeskCode.ZZS), inp, (), clear=True)
    assert out.desk is DeskCode.PCR
    joint = safeguard(
        _unsure_decision((Agency.ZZS,), DeskCode.ZZS), replace(inp, dialled="112"), (), clear=True
    )
    assert joint.desk is DeskCode.D112  # the joint desk takes unclear calls whatever the agencies


@settings(max_examples=150, deadline=None)
@given(
    dialled=st.sampled_from(EMERGENCY_NUMBERS),
    words=st.lists(
        st.sampled_from(
            [
                "upadla",
                "koupelna",
                "kyčel",
                "nemůžu",
                "vstát",
                "hoří",
                "kouř",
                "auto",
                "bouralo",
                "ukradli",
                "soused",
                "bije",
                "nedýchá",
                "policie",
                "záchranka",
                "hasiči",
                "ležím",
                "na",
                "zemi",
                "krev",
                "pomoc",
            ]
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_desk_and_agencies_always_agree(triage: Triage, dialled: str, words: list[str]) -> None:
    d = decide(triage, " ".join(words), dialled)
    if d.agencies and d.desk is not DeskCode.D112:
        assert d.desk in {DESK_BY_AGENCY[a.value] for a in d.agencies}, (d.desk, d.agencies)
    # One story per decision: a T-CPR flag always comes with the cardiac-arrest type.
    if d.tcpr.value:
        assert d.incident_type.value is IncidentType.MED_CARDIAC_ARREST, (d.incident_type, d.tcpr)


@pytest.mark.parametrize(
    "text",
    [
        "Srdce se mu zastavilo.",  # heard as hoax (type head) beside a raised T-CPR before the rule
        "Asi má zástavu srdce.",  # heard as psychiatric
        "Přestal dýchat.",  # heard as breathing problem
    ],
)
def test_a_raised_tcpr_names_the_cardiac_arrest_type_and_keeps_the_model_type_as_alternative(
    triage: Triage, text: str
) -> None:
    d = decide(triage, text, "155")
    assert d.tcpr.value and d.priority.value == 1
    assert d.incident_type.value is IncidentType.MED_CARDIAC_ARREST
    assert d.incident_type.evidence  # the T-CPR evidence explains the type


def test_dev_023_elderly_fall_on_158_goes_to_the_desk_of_its_agencies(triage: Triage) -> None:
    text = (
        "Haló, policie? Promiňte, já nevím, kam mám volat, já jsem to nikdy nedělala. Je mi osmdesát jedna "
        "let, včera večer jsem upadla v koupelně, uklouzla jsem na předložce, a nemůžu vstát, strašně mě bolí "
        "kyčel, ta levá, a noha je taková divně vytočená. Ležím tady na zemi celou noc."
    )
    d = decide(triage, text, "158")
    assert d.desk in {DESK_BY_AGENCY[a.value] for a in d.agencies}


def test_one_story_keeps_the_likelier_reading_of_type_and_leading_agency(triage: Triage) -> None:
    """The type head and the agencies' head disagree (a police matter led by the fire brigade): the reading
    with the higher joint probability wins, keeping the type (its likeliest agency leads) or the agency (the
    likeliest type it serves)."""
    from routing.triage import one_story

    led_by_fire = (Scored(Agency.HZS, 0.54),)
    police_ranked = [(IncidentType.POLICE_OTHER, 0.36), (IncidentType.FIRE_OTHER, 0.05)]
    story = one_story(
        IncidentType.POLICE_OTHER, led_by_fire, police_ranked, {"HZS": 0.54, "PCR": 0.37}, triage.protocol, {}
    )
    assert story is not None and story[0] is IncidentType.POLICE_OTHER and story[2] is Agency.PCR
    fire_ranked = [(IncidentType.POLICE_OTHER, 0.30), (IncidentType.FIRE_BUILDING, 0.28)]
    story = one_story(
        IncidentType.POLICE_OTHER, led_by_fire, fire_ranked, {"HZS": 0.9, "PCR": 0.05}, triage.protocol, {}
    )
    assert story is not None and story[0] is IncidentType.FIRE_BUILDING and story[2] is Agency.HZS
    led_by_police = (Scored(Agency.PCR, 0.6),)
    assert (
        one_story(IncidentType.POLICE_OTHER, led_by_police, police_ranked, {"PCR": 0.6}, triage.protocol, {})
        is None
    )


def test_a_suspicious_bag_on_158_is_a_police_matter_led_by_the_police(learned: Triage) -> None:
    """Seen in the demo (dev-001 recognised by Whisper): typed POLICE_OTHER while the fire brigade led."""
    text = (
        "Dobrý den tady na nadraží vchébu, zhalé u pokladen leží už a si hodinu takové velké černé bator. "
        "Nikdo kněmune patří, ptali jsme se lidí okolo,"
    )
    d = decide(learned, text, "158")
    assert d.incident_type.value is IncidentType.POLICE_OTHER
    assert d.agencies[0].value is Agency.PCR and d.desk is DeskCode.PCR
