"""Finding protocol phrases in a transcript: stems, negation, fuzzy (misheard) words, evidence spans."""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import simplemma
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from routing.protocol import Protocol
from routing.text import Analyzer, LanguageProfile, Token, fold
from routing.types import Evidence

_PREFIX_MARK = "*"
_FUZZY_MIN_LEN = 7  # shorter words: too many real words one letter apart ("nádraží"/"narazí")
_FUZZY_CUTOFF = 85.0
_MAX_EXTRA_ENDING = 4
_MIN_PREFIX_STEM = 4


@dataclass(frozen=True, slots=True)
class PhraseItem:
    keys: frozenset[str]  # stems (or "*prefix") any of which matches
    negated: bool


@dataclass(frozen=True, slots=True)
class Phrase:
    signal: str
    language: str
    text: str
    items: tuple[PhraseItem, ...]
    weight: float
    ordered: bool = False  # fixed word order (English): "in the river" is not "river in the"


@dataclass(frozen=True, slots=True)
class SignalHit:
    signal: str
    phrase: Phrase
    positions: tuple[int, ...]  # indices into the token list
    negated: bool  # the words are there but negated ("nehoří")
    fuzzy: bool  # at least one word was matched as a likely mishearing
    evidence: Evidence


@dataclass
class _LanguageIndex:
    analyzer: Analyzer
    phrases: list[Phrase] = field(default_factory=list)
    by_key: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    prefixes: dict[str, list[str]] = field(
        default_factory=lambda: defaultdict(list)
    )  # first 3 chars -> prefixes
    lexicon: list[str] = field(default_factory=list)
    stem_prefixes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # whole words of critical phrases (folded, negation prefix removed) -> the keys they stand for
    critical_words: dict[str, frozenset[str]] = field(default_factory=dict)
    known_word: Callable[[str], bool] | None = None
    _token_keys: dict[tuple[str, str, frozenset[str]], tuple[frozenset[str], frozenset[str]]] = field(
        default_factory=dict
    )

    def token_keys(self, token: Token) -> tuple[frozenset[str], frozenset[str]]:
        """Keys of the phrase index this token matches: (exact or prefix keys, fuzzy keys)."""
        cache_key = (token.text, token.norm, token.keys)
        cached = self._token_keys.get(cache_key)
        if cached is not None:
            return cached
        exact = {k for k in token.keys if k in self.by_key}
        for prefix in self.prefixes.get(token.norm[:3], ()):
            if token.norm.startswith(prefix):
                exact.add(_PREFIX_MARK + prefix)
        for stem in self.stem_prefixes.get(token.norm[:3], ()):
            # a light stemmer cuts "пистолет" and "пистолетом" differently; a case ending more matches
            if (
                token.norm.startswith(stem)
                and len(token.norm) - len(stem) <= _MAX_EXTRA_ENDING
                and not (
                    token.norm.endswith(self.analyzer.profile.reflexive_endings)
                    and not stem.endswith(self.analyzer.profile.reflexive_endings)
                )
            ):
                exact.add(stem)
        fuzzy: set[str] = set()
        if not exact and len(token.norm) >= _FUZZY_MIN_LEN and not token.is_stop and not token.is_negator:
            for key in token.keys:
                for candidate, _score, _ in process.extract(
                    key, self.lexicon, scorer=fuzz.ratio, score_cutoff=_FUZZY_CUTOFF, limit=3
                ):
                    if candidate[:1] == key[:1] and Levenshtein.distance(candidate, key) <= 1:
                        fuzzy.add(candidate)
        if not exact and not fuzzy and self.critical_words and not token.is_stop and not token.is_negator:
            fuzzy |= self._critical_keys(token)
        result = (frozenset(exact), frozenset(fuzzy))
        if len(self._token_keys) > 50000:
            self._token_keys.clear()
        self._token_keys[cache_key] = result
        return result

    def _critical_keys(self, token: Token) -> set[str]:
        """T-CPR words heard cut off or one letter wrong ("nedejc", "admet"): better a false alarm the call
        taker dismisses than a missed cardiac arrest. Real words of the language are left alone."""
        norm = token.norm
        if (
            len(token.text) < 5
            or len(norm) < 3
            or (self.known_word is not None and self.known_word(token.text))
        ):
            return set()
        keys: set[str] = set()
        sound = _sound_alike(norm)
        for word, word_keys in self.critical_words.items():
            if (
                (len(norm) >= 5 and abs(len(word) - len(norm)) <= 1 and Levenshtein.distance(word, norm) <= 1)
                or (word.startswith(norm) and len(word) - len(norm) <= 2)
                or (len(norm) >= 4 and _sound_alike(word) == sound)
            ):
                keys |= word_keys
        return keys


def _sound_alike(folded: str) -> str:
    """A folded word as Whisper tends to confuse it on telephone audio: "y" and "i" sound the same in Czech,
    and "ch" is heard as "h" or "k" ("nedýchá" comes back as "nedíhá", "nedíka", "nedejká")."""
    return folded.replace("ch", "h").replace("y", "i").replace("k", "h")


class PhraseMatcher:
    """All signal phrases of a protocol, compiled per language."""

    def __init__(self, protocol: Protocol) -> None:
        self._indexes: dict[str, _LanguageIndex] = {}
        for code, profile in protocol.languages.items():
            self._indexes[code] = _LanguageIndex(Analyzer(profile))
        for signal in protocol.signals.values():
            for language, phrases in signal.phrases.items():
                index = self._indexes.get(language)
                if index is None:
                    continue
                for text in phrases:
                    phrase = _compile(index.analyzer, signal.id, language, text, signal.weight)
                    if phrase is not None:
                        self._add(index, phrase)
                        if signal.critical:
                            _add_critical_words(index, text)
        for code, index in self._indexes.items():
            index.lexicon = sorted(k for k in index.by_key if not k.startswith(_PREFIX_MARK) and len(k) >= 6)
            if index.analyzer.profile.prefix_stems:
                for key in index.by_key:
                    if not key.startswith(_PREFIX_MARK) and len(key) >= _MIN_PREFIX_STEM:
                        index.stem_prefixes[key[:3]].append(key)
            if index.analyzer.profile.lemmatize and code in ("cs", "sk", "de", "en", "ru", "uk"):
                index.known_word = _known_word_checker(code)

    @staticmethod
    def _add(index: _LanguageIndex, phrase: Phrase) -> None:
        pid = len(index.phrases)
        index.phrases.append(phrase)
        for item_no, item in enumerate(phrase.items):
            for key in item.keys:
                index.by_key[key].append((pid, item_no))
                if key.startswith(_PREFIX_MARK):
                    prefix = key[1:]
                    if prefix not in index.prefixes[prefix[:3]]:
                        index.prefixes[prefix[:3]].append(prefix)

    def languages(self) -> Iterable[str]:
        return self._indexes.keys()

    def analyzer(self, language: str) -> Analyzer | None:
        index = self._indexes.get(language)
        return index.analyzer if index else None

    def tokenize(self, language: str, text: str) -> list[Token]:
        index = self._indexes.get(language)
        if index is None:
            return []
        tokens = index.analyzer.tokenize(text)
        if index.analyzer.profile.tone_marks and any(k[:1] != "~" for t in tokens for k in t.keys):
            # the recogniser wrote tone marks: an unmarked word here is that word, not any marked one
            tokens = [
                dataclasses.replace(t, keys=frozenset(k[1:] if k.startswith("~") else k for k in t.keys))
                for t in tokens
            ]
        return tokens

    def match(self, language: str, tokens: Sequence[Token], fuzzy_weight: float = 0.8) -> list[SignalHit]:
        index = self._indexes.get(language)
        if index is None:
            return []
        content = list(range(len(tokens)))
        matched: list[tuple[frozenset[str], frozenset[str]]] = [index.token_keys(tokens[i]) for i in content]
        content_tokens = [tokens[i] for i in content]
        seen: set[tuple[str, tuple[int, ...]]] = set()
        hits: list[SignalHit] = []
        for anchor, (exact, fuzzy_keys) in enumerate(matched):
            candidates: set[int] = set()
            for key in exact | fuzzy_keys:
                for pid, _item in index.by_key.get(key, ()):
                    candidates.add(pid)
            for pid in candidates:
                phrase = index.phrases[pid]
                found = _verify(phrase, anchor, matched, content_tokens)
                if found is None:
                    continue
                positions_c, polarity_ok, used_fuzzy = found
                positions = tuple(sorted(content[p] for p in positions_c))
                if (phrase.signal, positions) in seen:
                    continue
                seen.add((phrase.signal, positions))
                words = tuple(tokens[p].text for p in positions)
                span = (tokens[positions[0]].start, tokens[positions[-1]].end)
                weight = phrase.weight * (fuzzy_weight if used_fuzzy else 1.0)
                hits.append(
                    SignalHit(
                        signal=phrase.signal,
                        phrase=phrase,
                        positions=positions,
                        negated=not polarity_ok,
                        fuzzy=used_fuzzy,
                        evidence=Evidence(
                            rule=f"signal.{phrase.signal}",
                            words=words,
                            weight=round(weight, 3),
                            span=span,
                            negated=not polarity_ok,
                        ),
                    )
                )
        return hits


def _add_critical_words(index: _LanguageIndex, text: str) -> None:
    for token in index.analyzer.tokenize(text.replace(_PREFIX_MARK, "")):
        if (
            not token.is_stop
            and not token.is_negator
            and len(token.norm) >= 4
            and not index.analyzer.profile.tone_marks
        ):
            index.critical_words[token.norm] = index.critical_words.get(token.norm, frozenset()) | token.keys


def _known_word_checker(language: str) -> Callable[[str], bool]:
    def known(word: str) -> bool:
        return bool(simplemma.is_known(word.lower(), lang=language))

    return known


def _compile(analyzer: Analyzer, signal: str, language: str, text: str, weight: float) -> Phrase | None:
    tokens = analyzer.tokenize(text)
    if not tokens:
        return None
    content = [t for t in tokens if not t.is_stop]
    if len(content) < 2 or len(tokens) <= 3:
        # short phrases ("je mi dobře", "u sousedů", "lidi jsou doma") keep their small words: without them
        # they are one or two common words that match far too much
        content = tokens
    profile: LanguageProfile = analyzer.profile
    items: list[PhraseItem] = []
    for token in content:
        is_prefix = text[token.end : token.end + 1] == _PREFIX_MARK
        if is_prefix and not profile.tone_marks:
            keys = frozenset({_PREFIX_MARK + token.norm})
        elif profile.tone_marks:
            # marked word "cỏ": itself, or "~co" heard without marks; unmarked "taxi": "~taxi" or exactly "taxi"
            keys = frozenset(
                token.keys
                | {"~" + fold(k) for k in token.keys if not k.startswith("~")}
                | {k[1:] for k in token.keys if k.startswith("~")}
            )
        else:
            keys = token.keys
        items.append(PhraseItem(keys=keys, negated=token.negated))
    ordered = profile.ordered_phrases and len(content) == len(tokens) and any(t.is_stop for t in tokens)
    return Phrase(
        signal=signal, language=language, text=text, items=tuple(items), weight=weight, ordered=ordered
    )


def _verify(
    phrase: Phrase,
    anchor: int,
    matched: Sequence[tuple[frozenset[str], frozenset[str]]],
    content_tokens: Sequence[Token],
) -> tuple[list[int], bool, bool] | None:
    """Find every item of the phrase near the anchor, each on its own token. Order does not matter."""
    window = len(phrase.items) + 3
    low = max(0, anchor - window)
    high = min(len(matched), anchor + window + 1)
    used: set[int] = set()
    positions: list[int] = []
    polarity_ok = True
    used_fuzzy = False
    for item in phrase.items:
        best: tuple[int, int, bool, bool] | None = None  # (rank, position, polarity ok, fuzzy)
        for pos in range(low, high):
            if pos in used:
                continue
            exact, fuzzy_keys = matched[pos]
            is_exact = not item.keys.isdisjoint(exact)
            if not is_exact and item.keys.isdisjoint(fuzzy_keys):
                continue
            same_polarity = content_tokens[pos].negated == item.negated
            rank = (0 if same_polarity else 100) + abs(pos - anchor) + (0 if is_exact else 10)
            if best is None or rank < best[0]:
                best = (rank, pos, same_polarity, not is_exact)
        if best is None:
            return None
        used.add(best[1])
        positions.append(best[1])
        polarity_ok = polarity_ok and best[2]
        used_fuzzy = used_fuzzy or best[3]
    if max(positions) - min(positions) > window:
        return None
    if phrase.ordered and any(b <= a for a, b in itertools.pairwise(positions)):
        return None
    return positions, polarity_ok, used_fuzzy


def strongest_by_signal(hits: Iterable[SignalHit]) -> Mapping[str, list[SignalHit]]:
    """Positive (not negated) hits grouped by signal, strongest first."""
    grouped: dict[str, list[SignalHit]] = defaultdict(list)
    for hit in hits:
        if not hit.negated:
            grouped[hit.signal].append(hit)
    for group in grouped.values():
        group.sort(key=lambda h: -h.evidence.weight)
    return grouped
