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
from routing.location import extract_location
from routing.matcher import PhraseMatcher, SignalHit
from routing.protocol import TCPR_SIGNAL, Condition, Protocol, ScoreRule, TypeSpec, load_protocol
from routing.safety import no_emergency_proof, safeguard, unheard
from routing.types import Evidence, Scored, SpokenLocation, TriageDecision, TriageInput
from routing.vocabulary import DESK_BY_AGENCY, DESK_BY_DIALLED, Agency, DeskCode, IncidentType

_MAX_ALTERNATIVES = 3


@dataclass(frozen=True, slots=True)
class SignalReport:
    """What triage heard: positive signals with their evidence, and negated ones (for the console)."""

    present: Mapping[str, tuple[Evidence, ...]]
    negated: Mapping[str, tuple[Evidence, ...]]
    strength: Mapping[str, float]
    word_count: int


class Triage:
    """Triage built from a validated protocol and a gazetteer. Thread-safe for reading; caches words."""

    def __init__(self, protocol: Protocol, gazetteer: Gazetteer) -> None:
        self.protocol = protocol
        self.gazetteer = gazetteer
        self._matcher = PhraseMatcher(protocol)
        self._rules_version = f"{protocol.version}+{protocol.digest}"

    @classmethod
    def from_data_dir(cls, path: Path | str | None = None) -> Triage:
        """Load the protocol from `path` (default routing/data) and the gazetteer from its gazetteer/ dir."""
        protocol = load_protocol(path)
        gazetteer_dir = Path(path) / "gazetteer" if path is not None else DEFAULT_GAZETTEER_DIR
        if not gazetteer_dir.is_dir():
            gazetteer_dir = DEFAULT_GAZETTEER_DIR
        return cls(protocol, Gazetteer.load(gazetteer_dir))

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
        return safeguard(decision, inp, no_emergency_proof(report.present), clear=not decision.unsure)

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
        desk = dialled_desk if unsure or not agencies else DESK_BY_AGENCY[agencies[0].value]
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
        self, present: Mapping[str, object], strength: Mapping[str, float], dialled_desk: DeskCode
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
            if spec.agencies and DESK_BY_AGENCY[spec.agencies[0]] == dialled_desk:
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


def _tcpr_confidence(tcpr: bool, strength: Mapping[str, float]) -> float:
    if tcpr:
        return round(0.9 * strength.get(TCPR_SIGNAL, 1.0), 3)
    if "unresponsive" in strength:
        return 0.3  # unconscious but breathing said to be normal or not asked yet
    return 0.05
