"""Word analysis: inflection, missing diacritics, colloquial Czech and negation scopes."""

from __future__ import annotations

import pytest

from routing.protocol import load_protocol
from routing.text import Analyzer, fold


@pytest.fixture(scope="module")
def czech() -> Analyzer:
    return Analyzer(load_protocol().languages["cs"])


def _negated(analyzer: Analyzer, text: str) -> dict[str, bool]:
    return {t.text: t.negated for t in analyzer.tokenize(text)}


def test_fold_removes_diacritics_and_case() -> None:
    assert fold("Mariánské Lázně") == "marianske lazne"
    assert fold("ĐÁ") == "da"


def test_czech_ne_prefix_is_a_negation_flag_on_the_same_stem(czech: Analyzer) -> None:
    positive = czech.analyze_word("dýchá")
    negative = czech.analyze_word("nedýchá")
    assert negative.negated and not positive.negated
    assert positive.keys & negative.keys


def test_inflected_forms_share_a_key(czech: Analyzer) -> None:
    forms = ["dýchá", "dýchal", "dýchat", "dycha"]
    keys = [czech.analyze_word(f).keys for f in forms]
    common = set.intersection(*(set(k) for k in keys))
    assert common


def test_colloquial_ej_ending_folds_to_standard(czech: Analyzer) -> None:
    assert czech.analyze_word("zpocenej").keys & czech.analyze_word("zpocený").keys
    assert czech.analyze_word("nehejbe").keys & czech.analyze_word("nehýbe").keys


def test_words_that_start_with_ne_but_are_not_negations(czech: Analyzer) -> None:
    assert not czech.analyze_word("nehoda").negated
    assert not czech.analyze_word("nemocnice").negated


def test_negation_scope_ends_at_contrast_word(czech: Analyzer) -> None:
    flags = _negated(czech, "nehoří, jen se kouří")
    assert flags["nehoří"] is True
    assert flags["kouří"] is False


def test_separate_negator_negates_following_words(czech: Analyzer) -> None:
    flags = _negated(czech, "není zraněný")
    assert flags["zraněný"] is True


def test_negator_after_the_word_reaches_back(czech: Analyzer) -> None:
    flags = _negated(czech, "zbraň u sebe nemá")
    assert flags["zbraň"] is True


def test_answer_no_before_negated_verb_does_not_negate_the_rest(czech: Analyzer) -> None:
    flags = _negated(czech, "ne nedýchá normálně")
    assert flags["nedýchá"] is True
    assert flags["normálně"] is False


def test_german_nicht_negates_the_verb_before_it() -> None:
    german = Analyzer(load_protocol().languages["de"])
    flags = {t.text: t.negated for t in german.tokenize("er atmet nicht")}
    assert flags["atmet"] is True


def test_token_spans_point_into_the_text(czech: Analyzer) -> None:
    text = "Manžel   nedýchá, prosím!"
    for token in czech.tokenize(text):
        assert text[token.start : token.end] == token.text
