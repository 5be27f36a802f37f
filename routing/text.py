"""Turning spoken text into tokens that survive inflection, missing diacritics and negation.

Czech is inflected and speech recognition drops diacritics, so every word is reduced to a *key*: lower case,
diacritics removed, colloquial endings folded ("velkej" -> "velky"), a light suffix-stripping stem and, where
simplemma knows the word, the stem of its lemma as well. Protocol phrases and the transcript go through the
same analysis, so a phrase written once in its dictionary form matches every case and tense.

Negation is kept as a flag on the token, never thrown away: Czech and Slovak negate by the prefix "ne-"
("nedýchá"), other languages by a separate word ("not breathing", "atmet nicht", "не дышит") whose scope ends
at a clause boundary or a contrast word ("nehoří, jen se kouří").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import simplemma

_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_CLAUSE_BREAK_RE = re.compile(r"[.,;:!?…\-–—()\"]")
_COLLOQUIAL_EJ_RE = re.compile(r"ej(?=[bcdfghjklmnpqrstvwxz]|$)")

# Letters NFD does not decompose.
_EXTRA_FOLD = str.maketrans({"đ": "d", "ł": "l", "ø": "o", "ß": "ss", "ё": "е", "’": "'"})

# simplemma language codes we may ask; Vietnamese is not covered by simplemma.
_SIMPLEMMA_LANGS = frozenset({"cs", "sk", "de", "en", "ru", "uk"})


def fold(text: str) -> str:
    """Lower case without diacritics ("Mariánské Lázně" -> "marianske lazne")."""
    decomposed = unicodedata.normalize("NFD", text.lower().translate(_EXTRA_FOLD))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@dataclass(frozen=True, slots=True)
class LanguageProfile:
    """How one language is analysed; loaded from routing/data/languages.toml."""

    code: str
    stopwords: frozenset[str] = frozenset()
    negators: frozenset[str] = frozenset()  # words that negate their neighbours ("not", "nicht", "не")
    backward_negators: frozenset[str] = (
        frozenset()
    )  # negators that also negate the word before ("zbraň nemá")
    negation_prefix: str = ""  # "ne" for Czech and Slovak
    not_negation_prefixes: tuple[str, ...] = ()  # words starting with the prefix that are not negated
    contrast_words: frozenset[str] = frozenset()  # end a negation scope ("ale", "but", "aber")
    suffixes: tuple[str, ...] = ()  # longest first
    min_stem: int = 3
    scope_forward: int = 2
    scope_backward: int = 0
    colloquial_ej: bool = False
    lemmatize: bool = False  # also key words by their simplemma lemma (dictionary load costs ~0.5-3 s)
    ordered_phrases: bool = False  # fixed word order: short phrases with small words must keep their order
    prefix_stems: bool = False
    reflexive_endings: tuple[
        str, ...
    ] = ()  # "бьётся" (thrashes) is not "бьёт" (beats)  # a phrase stem also matches longer forms ("пистол" ~ "пистолетом")
    tone_marks: bool = False  # Vietnamese: marks distinguish words; kept unless the word came without any


@dataclass(frozen=True, slots=True)
class WordAnalysis:
    norm: str  # folded surface form, negation prefix removed
    keys: frozenset[str]
    negated: bool  # negated by its own prefix
    is_stop: bool
    is_negator: bool


@dataclass(frozen=True, slots=True)
class Token:
    text: str  # as spoken
    start: int
    end: int
    norm: str
    keys: frozenset[str]
    negated: bool  # by prefix or by a negator in scope
    is_stop: bool
    is_negator: bool
    clause: int  # index of the clause the token is in


@dataclass
class Analyzer:
    """Analyses words of one language. Keeps a bounded cache: partial transcripts repeat their words."""

    profile: LanguageProfile
    cache_limit: int = 20000
    _cache: dict[str, WordAnalysis] = field(default_factory=dict, repr=False)

    def stem(self, folded: str) -> str:
        p = self.profile
        for suffix in p.suffixes:
            if folded.endswith(suffix) and len(folded) - len(suffix) >= p.min_stem:
                return folded[: -len(suffix)]
        return folded

    def _fold_word(self, word: str) -> str:
        folded = fold(word).replace("'", "")
        if self.profile.colloquial_ej and len(folded) > 3:
            folded = _COLLOQUIAL_EJ_RE.sub("y", folded)
        return folded

    def analyze_word(self, word: str) -> WordAnalysis:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        result = self._analyze_word(word)
        if len(self._cache) >= self.cache_limit:
            self._cache.clear()
        self._cache[word] = result
        return result

    def _analyze_word(self, word: str) -> WordAnalysis:
        p = self.profile
        if p.tone_marks:
            return self._analyze_marked_word(word)
        folded_full = fold(word).replace("'", "")
        if folded_full in p.negators:
            return WordAnalysis(folded_full, frozenset({folded_full}), False, False, True)
        if folded_full in p.stopwords:
            return WordAnalysis(folded_full, frozenset({folded_full}), False, True, False)
        folded = self._fold_word(word)
        negated = False
        surface = word
        prefix = p.negation_prefix
        if (
            prefix
            and folded.startswith(prefix)
            and len(folded) >= len(prefix) + 3
            and not folded.startswith(p.not_negation_prefixes)
        ):
            negated = True
            folded = folded[len(prefix) :]
            surface = word[len(prefix) :]
        keys = {self.stem(folded)}
        if p.lemmatize and p.code in _SIMPLEMMA_LANGS:
            lemma = simplemma.lemmatize(surface.lower(), lang=p.code)
            lemma_folded = self._fold_word(lemma)
            if lemma_folded and lemma_folded != folded:
                lemma_stem = self.stem(lemma_folded)
                if len(lemma_stem) >= 4:  # short lemma stems join unrelated words ("střeše" ~ "střílí")
                    keys.add(lemma_stem)
        return WordAnalysis(folded, frozenset(keys), negated, False, False)

    def _analyze_marked_word(self, word: str) -> WordAnalysis:
        """Vietnamese: "cháy" (fire) and "chảy" (flow) differ only by tone mark; a word heard without any
        marks ("chay") is keyed "~chay" and matches every marked form."""
        lower = word.lower()
        folded = fold(word)
        key = lower if lower != folded else "~" + folded
        p = self.profile
        return WordAnalysis(folded, frozenset({key}), False, key in p.stopwords, key in p.negators)

    def tokenize(self, text: str) -> list[Token]:
        """Tokens with character spans, negation scopes applied."""
        raw: list[tuple[str, int, int, WordAnalysis, int]] = []
        clause = 0
        last_end = 0
        for match in _WORD_RE.finditer(text):
            if _CLAUSE_BREAK_RE.search(text, last_end, match.start()):
                clause += 1
            word = match.group(0)
            analysis = self.analyze_word(word)
            if analysis.norm in self.profile.contrast_words:
                clause += 1
            raw.append((word, match.start(), match.end(), analysis, clause))
            last_end = match.end()
        negated = [a.negated for (_, _, _, a, _) in raw]
        p = self.profile
        for i, (_, _, _, analysis, cl) in enumerate(raw):
            if not analysis.is_negator:
                continue
            _mark_scope(raw, negated, i, cl, range(i + 1, len(raw)), p.scope_forward)
            backward = max(p.scope_backward, 1 if analysis.norm in p.backward_negators else 0)
            _mark_scope(raw, negated, i, cl, range(i - 1, -1, -1), backward)
        return [
            Token(w, s, e, a.norm, a.keys, negated[i], a.is_stop, a.is_negator, cl)
            for i, (w, s, e, a, cl) in enumerate(raw)
        ]


def _mark_scope(
    raw: Sequence[tuple[str, int, int, WordAnalysis, int]],
    negated: list[bool],
    origin: int,
    clause: int,
    indices: range,
    reach: int,
) -> None:
    remaining = reach
    for j in indices:
        if remaining <= 0:
            return
        analysis, cl = raw[j][3], raw[j][4]
        if cl != clause or analysis.is_negator:
            return
        if analysis.is_stop:
            continue
        if analysis.negated and remaining == reach:
            # "ne, nedýchá": the negator answers the question, the verb carries its own negation
            return
        negated[j] = True
        remaining -= 1
