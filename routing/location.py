"""The place a caller describes: municipality (gazetteer), street, house number, road with km or exit, landmark.

Numbers come spoken ("sto třicet šest", "sedumnáct set čtyři"); roads colloquially ("na dé šestce" is the
D6 motorway, "na třináctce" the road I/13).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from routing.gazetteer import Gazetteer, PlaceMatch
from routing.text import fold
from routing.types import Evidence, SpokenLocation

_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_ASCII_DIGITS = re.compile(r"[0-9]{1,6}")  # str.isdigit() accepts "²", which int() refuses

_UNITS = {
    "nula": 0, "jedna": 1, "jeden": 1, "jedno": 1, "dva": 2, "dve": 2, "tri": 3, "ctyri": 4, "pet": 5,
    "sest": 6, "sedm": 7, "sedum": 7, "osm": 8, "osum": 8, "devet": 9, "deset": 10, "jedenact": 11,
    "dvanact": 12, "trinact": 13, "ctrnact": 14, "patnact": 15, "sestnact": 16, "sedmnact": 17,
    "sedumnact": 17, "osmnact": 18, "osumnact": 18, "devatenact": 19, "dvacet": 20, "tricet": 30,
    "ctyricet": 40, "padesat": 50, "sedesat": 60, "sedmdesat": 70, "sedumdesat": 70, "osmdesat": 80,
    "osumdesat": 80, "devadesat": 90,
}  # fmt: skip
_HUNDREDS = {"sto", "sta", "set", "ste"}
_THOUSAND = {"tisic"}
# "šestka/šestce/šestku" -> 6: the road or motorway named by its number
_ROAD_NUMBERS = {
    "jednick": 1, "dvojk": 2, "trojk": 3, "ctyrk": 4, "petk": 5, "sestk": 6, "sedmick": 7, "osmick": 8,
    "devitk": 9, "desitk": 10, "jedenactk": 11, "dvanactk": 12, "trinactk": 13, "ctrnactk": 14,
    "patnactk": 15, "sestnactk": 16, "sedmnactk": 17, "osmnactk": 18, "devatenactk": 19, "dvacitk": 20,
    "jednadvacitk": 21, "dvaadvacitk": 22, "dvacetjednick": 21,
}  # fmt: skip
_STREET_MARKERS = {"ulice", "ulici", "ulica", "ul", "strasse", "street", "вулиця", "улица", "vulycja"}
_NUMBER_MARKERS = {"cislo", "c", "cp", "number", "nummer", "номер"}
_LANDMARK_NOUNS = (
    "nadrazi", "kolonad", "namesti", "zastavk", "parkovist", "skol", "skolk", "most", "prehrad", "jezer",
    "plaz", "park", "hospod", "benzink", "pumpa", "nemocnic", "kostel", "zamk", "zamek", "hrad", "tesc",
    "lidl", "kaufland", "albert", "penny", "billa", "fitk", "fitness", "restaurac", "hotel", "vyhlidk",
    "odpocivadl", "prechod", "krizovatk", "kruhac", "objezd", "sidlist", "lesopark", "arena", "trh", "trz",
    "stanovist", "fontan", "pramen", "vridl", "lavk", "prejezd", "trat", "nadrz", "letist", "obchod",
    "supermarket", "tovarn", "fabrik", "hal", "colonnade", "fountain", "station", "bahnhof", "kolonnade",
    "grenze", "hranic", "cho", "chợ", "отел", "готел", "вокзал", "колонад",
)  # fmt: skip
_LANDMARK_PREPOSITIONS = {"u", "na", "v", "ve", "pred", "za", "vedle", "pod", "nad", "pri", "at", "by",
                          "near", "bei", "an", "am", "im", "okolo", "kolem", "около", "біля", "o", "gan"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _W:
    text: str
    folded: str
    start: int
    end: int
    capitalised: bool
    gap_before: str  # punctuation/space between this word and the previous


def _tokens(text: str) -> list[_W]:
    out: list[_W] = []
    last = 0
    for m in _WORD_RE.finditer(text):
        word = m.group(0)
        out.append(_W(word, fold(word), m.start(), m.end(), word[:1].isupper(), text[last : m.start()]))
        last = m.end()
    return out


def parse_spoken_number(words: Sequence[str]) -> tuple[int, int] | None:
    """Value and count of leading number words or digits ("sto třicet šest ..." -> (136, 3))."""
    total = 0
    current = 0
    used = 0
    for raw in words:
        w = fold(raw)
        if _ASCII_DIGITS.fullmatch(w):
            if used:
                break
            return int(w), 1
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _HUNDREDS:
            current = (current or 1) * 100
        elif w in _THOUSAND:
            total += (current or 1) * 1000
            current = 0
        else:
            break
        used += 1
    if not used:
        return None
    return total + current, used


def _road(words: Sequence[_W]) -> tuple[str, str | None, Evidence] | None:
    for i, w in enumerate(words):
        folded = w.folded
        motorway = False
        number: int | None = None
        m = re.fullmatch(r"d([0-9]{1,2})", folded)
        if m:
            number, motorway = int(m.group(1)), True
        elif re.fullmatch(r"i([0-9]{1,2})", folded) and i + 1 < len(words):
            number = int(folded[1:])
        elif (
            folded in ("i", "ii", "iii")
            and i + 1 < len(words)
            and _ASCII_DIGITS.fullmatch(words[i + 1].folded)
        ):
            number = int(words[i + 1].folded)
        else:
            stem = re.sub(r"(ce|ka|ku|kou|ky|ce)$", "k", folded)
            if stem in _ROAD_NUMBERS and i > 0 and words[i - 1].folded in ("na", "po", "de", "d", "z", "ze"):
                number = _ROAD_NUMBERS[stem]
                motorway = words[i - 1].folded in ("de", "d") or (
                    i > 1 and words[i - 2].folded in ("de", "d") and words[i - 1].folded in ("na",)
                )
        if number is None:
            continue
        road = f"D{number}" if motorway else f"I/{number}"
        km = _road_km(words, i + 1)
        start = words[i - 1].start if i > 0 and words[i - 1].folded in ("de", "d") else w.start
        evidence = Evidence(rule="location.road", words=(w.text,), span=(start, w.end))
        return road, km, evidence
    return None


def _road_km(words: Sequence[_W], start: int) -> str | None:
    for j in range(start, min(len(words), start + 12)):
        if words[j].folded in (
            "km",
            "kilometr",
            "kilometru",
            "exit",
            "exitu",
            "exite",
            "sjezd",
            "sjezdu",
            "ausfahrt",
        ):
            nxt = parse_spoken_number([w.text for w in words[j + 1 : j + 6]])
            if nxt is not None:
                kind = "exit" if words[j].folded.startswith(("exit", "sjezd", "ausfahrt")) else "km"
                return f"{kind} {nxt[0]}"
    return None


_PUNCTUATION_RE = re.compile(r"[.,;:!?…]")


def _number_group(words: Sequence[_W], start: int) -> tuple[int, int, int] | None:
    """A spoken number that is not interrupted by punctuation: (value, words used, end offset)."""
    group: list[str] = []
    for idx in range(start, min(len(words), start + 6)):
        if idx > start and _PUNCTUATION_RE.search(words[idx].gap_before):
            break
        group.append(words[idx].text)
    parsed = parse_spoken_number(group)
    if parsed is None:
        return None
    return parsed[0], parsed[1], words[start + parsed[1] - 1].end


def _house_number(words: Sequence[_W], start: int) -> tuple[int, int] | None:
    """The house number after a street: "sedum set dvacet... sedum set dvacet jedna" is corrected to 721."""
    first = _number_group(words, start)
    if first is None:
        return None
    value, used, end = first
    nxt = start + used
    # a caller who repeats the number more completely corrects it
    while nxt < len(words) and _PUNCTUATION_RE.search(words[nxt].gap_before):
        again = _number_group(words, nxt)
        if again is None or words[nxt].folded != words[start].folded or again[1] <= used:
            break
        value, used, end = again
        start, nxt = nxt, nxt + again[1]
    return value, end


def _street(
    words: Sequence[_W], places: Sequence[tuple[int, int]]
) -> tuple[str, str | None, Evidence] | None:
    def in_place(w: _W) -> bool:
        return any(s <= w.start < e for s, e in places)

    for i, w in enumerate(words):
        if w.folded in _STREET_MARKERS and i + 1 < len(words) and words[i + 1].capitalised:
            name_words = [words[i + 1]]
            j = i + 2
        elif (
            w.capitalised
            and not (w.text.isupper() and len(w.text) <= 4)  # "SPZ", "AED", "LKW": abbreviations, not streets
            and not in_place(w)
        ):
            name_words = [w]
            j = i + 1
            if (
                j < len(words)
                and words[j].capitalised
                and not in_place(words[j])
                and not (words[j].text.isupper() and len(words[j].text) <= 4)
            ):
                name_words.append(words[j])
                j += 1
        else:
            continue
        if (
            j + 1 < len(words)
            and not words[j].capitalised
            and len(name_words) == 1
            and words[j].folded.endswith(("y", "e"))  # a genitive: "brigády", "armády", "stráže"
            and words[j].folded not in _STREET_MARKERS
            and parse_spoken_number([words[j].text]) is None
            and parse_spoken_number([words[j + 1].text]) is not None
            and not _PUNCTUATION_RE.search(words[j].gap_before)
        ):
            name_words.append(words[j])  # "Obrněné brigády dvacet šest", "Boženy Němcové"
            j += 1
        has_marker = False
        k = j
        while k < len(words) and (words[k].folded in _STREET_MARKERS or words[k].folded in _NUMBER_MARKERS):
            has_marker = has_marker or words[k].folded in _STREET_MARKERS
            k += 1
        number = _house_number(words, k)
        sentence_start = i == 0 or bool(re.search(r"[.!?]\s*$", w.gap_before))
        if sentence_start and w.folded not in _STREET_MARKERS and (number is None or k != j):
            # Any first word of a sentence is capitalised: it names a street only when a house number
            # follows it straight away ("Rokycanova 1712 v Sokolově").
            continue
        if number is None and not has_marker and w.folded not in _STREET_MARKERS:
            continue
        if not has_marker and number is None:
            continue
        name = " ".join(x.text for x in name_words)
        house = str(number[0]) if number is not None else None
        end = number[1] if number is not None else name_words[-1].end
        evidence = Evidence(
            rule="location.street", words=tuple(x.text for x in name_words), span=(name_words[0].start, end)
        )
        return name, house, evidence
    return None


def _landmark(text: str, words: Sequence[_W]) -> tuple[str, Evidence] | None:
    for i, w in enumerate(words):
        if not w.folded.startswith(_LANDMARK_NOUNS) or len(w.folded) < 3:
            continue
        begin = i
        while begin > 0 and i - begin < 3 and not re.search(r"[,.;!?]", words[begin].gap_before):
            if words[begin - 1].folded in _LANDMARK_PREPOSITIONS:
                begin -= 1
                break
            begin -= 1
        if words[begin].folded not in _LANDMARK_PREPOSITIONS:
            begin = i
        end = i
        while end + 1 < len(words) and end - i < 3 and not re.search(r"[,.;!?]", words[end + 1].gap_before):
            end += 1
        span = (words[begin].start, words[end].end)
        phrase = text[span[0] : span[1]]
        return phrase, Evidence(
            rule="location.landmark", words=tuple(x.text for x in words[begin : end + 1]), span=span
        )
    return None


def location_notes(location: SpokenLocation | None) -> tuple[str, ...]:
    """A note per municipality matched from misheard words: "municipality heard as '…', matched …"."""
    if location is None:
        return ()
    return tuple(
        f"municipality heard as '{' '.join(e.words)}', matched {location.municipality} (similarity {e.weight:.2f})"
        for e in location.evidence
        if e.rule == "location.municipality.fuzzy"
    )


def extract_location(text: str, gazetteer: Gazetteer) -> SpokenLocation | None:
    """Everything the caller said about where they are; None when nothing at all."""
    words = _tokens(text)
    matches = gazetteer.resolve(text)
    place: PlaceMatch | None = gazetteer.best(matches)
    evidence: list[Evidence] = []
    places = [m.span for match in matches for m in match.mentions]
    if place is not None and place.heard_as is not None:
        # matched from words heard differently: says so, with how sure, so a call taker can overrule it
        evidence.append(
            Evidence(
                rule="location.municipality.fuzzy",
                words=place.words,
                weight=place.similarity,
                span=place.span,
            )
        )
    elif place is not None:
        evidence.append(Evidence(rule="location.municipality", words=place.words, span=place.span))
    street = _street(words, places)
    road = _road(words)
    landmark = _landmark(text, words)
    if place is None and street is None and road is None and landmark is None:
        return None
    confidence = 0.0
    if place is not None:
        confidence = min(1.0, place.score / 4.0)
    if street is not None:
        evidence.append(street[2])
        confidence = min(1.0, confidence + 0.2)
    if road is not None:
        evidence.append(road[2])
        confidence = max(confidence, 0.5)
    if landmark is not None:
        evidence.append(landmark[1])
        confidence = max(confidence, 0.3)
    return SpokenLocation(
        municipality=place.municipality if place else None,
        part=place.part if place else None,
        street=street[0] if street else (road[0] if road else None),
        house_number=street[1] if street else None,
        landmark=landmark[0] if landmark else None,
        road=road[0] if road else None,
        road_km=road[1] if road else None,
        postal_code=place.postal_code if place else None,
        confidence=round(confidence, 2),
        evidence=tuple(evidence),
    )
