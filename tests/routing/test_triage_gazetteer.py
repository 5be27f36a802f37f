"""Spoken places in Karlovarský kraj resolve to a municipality in any grammatical case and language."""

from __future__ import annotations

import pytest

from routing.gazetteer import Gazetteer
from routing.location import extract_location, parse_spoken_number


@pytest.mark.parametrize(
    ("text", "municipality"),
    [
        ("jsme v Chebu u nádraží", "Cheb"),
        ("jedu do Sokolova", None),  # only where the road leads
        ("volám z Karlových Varů", "Karlovy Vary"),
        ("tady v Mariánských Lázních na kolonádě", "Mariánské Lázně"),
        ("v Mariánskejch Lázních", "Mariánské Lázně"),
        ("v marianskych laznich", "Mariánské Lázně"),
        ("wir sind in Marienbad", "Mariánské Lázně"),
        ("ich bin in Karlsbad", "Karlovy Vary"),
        ("kurz nach der Grenze bei Eger", "Cheb"),
        ("wir wohnen in Falkenau", "Sokolov"),
        ("Соколов, вулиця Гуситська", "Sokolov"),
        ("kousek nad Loktem v serpentinách", "Loket"),
        ("v Nejdku na náměstí", "Nejdek"),
        ("ve Františkových Lázních", "Františkovy Lázně"),
        ("za Toužimí směrem na Bečov", "Toužim"),
        ("bydlíme v Nový Roli", "Nová Role"),
        ("před hospodou v Aši", "Aš"),
    ],
)
def test_place_in_any_case_resolves_to_municipality(
    gazetteer: Gazetteer, text: str, municipality: str | None
) -> None:
    found = gazetteer.locate(text)
    assert (found.municipality if found else None) == municipality


def test_stretch_of_road_between_two_towns_names_neither(gazetteer: Gazetteer) -> None:
    assert gazetteer.locate("na jednadvacítce mezi Chebem a Františkovými Lázněmi") is None


def test_route_from_one_town_to_another_is_not_a_location(gazetteer: Gazetteer) -> None:
    assert gazetteer.locate("jeli jsme z Božího Daru dolů na Jáchymov") is None


def test_route_with_a_landmark_near_the_start_resolves(gazetteer: Gazetteer) -> None:
    found = gazetteer.locate("ze Žlutic na Bochov, asi kilometr za Žluticemi")
    assert found is not None and found.municipality == "Žlutice"


def test_ordinary_words_are_not_places(gazetteer: Gazetteer) -> None:
    assert gazetteer.resolve("Asi hodinu hoří suchá tráva, motorová pila tam leží") == []
    assert gazetteer.resolve("hoří nám kuchyň") == []


def test_part_of_municipality_resolves_with_its_postal_code(gazetteer: Gazetteer) -> None:
    found = gazetteer.locate("Karlovy Vary, Drahovice, Vítězná třicet čtyři")
    assert found is not None
    assert found.municipality == "Karlovy Vary"
    assert found.part == "Drahovice"
    assert found.postal_code and found.postal_code.startswith("36")


def test_resolve_reports_matched_words_and_span(gazetteer: Gazetteer) -> None:
    text = "Dobrý den, jsme v Habartově, Nádražní sto třicet šest."
    match = gazetteer.resolve(text)[0]
    assert match.municipality == "Habartov"
    assert match.words == ("Habartově",)
    assert text[match.span[0] : match.span[1]] == "Habartově"
    assert match.score > 0


@pytest.mark.parametrize(
    ("words", "value"),
    [
        ("sto třicet šest", 136),
        ("tři sta čtyřicet", 340),
        ("sedum set dvacet jedna", 721),
        ("tisíc sto dvacet osm", 1128),
        ("sedumnáct set čtyři", 1704),
        ("dvacet dva", 22),
        ("12", 12),
    ],
)
def test_spoken_house_numbers(words: str, value: int) -> None:
    parsed = parse_spoken_number(words.split())
    assert parsed is not None and parsed[0] == value


def test_address_with_street_and_spoken_house_number(gazetteer: Gazetteer) -> None:
    loc = extract_location("Kraslice, Havlíčkova tři sta čtyřicet, první patro.", gazetteer)
    assert loc is not None
    assert (loc.municipality, loc.street, loc.house_number) == ("Kraslice", "Havlíčkova", "340")


@pytest.mark.parametrize(
    ("text", "road"),
    [
        ("bouračka na dé šestce u Sokolova", "D6"),
        ("stojím na D6 směr Cheb", "D6"),
        ("na třináctce za Ostrovem", "I/13"),
        ("na jednadvacítce u odbočky", "I/21"),
    ],
)
def test_roads_as_callers_say_them(gazetteer: Gazetteer, text: str, road: str) -> None:
    loc = extract_location(text, gazetteer)
    assert loc is not None and loc.road == road


def test_road_exit_number(gazetteer: Gazetteer) -> None:
    loc = extract_location("stojím na D6 smer Cheb pri exite 149", gazetteer)
    assert loc is not None and loc.road == "D6" and loc.road_km == "exit 149"


def test_landmark_is_kept_as_said(gazetteer: Gazetteer) -> None:
    loc = extract_location("tady na nádraží v Chebu, v hale u pokladen", gazetteer)
    assert loc is not None and loc.landmark is not None and "nádraží" in loc.landmark


def test_caller_correcting_the_house_number_is_heard(gazetteer: Gazetteer) -> None:
    loc = extract_location(
        "Sokolov, Rokycanova, sedum set dvacet... sedum set dvacet jedna. Rychle!", gazetteer
    )
    assert loc is not None and (loc.street, loc.house_number) == ("Rokycanova", "721")


def test_street_named_with_a_genitive_word(gazetteer: Gazetteer) -> None:
    loc = extract_location("Jsem v paneláku v Chebu, Obrněné brigády dvacet šest, mezi patry.", gazetteer)
    assert loc is not None and (loc.street, loc.house_number) == ("Obrněné brigády", "26")


def test_abbreviations_are_not_streets(gazetteer: Gazetteer) -> None:
    loc = extract_location("Je to šedivej Passat, SPZ začíná čtyři Ká, jedeme na šestce z Varů.", gazetteer)
    assert loc is None or loc.house_number is None
