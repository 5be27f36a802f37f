"""Triage: from the dialled number, the caller's language and the live transcript to a decision.

Runs on every partial transcript. Pure: plain values in (TriageInput), plain values out (TriageDecision);
every part of the decision carries the protocol rule and the transcript words behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from routing.gazetteer import DEFAULT_GAZETTEER_DIR, Gazetteer
from routing.location import extract_location, location_notes
from routing.matcher import PhraseMatcher, SignalHit
from routing.model import DEFAULT_MODEL_FILE, Features, TriageModel, Vector, extract
from routing.protocol import TCPR_SIGNAL, Condition, Protocol, ScoreRule, TypeSpec, load_protocol
from routing.safety import NO_EMERGENCY_TYPES, desk_for, no_emergency_proof, safeguard, unheard
from routing.types import Evidence, Scored, SpokenLocation, TriageDecision, TriageInput
from routing.vocabulary import DESK_BY_AGENCY, DESK_BY_DIALLED, Agency, DeskCode, IncidentType

_MAX_ALTERNATIVES = 3
MODEL_FILE_NAME = "model/triage-model.bin.gz"
UNSURE_TYPE_BELOW = 0.5  # a calibrated type probability under this: say so, with the next two candidates
PROOF_OF_NO_EMERGENCY = 0.8  # the model's words count as proof of a prank / no emergency only this sure


@dataclass(frozen=True, slots=True)
class CombinePolicy:
    """How the rules and the model make one decision; chosen by measurement at training time
    (routing/training.py, out-of-fold) and stored in the model file.

    type_source: "model" (the calibrated type head) or "rules_if_sure" (the protocol's type when the rules are
    not unsure, else the model's). agency_source: "heads" (the primary-agency and agency heads), "type_rules"
    (the decided type's agencies plus the protocol's agency rules) or "union" of both. clear_agency: the
    primary-agency probability from which the words "clearly point elsewhere" than the dialled number.
    tcpr_threshold: the T-CPR head's probability that raises T-CPR besides the rules (None: the rules alone).
    rules_weight: with type_source "model", how much the signals the rules heard weigh beside the type head:
    each type's log-probability gains rules_weight x its protocol score (the strongest of its rules that fired,
    routing/data/types.toml), so a type whose signals were heard ("unresponsive") outranks one whose signals
    were not ("poisoning" without a drug or alcohol word) unless the words say clearly otherwise. 0.0: the head
    alone.
    """

    type_source: str = "model"
    agency_source: str = "heads"
    clear_agency: float = 0.5
    tcpr_threshold: float | None = None
    rules_weight: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "type_source": self.type_source,
            "agency_source": self.agency_source,
            "clear_agency": self.clear_agency,
            "tcpr_threshold": self.tcpr_threshold,
            "rules_weight": self.rules_weight,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> CombinePolicy:
        threshold = data.get("tcpr_threshold")
        clear = data.get("clear_agency", 0.5)
        weight = data.get("rules_weight", 0.0)
        return cls(
            type_source=str(data.get("type_source", "model")),
            agency_source=str(data.get("agency_source", "heads")),
            clear_agency=float(clear) if isinstance(clear, int | float) else 0.5,
            tcpr_threshold=float(threshold) if isinstance(threshold, int | float) else None,
            rules_weight=float(weight) if isinstance(weight, int | float) else 0.0,
        )


@dataclass(frozen=True, slots=True)
class SignalReport:
    """What triage heard: positive signals with their evidence, and negated ones (for the console)."""

    present: Mapping[str, tuple[Evidence, ...]]
    negated: Mapping[str, tuple[Evidence, ...]]
    strength: Mapping[str, float]
    word_count: int


class Triage:
    """Triage built from a validated protocol and a gazetteer. Thread-safe for reading; caches words."""

    def __init__(self, protocol: Protocol, gazetteer: Gazetteer, model: TriageModel | None = None) -> None:
        self.protocol = protocol
        self.gazetteer = gazetteer
        self.model = model
        self._matcher = PhraseMatcher(protocol)
        self._rules_version = f"{protocol.version}+{protocol.digest}"
        if model is not None:
            self._rules_version += f"+{model.version}"
        self._policy = CombinePolicy.from_json(model.meta.get("policy", {})) if model is not None else None

    @classmethod
    def from_data_dir(cls, path: Path | str | None = None, *, with_model: bool = True) -> Triage:
        """Load the protocol from `path` (default routing/data), the gazetteer from its gazetteer/ dir and the
        learned model from its model/ dir (routing/data's when `path` has none; rules alone if none at all)."""
        protocol = load_protocol(path)
        gazetteer_dir = Path(path) / "gazetteer" if path is not None else DEFAULT_GAZETTEER_DIR
        if not gazetteer_dir.is_dir():
            gazetteer_dir = DEFAULT_GAZETTEER_DIR
        model = None
        if with_model:
            model_file = Path(path) / MODEL_FILE_NAME if path is not None else DEFAULT_MODEL_FILE
            if not model_file.is_file():
                model_file = DEFAULT_MODEL_FILE
            if model_file.is_file():
                model = TriageModel.load(model_file)
        return cls(protocol, Gazetteer.load(gazetteer_dir), model)

    @property
    def rules_version(self) -> str:
        return self._rules_version

    # -----------------------------------------------------------------------------------------------------

    def _languages(self, language: str) -> list[str]:
        known = list(self._matcher.languages())
        code = (language or "").lower().split("-")[0]
        if code in known:
            return [code] if code == "cs" else [code, "cs"]
        return known  # unknown language: listen for every language we know

    def hear(self, inp: TriageInput) -> SignalReport:
        hits: list[SignalHit] = []
        word_count = 0
        for language in self._languages(inp.language):
            tokens = self._matcher.tokenize(language, inp.transcript)
            word_count = max(word_count, len(tokens))
            hits.extend(self._matcher.match(language, tokens, self.protocol.settings.fuzzy_weight))
        present: dict[str, list[Evidence]] = {}
        negated: dict[str, list[Evidence]] = {}
        strength: dict[str, float] = {}
        fuzzy_weight = self.protocol.settings.fuzzy_weight
        for hit in hits:
            target = negated if hit.negated else present
            bucket = target.setdefault(hit.signal, [])
            if all(e.span != hit.evidence.span for e in bucket):
                bucket.append(hit.evidence)
            if not hit.negated:
                strength[hit.signal] = max(strength.get(hit.signal, 0.0), fuzzy_weight if hit.fuzzy else 1.0)
        for bucket in (*present.values(), *negated.values()):
            bucket.sort(key=lambda e: e.span or (0, 0))
        return SignalReport(
            present={k: tuple(v) for k, v in present.items()},
            negated={k: tuple(v) for k, v in negated.items() if k not in present},
            strength=strength,
            word_count=word_count,
        )

    def decide(self, inp: TriageInput) -> TriageDecision:
        """The protocol rules' decision, passed through the safety rules (routing.safety)."""
        if not inp.transcript.strip():
            return unheard(inp, self._rules_version)
        report = self.hear(inp)
        decision = self.decide_rules(inp, report)
        if self.model is None or self._policy is None:
            return self.safeguard_rules(inp, report, decision)
        features = extract(
            inp.transcript, inp.language, inp.dialled, *self.signal_names(report), with_spans=True
        )
        vector = self.model.vector(features)
        probs = self.model.predict(vector)
        return self.combine(inp, report, decision, probs, self._policy, (vector, features))

    def safeguard_rules(
        self, inp: TriageInput, report: SignalReport, rules: TriageDecision
    ) -> TriageDecision:
        """The rules' decision as shipped without a model (for measuring the rules alone)."""
        if not inp.transcript.strip():
            return unheard(inp, self._rules_version)
        return safeguard(rules, inp, no_emergency_proof(report.present), clear=not rules.unsure)

    @staticmethod
    def signal_names(report: SignalReport) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The heard signals as model features: present ones, negated ones (sorted, stable)."""
        return tuple(sorted(report.present)), tuple(sorted(report.negated))

    def tcpr_flag(
        self, rules: TriageDecision, probs: Mapping[str, Mapping[str, float]], policy: CombinePolicy
    ) -> bool:
        """The T-CPR rules, or the T-CPR head above the measured threshold (never instead of the rules)."""
        if rules.tcpr.value:
            return True
        threshold = policy.tcpr_threshold
        return threshold is not None and probs.get("tcpr", {}).get("tcpr", 0.0) >= threshold

    def combine(
        self,
        inp: TriageInput,
        report: SignalReport,
        rules: TriageDecision,
        probs: Mapping[str, Mapping[str, float]],
        policy: CombinePolicy,
        explain: tuple[Vector, Features] | None = None,
    ) -> TriageDecision:
        """One decision from the rules' decision and the model's calibrated probabilities (see CombinePolicy).
        The rules keep what must be certain: T-CPR (the head only adds), negation (in the signals), the
        agency rules of thumb, location. Passed through the safety rules."""
        present: dict[str, tuple[Evidence, ...]] = dict(report.present)
        type_probs = sorted(probs["type"].items(), key=lambda kv: (-kv[1], kv[0]))
        ranked = [(IncidentType(t), p) for t, p in type_probs if t in IncidentType.__members__]
        if policy.type_source == "model" and policy.rules_weight > 0.0:
            ranked = weigh_heard_signals(ranked, self.rule_type_scores(inp, report), policy.rules_weight)
        if not ranked:
            return safeguard(rules, inp, no_emergency_proof(report.present), clear=not rules.unsure)
        tcpr = self.tcpr_flag(rules, probs, policy)
        tcpr_evidence = rules.tcpr.evidence
        if tcpr and not rules.tcpr.value and explain is not None and self.model is not None:
            tcpr_evidence = self._model_evidence(inp.transcript, explain, "tcpr", "tcpr")
        tcpr_p = probs.get("tcpr", {}).get("tcpr", 0.0)
        if tcpr:
            # One story per decision: telephone CPR is given for a cardiac arrest, so a raised T-CPR flag
            # names that type (never "hoax" or "breathing problem" beside a T-CPR banner); what the type
            # head preferred stays the first alternative for the call taker.
            chosen = IncidentType.MED_CARDIAC_ARREST
            confidence = max(
                rules.tcpr.confidence if rules.tcpr.value else tcpr_p, probs["type"].get(chosen.value, 0.0)
            )
        elif policy.type_source == "rules_if_sure" and not rules.unsure:
            chosen, confidence = rules.incident_type.value, rules.incident_type.confidence
        else:
            chosen, confidence = ranked[0]
        if rules.tcpr.value:
            present[TCPR_SIGNAL] = rules.tcpr.evidence

        def type_evidence_for(chosen: IncidentType) -> tuple[Evidence, ...]:
            evidence: tuple[Evidence, ...] = ()
            if rules.incident_type.value is chosen:
                evidence = rules.incident_type.evidence
            elif tcpr:
                evidence = tcpr_evidence
            if explain is not None and self.model is not None:
                evidence = (*evidence, *self._model_evidence(inp.transcript, explain, "type", chosen.value))
            return evidence

        confidence = round(float(confidence), 3)
        type_evidence = type_evidence_for(chosen)
        spec = self.protocol.types.get(chosen)
        agencies = self._combined_agencies(spec, present, probs, policy, confidence, type_evidence)
        story = (
            None
            if tcpr
            else one_story(chosen, agencies, ranked, probs.get("primary", {}), self.protocol, present)
        )
        if story is not None and story[0] is not chosen:
            # The agencies' head heard another kind of emergency than the type head: the type follows.
            chosen, confidence = story[0], round(float(story[1]), 3)
            type_evidence = type_evidence_for(chosen)
            spec = self.protocol.types.get(chosen)
            agencies = self._combined_agencies(spec, present, probs, policy, confidence, type_evidence)
        elif story is not None:
            # The type is the likelier story: its own most likely agency leads (the other stays beside it).
            lead = story[2]
            agencies = (
                Scored(lead, round(float(probs.get("primary", {}).get(lead.value, 0.0)), 3), type_evidence),
                *(a for a in agencies if a.value is not lead),
            )
        unsure = confidence < UNSURE_TYPE_BELOW and not rules.tcpr.value
        primary_p = max(probs.get("primary", {"-": 0.0}).values())
        if tcpr:
            priority = Scored(1, max(confidence, 0.9), tcpr_evidence)
        elif spec is not None:
            priority = self._priority(spec, present, False, confidence)
        else:
            priority = Scored(2, confidence)
        alternatives = tuple(Scored(t, round(float(p), 3)) for t, p in ranked if t is not chosen)[:2]
        desk = desk_for(inp.dialled, agencies, unsure)
        decision = TriageDecision(
            agencies=agencies,
            incident_type=Scored(chosen, confidence, type_evidence),
            priority=priority,
            tcpr=Scored(
                tcpr, round(max(rules.tcpr.confidence, tcpr_p) if tcpr else tcpr_p, 3), tcpr_evidence
            ),
            location=rules.location,
            desk=desk,
            alternatives=alternatives,
            unsure=unsure,
            rules_version=self._rules_version,
            notes=rules.notes,
        )
        proof = no_emergency_proof(report.present)
        if not proof and chosen in NO_EMERGENCY_TYPES and confidence >= PROOF_OF_NO_EMERGENCY:
            proof = tuple(ev for ev in type_evidence if ev.rule.startswith("model."))
        return safeguard(decision, inp, proof, clear=primary_p >= policy.clear_agency)

    def rule_type_scores(self, inp: TriageInput, report: SignalReport) -> dict[IncidentType, float]:
        """Each type's protocol score from the signals heard (types none of whose rules fired are absent)."""
        dialled_desk = DESK_BY_DIALLED.get(inp.dialled.strip(), DeskCode.D112)
        scored = self._score_types(report.present, report.strength, dialled_desk, prior=False)
        return {itype: score for itype, score, _ in scored}

    def _combined_agencies(
        self,
        spec: TypeSpec | None,
        present: Mapping[str, tuple[Evidence, ...]],
        probs: Mapping[str, Mapping[str, float]],
        policy: CombinePolicy,
        confidence: float,
        type_evidence: tuple[Evidence, ...],
    ) -> tuple[Scored[Agency], ...]:
        by_rules = self._agencies(spec, present, confidence, type_evidence) if spec is not None else ()
        if policy.agency_source == "type_rules":
            return by_rules
        primary_probs = probs.get("primary", {})
        member_probs = probs.get("agencies", {})
        primary = max(sorted(primary_probs), key=lambda a: primary_probs[a]) if primary_probs else "-"
        heads: list[Scored[Agency]] = []
        if primary in Agency.__members__:
            heads.append(Scored(Agency(primary), round(primary_probs[primary], 3), type_evidence))
            for code in sorted(member_probs, key=lambda a: -member_probs[a]):
                if code != primary and member_probs[code] >= 0.5:
                    heads.append(Scored(Agency(code), round(member_probs[code], 3), type_evidence))
        if policy.agency_source == "union":
            heads.extend(a for a in by_rules if all(h.value is not a.value for h in heads))
        return tuple(heads)

    def _model_evidence(
        self, text: str, explain: tuple[Vector, Features], head: str, cls: str
    ) -> tuple[Evidence, ...]:
        assert self.model is not None
        vector, features = explain
        return tuple(
            Evidence(rule=f"model.{head}.{cls}", words=(text[a:b],), weight=round(amount, 3), span=(a, b))
            for (a, b), amount in self.model.explain(vector, features, head, cls)
        )

    def decide_rules(self, inp: TriageInput, report: SignalReport) -> TriageDecision:
        """The protocol rules alone, before the safety rules: for measuring and as the model's features."""
        present: dict[str, tuple[Evidence, ...]] = dict(report.present)
        strength = dict(report.strength)
        settings = self.protocol.settings

        tcpr_rule = next((r for r in self.protocol.tcpr_rules if r.condition.holds(present)), None)
        tcpr_evidence: tuple[Evidence, ...] = ()
        if tcpr_rule is not None:
            tcpr_evidence = _evidence_for(tcpr_rule.condition, present, f"tcpr.{tcpr_rule.id}")
            present[TCPR_SIGNAL] = tcpr_evidence
            strength[TCPR_SIGNAL] = min((strength.get(s, 1.0) for s in tcpr_rule.condition.all), default=1.0)

        dialled_desk = DESK_BY_DIALLED.get(inp.dialled.strip(), DeskCode.D112)
        scored = self._score_types(present, strength, dialled_desk)
        notes = tuple(
            f"negated {signal}: {' '.join(e.words)}" for signal, evs in report.negated.items() for e in evs
        )
        location = extract_location(inp.transcript, self.gazetteer) if inp.transcript.strip() else None
        notes += location_notes(location)

        if not scored:
            return self._unsure(
                inp, report, dialled_desk, location, notes, tcpr_rule is not None, tcpr_evidence
            )

        (best_type, best_score, best_rule), *rest = scored
        second = rest[0][1] if rest else 0.0
        confidence = round((1.0 - math.exp(-best_score / 3.0)) * (best_score / (best_score + second)), 3)
        spec = self.protocol.types[best_type]
        type_evidence = _evidence_for(best_rule.condition, present, f"type.{best_type.value}.{best_rule.id}")
        priority = self._priority(spec, present, tcpr_rule is not None, confidence)
        agencies = self._agencies(spec, present, confidence, type_evidence)
        unsure = confidence < settings.unsure_below
        desk = desk_for(inp.dialled, agencies, unsure)
        alternatives = tuple(
            Scored(
                t,
                round(s / (best_score + s), 3),
                _evidence_for(r.condition, present, f"type.{t.value}.{r.id}"),
            )
            for t, s, r in rest[:_MAX_ALTERNATIVES]
        )
        return TriageDecision(
            agencies=agencies,
            incident_type=Scored(best_type, confidence, type_evidence),
            priority=priority,
            tcpr=Scored(
                tcpr_rule is not None, _tcpr_confidence(tcpr_rule is not None, strength), tcpr_evidence
            ),
            location=location,
            desk=desk,
            alternatives=alternatives,
            unsure=unsure,
            rules_version=self._rules_version,
            notes=notes,
        )

    # -----------------------------------------------------------------------------------------------------

    def _score_types(
        self,
        present: Mapping[str, object],
        strength: Mapping[str, float],
        dialled_desk: DeskCode,
        *,
        prior: bool = True,
    ) -> list[tuple[IncidentType, float, ScoreRule]]:
        results: list[tuple[IncidentType, float, ScoreRule]] = []
        for itype, spec in self.protocol.types.items():
            fired = []
            for rule in spec.rules:
                if rule.condition.holds(present):
                    factor = min(
                        (strength.get(s, 1.0) for s in rule.condition.signals() if s in present), default=1.0
                    )
                    fired.append((rule.weight * factor, rule))
            if not fired:
                continue
            fired.sort(key=lambda x: -x[0])
            score = fired[0][0] + 0.25 * sum(w for w, _ in fired[1:])
            if prior and spec.agencies and DESK_BY_AGENCY[spec.agencies[0]] == dialled_desk:
                score += self.protocol.settings.dialled_prior
            results.append((itype, score, fired[0][1]))
        results.sort(key=lambda x: -x[1])
        return results

    def _priority(
        self, spec: TypeSpec, present: Mapping[str, tuple[Evidence, ...]], tcpr: bool, conf: float
    ) -> Scored[int]:
        if tcpr:
            return Scored(1, max(conf, 0.9), present.get(TCPR_SIGNAL, ()))
        for rule in spec.priority_rules:
            if rule.condition.holds(present):
                return Scored(
                    rule.priority,
                    conf,
                    _evidence_for(rule.condition, present, f"priority.{spec.type.value}.{rule.id}"),
                )
        return Scored(spec.priority, conf, ())

    def _agencies(
        self,
        spec: TypeSpec,
        present: Mapping[str, tuple[Evidence, ...]],
        conf: float,
        type_evidence: tuple[Evidence, ...],
    ) -> tuple[Scored[Agency], ...]:
        order: list[Agency] = list(spec.agencies)
        evidence: dict[Agency, tuple[Evidence, ...]] = {a: type_evidence for a in order}
        for rule in self.protocol.agency_rules:
            if not rule.applies_to(spec) or not rule.condition.holds(present):
                continue
            ev = _evidence_for(rule.condition, present, f"agency.{rule.id}")
            if rule.agency in order:
                if rule.first:
                    order.remove(rule.agency)
                    order.insert(0, rule.agency)
                continue
            evidence[rule.agency] = ev
            if rule.first:
                order.insert(0, rule.agency)
            else:
                order.append(rule.agency)
        return tuple(Scored(a, conf, evidence[a]) for a in order)

    def _unsure(
        self,
        inp: TriageInput,
        report: SignalReport,
        dialled_desk: DeskCode,
        location: SpokenLocation | None,
        notes: tuple[str, ...],
        tcpr: bool,
        tcpr_evidence: tuple[Evidence, ...],
    ) -> TriageDecision:
        """Nothing reliable heard: the dialled number decides the desk; candidates by dialled number."""
        defaults = self.protocol.dialled_defaults
        dialled_type = defaults.get(inp.dialled.strip(), IncidentType.NON_EMERGENCY)
        said_enough = (
            report.word_count >= self.protocol.settings.silent_min_words and "distress" not in report.present
        )
        if said_enough:
            itype = IncidentType.SILENT_OR_HOAX
            agencies: tuple[Scored[Agency], ...] = ()
            alternatives: tuple[Scored[IncidentType], ...] = (Scored(dialled_type, 0.1),)
            extra: tuple[str, ...] = ("no emergency recognised in the transcript",)
        else:
            itype = dialled_type
            agency = next((a for a, d in DESK_BY_AGENCY.items() if d == dialled_desk), None)
            agencies = (Scored(agency, 0.1),) if agency is not None else ()
            alternatives = (Scored(IncidentType.SILENT_OR_HOAX, 0.05),)
            extra = ("nothing recognised yet: routed by dialled number",)
        return TriageDecision(
            agencies=agencies,
            incident_type=Scored(itype, 0.1),
            priority=Scored(self.protocol.types[itype].priority if itype in self.protocol.types else 3, 0.1),
            tcpr=Scored(tcpr, 0.5 if tcpr else 0.0, tcpr_evidence),
            location=location,
            desk=dialled_desk,
            alternatives=alternatives,
            unsure=True,
            rules_version=self._rules_version,
            notes=notes + extra,
        )


def _evidence_for(
    condition: Condition, present: Mapping[str, Sequence[Evidence]], rule_id: str
) -> tuple[Evidence, ...]:
    out: list[Evidence] = []
    for signal in condition.signals():
        for ev in present.get(signal, ()):
            out.append(Evidence(rule=f"{rule_id}/{ev.rule}", words=ev.words, weight=ev.weight, span=ev.span))
    return tuple(out)


def weigh_heard_signals(
    ranked: Sequence[tuple[IncidentType, float]], scores: Mapping[IncidentType, float], weight: float
) -> list[tuple[IncidentType, float]]:
    """The type head's probabilities with the rules' evidence: log p(t) + weight x score(t), renormalised.

    The head reads n-grams; a phrase it learned from one type ("nejde probudit" in many overdose calls) can
    outweigh what the protocol heard ("unresponsive", no drug or alcohol word). Weighing the heard signals in
    keeps the type consistent with them; the weight is chosen by measurement (routing/training.py)."""
    if not scores:
        return list(ranked)
    logits = [math.log(max(p, 1e-9)) + weight * scores.get(t, 0.0) for t, p in ranked]
    top = max(logits)
    exp = [math.exp(z - top) for z in logits]
    total = sum(exp)
    blended = [(t, e / total) for (t, _), e in zip(ranked, exp, strict=True)]
    blended.sort(key=lambda tp: (-tp[1], tp[0].value))
    return blended


def _tcpr_confidence(tcpr: bool, strength: Mapping[str, float]) -> float:
    if tcpr:
        return round(0.9 * strength.get(TCPR_SIGNAL, 1.0), 3)
    if "unresponsive" in strength:
        return 0.3  # unconscious but breathing said to be normal or not asked yet
    return 0.05


def one_story(
    chosen: IncidentType,
    agencies: tuple[Scored[Agency], ...],
    ranked: Sequence[tuple[IncidentType, float]],
    primary_probs: Mapping[str, float],
    protocol: Protocol,
    present: Mapping[str, tuple[Evidence, ...]],
) -> tuple[IncidentType, float, Agency] | None:
    """A type and a leading agency that tell one story, or None when they already do.

    The type head and the agencies' head are trained apart, so they can disagree: a suspicious bag at a
    station typed POLICE_OTHER while the agencies' head leads with the fire brigade. Of the two consistent
    readings — keep the type and lead with its likeliest agency, or keep the agency and take the likeliest
    type it serves — the one with the higher joint probability wins. Returns (type, its probability, the
    leading agency)."""
    spec = protocol.types.get(chosen)
    serving = serving_agencies(spec, protocol, present) if spec is not None else frozenset()
    if not serving or not agencies or agencies[0].value in serving:
        return None
    primary = agencies[0].value
    p_type = dict(ranked)
    lead = max(serving, key=lambda a: (primary_probs.get(a.value, 0.0), a.value))
    keep_type = p_type.get(chosen, 0.0) * primary_probs.get(lead.value, 0.0)
    served = [
        (t, p)
        for t, p in ranked
        if (s := protocol.types.get(t)) is not None and primary in serving_agencies(s, protocol, present)
    ]
    if served:
        other, p_other = served[0]
        if p_other * primary_probs.get(primary.value, 0.0) > keep_type:
            return other, p_other, primary
    return chosen, p_type.get(chosen, 0.0), lead


def serving_agencies(
    spec: TypeSpec, protocol: Protocol, present: Mapping[str, tuple[Evidence, ...]]
) -> frozenset[Agency]:
    """The agencies the protocol sends to an incident of this type with what was heard: the type's own and
    those its agency rules add when their signals are present (an injured person at a traffic accident
    brings ZZS; a fire rule does not make a police matter a fire brigade one unless fire was heard)."""
    return frozenset(spec.agencies) | {
        rule.agency
        for rule in protocol.agency_rules
        if rule.applies_to(spec) and rule.condition.holds(present)
    }
