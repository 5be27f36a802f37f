"""Caller language identification: Whisper's acoustic language probabilities, restricted to the
languages the centre expects and weighted by a prior from the caller number's country."""

from __future__ import annotations

import phonenumbers

from transcription.engine import LanguageGuess

# Share of callers from a country who speak each language (a prior, not a rule: a Ukrainian number in
# Karlovy Vary may well speak Czech). Countries not listed get a uniform prior.
COUNTRY_LANGUAGE_PRIOR: dict[str, dict[str, float]] = {
    "CZ": {"cs": 0.85, "sk": 0.05, "uk": 0.03, "vi": 0.02, "ru": 0.02, "en": 0.01, "de": 0.01, "pl": 0.01},
    "SK": {"sk": 0.8, "cs": 0.15, "en": 0.05},
    "DE": {"de": 0.8, "en": 0.05, "cs": 0.05, "ru": 0.05, "pl": 0.05},
    "AT": {"de": 0.85, "en": 0.05, "cs": 0.05, "sk": 0.05},
    "PL": {"pl": 0.85, "en": 0.05, "cs": 0.05, "uk": 0.05},
    "UA": {"uk": 0.6, "ru": 0.35, "cs": 0.05},
    "RU": {"ru": 0.9, "uk": 0.05, "en": 0.05},
    "BY": {"ru": 0.8, "uk": 0.1, "en": 0.1},
    "VN": {"vi": 0.9, "en": 0.05, "cs": 0.05},
    "GB": {"en": 0.95, "pl": 0.05},
    "IE": {"en": 0.95, "pl": 0.05},
    "US": {"en": 0.95, "ru": 0.05},
}


def country_of(number: str | None) -> str | None:
    """ISO region of an E.164 number (``+420...`` → ``CZ``), None when it cannot be parsed."""
    if not number:
        return None
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(parsed)


def language_prior(country: str | None, candidates: tuple[str, ...]) -> dict[str, float]:
    """Prior over ``candidates``; a small floor keeps every candidate reachable by strong acoustics."""
    table = COUNTRY_LANGUAGE_PRIOR.get((country or "").upper(), {})
    floor = 0.02
    raw = {lang: table.get(lang, 0.0) + floor for lang in candidates}
    total = sum(raw.values())
    return {lang: p / total for lang, p in raw.items()}


def combine(
    acoustic: dict[str, float],
    candidates: tuple[str, ...],
    country: str | None,
    prior_weight: float = 0.5,
) -> LanguageGuess:
    """Posterior over ``candidates``: acoustic likelihood x prior**weight, renormalised."""
    prior = language_prior(country, candidates)
    scores = {lang: max(acoustic.get(lang, 0.0), 1e-6) * prior[lang] ** prior_weight for lang in candidates}
    total = sum(scores.values())
    ranked = sorted(((lang, s / total) for lang, s in scores.items()), key=lambda item: -item[1])
    best, probability = ranked[0]
    return LanguageGuess(
        language=best,
        probability=round(probability, 4),
        candidates=tuple((lang, round(p, 4)) for lang, p in ranked),
    )


def prior_only(country: str | None, candidates: tuple[str, ...], fallback: str) -> LanguageGuess:
    """Without a model or speech: the most likely language for the caller's country."""
    if country is None or country.upper() not in COUNTRY_LANGUAGE_PRIOR:
        return LanguageGuess(language=fallback, probability=0.0, candidates=())
    prior = language_prior(country, candidates)
    ranked = sorted(prior.items(), key=lambda item: -item[1])
    return LanguageGuess(
        language=ranked[0][0],
        probability=round(ranked[0][1], 4),
        candidates=tuple((lang, round(p, 4)) for lang, p in ranked),
    )
