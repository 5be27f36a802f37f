from __future__ import annotations

from transcription.config import DEFAULT_CANDIDATE_LANGUAGES
from transcription.language import combine, country_of, language_prior, prior_only


def test_caller_number_gives_the_country() -> None:
    assert country_of("+420603224590") == "CZ"
    assert country_of("+380501234567") == "UA"
    assert country_of("+4915112345678") == "DE"
    assert country_of("not a number") is None
    assert country_of(None) is None


def test_czech_number_tips_an_ambiguous_czech_slovak_guess_to_czech() -> None:
    acoustic = {"cs": 0.46, "sk": 0.39, "hu": 0.05}
    guess = combine(acoustic, DEFAULT_CANDIDATE_LANGUAGES, "CZ")
    assert guess.language == "cs"
    assert guess.probability > 0.7


def test_slovak_number_tips_the_same_guess_to_slovak() -> None:
    guess = combine({"cs": 0.46, "sk": 0.39}, DEFAULT_CANDIDATE_LANGUAGES, "SK")
    assert guess.language == "sk"


def test_strong_acoustics_beat_the_country_prior() -> None:
    guess = combine({"de": 0.97, "cs": 0.01}, DEFAULT_CANDIDATE_LANGUAGES, "CZ")
    assert guess.language == "de"


def test_languages_outside_the_candidates_are_never_chosen() -> None:
    guess = combine({"hu": 0.9, "cs": 0.05, "sk": 0.05}, DEFAULT_CANDIDATE_LANGUAGES, None)
    assert guess.language in DEFAULT_CANDIDATE_LANGUAGES
    assert {lang for lang, _ in guess.candidates} == set(DEFAULT_CANDIDATE_LANGUAGES)
    assert abs(sum(p for _, p in guess.candidates) - 1.0) < 0.01


def test_prior_is_a_distribution_over_candidates() -> None:
    prior = language_prior("UA", DEFAULT_CANDIDATE_LANGUAGES)
    assert abs(sum(prior.values()) - 1.0) < 1e-9
    assert max(prior, key=lambda k: prior[k]) == "uk"
    assert min(prior.values()) > 0


def test_without_acoustics_the_country_decides_and_unknown_falls_back() -> None:
    assert prior_only("VN", DEFAULT_CANDIDATE_LANGUAGES, "cs").language == "vi"
    unknown = prior_only("BR", DEFAULT_CANDIDATE_LANGUAGES, "cs")
    assert unknown.language == "cs" and unknown.probability == 0.0
