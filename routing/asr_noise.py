"""A speech-recognition noise model fitted to the real pipeline's measured errors.

Fitting: pairs of (what the caller said, what the real pipeline — Festival / espeak-ng speech → 8 kHz
telephone band → the shipped Whisper model — recognised) are aligned word by word; per language we count how
often a word is lost, replaced, split in two, merged with the next, loses only its diacritics, and which
words the recogniser inserts; inside replaced words, which letters it confuses. The fitted rates are stored
as plain JSON (routing/data/asr_noise.json) and applied deterministically for a seed and a key.

Pure: no I/O besides reading/writing the parameter file, no randomness without a seed.
"""

from __future__ import annotations

import json
import random
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing.text import fold

DEFAULT_NOISE_FILE = Path(__file__).with_name("data") / "asr_noise.json"
POOLED = "*"  # parameters fitted on every language together: used for a language without its own pairs
_MIN_WORDS_FOR_OWN_FIT = 300
_TOP_CONFUSIONS = 12
_TOP_INSERTIONS = 25


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFC", text).lower()
    out = []
    for raw in text.split():
        word = "".join(ch for ch in raw if ch.isalnum())
        if word:
            out.append(word)
    return out


def _align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """Word alignment by edit distance (substitution cost 1, or 0.5 when the words are near)."""
    n, m = len(ref), len(hyp)
    cost = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = float(i)
    for j in range(1, m + 1):
        cost[0][j] = float(j)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            a, b = ref[i - 1], hyp[j - 1]
            sub = 0.0 if a == b else (0.5 if fold(a)[:3] == fold(b)[:3] else 1.0)
            cost[i][j] = min(cost[i - 1][j - 1] + sub, cost[i - 1][j] + 1.0, cost[i][j - 1] + 1.0)
    out: list[tuple[str | None, str | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0:
            a, b = ref[i - 1], hyp[j - 1]
            sub = 0.0 if a == b else (0.5 if fold(a)[:3] == fold(b)[:3] else 1.0)
            if cost[i][j] == cost[i - 1][j - 1] + sub:
                out.append((a, b))
                i, j = i - 1, j - 1
                continue
        if i > 0 and cost[i][j] == cost[i - 1][j] + 1.0:
            out.append((ref[i - 1], None))
            i -= 1
        else:
            out.append((None, hyp[j - 1]))
            j -= 1
    out.reverse()
    return out


def _char_edits(a: str, b: str) -> list[tuple[str, str]]:
    """Letter substitutions between two words of equal length class (simple position-wise diff)."""
    if len(a) != len(b):
        return []
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


@dataclass
class LanguageNoise:
    """Per-word rates (each of the word's fate, given a word said) and the letters confused."""

    words: int = 0
    deletion: float = 0.0
    substitution: float = 0.0
    diacritic_loss: float = 0.0  # of words that carry diacritics
    split: float = 0.0
    merge: float = 0.0
    insertion: float = 0.0  # inserted words per word said
    char_error: float = 0.0  # letters changed per letter, inside a substituted word
    confusions: dict[str, dict[str, int]] = field(default_factory=dict)
    inserted_words: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "words": self.words,
            "deletion": round(self.deletion, 4),
            "substitution": round(self.substitution, 4),
            "diacritic_loss": round(self.diacritic_loss, 4),
            "split": round(self.split, 4),
            "merge": round(self.merge, 4),
            "insertion": round(self.insertion, 4),
            "char_error": round(self.char_error, 4),
            "confusions": {k: dict(sorted(v.items())) for k, v in sorted(self.confusions.items())},
            "inserted_words": self.inserted_words,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LanguageNoise:
        return cls(
            words=int(data.get("words", 0)),
            deletion=float(data.get("deletion", 0.0)),
            substitution=float(data.get("substitution", 0.0)),
            diacritic_loss=float(data.get("diacritic_loss", 0.0)),
            split=float(data.get("split", 0.0)),
            merge=float(data.get("merge", 0.0)),
            insertion=float(data.get("insertion", 0.0)),
            char_error=float(data.get("char_error", 0.0)),
            confusions={
                str(k): {str(a): int(b) for a, b in v.items()} for k, v in data.get("confusions", {}).items()
            },
            inserted_words=[str(w) for w in data.get("inserted_words", [])],
        )


def fit_language(pairs: Iterable[tuple[str, str]]) -> LanguageNoise:
    words = deleted = substituted = diacritic_words = diacritic_lost = splits = merges = inserted = 0
    letters = letter_errors = 0
    confusions: dict[str, Counter[str]] = {}
    insertions: Counter[str] = Counter()
    for reference, recognised in pairs:
        ref, hyp = _words(reference), _words(recognised)
        aligned = _align(ref, hyp)
        k = 0
        while k < len(aligned):
            a, b = aligned[k]
            nxt = aligned[k + 1] if k + 1 < len(aligned) else (None, None)
            if a is not None:
                words += 1
                has_marks = fold(a) != a
                diacritic_words += has_marks
            if a is not None and b is None:
                # a word lost, or merged into its neighbour ("na to" -> "nato")
                prev_b = aligned[k - 1][1] if k > 0 else None
                if prev_b is not None and fold(prev_b).endswith(fold(a)) and len(prev_b) > len(a):
                    merges += 1
                else:
                    deleted += 1
            elif a is None and b is not None:
                prev_a = aligned[k - 1][0] if k > 0 else None
                if nxt[0] is not None and nxt[1] is not None and fold(nxt[0]) == fold(b + nxt[1]):
                    splits += 1  # "nereaguje" -> "ne reaguje", aligned as an insertion then a change
                    words += 1
                    diacritic_words += fold(nxt[0]) != nxt[0]
                    k += 1
                elif prev_a is not None and fold(prev_a).endswith(fold(b)) and len(prev_a) > len(b):
                    splits += 1
                else:
                    inserted += 1
                    insertions[b] += 1
            elif a is not None and b is not None and a != b:
                if fold(a) == fold(b):
                    diacritic_lost += 1
                elif nxt[0] is None and nxt[1] is not None and fold(a) == fold(b + nxt[1]):
                    splits += 1
                    k += 1
                else:
                    substituted += 1
                    edits = _char_edits(a, b)
                    letters += len(a)
                    letter_errors += len(edits) if edits else max(1, abs(len(a) - len(b)))
                    for x, y in edits:
                        confusions.setdefault(x, Counter())[y] += 1
            k += 1
    total = max(1, words)
    top = {
        x: dict(c.most_common(4))
        for x, c in sorted(confusions.items(), key=lambda kv: -sum(kv[1].values()))[:_TOP_CONFUSIONS]
    }
    return LanguageNoise(
        words=words,
        deletion=deleted / total,
        substitution=substituted / total,
        diacritic_loss=diacritic_lost / max(1, diacritic_words),
        split=splits / total,
        merge=merges / total,
        insertion=inserted / total,
        char_error=letter_errors / max(1, letters),
        confusions=top,
        inserted_words=[w for w, _ in insertions.most_common(_TOP_INSERTIONS)],
    )


@dataclass
class NoiseModel:
    languages: dict[str, LanguageNoise]
    source: str = ""

    @classmethod
    def fit(cls, pairs: Iterable[tuple[str, str, str]], source: str = "") -> NoiseModel:
        """Fit from (language, said, recognised); a language with few words uses the pooled fit."""
        by_language: dict[str, list[tuple[str, str]]] = {}
        pooled: list[tuple[str, str]] = []
        for language, said, recognised in pairs:
            by_language.setdefault(language, []).append((said, recognised))
            pooled.append((said, recognised))
        fitted = {POOLED: fit_language(pooled)}
        for language, items in sorted(by_language.items()):
            own = fit_language(items)
            if own.words >= _MIN_WORDS_FOR_OWN_FIT:
                fitted[language] = own
        return cls(fitted, source)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "izs-asr-noise/1",
            "source": self.source,
            "languages": {k: v.to_json() for k, v in sorted(self.languages.items())},
        }

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps(self.to_json(), ensure_ascii=False, indent=1, sort_keys=True) + "\n", "utf-8"
        )

    @classmethod
    def load(cls, path: Path | None = None) -> NoiseModel:
        data = json.loads((path or DEFAULT_NOISE_FILE).read_text(encoding="utf-8"))
        if data.get("format") != "izs-asr-noise/1":
            raise ValueError(f"{path}: not an izs ASR noise model")
        return cls(
            {k: LanguageNoise.from_json(v) for k, v in data["languages"].items()}, data.get("source", "")
        )

    def for_language(self, language: str) -> LanguageNoise:
        return self.languages.get(language) or self.languages[POOLED]

    def apply(self, text: str, language: str, seed: int, key: str = "") -> str:
        """The text as the fitted recogniser would plausibly return it; the same for the same seed and key."""
        p = self.for_language(language)
        rng = random.Random(f"{seed}:{key}")
        out: list[str] = []
        words = _words(text)
        k = 0
        while k < len(words):
            word = words[k]
            roll = rng.random()
            edge = p.deletion
            if roll < edge:
                k += 1
                continue
            edge += p.substitution
            if roll < edge:
                word = self._substitute(word, p, rng)
            else:
                edge += p.split
                if roll < edge and len(word) >= 4:
                    cut = rng.randrange(2, len(word) - 1)
                    word = word[:cut] + " " + word[cut:]
                else:
                    edge += p.merge
                    if roll < edge and k + 1 < len(words):
                        word = word + words[k + 1]
                        k += 1
                    elif fold(word) != word and rng.random() < p.diacritic_loss:
                        word = fold(word)
            out.append(word)
            if p.inserted_words and rng.random() < p.insertion:
                out.append(rng.choice(p.inserted_words))
            k += 1
        return " ".join(out)

    @staticmethod
    def _substitute(word: str, p: LanguageNoise, rng: random.Random) -> str:
        letters = list(word)
        changes = max(1, round(len(letters) * p.char_error))
        for _ in range(changes):
            i = rng.randrange(len(letters))
            options = p.confusions.get(letters[i])
            if options:
                choices = sorted(options)
                letters[i] = rng.choices(choices, weights=[options[c] for c in choices])[0]
            elif len(letters) > 2 and rng.random() < 0.5:
                del letters[i]
            else:
                letters[i] = fold(letters[i])
        return "".join(letters)
