"""Spoken places in Karlovarský kraj resolve to a municipality in any grammatical case and language."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# ---------------------------------------------------------------------------- names as a recogniser hears them


@pytest.mark.parametrize(
    ("text", "municipality"),
    [
        # Whisper output of Festival Czech through the telephone band (routing/data/corpus/recognised/)
        ("Jsme vkarlových vářech, manžel zkolaboval.", "Karlovy Vary"),  # preposition glued on
        ("Jsme v karlových vadech u nádraží.", "Karlovy Vary"),  # one word of two misheard
        ("Pomoc, v horním slaskově leží muž.", "Horní Slavkov"),
        ("Bydlí vkraslicích, leží na zemi.", "Kraslice"),  # "v Kraslicích" glued
        ("Leží tady v svatavě ve fabrice.", "Svatava"),  # lower case in a cased text
        # not places: misheard protocol words, real words, surnames, a doorway
        ("Hatečka nedéka, krev nikde, ale nedéka.", None),  # "nedýchá", not Nejdek
        ("Koupila jsem chleba a spadla.", None),
        ("Sokolov, Jednoty. V celém vchodu je cítit plyn.", "Sokolov"),  # "vchodu" is not Chodov
        ("Dobrý den, tady Hálová, Cheb, Kamenná.", "Cheb"),  # a surname, not Hazlov
        ("My friend fell, his leg is broken, near Loket.", "Loket"),  # "his" is not Chyše
        ("Jsme v diskadlových vadech.", None),  # too far from "Karlových Varech" to trust
    ],
)
def test_misheard_place_names_match_only_when_close_enough(
    gazetteer: Gazetteer, text: str, municipality: str | None
) -> None:
    found = gazetteer.locate(text)
    assert (found.municipality if found else None) == municipality


def test_a_fuzzy_match_says_how_it_was_heard(gazetteer: Gazetteer) -> None:
    found = gazetteer.locate("Pomoc, v horním slaskově leží muž.")
    assert found is not None
    assert found.heard_as == ("horním", "slaskově")
    assert 0.85 <= found.similarity < 1.0
    exact = gazetteer.locate("Pomoc, v Horním Slavkově leží muž.")
    assert exact is not None and exact.heard_as is None and exact.similarity == 1.0


def test_fuzzy_matching_can_be_switched_off(gazetteer: Gazetteer) -> None:
    strict = Gazetteer(gazetteer.names, fuzzy_min_similarity=1.0)
    assert strict.locate("Pomoc, v horním slaskově leží muž.") is None
    assert strict.locate("v Chebu u nádraží") is not None


def test_the_location_evidence_and_the_notes_name_a_fuzzy_match(gazetteer: Gazetteer) -> None:
    from routing.location import location_notes

    location = extract_location("Jsme vkarlových vářech, manžel zkolaboval.", gazetteer)
    assert location is not None and location.municipality == "Karlovy Vary"
    assert [e.rule for e in location.evidence][:1] == ["location.municipality.fuzzy"]
    assert location_notes(location) == (
        "municipality heard as 'vkarlových vářech', matched Karlovy Vary (similarity 1.00)",
    )


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="aábcčdďeéěfghiíjklmnňoópqrřsštťuúůvwxyýzž ,.", max_size=120))
def test_fuzzy_mentions_never_raise_and_hold_the_threshold(text: str) -> None:
    gazetteer = _GAZETTEER
    for match in gazetteer.resolve(text):
        for mention in match.mentions:
            assert mention.similarity >= gazetteer.fuzzy_min_similarity or not mention.fuzzy
            assert 0 <= mention.span[0] < mention.span[1] <= len(text)


_GAZETTEER = Gazetteer.load_default()
