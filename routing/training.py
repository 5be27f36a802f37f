"""Training the triage model (``izs triage train``): deterministic, cross-validated, calibrated.

Input: labelled scenario files (tests/fixtures/calls/SCHEMA.md) — the corpus (routing/data/corpus/train/),
the round-1 challenge files, and optionally the centre's confirmed incidents — each call twice: as said and
as recognised (the real pipeline's text where routing/data/corpus/recognised/ or the record has it, else the
fitted noise model's). dev.jsonl and the sealed split are never trained on.

The calls are split into FOLDS by a hash of their id (a call's clean and recognised texts stay together).
Out-of-fold predictions give (1) each head's temperature (calibration), (2) the cross-validated figures, and
(3) the combination of rules and model, chosen by measurement (TYPE_SOURCES x AGENCY_SOURCES x CLEAR_AGENCY, then
RULES_WEIGHTS x AGENCY_SOURCES, then TCPR_THRESHOLDS): which decides the type, how much the heard signals weigh in it,
where the agencies come from, how sure the words must be before the dialled agency yields, and the model
probability that adds to the T-CPR rules. Then every head is fitted on all calls.

Needs scikit-learn and scipy (training only; prediction is numpy, routing/model.py).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from routing.asr_noise import NoiseModel
from routing.eval import Scenario, load_recognised, load_scenarios, metrics, prediction
from routing.model import HASH_BITS, Features, Head, TriageModel, extract
from routing.triage import CombinePolicy, SignalReport, Triage
from routing.types import TriageDecision, TriageInput

CORPUS_DIR = Path(__file__).with_name("data") / "corpus"
FOLDS = 3
NOISE_SEED = 12
KEEP_FEATURES = 20_000
MIN_DOCUMENT_FREQUENCY = 2
AGENCY_CODES = ("HZS", "ZZS", "PCR")
NO_AGENCY = "-"
REGULARISATION_C = 8.0
TEMPERATURES = tuple(round(0.3 + 0.05 * i, 2) for i in range(55))
TCPR_THRESHOLDS = (None, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TYPE_SOURCES = ("model", "rules_if_sure")
# With the type from the model: how much the rules' heard signals weigh beside the type head
# (CombinePolicy.rules_weight); 0.0 is the head alone. Tried after the first choice, with every agency source.
RULES_WEIGHTS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)
AGENCY_SOURCES = ("heads", "type_rules", "union")
# Safety by construction: the dialled number's agency is kept unless the model's primary agency is at least
# this sure (routing.safety); 0.0 (the model always decides) is not on offer even where it measures best.
CLEAR_AGENCY = (0.4, 0.5, 0.6, 0.7)
# The floor (specificity >= 97 %), then the most sensitive head and threshold: a missed cardiac arrest
# costs more than a false alarm a call taker clears with one question. Specificity is measured on whole texts
# and 1/4, 1/2, 3/4 partials (sticky flag); live partials come almost every word, so live false alarms are a
# little more frequent than this measure says (a 98 % floor was tried: recognised sensitivity fell).
TCPR_MIN_SPECIFICITY = 0.97
# Partial transcripts of calls that are NOT cardiac arrests, as negatives for a prefix-aware T-CPR head: the
# flag is sticky for the call (routing.safety.carry_forward), so one early partial that flags ("81 years
# old, fell in the bathroom, lying on the floor") is a false alarm for the whole call. Partials of arrests
# are left out: whether the arrest was described yet is not known from the text alone.
PREFIX_FRACTIONS = (0.25, 0.5, 0.75)
MIN_PREFIX_WORDS = 4
TCPR_HEADS = ("full", "prefix")  # the T-CPR head fitted on whole texts only, or also on the partials above


@dataclass(frozen=True, slots=True)
class Sample:
    scenario: Scenario
    text: str
    track: str  # "clean" or "recognised"
    fold: int


def fold_of(call_id: str, folds: int = FOLDS) -> int:
    return hashlib.sha256(call_id.encode("utf-8")).digest()[1] % folds


def corpus_files(paths: Iterable[Path]) -> list[Path]:
    """Scenario files under the given directories (or the files themselves), sorted, recognised/ excluded."""
    out: set[Path] = set()
    for path in paths:
        if path.is_dir():
            out.update(
                p for p in path.rglob("*.jsonl") if "recognised" not in p.parts and "sealed" not in p.parts
            )
        elif path.is_file():
            out.add(path)
    return sorted(out)


def with_recognised(
    scenarios: Sequence[Scenario],
    recognised: dict[str, tuple[str, str]],
    noise: NoiseModel | None,
    seed: int = NOISE_SEED,
) -> list[Scenario]:
    """Every scenario with a recognised text: its own, a result file's, or the noise model's."""
    out = []
    for s in scenarios:
        if s.recognised and (s.recognised_by or "").startswith("pipeline"):
            out.append(s)
        elif s.id in recognised:
            text, by = recognised[s.id]
            out.append(replace(s, recognised=text, recognised_by=by))
        elif s.recognised:
            out.append(s)
        elif noise is not None:
            out.append(
                replace(s, recognised=noise.apply(s.caller, s.language, seed, s.id), recognised_by="noise")
            )
        else:
            out.append(s)
    return out


def load_training(paths: Sequence[Path], noise: NoiseModel | None = None) -> list[Scenario]:
    scenarios: list[Scenario] = []
    seen: set[str] = set()
    for path in corpus_files(paths):
        for s in load_scenarios(path):
            if s.id in seen or s.expected.get("incident_type") == "UNKNOWN":
                continue
            seen.add(s.id)
            scenarios.append(s)
    recognised = load_recognised(
        [CORPUS_DIR / "recognised", *(p / "recognised" for p in paths if p.is_dir())]
    )
    return with_recognised(scenarios, recognised, noise)


def samples_of(scenarios: Sequence[Scenario], folds: int = FOLDS) -> list[Sample]:
    out = []
    for s in scenarios:
        fold = fold_of(s.id, folds)
        out.append(Sample(s, s.caller, "clean", fold))
        if s.recognised and s.recognised != s.caller:
            out.append(Sample(s, s.recognised, "recognised", fold))
    return out


def prefix_samples(samples: Sequence[Sample]) -> tuple[list[Sample], list[int]]:
    """Partial transcripts (PREFIX_FRACTIONS of the words, at least MIN_PREFIX_WORDS) of the texts of calls
    that are not cardiac arrests, and for each the index of the sample it was cut from."""
    out: list[Sample] = []
    parents: list[int] = []
    for i, sample in enumerate(samples):
        if sample.scenario.expected["tcpr"]:
            continue
        words = sample.text.split()
        cuts = sorted({max(MIN_PREFIX_WORDS, round(len(words) * f)) for f in PREFIX_FRACTIONS})
        for n in cuts:
            if n < len(words):
                out.append(replace(sample, text=" ".join(words[:n]), track=f"{sample.track}-partial"))
                parents.append(i)
    return out, parents


def _input(sample: Sample) -> TriageInput:
    s = sample.scenario
    return TriageInput(
        dialled=s.dialled,
        caller_number=s.caller_number,
        language=s.language,
        transcript=sample.text,
        is_final=True,
    )


@dataclass
class Heard:
    report: SignalReport
    rules: TriageDecision
    features: Features


def hear_all(triage: Triage, samples: Sequence[Sample]) -> list[Heard]:
    out = []
    for sample in samples:
        inp = _input(sample)
        report = triage.hear(inp)
        rules = triage.decide_rules(inp, report)
        features = extract(
            sample.text, sample.scenario.language, sample.scenario.dialled, *Triage.signal_names(report)
        )
        out.append(Heard(report, rules, features))
    return out


# ------------------------------------------------------------------------------------------- fitting


def _matrix(heard: Sequence[Heard]) -> Any:
    from scipy import sparse

    rows, cols, vals = [], [], []
    for i, h in enumerate(heard):
        for bucket in sorted(h.features.counts):
            rows.append(i)
            cols.append(bucket)
            vals.append(h.features.counts[bucket])
    return sparse.csr_matrix(
        (np.asarray(vals, np.float64), (np.asarray(rows), np.asarray(cols))),
        shape=(len(heard), 1 << HASH_BITS),
    )


def _select(counts: Any, labels: Sequence[str], keep: int) -> np.ndarray:
    """Buckets seen in enough calls, the `keep` most informative for the type (chi-squared), sorted."""
    from sklearn.feature_selection import chi2

    df = np.asarray((counts > 0).sum(axis=0)).ravel()
    candidates = np.flatnonzero(df >= MIN_DOCUMENT_FREQUENCY)
    if candidates.size <= keep:
        return candidates.astype(np.int64)
    binary = (counts[:, candidates] > 0).astype(np.float64)
    scores, _ = chi2(binary, np.asarray(labels))
    scores = np.nan_to_num(scores, nan=0.0)
    order = np.lexsort((candidates, -scores))  # best score first, ties by bucket: deterministic
    return np.sort(candidates[order[:keep]]).astype(np.int64)


def _tfidf(counts: Any, keep: np.ndarray, idf: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    from sklearn.preprocessing import normalize

    x = counts[:, keep].tocsr().astype(np.float64)
    if idf is None:
        df = np.asarray((x > 0).sum(axis=0)).ravel()
        idf = (np.log((1.0 + x.shape[0]) / (1.0 + df)) + 1.0).astype(np.float32)
    x.data = 1.0 + np.log(x.data)
    x = x.multiply(idf.astype(np.float64)).tocsr()
    return normalize(x, norm="l2", copy=False), idf


def _fit_softmax(x: Any, y: Sequence[str], classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    present = sorted(set(y))
    weights = np.zeros((x.shape[1], len(classes)), np.float64)
    bias = np.full(len(classes), -30.0, np.float64)  # a class never seen in training is never predicted
    if len(present) == 1:
        bias[classes.index(present[0])] = 0.0
        return weights, bias
    clf = LogisticRegression(C=REGULARISATION_C, max_iter=300, tol=1e-4)
    clf.fit(x, np.asarray(y))
    coef = clf.coef_
    if len(present) == 2:  # binary: sklearn keeps one row for the second class
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    else:
        intercept = clf.intercept_
    for row, cls in enumerate(clf.classes_):
        weights[:, classes.index(str(cls))] = coef[row]
        bias[classes.index(str(cls))] = intercept[row]
    return weights, bias


def _fit_sigmoids(x: Any, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    weights = np.zeros((x.shape[1], y.shape[1]), np.float64)
    bias = np.zeros(y.shape[1], np.float64)
    for j in range(y.shape[1]):
        column = y[:, j]
        if column.min() == column.max():
            bias[j] = 30.0 if column[0] else -30.0
            continue
        clf = LogisticRegression(C=REGULARISATION_C, max_iter=300, tol=1e-4)
        clf.fit(x, column)
        weights[:, j] = clf.coef_[0]
        bias[j] = clf.intercept_[0]
    return weights, bias


@dataclass
class Labels:
    types: list[str]
    primary: list[str]
    members: np.ndarray
    tcpr: np.ndarray
    type_classes: list[str]


def labels_of(samples: Sequence[Sample]) -> Labels:
    types = [str(s.scenario.expected["incident_type"]) for s in samples]
    primary = [str((s.scenario.expected["agencies"] or [NO_AGENCY])[0]) for s in samples]
    members = np.array(
        [[a in (s.scenario.expected["agencies"] or []) for a in AGENCY_CODES] for s in samples],
        dtype=np.int64,
    )
    tcpr = np.array([[bool(s.scenario.expected["tcpr"])] for s in samples], dtype=np.int64)
    return Labels(types, primary, members, tcpr, sorted(set(types)))


HEAD_CLASSES = {"primary": (*AGENCY_CODES, NO_AGENCY), "agencies": AGENCY_CODES, "tcpr": ("tcpr",)}


def _logits(x: Any, fitted: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    logits: np.ndarray = np.asarray(x @ fitted[0]) + fitted[1]
    return logits


def _probs(logits: np.ndarray, temperature: float, multilabel: bool) -> np.ndarray:
    z = logits / temperature
    if multilabel:
        return 1.0 / (1.0 + np.exp(-z))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


def _temperature(logits: np.ndarray, target: np.ndarray, multilabel: bool) -> float:
    """The temperature that minimises the out-of-fold negative log-likelihood."""
    best, best_nll = 1.0, math.inf
    for t in TEMPERATURES:
        p = np.clip(_probs(logits, t, multilabel), 1e-9, 1 - 1e-9)
        if multilabel:
            nll = float(-(target * np.log(p) + (1 - target) * np.log(1 - p)).mean())
        else:
            nll = float(-np.log(p[np.arange(len(target)), target]).mean())
        if nll < best_nll - 1e-12:
            best, best_nll = t, nll
    return best


@dataclass
class TrainingResult:
    triage: Triage
    model: TriageModel
    samples: list[Sample]
    heard: list[Heard]
    oof: list[dict[str, dict[str, float]]]  # out-of-fold probabilities per sample
    policy: CombinePolicy
    policy_scores: list[tuple[dict[str, Any], float]]


def train(
    triage: Triage,
    scenarios: Sequence[Scenario],
    folds: int = FOLDS,
    keep_features: int = KEEP_FEATURES,
    log: Any = None,
    heard: list[Heard] | None = None,
) -> TrainingResult:
    def say(message: str) -> None:
        if log is not None:
            log(message)

    samples = samples_of(scenarios, folds)
    say(f"{len(scenarios)} calls, {len(samples)} texts (clean + recognised); hearing the rules' signals")
    if heard is None or len(heard) != len(samples):
        heard = hear_all(triage, samples)
    counts = _matrix(heard)
    lab = labels_of(samples)
    fold_ids = np.array([s.fold for s in samples])
    partials, parents = prefix_samples(samples)
    say(
        f"{len(partials)} partial transcripts of calls that are not cardiac arrests (prefix-aware T-CPR head)"
    )
    partial_heard = hear_all(triage, partials)
    partial_counts = _matrix(partial_heard)
    partial_folds = np.array([p.fold for p in partials], dtype=np.int64)
    oof_logits: dict[str, np.ndarray] = {
        "type": np.zeros((len(samples), len(lab.type_classes))),
        **{name: np.zeros((len(samples), len(c))) for name, c in HEAD_CLASSES.items()},
        "tcpr_prefix": np.zeros((len(samples), 1)),
    }
    partial_logits = {head: np.zeros((len(partials), 1)) for head in TCPR_HEADS}
    for k in range(folds):
        train_idx, test_idx = np.flatnonzero(fold_ids != k), np.flatnonzero(fold_ids == k)
        if test_idx.size == 0:
            continue
        say(f"fold {k + 1}/{folds}: {train_idx.size} texts to fit, {test_idx.size} held out")
        keep = _select(counts[train_idx], [lab.types[i] for i in train_idx], keep_features)
        x_train, idf = _tfidf(counts[train_idx], keep)
        x_test, _ = _tfidf(counts[test_idx], keep, idf)
        fitted = _fit_heads_on(x_train, lab, train_idx)
        for name, f in fitted.items():
            oof_logits[name][test_idx] = _logits(x_test, f)
        p_train, p_test = np.flatnonzero(partial_folds != k), np.flatnonzero(partial_folds == k)
        x_p_train, _ = _tfidf(partial_counts[p_train], keep, idf)
        x_p_test, _ = _tfidf(partial_counts[p_test], keep, idf)
        with_partials = _fit_tcpr_with_partials(x_train, lab.tcpr[train_idx], x_p_train)
        oof_logits["tcpr_prefix"][test_idx] = _logits(x_test, with_partials)
        partial_logits["full"][p_test] = _logits(x_p_test, fitted["tcpr"])
        partial_logits["prefix"][p_test] = _logits(x_p_test, with_partials)
    type_target = np.array([lab.type_classes.index(t) for t in lab.types])
    primary_classes = list(HEAD_CLASSES["primary"])
    primary_target = np.array([primary_classes.index(p) for p in lab.primary])
    temperatures = {
        "type": _temperature(oof_logits["type"], type_target, False),
        "primary": _temperature(oof_logits["primary"], primary_target, False),
        "agencies": _temperature(oof_logits["agencies"], lab.members, True),
        "tcpr": _temperature(oof_logits["tcpr"], lab.tcpr, True),
        "tcpr_prefix": _temperature(oof_logits["tcpr_prefix"], lab.tcpr, True),
    }
    say(f"temperatures (out-of-fold calibration): {temperatures}")
    classes = {"type": tuple(lab.type_classes), **HEAD_CLASSES}
    multilabel = {"type": False, "primary": False, "agencies": True, "tcpr": True}
    oof: list[dict[str, dict[str, float]]] = [{} for _ in samples]
    for name in classes:
        p = _probs(oof_logits[name], temperatures[name], multilabel[name])
        for i in range(len(samples)):
            oof[i][name] = {c: float(v) for c, v in zip(classes[name], p[i], strict=True)}
    policy, scores = choose_policy(triage, samples, heard, oof)
    for tried, score in scores:
        say(f"combination out-of-fold: {tried} -> {score}")
    tcpr_probs = {
        head: _probs(oof_logits["tcpr" if head == "full" else "tcpr_prefix"], temperatures[name], True)[:, 0]
        for head, name in zip(TCPR_HEADS, ("tcpr", "tcpr_prefix"), strict=True)
    }
    partial_probs = {
        head: _probs(partial_logits[head], temperatures[name], True)[:, 0]
        for head, name in zip(TCPR_HEADS, ("tcpr", "tcpr_prefix"), strict=True)
    }
    tcpr_head, threshold, tcpr_scores = choose_tcpr(
        triage, samples, heard, tcpr_probs, partial_heard, parents, partial_probs, policy
    )
    for line in tcpr_scores:
        say(f"T-CPR out-of-fold: {line}")
    policy = replace(policy, tcpr_threshold=threshold)
    if tcpr_head == "prefix":
        temperatures["tcpr"] = temperatures["tcpr_prefix"]
    for i, p in enumerate(tcpr_probs[tcpr_head]):
        oof[i]["tcpr"] = {"tcpr": float(p)}
    scores.extend((line, 0.0) for line in tcpr_scores)
    say(f"combination chosen on out-of-fold predictions: {policy}; T-CPR head: {tcpr_head}")
    cv = cross_validated_figures(triage, samples, heard, oof, policy)

    say("fitting every head on all texts")
    keep = _select(counts, lab.types, keep_features)
    x_all, idf = _tfidf(counts, keep)
    fitted = _fit_heads_on(x_all, lab, np.arange(len(samples)))
    if tcpr_head == "prefix":
        x_partials, _ = _tfidf(partial_counts, keep, idf)
        fitted["tcpr"] = _fit_tcpr_with_partials(x_all, lab.tcpr, x_partials)
    del temperatures["tcpr_prefix"]
    heads = {
        name: Head(
            name,
            classes[name],
            fitted[name][0].astype(np.float32),
            fitted[name][1].astype(np.float32),
            temperatures[name],
            multilabel[name],
        )
        for name in classes
    }
    languages = Counter(s.language for s in scenarios)
    meta = {
        "policy": policy.to_json(),
        "trained_on": {
            "calls": len(scenarios),
            "texts": len(samples),
            "recognised_by_pipeline": sum(
                1 for s in scenarios if (s.recognised_by or "").startswith("pipeline")
            ),
            "languages": dict(sorted(languages.items())),
            "corpus_digest": corpus_digest(scenarios),
        },
        "rules_version": triage.rules_version,
        "cv": cv,
        "tcpr_head": {"trained_on": tcpr_head, "partials": len(partials) if tcpr_head == "prefix" else 0},
        "features": len(keep),
    }
    model = TriageModel(keep, idf, heads, meta, "")
    model = TriageModel.from_bytes(model.to_bytes())  # the digest and float16 weights, exactly as saved
    return TrainingResult(triage, model, samples, heard, oof, policy, scores)


def _fit_heads_on(x: Any, lab: Labels, rows: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fit every head on matrix `x` whose row r holds the text of sample rows[r]."""
    return {
        "type": _fit_softmax(x, [lab.types[i] for i in rows], lab.type_classes),
        "primary": _fit_softmax(x, [lab.primary[i] for i in rows], list(HEAD_CLASSES["primary"])),
        "agencies": _fit_sigmoids(x, lab.members[rows]),
        "tcpr": _fit_sigmoids(x, lab.tcpr[rows]),
    }


def _fit_tcpr_with_partials(x_full: Any, tcpr: np.ndarray, x_partials: Any) -> tuple[np.ndarray, np.ndarray]:
    """The T-CPR head fitted on whole texts plus partial transcripts of non-arrest calls (as negatives)."""
    from scipy import sparse

    x = sparse.vstack([x_full, x_partials]).tocsr()
    y = np.vstack([tcpr, np.zeros((x_partials.shape[0], 1), np.int64)])
    return _fit_sigmoids(x, y)


def corpus_digest(scenarios: Sequence[Scenario]) -> str:
    h = hashlib.sha256()
    for s in sorted(scenarios, key=lambda s: s.id):
        h.update(
            json.dumps(
                [s.id, s.caller, s.recognised, s.expected], ensure_ascii=False, sort_keys=True
            ).encode()
        )
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------------- choosing the policy


def decide_with(
    triage: Triage, sample: Sample, heard: Heard, probs: dict[str, dict[str, float]], policy: CombinePolicy
) -> TriageDecision:
    return triage.combine(_input(sample), heard.report, heard.rules, probs, policy)


def _score(report: dict[str, Any]) -> float:
    return float(
        (report["primary_agency_accuracy"] or 0)
        + (report["agency_set_accuracy"] or 0)
        + (report["incident_type_accuracy"] or 0)
    )


def choose_policy(
    triage: Triage,
    samples: Sequence[Sample],
    heard: Sequence[Heard],
    oof: Sequence[dict[str, dict[str, float]]],
) -> tuple[CombinePolicy, list[tuple[dict[str, Any], float]]]:
    """Every combination on the out-of-fold predictions; the best sum of primary-agency, agency-set and type
    accuracy wins (ties: the earlier, simpler one). Then, with the clear_agency chosen, the weight of the heard
    signals in the model's type (RULES_WEIGHTS) with every agency source. The T-CPR head and threshold are
    choose_tcpr's."""
    scores: list[tuple[dict[str, Any], float]] = []
    best: tuple[float, CombinePolicy] | None = None

    def consider(policy: CombinePolicy) -> None:
        nonlocal best
        pairs = [
            (s.scenario, prediction(decide_with(triage, s, h, p, policy)))
            for s, h, p in zip(samples, heard, oof, strict=True)
        ]
        score = _score(metrics(pairs))
        scores.append((policy.to_json(), round(score, 4)))
        if best is None or score > best[0] + 1e-9:
            best = (score, policy)

    for type_source, agency_source, clear in itertools.product(TYPE_SOURCES, AGENCY_SOURCES, CLEAR_AGENCY):
        consider(CombinePolicy(type_source=type_source, agency_source=agency_source, clear_agency=clear))
    assert best is not None
    clear = best[1].clear_agency
    for weight, agency_source in itertools.product(RULES_WEIGHTS[1:], AGENCY_SOURCES):
        consider(
            CombinePolicy(
                type_source="model", agency_source=agency_source, clear_agency=clear, rules_weight=weight
            )
        )
    return best[1], scores


def choose_tcpr(
    triage: Triage,
    samples: Sequence[Sample],
    heard: Sequence[Heard],
    probs: dict[str, np.ndarray],
    partial_heard: Sequence[Heard],
    parents: Sequence[int],
    partial_probs: dict[str, np.ndarray],
    policy: CombinePolicy,
) -> tuple[str, float | None, list[dict[str, Any]]]:
    """The T-CPR head (TCPR_HEADS) and the threshold that adds it to the rules, on out-of-fold probabilities.

    The flag is sticky for a call, so a call that is not a cardiac arrest counts as a false alarm when its
    whole text or any of its partial transcripts flags ("sticky" specificity). The most sensitive setting
    (on whole texts, clean and recognised) whose sticky specificity stays at or above TCPR_MIN_SPECIFICITY
    wins; ties go to the higher sticky specificity, then the whole-text head. None = the rules alone.
    """
    scores: list[dict[str, Any]] = []
    best: tuple[float, float, str, float | None] | None = None
    for head, threshold in itertools.product(TCPR_HEADS, TCPR_THRESHOLDS):
        candidate = replace(policy, tcpr_threshold=threshold)

        def flagged(h: Heard, p: float, candidate: CombinePolicy = candidate) -> bool:
            return triage.tcpr_flag(h.rules, {"tcpr": {"tcpr": float(p)}}, candidate)

        false_alarm = [False] * len(samples)
        hits: dict[str, list[bool]] = {"clean": [], "recognised": []}
        for i, (s, h) in enumerate(zip(samples, heard, strict=True)):
            if s.scenario.expected["tcpr"]:
                hits[s.track].append(flagged(h, probs[head][i]))
            else:
                false_alarm[i] = flagged(h, probs[head][i])
        whole_fp = sum(false_alarm)
        for j, (h, parent) in enumerate(zip(partial_heard, parents, strict=True)):
            if not false_alarm[parent] and flagged(h, partial_probs[head][j]):
                false_alarm[parent] = True
        negatives = sum(1 for s in samples if not s.scenario.expected["tcpr"])
        positives = hits["clean"] + hits["recognised"]
        sensitivity = sum(positives) / max(1, len(positives))
        sticky = 1.0 - sum(false_alarm) / max(1, negatives)
        scores.append(
            {
                "tcpr_head": head,
                "tcpr_threshold": threshold,
                "sensitivity": round(sensitivity, 4),
                "sensitivity_clean": round(sum(hits["clean"]) / max(1, len(hits["clean"])), 4),
                "sensitivity_recognised": round(sum(hits["recognised"]) / max(1, len(hits["recognised"])), 4),
                "specificity_whole_text": round(1.0 - whole_fp / max(1, negatives), 4),
                "specificity_sticky": round(sticky, 4),
            }
        )
        better = best is None or sensitivity > best[0] + 1e-9
        if best is not None and abs(sensitivity - best[0]) <= 1e-9:
            better = sticky > best[1] + 1e-9
        if sticky >= TCPR_MIN_SPECIFICITY and better:
            best = (sensitivity, sticky, head, threshold)
    if best is None:
        return "full", None, scores
    return best[2], best[3], scores


# ------------------------------------------------------------------------------------------------ CLI

DEFAULT_SOURCES = (CORPUS_DIR / "train",)
CHALLENGE_GLOB = "challenge*.jsonl"


def default_sources(repo_root: Path) -> list[Path]:
    """The corpus and the round-1 challenge files (dev.jsonl is held out, the sealed split is never read)."""
    fixtures = repo_root / "tests" / "fixtures" / "calls"
    return [*DEFAULT_SOURCES, *sorted(fixtures.glob(CHALLENGE_GLOB))]


def cross_validated_figures(
    triage: Triage,
    samples: Sequence[Sample],
    heard: Sequence[Heard],
    oof: Sequence[dict[str, dict[str, float]]],
    policy: CombinePolicy,
) -> dict[str, Any]:
    """Out-of-fold figures per track: the model's combination, the rules alone, the dialled number."""
    from routing.eval import dialled_baseline

    out: dict[str, Any] = {"folds": max((s.fold for s in samples), default=0) + 1}
    for track in ("clean", "recognised"):
        idx = [i for i, s in enumerate(samples) if s.track == track]
        out[track] = {
            "model": metrics(
                [
                    (
                        samples[i].scenario,
                        prediction(decide_with(triage, samples[i], heard[i], oof[i], policy)),
                    )
                    for i in idx
                ]
            ),
            "rules": metrics(
                [
                    (
                        samples[i].scenario,
                        prediction(
                            triage.safeguard_rules(_input(samples[i]), heard[i].report, heard[i].rules)
                        ),
                    )
                    for i in idx
                ]
            ),
            "dialled": metrics([(samples[i].scenario, dialled_baseline(samples[i].scenario)) for i in idx]),
        }
    return out


def write_cv_report(cv: dict[str, Any], out: Any) -> None:
    keys = (
        "primary_agency_accuracy",
        "agency_set_accuracy",
        "incident_type_accuracy",
        "tcpr_sensitivity",
        "tcpr_specificity",
    )
    out.write(f"\ntraining corpus, cross-validated ({cv.get('folds')} folds by call id, out-of-fold):\n")
    columns = [(track, who) for track in ("clean", "recognised") for who in ("model", "rules", "dialled")]
    out.write("metric".ljust(24) + "".join(f"{track[:5] + '/' + who:>17}" for track, who in columns) + "\n")
    out.write("calls".ljust(24) + "".join(f"{cv[t][w]['calls']:>17}" for t, w in columns) + "\n")
    for key in keys:
        out.write(
            key.replace("_accuracy", "").ljust(24)
            + "".join(f"{_pct(cv[t][w][key]):>17}" for t, w in columns)
            + "\n"
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


PROTOCOL_FILES = ("languages.toml", "signals.toml", "types.toml", "agencies.toml", "protocol.toml")


def main_train(argv: Sequence[str] | None = None, out: Any = None, err: Any = None) -> int:
    """``izs triage train [SOURCE ...] [--out DIR] [--data-dir DIR] [--folds N]``: fit, measure, write.

    SOURCE: scenario files or directories (default: routing/data/corpus/train and the challenge files).
    --out DIR receives a complete triage data directory (the protocol files of --data-dir and
    model/triage-model.bin.gz): an operator compares it with `izs triage eval --candidate DIR` and switches
    with IZS_TRIAGE_DATA_DIR=DIR. Without --out the shipped model in routing/data/model/ is rewritten.
    """
    import argparse
    import shutil
    import sys

    out = out or sys.stdout
    err = err or sys.stderr
    parser = argparse.ArgumentParser(prog="izs triage train", description="Train the triage model.")
    parser.add_argument("sources", nargs="*", type=Path)
    parser.add_argument("--also", type=Path, action="append", default=[], help="a source added to the others")
    parser.add_argument("--out", type=Path, default=None, help="write a new triage data directory here")
    parser.add_argument("--data-dir", type=Path, default=None, help="protocol data directory (rules)")
    parser.add_argument("--folds", type=int, default=FOLDS)
    parser.add_argument("--keep-features", type=int, default=KEEP_FEATURES)
    parser.add_argument("--noise-file", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(list(argv) if argv is not None else None)
    repo_root = Path(__file__).resolve().parents[1]
    sources = [*(args.sources or default_sources(repo_root)), *args.also]
    try:
        triage = Triage.from_data_dir(args.data_dir, with_model=False)
        noise = NoiseModel.load(args.noise_file)
        scenarios = load_training(sources, noise)
    except (OSError, ValueError) as exc:
        err.write(f"error: {exc}\n")
        return 2
    if len({s.expected["incident_type"] for s in scenarios}) < 2 or len(scenarios) < 2 * args.folds:
        err.write(
            f"error: {len(scenarios)} labelled calls in {[str(s) for s in sources]}: too few to train on\n"
        )
        return 2
    result = train(
        triage,
        scenarios,
        args.folds,
        args.keep_features,
        log=None if args.quiet else lambda m: out.write(m + "\n"),
    )
    if args.out is None:
        target = (args.data_dir or Path(__file__).with_name("data")) / "model" / "triage-model.bin.gz"
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        source_dir = args.data_dir or Path(__file__).with_name("data")
        for name in PROTOCOL_FILES:
            shutil.copyfile(source_dir / name, args.out / name)
        target = args.out / "model" / "triage-model.bin.gz"
    digest = result.model.save(target)
    write_cv_report(result.model.meta["cv"], out)
    out.write(
        f"\nmodel {digest} ({target.stat().st_size / 1e6:.1f} MB, {result.model.meta['features']} features) -> {target}\n"
    )
    out.write(f"combination: {result.policy.to_json()}\n")
    return 0
