"""Municipalities and their parts in Karlovarský kraj, found in spoken text in any grammatical case.

"v Chebu", "do Sokolova", "z Karlových Varů", "v Mariánských Lázních", "nad Loktem", "Marienbad", "Соколов"
all resolve to a municipality. Each mention is weighted by the word before it: "v Chebu" says where the
caller is, "směrem na Cheb" only where the road leads, "mezi Chebem a Aší" names neither place.

Data: routing/data/gazetteer/ (RÚIAN parts of municipalities with postal codes, see its README; aliases.toml
for German and colloquial names).
"""

from __future__ import annotations

import csv
import functools
import re
import tomllib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import simplemma
from rapidfuzz import fuzz, process

from routing.text import fold

DEFAULT_GAZETTEER_DIR = Path(__file__).with_name("data") / "gazetteer"
_CSV_NAME = "karlovarsky-kraj-casti-obci.csv"
_ALIASES_NAME = "aliases.toml"
_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_BREAK_RE = re.compile(r"[.,;:!?…()\"]")

# Czech case endings a place name takes ("Cheb" -> "Chebu", "Chebem"; "Vary" -> "Varech", "Varů").
_CASE_ENDINGS = (
    "", "a", "e", "i", "o", "u", "y", "em", "ou", "um", "im", "ym", "ech", "ich", "ach", "ych", "ami", "ama",
    "emi", "ema", "imi", "ymi", "eho", "emu", "iho", "imu", "ymu", "ovi", "ove", "ovy", "ach",
)  # fmt: skip
_CYRILLIC = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "h", "ґ": "g", "д": "d", "е": "e", "є": "je", "ё": "e", "ж": "z",
        "з": "z", "и": "i", "і": "i", "ї": "ji", "й": "j", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
        "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "ch", "ц": "c", "ч": "c", "ш": "s",
        "щ": "sc", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "ju", "я": "ja",
    }
)  # fmt: skip

# Weight of a mention by the words right before it. Unlisted: a bare mention ("Kraslice, Havlíčkova 340").
_BARE_WEIGHT = 2.5
_CONTEXT_WEIGHTS: dict[str, float] = {
    # at / in: where the caller is
    "v": 3.0, "ve": 3.0, "in": 3.0, "im": 3.0, "o": 3.0, "tady": 3.0,
    # near, just before or past: the place is close
    "u": 2.0, "pri": 2.0, "bei": 2.0, "near": 2.0, "okolo": 2.0, "kolem": 2.0, "blizko": 2.0, "za": 2.0,
    "pred": 2.0, "nad": 2.0, "pod": 2.0, "gan": 2.0, "bilja": 2.0, "vozle": 2.0,
    # from: the start of a route
    "z": 1.0, "ze": 1.0, "od": 1.0, "from": 1.0, "aus": 1.0, "von": 1.0, "iz": 1.0, "vid": 1.0,
    # towards: only where the road leads
    "do": 0.5, "na": 0.5, "k": 0.5, "ke": 0.5, "smer": 0.5, "smerem": 0.5, "to": 0.5, "nach": 0.5,
    "richtung": 0.5, "towards": 0.5, "mezi": 0.5, "zwischen": 0.5, "between": 0.5,
}  # fmt: skip
_STREET_WORDS = frozenset({"namesti", "namesty", "ulice", "ulici", "trida", "tride", "nabrezi", "sady"})
# "Karlovarská", "Kraslická": streets named after places, not the places themselves
_ADJECTIVE_ENDINGS = ("ska", "sky", "ske", "skou", "skeho", "cka", "cky", "cke", "ckou", "ckeho")
_MIN_SCORE = 2.0  # a municipality needs at least this much to be "the place the caller is at"

# Names as a recogniser hears them ("vkarlových vářech", "sokolov" lower case, "v horním slaskově"): after
# the exact pass, the words no exact mention took are compared with the names by sound (_sound_key) and
# edit distance, each word without its case ending. A match says how sure it is (the names' mean
# similarity); it counts only from FUZZY_MIN_SIMILARITY (chosen on the training corpus' real recognitions
# and dev.jsonl, docs/triage.md), its weight is scaled by that similarity, and a single misheard word needs
# a place preposition or a capital letter ("nedéka" is "nedýchá" misheard, not Nejdek).
FUZZY_MIN_SIMILARITY = 0.85
_FUZZY_MIN_LETTERS = 5  # a name word shorter than this is only taken as heard exactly ("cheb", not "chleb")
# "vkarlových", "skraslici", "usokolova": Whisper glues the preposition to the name; its weight as a word
_GLUED_PREPOSITIONS = {"v": 3.0, "f": 3.0, "z": 1.0, "s": 1.0, "u": 2.0}
_SURNAME_ENDINGS = ("ová", "ové", "ový", "ého")
_SOUND_RULES = (("ch", "h"), ("y", "i"), ("w", "v"), ("q", "k"), ("x", "ks"))
_DOUBLE_RE = re.compile(r"(.)\1+")


@dataclass(frozen=True, slots=True)
class PlaceName:
    municipality: str
    municipality_code: str
    part: str | None  # None when the name is the municipality itself
    postal_code: str | None
    pattern: tuple[str, ...]  # stems of the words
    common_word: bool


@dataclass(frozen=True, slots=True)
class Mention:
    place: PlaceName
    words: tuple[str, ...]
    span: tuple[int, int]
    weight: float
    fuzzy: bool
    similarity: float = 1.0  # < 1.0 (or a fuzzy mention): the words were heard differently from the name


@dataclass(frozen=True, slots=True)
class PlaceMatch:
    """A municipality the text mentions, with the strongest way it was mentioned."""

    municipality: str
    part: str | None
    postal_code: str | None
    score: float
    words: tuple[str, ...]
    span: tuple[int, int]
    municipality_code: str = ""
    mentions: tuple[Mention, ...] = ()

    @property
    def heard_as(self) -> tuple[str, ...] | None:
        """The words, when the municipality was matched from words heard differently (fuzzy), else None."""
        strongest = max(self.mentions, key=lambda m: m.weight, default=None)
        return strongest.words if strongest is not None and strongest.fuzzy else None

    @property
    def similarity(self) -> float:
        strongest = max(self.mentions, key=lambda m: m.weight, default=None)
        return strongest.similarity if strongest is not None else 1.0


@dataclass(frozen=True, slots=True)
class _Word:
    text: str
    start: int
    end: int
    stems: tuple[str, ...]  # the word with each case ending it could carry removed
    folded: str
    capitalised: bool  # capitalised other than at the start of a sentence
    sentence_start: bool
    clause: int


@dataclass
class Gazetteer:
    names: Sequence[PlaceName]
    _by_first: dict[str, list[PlaceName]] = field(default_factory=lambda: defaultdict(list), repr=False)
    _first_stems: list[str] = field(default_factory=list, repr=False)
    _heads: dict[str, PlaceName] = field(default_factory=dict, repr=False)
    _word_cache: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict, repr=False)
    _sound_words: list[str] = field(default_factory=list, repr=False)
    _by_sound_first: dict[str, list[PlaceName]] = field(default_factory=lambda: defaultdict(list), repr=False)
    _fuzzy_cache: dict[str, tuple[tuple[PlaceName, float, float | None], ...]] = field(
        default_factory=dict, repr=False
    )
    fuzzy_min_similarity: float = FUZZY_MIN_SIMILARITY  # 1.0: names only as heard exactly

    def __post_init__(self) -> None:
        head_owners: dict[str, set[str]] = defaultdict(set)
        for name in self.names:
            self._by_first[name.pattern[0]].append(name)
            if len(name.pattern) >= 2:
                head_owners[name.pattern[0]].add(name.municipality)
        self._first_stems = sorted(k for k in self._by_first if len(k) >= 5)
        # "ve Františkových..." cut short: a distinctive first word of a two-word name names the place
        for name in self.names:
            head = name.pattern[0]
            if (
                len(name.pattern) >= 2
                and name.part is None
                and len(head) >= 6
                and head_owners[head] == {name.municipality}
                and head not in self._by_first_single()
            ):
                self._heads.setdefault(head, name)
        sounds: set[str] = set()
        for name in self.names:
            if len(name.pattern[0]) >= 4 or len(name.pattern) >= 2:
                keys = [_sound_key(w) for w in name.pattern]
                self._by_sound_first[keys[0]].append(name)
                sounds.update(keys)
        self._sound_words = sorted(sounds)

    def _by_first_single(self) -> set[str]:
        return {n.pattern[0] for n in self.names if len(n.pattern) == 1}

    @classmethod
    def load_default(cls) -> Gazetteer:
        return cls.load(DEFAULT_GAZETTEER_DIR)

    @classmethod
    def load(cls, directory: Path | str) -> Gazetteer:
        directory = Path(directory)
        try:
            with (directory / _CSV_NAME).open(encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle))
            aliases_doc = tomllib.loads((directory / _ALIASES_NAME).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, csv.Error) as exc:
            raise GazetteerError(f"cannot load the gazetteer from {directory}: {exc}") from exc
        required = {"nazcobce", "psc", "kodobce", "nazobce"}
        if not rows or not required <= set(rows[0]):
            raise GazetteerError(f"{directory / _CSV_NAME}: expected columns {sorted(required)}")
        common = {fold(w) for w in aliases_doc.get("common_words", [])}
        aliases: Mapping[str, list[str]] = aliases_doc.get("aliases", {})
        names: list[PlaceName] = []
        seen: set[tuple[str, str | None, tuple[str, ...]]] = set()
        postal_by_municipality: dict[str, str] = {}
        codes: dict[str, str] = {}
        for row in rows:
            municipality, part = row["nazobce"].strip(), row["nazcobce"].strip()
            codes[municipality] = row["kodobce"].strip()
            if part == municipality:
                postal_by_municipality.setdefault(municipality, row["psc"].strip())

        def add(spoken: str, municipality: str, part: str | None, postal: str | None) -> None:
            for pattern in _name_patterns(spoken):
                key = (municipality, part, pattern)
                if key in seen or not pattern:
                    continue
                seen.add(key)
                names.append(
                    PlaceName(
                        municipality,
                        codes.get(municipality, ""),
                        part,
                        postal,
                        pattern,
                        fold(spoken) in common,
                    )
                )

        for row in rows:
            municipality, part = row["nazobce"].strip(), row["nazcobce"].strip()
            postal = row["psc"].strip() or None
            if part == municipality:
                add(municipality, municipality, None, postal)
            else:
                add(part, municipality, part, postal)
        for municipality, spoken_names in aliases.items():
            if municipality not in codes:
                raise GazetteerError(f"{directory / _ALIASES_NAME}: unknown municipality {municipality!r}")
            for spoken in spoken_names:
                add(spoken, municipality, None, postal_by_municipality.get(municipality))
        return cls(names)

    # -----------------------------------------------------------------------------------------------------

    def mentions(self, text: str) -> list[Mention]:
        words = _words(text, self._word_cache)
        cased = any(ch.isupper() for ch in text)
        found: list[Mention] = []
        i = 0
        while i < len(words):
            best: tuple[PlaceName, int, bool] | None = None
            candidates = [p for stem in words[i].stems for p in self._by_first.get(stem, ())]
            fuzzy_first = False
            head_only = False
            if (
                not candidates
                and len(words[i].folded) >= 6
                and (words[i].capitalised or not cased)
                and not words[i].folded.endswith(_ADJECTIVE_ENDINGS)
            ):
                hit = process.extractOne(
                    words[i].folded, self._first_stems, scorer=fuzz.ratio, score_cutoff=86
                )
                if hit is not None:
                    candidates = list(self._by_first[hit[0]])
                    fuzzy_first = True
            for place in candidates:
                n = len(place.pattern)
                if i + n > len(words):
                    continue
                if any(place.pattern[k] not in words[i + k].stems for k in range(1, n)):
                    continue
                if not self._plausible(place, words, i, cased):
                    continue
                if (
                    best is None
                    or n > len(best[0].pattern)
                    or (n == len(best[0].pattern) and place.part is None)
                ):
                    best = (place, n, fuzzy_first)
            if best is None:
                head = next((self._heads[s] for s in words[i].stems if s in self._heads), None)
                if head is not None and self._plausible(head, words, i, cased):
                    best = (head, 1, False)
                    head_only = True
            if best is None:
                i += 1
                continue
            place, n, fuzzy = best
            span_words = words[i : i + n]
            if i + n < len(words) and words[i + n].folded in _STREET_WORDS:
                i += n  # "Mírové náměstí", "Karlovarská ulice": a street named after a place
                continue
            weight = _context_weight(words, i) * (0.8 if fuzzy or head_only else 1.0)
            found.append(
                Mention(
                    place=place,
                    words=tuple(w.text for w in span_words),
                    span=(span_words[0].start, span_words[-1].end),
                    weight=weight,
                    fuzzy=fuzzy,
                )
            )
            i += n
        if self.fuzzy_min_similarity < 1.0:
            found.extend(self._fuzzy_mentions(words, found))
            found.sort(key=lambda m: m.span)
        return found

    def _first_word_candidates(self, folded: str) -> tuple[tuple[PlaceName, float, float | None], ...]:
        """Names whose first word a heard word may be (place, similarity, glued preposition's weight), only
        those that could still reach the threshold with their other words heard exactly; cached per word."""
        cached = self._fuzzy_cache.get(folded)
        if cached is not None:
            return cached
        if len(self._fuzzy_cache) > 50000:
            self._fuzzy_cache.clear()
        best: dict[tuple[int, float | None], tuple[PlaceName, float, float | None]] = {}
        for key, glued in _sound_variants(folded):
            for sound, score, _ in process.extract(
                key, self._sound_words, scorer=fuzz.ratio, score_cutoff=55.0, limit=8
            ):
                similarity = score / 100.0
                for place in self._by_sound_first.get(sound, ()):
                    letters = [len(w) for w in place.pattern]
                    # with every other word heard exactly, can the letter-weighted mean still pass?
                    reachable = similarity * letters[0] + sum(letters[1:]) >= self.fuzzy_min_similarity * sum(
                        letters
                    )
                    slot = (id(place), glued)
                    if reachable and (slot not in best or best[slot][1] < similarity):
                        best[slot] = (place, similarity, glued)
        cached = self._fuzzy_cache[folded] = tuple(best.values())
        return cached

    def _fuzzy_mentions(self, words: Sequence[_Word], exact: Sequence[Mention]) -> list[Mention]:
        """Names heard differently: words no exact mention took, matched by sound and edit distance."""
        taken = [m.span for m in exact]
        free = [not any(a <= w.start < b for a, b in taken) for w in words]
        found: list[Mention] = []
        i = 0
        while i < len(words):
            best: tuple[float, PlaceName, float | None] | None = None
            if free[i]:
                for place, similarity, glued in self._first_word_candidates(words[i].folded):
                    total = self._fuzzy_similarity(place, words, i, free, similarity)
                    if total is None or (best is not None and total <= best[0]):
                        continue
                    if self._fuzzy_plausible(place, words, i, total, glued):
                        best = (total, place, glued)
            if best is None:
                i += 1
                continue
            similarity, place, glued = best
            n = len(place.pattern)
            span_words = words[i : i + n]
            context = glued if glued is not None else _context_weight(words, i)
            found.append(
                Mention(
                    place=place,
                    words=tuple(w.text for w in span_words),
                    span=(span_words[0].start, span_words[-1].end),
                    weight=round(context * similarity, 3),
                    fuzzy=True,
                    similarity=round(similarity, 3),
                )
            )
            i += n
        return found

    def _fuzzy_similarity(
        self, place: PlaceName, words: Sequence[_Word], i: int, free: Sequence[bool], first: float
    ) -> float | None:
        """The name's words against the text's words from i: similarity weighted by letters, or None."""
        n = len(place.pattern)
        if i + n > len(words) or not all(free[i : i + n]):
            return None
        if any(words[i + k].clause != words[i].clause for k in range(1, n)):
            return None
        letters = [len(w) for w in place.pattern]
        needed = self.fuzzy_min_similarity * sum(letters)
        reached = first * letters[0]
        for k in range(1, n):
            # the rest of the name heard exactly could no longer lift the mean over the threshold: stop
            if reached + sum(letters[k:]) < needed:
                return None
            reached += _word_similarity(words[i + k].folded, place.pattern[k]) * letters[k]
        return reached / sum(letters) if reached >= needed else None

    def _fuzzy_plausible(
        self, place: PlaceName, words: Sequence[_Word], i: int, similarity: float, glued: float | None
    ) -> bool:
        first = words[i]
        previous = words[i - 1].folded if i > 0 and words[i - 1].clause == first.clause else ""
        after_preposition = glued is not None or _CONTEXT_WEIGHTS.get(previous, 0.0) >= 1.0
        if place.common_word and not after_preposition:
            return False
        if len(place.pattern) == 1:
            # one word is weak evidence: a name long enough, said after a place preposition or with a capital,
            # not an adjective or a surname ("karlovarská", "Hálová", "Hodková")
            if len(place.pattern[0]) < _FUZZY_MIN_LETTERS or not (after_preposition or first.capitalised):
                return False
            if first.folded.endswith(_ADJECTIVE_ENDINGS) or first.text.lower().endswith(_SURNAME_ENDINGS):
                return False
        # a real Czech word that is not the name itself ("chleba", "vchodovou") was heard right; a name of two
        # or more words heard close enough is evidence enough ("v karlových vadech")
        if (similarity >= 1.0 and glued is None) or len(place.pattern) >= 2:
            return True
        return not simplemma.is_known(first.text.lower(), lang="cs")

    def _plausible(self, place: PlaceName, words: Sequence[_Word], i: int, cased: bool) -> bool:
        first = words[i]
        previous = words[i - 1].folded if i > 0 and words[i - 1].clause == first.clause else ""
        after_preposition = _CONTEXT_WEIGHTS.get(previous, 0.0) >= 1.0
        if cased and not (first.capitalised or first.sentence_start):
            return False
        if place.common_word and not after_preposition and (not cased or not first.capitalised):
            return False
        if len(place.pattern) == 1 and len(place.pattern[0]) <= 3:
            # "Aš": too short to trust without its diacritics or a preposition ("asi" means "probably")
            return first.text.lower() != first.folded or after_preposition
        return True

    def resolve(self, text: str) -> list[PlaceMatch]:
        """Municipalities mentioned in the text, most likely location first."""
        by_municipality: dict[str, list[Mention]] = defaultdict(list)
        for mention in self.mentions(text):
            by_municipality[mention.place.municipality].append(mention)
        matches: list[PlaceMatch] = []
        for municipality, mentions in by_municipality.items():
            score = sum(m.weight for m in mentions)
            strongest = max(mentions, key=lambda m: m.weight)
            part_mention = next((m for m in mentions if m.place.part is not None), None)
            if part_mention is not None and all(m.place.part is not None for m in mentions):
                # a part alone ("Drahovice") is weaker evidence than the municipality's own name
                score *= 0.7
            matches.append(
                PlaceMatch(
                    municipality=municipality,
                    part=part_mention.place.part if part_mention else None,
                    postal_code=(part_mention or strongest).place.postal_code,
                    score=round(score, 3),
                    words=strongest.words,
                    span=strongest.span,
                    municipality_code=strongest.place.municipality_code,
                    mentions=tuple(mentions),
                )
            )
        first_seen = {m.municipality: min(x.span[0] for x in m.mentions) for m in matches}
        matches.sort(key=lambda m: (-m.score, first_seen[m.municipality]))
        return matches

    def locate(self, text: str) -> PlaceMatch | None:
        """The municipality the caller is at, or None when no place is said firmly enough."""
        return self.best(self.resolve(text))

    @staticmethod
    def best(matches: Sequence[PlaceMatch]) -> PlaceMatch | None:
        """The first of resolve()'s matches if it is firm enough to be where the caller is."""
        if not matches or matches[0].score < _MIN_SCORE:
            return None
        return matches[0]


class GazetteerError(ValueError):
    error_id = "gazetteer_invalid"


def _name_stem(folded: str) -> str:
    """A place name's word without its nominative vowel ending ("Kraslice" -> "kraslic")."""
    if len(folded) >= 4 and folded[-1] in "aeiouy":
        return folded[:-1]
    return folded


def _word_stems(folded: str) -> tuple[str, ...]:
    stems = []
    for ending in _CASE_ENDINGS:
        if folded.endswith(ending) and len(folded) - len(ending) >= 2:
            stems.append(folded[: len(folded) - len(ending)] if ending else folded)
    return tuple(stems)


_EJ_RE = re.compile(r"ej(?=[bcdfghjklmnpqrstvwxz]|$)")


def _fold_place_word(word: str) -> str:
    folded = fold(word.lower().translate(_CYRILLIC))
    if len(folded) > 3:
        folded = _EJ_RE.sub("y", folded)
    return folded


def _name_patterns(spoken: str) -> list[tuple[str, ...]]:
    words = [_fold_place_word(w) for w in _WORD_RE.findall(spoken)]
    if not words:
        return []
    patterns = [tuple(_name_stem(w) for w in words)]
    # the fleeting e: Loket -> v Lokte, Nejdek -> v Nejdku, Lubenec -> v Lubenci
    last = words[-1]
    m = re.fullmatch(r"(.*[^aeiouy])e([^aeiouy])", last)
    if m and len(last) >= 5:
        patterns.append((*patterns[0][:-1], m.group(1) + m.group(2)))
    return patterns


def _words(text: str, cache: dict[str, tuple[str, tuple[str, ...]]]) -> list[_Word]:
    out: list[_Word] = []
    clause = 0
    last_end = 0
    for match in _WORD_RE.finditer(text):
        if _BREAK_RE.search(text, last_end, match.start()):
            clause += 1
        word = match.group(0)
        cached = cache.get(word)
        if cached is None:
            if len(cache) > 50000:
                cache.clear()
            folded_word = _fold_place_word(word)
            cached = cache[word] = (folded_word, _word_stems(folded_word))
        folded, stems = cached
        sentence_start = not out or bool(re.search(r"[.!?…]", text[last_end : match.start()]))
        capitalised = word[:1].isupper() and not sentence_start
        out.append(
            _Word(
                word,
                match.start(),
                match.end(),
                stems,
                folded,
                capitalised,
                sentence_start,
                clause,
            )
        )
        last_end = match.end()
    return out


def _sound_key(folded: str) -> str:
    """A folded word as it sounds, for comparing with what a recogniser wrote: y = i, ch = h, no doubles."""
    for a, b in _SOUND_RULES:
        folded = folded.replace(a, b)
    return _DOUBLE_RE.sub(r"\1", folded)


def _strip_case(folded: str) -> tuple[str, ...]:
    """The word without each case ending it could carry, at least three letters kept ("varech" -> "var",
    "vare", "varech"): the name's stem is compared with each and the closest counts."""
    return tuple(
        folded[: len(folded) - len(e)]
        for e in _CASE_ENDINGS
        if folded.endswith(e) and len(folded) - len(e) >= 3
    )


@functools.lru_cache(maxsize=50_000)
def _word_similarity(folded: str, name_word: str) -> float:
    """How close a heard word (in its closest case-stemmed form) sounds to one word of a name, 0..1."""
    wanted = _sound_key(name_word)
    return max(
        (fuzz.ratio(key, wanted) / 100.0 for key, _ in _sound_variants(folded, glued=False)), default=0.0
    )


@functools.lru_cache(maxsize=50_000)
def _sound_variants(folded: str, glued: bool = True) -> tuple[tuple[str, float | None], ...]:
    """Sound keys of a heard word: as heard, and without a preposition glued to it (with its weight)."""
    out: list[tuple[str, float | None]] = [(_sound_key(stem), None) for stem in _strip_case(folded)]
    if glued and len(folded) >= 6 and folded[0] in _GLUED_PREPOSITIONS:
        out.extend((_sound_key(stem), _GLUED_PREPOSITIONS[folded[0]]) for stem in _strip_case(folded[1:]))
    return tuple(dict.fromkeys(out))


def _context_weight(words: Sequence[_Word], i: int) -> float:
    if i == 0 or words[i - 1].clause != words[i].clause:
        return _BARE_WEIGHT
    previous = words[i - 1].folded
    if previous in ("z", "ze") and i >= 2 and words[i - 2].folded in ("volam", "jsem", "tady"):
        return 3.0  # "volám z Ostrova", "jsem z Chebu": where the caller is
    # "mezi Chebem a Aší": both ends of a stretch of road, neither is the place
    if previous in ("a", "and", "und") and any(
        w.folded in ("mezi", "zwischen", "between") for w in words[max(0, i - 5) : i - 1]
    ):
        return 0.5
    if previous in ("kousek", "kilometr", "kilometry", "km", "kus") or (
        i >= 2
        and words[i - 2].folded in ("kousek", "kilometr", "kilometry", "km")
        and previous in ("od", "za")
    ):
        return 2.0
    weight = _CONTEXT_WEIGHTS.get(previous)
    if weight is None:
        # "jsme tady v Karlových Varech" vs "jedu z Nejdku nahoru na Pernink": look one word further back
        if i >= 2 and words[i - 2].clause == words[i].clause:
            further = _CONTEXT_WEIGHTS.get(words[i - 2].folded)
            if further is not None and further <= 1.0:
                return further
        return _BARE_WEIGHT
    return weight
