"""Duplicate incidents: many callers about one event are proposed as one incident."""

from __future__ import annotations

from routing.duplicates import OpenIncident, propose_link, rank_links
from routing.triage import Triage
from routing.types import SpokenLocation, TriageInput
from routing.vocabulary import Agency, IncidentType

T0 = 1_790_000_000.0
FIRE = OpenIncident(
    id="inc-1",
    incident_type=IncidentType.FIRE_BUILDING,
    agencies=(Agency.HZS,),
    created_at=T0,
    municipality="Sokolov",
    street="Rokycanova",
)


def test_twenty_callers_about_one_fire_link_to_one_incident(triage: Triage) -> None:
    texts = [
        "Hoří byt v paneláku, Sokolov, Rokycanova sedum set dvacet jedna, valí se dým!",
        "Dobrý den, v Sokolově na Rokycanově ulici hoří panelák, z okna šlehají plameny.",
        "Hasiči? Sokolov, Rokycanova, hoří tam byt ve třetím patře, je tam kouř.",
    ]
    incidents = [FIRE]
    for i in range(20):
        d = triage.decide(TriageInput(dialled="150", transcript=texts[i % len(texts)]))
        proposal = propose_link(d.incident_type.value, d.location, T0 + 30 + i * 20, incidents)
        assert proposal is not None and proposal.incident_id == "inc-1", texts[i % len(texts)]
        assert any("Sokolov" in r for r in proposal.reasons)


def test_fire_in_another_town_is_a_new_incident() -> None:
    loc = SpokenLocation(municipality="Cheb", street="Rokycanova")
    assert propose_link(IncidentType.FIRE_BUILDING, loc, T0 + 60, [FIRE]) is None


def test_same_town_other_street_is_a_new_incident() -> None:
    loc = SpokenLocation(municipality="Sokolov", street="Husitská")
    assert propose_link(IncidentType.FIRE_BUILDING, loc, T0 + 60, [FIRE]) is None


def test_outside_the_time_window_no_link() -> None:
    loc = SpokenLocation(municipality="Sokolov", street="Rokycanova")
    assert propose_link(IncidentType.FIRE_BUILDING, loc, T0 + 4000, [FIRE], window_s=1800) is None


def test_unrelated_type_at_the_same_place_is_not_linked() -> None:
    loc = SpokenLocation(municipality="Sokolov", street="Rokycanova")
    assert propose_link(IncidentType.POLICE_THEFT, loc, T0 + 60, [FIRE]) is None


def test_related_type_links_with_a_lower_score_and_says_why() -> None:
    crash = OpenIncident(
        "inc-2",
        IncidentType.TRAFFIC_ACCIDENT,
        (Agency.ZZS, Agency.PCR),
        T0,
        road="D6",
        municipality="Sokolov",
    )
    same = propose_link(
        IncidentType.TRAFFIC_ACCIDENT, SpokenLocation(municipality="Sokolov", road="D6"), T0 + 60, [crash]
    )
    burning = propose_link(
        IncidentType.FIRE_VEHICLE, SpokenLocation(municipality="Sokolov", road="D6"), T0 + 60, [crash]
    )
    assert same is not None and burning is not None
    assert burning.score < same.score
    assert any("related types" in r for r in burning.reasons)
    assert any("same road D6" in r for r in burning.reasons)


def test_best_of_several_open_incidents_is_proposed() -> None:
    other = OpenIncident("inc-0", IncidentType.FIRE_BUILDING, (Agency.HZS,), T0 - 600, municipality="Sokolov")
    loc = SpokenLocation(municipality="Sokolov", street="Rokycanova")
    proposal = propose_link(IncidentType.FIRE_BUILDING, loc, T0 + 60, [other, FIRE])
    assert proposal is not None and proposal.incident_id == "inc-1"


def test_no_location_no_link() -> None:
    assert propose_link(IncidentType.FIRE_BUILDING, None, T0 + 60, [FIRE]) is None


def test_rank_links_orders_every_candidate_and_never_links_two_towns() -> None:
    same_street = FIRE
    same_town = OpenIncident(
        id="inc-2",
        incident_type=IncidentType.FIRE_BUILDING,
        agencies=(Agency.HZS,),
        created_at=T0,
        municipality="Sokolov",
    )
    other_town = OpenIncident(
        id="inc-3",
        incident_type=IncidentType.FIRE_BUILDING,
        agencies=(Agency.HZS,),
        created_at=T0,
        municipality="Cheb",
        street="Rokycanova",
    )
    loc = SpokenLocation(municipality="Sokolov", street="Rokycanova")
    ranked = rank_links(IncidentType.FIRE_BUILDING, loc, T0 + 60, [other_town, same_town, same_street])
    assert [p.incident_id for p in ranked] == ["inc-1", "inc-2"]
    assert (
        propose_link(IncidentType.FIRE_BUILDING, loc, T0 + 60, [other_town, same_town, same_street])
        == ranked[0]
    )


def test_an_incident_older_than_its_candidate_is_still_compared() -> None:
    """The console asks about an incident that may be older than the open candidates: time is symmetric."""
    loc = SpokenLocation(municipality="Sokolov", street="Rokycanova")
    assert rank_links(IncidentType.FIRE_BUILDING, loc, T0 - 120, [FIRE])[0].incident_id == "inc-1"
    assert rank_links(IncidentType.FIRE_BUILDING, loc, T0 - 4000, [FIRE], window_s=1800) == []
