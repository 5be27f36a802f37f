"""The learned model: safe storage, features robust to recognition errors, explanations, combination."""

from __future__ import annotations

import contextlib
import gzip

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from routing.model import MAGIC, Head, ModelError, TriageModel, extract
from routing.triage import Triage, weigh_heard_signals
from routing.types import TriageInput
from routing.vocabulary import Agency, IncidentType


def _tiny_model() -> TriageModel:
    words = ["hori", "dum", "nedycha", "kradez"]
    features = [extract(w, "cs", "112") for w in words]
    buckets = sorted({b for f in features for b in f.counts})
    keep = np.array(buckets, np.int64)
    rng = np.random.default_rng(1)
    heads = {
        "type": Head(
            "type",
            ("FIRE_BUILDING", "MED_CARDIAC_ARREST"),
            rng.normal(size=(keep.size, 2)).astype(np.float32),
            np.zeros(2, np.float32),
            1.0,
        ),
        "tcpr": Head(
            "tcpr",
            ("tcpr",),
            rng.normal(size=(keep.size, 1)).astype(np.float32),
            np.zeros(1, np.float32),
            1.5,
            True,
        ),
    }
    model = TriageModel(keep, np.ones(keep.size, np.float32), heads, {"policy": {}}, "")
    return TriageModel.from_bytes(model.to_bytes())


def test_storage_round_trips_and_the_version_is_the_content_hash() -> None:
    model = _tiny_model()
    data = model.to_bytes()
    again = TriageModel.from_bytes(data)
    assert again.digest == model.digest and len(model.digest) == 12
    assert again.to_bytes() == data  # same model, same bytes
    assert list(again.heads) == ["type", "tcpr"] or set(again.heads) == {"type", "tcpr"}
    assert again.heads["tcpr"].multilabel


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: b"",
        lambda d: b"not gzip at all",
        lambda d: gzip.compress(b"something else entirely"),
        lambda d: gzip.compress(MAGIC + b"\xff\xff\xff\x7f{"),
        lambda d: gzip.compress(gzip.decompress(d)[:-50]),
        lambda d: d[: len(d) // 2],
    ],
)
def test_a_damaged_model_file_is_a_clear_error(damage) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError):
        TriageModel.from_bytes(damage(_tiny_model().to_bytes()))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
@example(b"\x01\x00\x00\x001")  # a header that is valid JSON but not an object (found by this test)
@example(b"\x02\x00\x00\x00[]")
def test_any_bytes_load_as_a_model_or_a_model_error(data: bytes) -> None:
    with contextlib.suppress(ModelError):
        TriageModel.from_bytes(gzip.compress(MAGIC + data))


def test_character_ngrams_survive_lost_diacritics_and_inflection() -> None:
    said = extract("nedýchá", "cs", "155").counts
    heard = extract("nedycha", "cs", "155").counts
    inflected = extract("nedýchal", "cs", "155").counts
    shared = len(set(said) & set(heard)) / len(said)
    assert shared > 0.8  # the model sees almost the same word
    assert len(set(said) & set(inflected)) / len(said) > 0.5


def test_explanations_point_at_words_of_the_transcript() -> None:
    model = _tiny_model()
    text = "Prosím, hoří dům a soused nedýchá"
    features = extract(text, "cs", "112", with_spans=True)
    vector = model.vector(features)
    for cls in ("FIRE_BUILDING", "MED_CARDIAC_ARREST"):
        for (start, end), weight in model.explain(vector, features, "type", cls):
            assert weight > 0
            assert text[start:end].strip() and start >= 0 and end <= len(text)


def test_probabilities_are_a_distribution() -> None:
    model = _tiny_model()
    probs = model.predict(model.vector(extract("hoří dům", "cs", "150")))
    assert abs(sum(probs["type"].values()) - 1.0) < 1e-5
    assert 0.0 <= probs["tcpr"]["tcpr"] <= 1.0


# ------------------------------------------------------------------------------ the shipped combination


def test_shipped_model_is_versioned_and_small(learned: Triage) -> None:
    assert learned.model is not None
    assert f"+model:{learned.model.digest}" in learned.rules_version
    assert learned.model.meta["policy"]["type_source"] in ("model", "rules_if_sure")
    assert "cv" in learned.model.meta


def test_learned_decision_explains_its_type_with_transcript_words(learned: Triage) -> None:
    text = "Dobrý den, u nás v paneláku na chodbě strašně smrdí plyn, celý patro to cítí"
    d = learned.decide(TriageInput(dialled="112", transcript=text))
    assert d.incident_type.value is IncidentType.HAZMAT_GAS
    model_evidence = [e for e in d.incident_type.evidence if e.rule.startswith("model.type.")]
    assert model_evidence
    for ev in model_evidence:
        assert ev.span is not None and text[ev.span[0] : ev.span[1]] == ev.words[0]


def test_learned_triage_keeps_the_rules_for_cardiac_arrest(learned: Triage) -> None:
    d = learned.decide(TriageInput(dialled="158", transcript="manžel leží na zemi, nereaguje a nedýchá"))
    assert d.tcpr.value
    assert d.agencies[0].value is Agency.ZZS
    assert d.priority.value == 1


def test_an_unsure_learned_decision_names_two_alternatives(learned: Triage) -> None:
    d = learned.decide(TriageInput(dialled="112", transcript="haló, no, já nevím, tady je to nějaký divný"))
    if d.unsure:
        assert len(d.alternatives) >= 2
        assert all(a.value is not d.incident_type.value for a in d.alternatives)
    assert d.agencies  # an emergency number, no proof of a prank: an agency stays


def test_learned_triage_with_no_transcript_is_unknown(learned: Triage) -> None:
    d = learned.decide(TriageInput(dialled="150", transcript=""))
    assert d.incident_type.value is IncidentType.UNKNOWN
    assert [a.value for a in d.agencies] == [Agency.HZS]


# ------------------------------------------------------------------- the type agrees with the signals heard


def test_an_unconscious_person_without_a_poisoning_word_is_unconscious(learned: Triage) -> None:
    # The type head alone said MED_POISONING ("nejde probudit" is frequent in overdose calls); the rules heard
    # "unresponsive" and no drug or alcohol word. The heard signals weigh in (CombinePolicy.rules_weight).
    assert learned.model is not None and learned.model.meta["policy"]["rules_weight"] > 0.0
    d = learned.decide(TriageInput(dialled="155", transcript="Manžel zkolaboval, nejde probudit."))
    assert d.incident_type.value is IncidentType.MED_UNCONSCIOUS
    assert not d.tcpr.value
    assert [a.value for a in d.agencies][:1] == [Agency.ZZS]
    # with a poisoning cue the same words are a poisoning
    d = learned.decide(
        TriageInput(dialled="155", transcript="Manžel spolykal prášky na spaní, zkolaboval, nejde probudit.")
    )
    assert d.incident_type.value is IncidentType.MED_POISONING


_TYPES = list(IncidentType)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=1e-6, max_value=1.0), min_size=3, max_size=8),
    st.dictionaries(st.integers(min_value=0, max_value=7), st.floats(min_value=0.0, max_value=8.0)),
    st.floats(min_value=0.0, max_value=2.0),
    st.integers(min_value=0, max_value=7),
    st.floats(min_value=0.1, max_value=3.0),
)
def test_heard_signals_only_ever_raise_the_type_they_support(
    raw: list[float], rule: dict[int, float], weight: float, boosted: int, extra: float
) -> None:
    total = sum(raw)
    ranked = [(_TYPES[i], p / total) for i, p in enumerate(raw)]
    scores = {_TYPES[i]: s for i, s in rule.items() if i < len(raw)}
    blended = dict(weigh_heard_signals(ranked, scores, weight))
    assert abs(sum(blended.values()) - 1.0) < 1e-6
    if weight == 0.0 or not scores:
        assert all(abs(blended[t] - p) < 1e-9 for t, p in ranked)
    # more of a type's signals heard never lowers that type's probability
    target = _TYPES[boosted % len(raw)]
    more = dict(scores)
    more[target] = more.get(target, 0.0) + extra
    assert dict(weigh_heard_signals(ranked, more, weight))[target] >= blended[target] - 1e-9
