from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intake.domain import Call, CallState, Location, LocationSource
from intake.errors import ValidationFailed
from intake.location import (
    DEFAULT_PLACES_CSV,
    FusionPolicy,
    Place,
    PlaceGazetteer,
    best_location,
    fuse,
    haversine_m,
    label_with_place,
    location_from_caller_country,
    location_from_geofix,
    location_from_spoken,
    match_call_for_sms,
    rank_locations,
)
from intake.numbers import parse_caller_number
from routing.types import SpokenLocation
from telephony.events import GeoFix
from telephony.location.aml import decode_aml
from telephony.location.pidf_lo import parse_pidf_lo

NOW = datetime(2026, 11, 27, 10, 50, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parents[1] / "fixtures" / "location"
GAZETTEER_CSV = FIXTURES / "karlovarsky-kraj-casti-obci.csv"  # copy of the shared RÚIAN gazetteer


def at(seconds_ago: float) -> datetime:
    return NOW - timedelta(seconds=seconds_ago)


def loc(
    source: LocationSource, seconds_ago: float = 30, radius: float | None = None, **kw: object
) -> Location:
    lat = kw.pop("lat", 50.23)
    lon = kw.pop("lon", 12.87)
    return Location(source=source, lat=lat, lon=lon, radius_m=radius, at=at(seconds_ago), **kw)  # type: ignore[arg-type]


def test_sources_rank_aml_gnss_ecall_pidf_cell_wifi_spoken_country() -> None:
    history = [
        Location(LocationSource.CALLER_COUNTRY, country="CZ", at=at(5)),
        Location(LocationSource.SPOKEN, municipality="Sokolov", at=at(5)),
        loc(LocationSource.AML_CELL, radius=900),
        loc(LocationSource.PIDF_LO, radius=50),
        loc(LocationSource.ECALL, radius=150),
        loc(LocationSource.AML_GNSS, radius=14),
    ]
    order = [ranked.location.source for ranked in rank_locations(history, NOW)]
    assert order == [
        LocationSource.AML_GNSS,
        LocationSource.ECALL,
        LocationSource.PIDF_LO,
        LocationSource.AML_CELL,
        LocationSource.SPOKEN,
        LocationSource.CALLER_COUNTRY,
    ]


def test_a_better_source_wins_even_with_a_worse_radius() -> None:
    gnss = loc(LocationSource.AML_GNSS, radius=500)
    pidf = loc(LocationSource.PIDF_LO, radius=10)
    assert best_location([pidf, gnss], NOW) == gnss


def test_cell_and_wifi_share_a_rank_and_the_smaller_radius_wins() -> None:
    cell = loc(LocationSource.AML_CELL, radius=1200)
    wifi = loc(LocationSource.AML_WIFI, radius=40)
    assert best_location([cell, wifi], NOW) == wifi
    cell_close = loc(LocationSource.AML_CELL, radius=30)
    assert best_location([cell_close, wifi], NOW) == cell_close


def test_ties_on_source_and_radius_go_to_the_more_recent_fix() -> None:
    older = loc(LocationSource.AML_GNSS, seconds_ago=120, radius=10, lat=50.1)
    newer = loc(LocationSource.AML_GNSS, seconds_ago=20, radius=10, lat=50.2)
    assert best_location([newer, older], NOW) == newer
    assert best_location([older, newer], NOW) == newer


def test_unknown_radius_loses_to_a_known_one_of_the_same_source() -> None:
    vague = loc(LocationSource.PIDF_LO, radius=None, seconds_ago=1)
    precise = loc(LocationSource.PIDF_LO, radius=300, seconds_ago=200)
    assert best_location([vague, precise], NOW) == precise


def test_a_stale_fix_loses_to_a_fresh_fix_of_a_weaker_source() -> None:
    stale_gnss = loc(LocationSource.AML_GNSS, seconds_ago=3600, radius=5)
    fresh_cell = loc(LocationSource.AML_CELL, seconds_ago=60, radius=2000)
    ranked = rank_locations([stale_gnss, fresh_cell], NOW, FusionPolicy(max_age=timedelta(minutes=15)))
    assert ranked[0].location == fresh_cell
    assert ranked[1].stale and "stale" in ranked[1].reason


def test_max_age_is_configurable() -> None:
    gnss = loc(LocationSource.AML_GNSS, seconds_ago=3600, radius=5)
    cell = loc(LocationSource.AML_CELL, seconds_ago=60, radius=2000)
    assert best_location([gnss, cell], NOW, FusionPolicy(max_age=timedelta(hours=2))) == gnss


def test_a_stale_fix_is_still_better_than_nothing() -> None:
    stale = loc(LocationSource.AML_GNSS, seconds_ago=7200, radius=5)
    assert best_location([stale], NOW) == stale


def test_call_taker_entry_overrides_everything_even_when_old_and_vague() -> None:
    taker = Location(LocationSource.CALL_TAKER, municipality="Loket", street="Sportovní", at=at(4000))
    history = [taker, loc(LocationSource.AML_GNSS, seconds_ago=1, radius=3), loc(LocationSource.ECALL)]
    fused = fuse(history, NOW)
    assert fused.best == taker
    assert "call taker" in fused.explanation


def test_the_newest_call_taker_entry_wins_over_an_earlier_one() -> None:
    first = Location(LocationSource.CALL_TAKER, municipality="Loket", at=at(300))
    corrected = Location(LocationSource.CALL_TAKER, municipality="Nové Sedlo", at=at(100))
    assert best_location([corrected, first], NOW) == corrected


def test_fuse_keeps_the_whole_history_in_arrival_order() -> None:
    history = [loc(LocationSource.AML_CELL, radius=900), loc(LocationSource.AML_GNSS, radius=10)]
    fused = fuse(history, NOW)
    assert fused.history == tuple(history)
    assert fused.best == history[1]
    assert [r.rank for r in fused.ranking] == [0, 1]


def test_no_locations_or_only_empty_ones_give_no_best_location() -> None:
    assert fuse([], NOW).best is None
    assert fuse([], NOW).explanation == "no location reported"
    empty = Location(LocationSource.PIDF_LO, at=at(1))
    fused = fuse([empty], NOW)
    assert fused.best is None and not fused.ranking[0].usable


def test_every_ranking_reason_names_source_accuracy_and_age() -> None:
    ranked = rank_locations([loc(LocationSource.AML_GNSS, seconds_ago=42, radius=14, confidence=0.68)], NOW)
    assert ranked[0].reason == "source aml-gnss (preference 1), accuracy 14 m, confidence 68%, 42 s old"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(LocationSource)),
            st.floats(min_value=0, max_value=7200),
            st.none() | st.floats(min_value=0, max_value=50_000),
        ),
        max_size=12,
    )
)
def test_ranking_is_a_permutation_with_call_takers_first_and_fresh_before_stale(
    entries: list[tuple[LocationSource, float, float | None]],
) -> None:
    history = [loc(source, seconds_ago=age, radius=radius) for source, age, radius in entries]
    ranked = rank_locations(history, NOW)
    assert sorted(map(id, (r.location for r in ranked))) == sorted(map(id, history))
    flags = [
        (
            r.location.source is not LocationSource.CALL_TAKER,
            r.stale and r.location.source is not LocationSource.CALL_TAKER,
        )
        for r in ranked
    ]
    assert flags == sorted(flags)
    if history:
        assert rank_locations(list(reversed(history)), NOW)[0].location in history


# ------------------------------------------------------------------------------ conversions


def test_aml_geofix_becomes_a_location_labelled_with_the_nearest_town() -> None:
    places = PlaceGazetteer.from_csv()
    text = 'A"ML=1;lt=+50.23112;lg=+12.87234;rd=14;top=20261127104702;lc=68;pm=G;mcc=230;mnc=03;ml=89'
    fix = decode_aml(text, NOW).to_geofix()
    assert fix is not None
    location = location_from_geofix(fix, places)
    assert location.source is LocationSource.AML_GNSS
    assert (location.lat, location.lon, location.radius_m, location.confidence) == (
        50.23112,
        12.87234,
        14.0,
        0.68,
    )
    assert (location.municipality, location.part) == ("Karlovy Vary", "Karlovy Vary")


def test_pidf_civic_address_maps_to_municipality_part_street_and_house_number() -> None:
    circle, civic = parse_pidf_lo((FIXTURES / "pidf_circle_civic.xml").read_bytes(), NOW)
    location = location_from_geofix(civic)
    assert location.source is LocationSource.PIDF_LO
    assert (location.municipality, location.part, location.street, location.house_number) == (
        "Karlovy Vary",
        "Drahovice",
        "Vítězná",
        "52",
    )
    assert location.country == "CZ"
    assert location.text() == "Vítězná 52, Drahovice, Karlovy Vary"
    assert location_from_geofix(circle).radius_m == 35.0


def test_a_fix_far_from_any_known_place_is_not_labelled() -> None:
    places = PlaceGazetteer.from_csv()
    remote = Location(
        LocationSource.AML_GNSS, lat=50.30, lon=12.55, radius_m=10, at=NOW
    )  # forest, Krušné hory
    assert label_with_place(remote, places).municipality is None


def test_unknown_geofix_source_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed):
        location_from_geofix(GeoFix(source="carrier-pigeon", lat=50.0, lon=12.0))


def test_spoken_town_gets_the_coordinates_of_its_known_centre() -> None:
    places = PlaceGazetteer.from_csv()
    spoken = SpokenLocation(municipality="Sokolov", street="Rokycanova", house_number="12", confidence=0.8)
    location = location_from_spoken(spoken, NOW, places)
    assert location is not None and location.source is LocationSource.SPOKEN
    assert location.lat == pytest.approx(50.18, abs=0.02) and location.radius_m is None
    assert location.text() == "Rokycanova 12, Sokolov"
    assert location.confidence == 0.8


def test_spoken_road_without_a_known_place_has_no_coordinates() -> None:
    spoken = SpokenLocation(road="D6", road_km="132")
    location = location_from_spoken(spoken, NOW, PlaceGazetteer.from_csv())
    assert location is not None and location.lat is None and location.road == "D6 km 132"
    assert location_from_spoken(SpokenLocation(), NOW) is None


def test_place_lookup_by_municipality_and_part_is_case_insensitive() -> None:
    places = PlaceGazetteer.from_csv()
    cheb = places.find("cheb")
    assert cheb is not None and cheb.part == "Cheb"
    assert places.find("Nonexistent") is None and places.find(None) is None


def test_caller_country_becomes_the_weakest_location() -> None:
    assert location_from_caller_country(None, NOW) is None
    country = location_from_caller_country("de", NOW)
    assert country is not None and country.country == "DE" and country.source is LocationSource.CALLER_COUNTRY


# ---------------------------------------------------------------------------------- nearest place


@pytest.mark.parametrize(
    ("lat", "lon", "municipality", "part"),
    [
        (50.23112, 12.87234, "Karlovy Vary", "Karlovy Vary"),  # Vřídelní kolonáda
        (50.07936, 12.37157, "Cheb", "Cheb"),  # náměstí Krále Jiřího z Poděbrad
        (50.18147, 12.64033, "Sokolov", "Sokolov"),
        (50.22436, 12.19451, "Aš", "Aš"),
        (49.96291, 12.70222, "Mariánské Lázně", "Mariánské Lázně"),
        (50.18670, 12.74350, "Loket", "Loket"),
    ],
)
def test_nearest_place_names_the_town_around_known_coordinates(
    lat: float, lon: float, municipality: str, part: str
) -> None:
    nearest = PlaceGazetteer.from_csv().nearest_place(lat, lon)
    assert nearest is not None
    assert (nearest.municipality, nearest.part) == (municipality, part)
    assert nearest.distance_m < 2000


def test_nearest_place_is_a_municipality_part_distance_tuple() -> None:
    municipality, part, distance = PlaceGazetteer.from_csv().nearest_place(50.0795, 12.3739)  # type: ignore[misc]
    assert (municipality, part) == ("Cheb", "Cheb") and distance < 500


def test_nearest_place_beyond_the_maximum_distance_is_none() -> None:
    places = PlaceGazetteer.from_csv()
    assert places.nearest_place(48.2082, 16.3738, max_distance_m=20_000) is None  # Vienna
    far = places.nearest_place(48.2082, 16.3738)
    assert far is not None and far.distance_m > 250_000


def test_nearest_place_rejects_impossible_coordinates() -> None:
    with pytest.raises(ValidationFailed):
        PlaceGazetteer.from_csv().nearest_place(95.0, 12.0)
    with pytest.raises(ValidationFailed):
        PlaceGazetteer.from_csv().nearest_place(float("nan"), 12.0)


def test_shipped_places_all_belong_to_gazetteer_municipalities_and_parts() -> None:
    with DEFAULT_PLACES_CSV.open(encoding="utf-8") as handle:
        places = list(csv.DictReader(handle))
    with GAZETTEER_CSV.open(encoding="utf-8") as handle:
        gazetteer = list(csv.DictReader(handle))
    parts = {(row["kodcobce"], row["nazcobce"], row["kodobce"], row["nazobce"]) for row in gazetteer}
    for place in places:
        assert (place["part_code"], place["part"], place["municipality_code"], place["municipality"]) in parts
        assert 49.9 <= float(place["lat"]) <= 50.45 and 12.09 <= float(place["lon"]) <= 13.3
    assert len({p["municipality_code"] for p in places}) == 73
    assert len({row["kodobce"] for row in gazetteer}) == 134


def test_an_empty_gazetteer_is_refused_and_a_custom_one_works() -> None:
    with pytest.raises(ValidationFailed):
        PlaceGazetteer([])
    custom = PlaceGazetteer([Place("Horní Slavkov", 50.1387, 12.8077, "Horní Slavkov", "Horní Slavkov")])
    nearest = custom.nearest_place(50.14, 12.81)
    assert nearest is not None and nearest.municipality == "Horní Slavkov"
    assert nearest.distance_m == pytest.approx(haversine_m(50.14, 12.81, 50.1387, 12.8077))


def test_a_malformed_places_file_is_a_validation_error(tmp_path: Path) -> None:
    bad = tmp_path / "places.csv"
    bad.write_text("name,lat\nCheb,north\n", encoding="utf-8")
    with pytest.raises(ValidationFailed):
        PlaceGazetteer.from_csv(bad)


# ------------------------------------------------------------------------------ AML SMS to call


def call(call_id: str, caller: str, offered_s_ago: float, ended_s_ago: float | None = None) -> Call:
    ended = None if ended_s_ago is None else at(ended_s_ago)
    return Call(
        id=call_id,
        call_ref=f"ref-{call_id}",
        source="sip",
        dialled="112",
        caller=parse_caller_number(caller),
        state=CallState.CONNECTED if ended is None else CallState.ENDED,
        offered_at=at(offered_s_ago),
        ended_at=ended,
    )


def test_aml_sms_is_matched_to_the_live_call_of_the_same_number_in_any_notation() -> None:
    calls = [call("a", "+420777123456", 40), call("b", "+420608111222", 30)]
    for sender in ("+420777123456", "00420777123456", "777123456"):
        matched = match_call_for_sms(sender, NOW, calls)
        assert matched is not None and matched.id == "a"


def test_aml_sms_prefers_the_live_call_over_an_earlier_ended_one() -> None:
    calls = [call("old", "+420777123456", 400, ended_s_ago=300), call("new", "+420777123456", 20)]
    matched = match_call_for_sms("+420777123456", NOW, calls)
    assert matched is not None and matched.id == "new"


def test_late_aml_sms_still_locates_an_abandoned_call_for_the_call_back() -> None:
    calls = [call("abandoned", "+420777123456", 200, ended_s_ago=120)]
    matched = match_call_for_sms("+420777123456", NOW, calls)
    assert matched is not None and matched.id == "abandoned"


def test_aml_sms_without_a_matching_call_or_number_gives_none() -> None:
    calls = [
        call("other", "+420608111222", 30),
        call("long-gone", "+420777123456", 7200, ended_s_ago=3600),
        call("future", "+420777123456", -600),
    ]
    assert match_call_for_sms("+420777123456", NOW, calls) is None
    assert match_call_for_sms("not a number", NOW, calls) is None
