"""Evaluating triage on labelled scenario files (tests/fixtures/calls/SCHEMA.md).

Wired into the CLI as ``izs triage eval FILE.jsonl [--json] [--split all|tune|holdout] [--seed N]`` and
``izs triage run FILE.jsonl [--noisy] [--seed N]`` (eval also takes ``--timing words|espeak``); call :func:`main_eval` / :func:`main_run` with the
arguments after the sub-command. Both return an exit code and write to the given stream.

Every call is triaged twice: on the clean caller text and on the same text with injected speech-recognition
noise (diacritics dropped, some words misheard or cut; deterministic for a seed). The dev set is split by a
hash of the call id into a tuning part (70 %) and a held-out part (30 %) that rule writers must not tune on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from routing.safety import FALLBACK_TYPES, dialled_agency
from routing.text import fold
from routing.triage import Triage
from routing.types import TriageDecision, TriageInput

HOLDOUT_PERCENT = 30
WORDS_PER_SECOND = 2.5  # conversational Czech; used to turn word counts into seconds of caller speech
METRIC_KEYS = (
    "primary_agency_accuracy",
    "agency_set_accuracy",
    "incident_type_accuracy",
    "priority_accuracy",
    "tcpr_sensitivity",
    "tcpr_specificity",
    "municipality_accuracy",
)
_REQUIRED = ("id", "dialed", "language", "caller", "expected")
_EXPECTED = ("agencies", "incident_type", "priority", "tcpr", "location")
# Letters speech recognisers confuse in Czech (voicing, i/y, length already dropped with diacritics).
_CONFUSIONS = {"b": "p", "p": "b", "d": "t", "t": "d", "z": "s", "s": "z", "v": "f", "g": "k", "k": "g",
               "i": "y", "y": "i", "e": "a", "o": "u", "ch": "h", "h": "ch"}  # fmt: skip


class ScenarioError(ValueError):
    error_id = "scenario_invalid"


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    dialled: str
    caller_number: str | None
    language: str
    caller: str
    expected: dict[str, Any]
    recognised: str | None = None  # the caller's words as the speech pipeline (or its noise model) heard them
    recognised_by: str | None = None
    taker: str = ""  # what the call taker said (demos and drills play it on the taker's leg)

    @property
    def expected_type(self) -> str | None:
        value = self.expected.get("incident_type")
        return str(value) if value else None

    @property
    def expected_tcpr(self) -> bool:
        return bool(self.expected.get("tcpr"))

    @property
    def expected_priority(self) -> int | None:
        value = self.expected.get("priority")
        return int(value) if value is not None else None


def load_scenarios(path: Path | str, *, labelled: bool = True) -> list[Scenario]:
    """Read a JSONL scenario file; raise ScenarioError naming the line of the first bad record. With
    ``labelled=False`` (a demo's own calls) the ``expected`` labels may be left out."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from exc
    scenarios: list[Scenario] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{path}:{number}: not valid JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise ScenarioError(f"{path}:{number}: expected a JSON object")
        required = _REQUIRED if labelled else tuple(k for k in _REQUIRED if k != "expected")
        missing = [k for k in required if k not in record]
        expected = record.get("expected", None if labelled else {})
        if missing or not isinstance(expected, dict):
            raise ScenarioError(f"{path}:{number}: missing {missing or ['expected (object)']}")
        missing_expected = [k for k in _EXPECTED if k not in expected] if labelled else []
        if missing_expected:
            raise ScenarioError(f"{path}:{number}: expected lacks {missing_expected}")
        not_text = [k for k in ("id", "dialed", "language", "caller") if not isinstance(record[k], str)]
        if not_text:
            raise ScenarioError(f"{path}:{number}: {', '.join(not_text)} must be text")
        scenarios.append(
            Scenario(
                id=str(record["id"]),
                dialled=str(record["dialed"]),
                caller_number=record.get("caller_number"),
                language=str(record["language"]),
                caller=record["caller"],
                expected=expected,
                recognised=record.get("caller_recognised")
                if isinstance(record.get("caller_recognised"), str)
                else None,
                recognised_by=str(record["recognised_by"]) if record.get("recognised_by") else None,
                taker=record["taker"] if isinstance(record.get("taker"), str) else "",
            )
        )
    return scenarios


def load_recognised(paths: Iterable[Path]) -> dict[str, tuple[str, str]]:
    """id -> (recognised text, recognised_by) from result files (`izs triage recognise --out`); the real
    pipeline's text wins over the noise model's."""
    out: dict[str, tuple[str, str]] = {}
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.jsonl")) if path.is_dir() else [path] if path.is_file() else [])
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
                cid, text, by = str(item["id"]), str(item["caller_recognised"]), str(item["recognised_by"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if cid in out and out[cid][1].startswith("pipeline") and not by.startswith("pipeline"):
                continue
            out[cid] = (text, by)
    return out


def split_of(call_id: str) -> str:
    """'holdout' for a fixed 30 % of ids (by hash), 'tune' for the rest."""
    digest = hashlib.sha256(call_id.encode("utf-8")).digest()
    return "holdout" if digest[0] % 100 < HOLDOUT_PERCENT else "tune"


def add_asr_noise(text: str, seed: int, key: str = "", rate: float = 0.08) -> str:
    """Text as a recogniser might return it: no diacritics, some words misheard, cut short or lost."""
    rng = random.Random(f"{seed}:{key}")
    out: list[str] = []
    for word in text.split():
        plain = "".join(
            (fold(ch).upper() if ch.isupper() else fold(ch)) if ch.isalpha() else ch for ch in word
        )
        core = plain.strip(".,!?…;:\"'()")
        roll = rng.random()
        if len(core) >= 4 and roll < rate:
            op = rng.random()
            if op < 0.5:
                i = rng.randrange(1, len(core))
                ch = core[i].lower()
                swapped = _CONFUSIONS.get(ch, ch)
                core2 = core[:i] + swapped + core[i + 1 :]
            elif op < 0.8:
                core2 = core[: max(2, len(core) - rng.randint(1, 2))]
            else:
                core2 = ""
            plain = plain.replace(core, core2, 1) if core else plain
        if plain.strip():
            out.append(plain)
    return " ".join(out)


def decide(triage: Triage, scenario: Scenario, text: str) -> TriageDecision:
    return triage.decide(
        TriageInput(
            dialled=scenario.dialled,
            caller_number=scenario.caller_number,
            language=scenario.language,
            transcript=text,
            is_final=True,
        )
    )


def prediction(decision: TriageDecision) -> dict[str, Any]:
    """The decision in the scenario file's `expected` shape."""
    loc = decision.location
    return {
        "agencies": [a.value.value for a in decision.agencies],
        "incident_type": decision.incident_type.value.value,
        "priority": decision.priority.value,
        "tcpr": decision.tcpr.value,
        "location": None
        if loc is None
        else {
            "municipality": loc.municipality,
            "part": loc.part,
            "street": loc.street,
            "house_number": loc.house_number,
            "landmark": loc.landmark,
            "road": loc.road,
            "road_km": loc.road_km,
        },
        "unsure": decision.unsure,
    }


def dialled_baseline(scenario: Scenario) -> dict[str, Any]:
    """What a plain PBX does: the dialled number's agency, its fallback type, nothing else."""
    agency = dialled_agency(scenario.dialled)
    fallback = FALLBACK_TYPES.get(scenario.dialled.strip(), FALLBACK_TYPES["112"])[0]
    return {
        "agencies": [agency.value] if agency is not None else [],
        "incident_type": fallback.value,
        "priority": 2,
        "tcpr": False,
        "location": None,
        "unsure": True,
    }


def _ratio(good: int, total: int) -> float | None:
    return round(good / total, 4) if total else None


def metrics(pairs: Sequence[tuple[Scenario, dict[str, Any]]]) -> dict[str, Any]:
    n = len(pairs)
    primary = agency_set = itype = prio = muni = 0
    tp = fn = tn = fp = 0
    for scenario, pred in pairs:
        exp = scenario.expected
        exp_agencies = list(exp["agencies"] or [])
        primary += (pred["agencies"][:1] or [None]) == (exp_agencies[:1] or [None])
        agency_set += set(pred["agencies"]) == set(exp_agencies)
        itype += pred["incident_type"] == exp["incident_type"]
        prio += pred["priority"] == exp["priority"]
        exp_muni = (exp["location"] or {}).get("municipality")
        got_muni = (pred["location"] or {}).get("municipality")
        muni += exp_muni == got_muni
        if exp["tcpr"]:
            tp += pred["tcpr"] is True
            fn += pred["tcpr"] is not True
        else:
            tn += pred["tcpr"] is not True
            fp += pred["tcpr"] is True
    return {
        "calls": n,
        "primary_agency_accuracy": _ratio(primary, n),
        "agency_set_accuracy": _ratio(agency_set, n),
        "incident_type_accuracy": _ratio(itype, n),
        "priority_accuracy": _ratio(prio, n),
        "tcpr_sensitivity": _ratio(tp, tp + fn),
        "tcpr_specificity": _ratio(tn, tn + fp),
        "municipality_accuracy": _ratio(muni, n),
    }


class SpeechClock:
    """When, in seconds of caller speech, each word of a text has been said.

    "words": a steady WORDS_PER_SECOND. "espeak": the whole text is synthesised with espeak-ng in the caller's
    language and its duration shared out over the words by their length (longer words take longer to say).
    """

    def __init__(self, mode: str = "words") -> None:
        if mode not in ("words", "espeak"):
            raise ValueError(f"unknown timing mode {mode!r}")
        self.mode = mode

    def word_end_times(self, text: str, language: str) -> list[float]:
        words = text.split()
        if self.mode == "words" or not words:
            return [(i + 1) / WORDS_PER_SECOND for i in range(len(words))]
        total = synthesised_seconds(text, language)
        weights = [len(w) + 1 for w in words]
        elapsed, out = 0.0, []
        for weight in weights:
            elapsed += total * weight / sum(weights)
            out.append(elapsed)
        return out


def synthesised_seconds(text: str, language: str) -> float:
    """Duration of espeak-ng speaking the text (voice by language, Czech if the language has no voice)."""
    voice = language if language in ("cs", "sk", "de", "en", "ru", "uk", "vi") else "cs"
    try:
        result = subprocess.run(
            ["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"espeak-ng could not synthesise the text: {exc}") from exc
    audio = result.stdout
    if len(audio) < 44 or audio[:4] != b"RIFF":
        raise RuntimeError("espeak-ng returned no WAV audio")
    channels, sample_rate = struct.unpack("<HI", audio[22:28])
    bits = struct.unpack("<H", audio[34:36])[0]
    # espeak-ng streams a WAV with placeholder sizes; the byte count after the 44-byte header is the truth
    seconds: float = (len(audio) - 44) / (sample_rate * channels * bits / 8)
    return seconds


def seconds_to_tcpr(triage: Triage, scenario: Scenario, clock: SpeechClock | None = None) -> float | None:
    """Seconds of caller speech before the T-CPR flag first rises on the growing transcript; None if never."""
    words = scenario.caller.split()
    times = (clock or SpeechClock()).word_end_times(scenario.caller, scenario.language)
    for count in range(1, len(words) + 1):
        decision = triage.decide(
            TriageInput(
                dialled=scenario.dialled,
                language=scenario.language,
                transcript=" ".join(words[:count]),
                is_final=False,
            )
        )
        if decision.tcpr.value:
            return round(times[count - 1], 1)
    return None


@dataclass
class Evaluation:
    scenarios: list[Scenario]
    clean: list[dict[str, Any]]
    noisy: list[dict[str, Any]]
    tcpr_seconds: dict[str, float | None]
    timing: str = "words"

    def pairs(self, which: str, split: str) -> list[tuple[Scenario, dict[str, Any]]]:
        preds = self.clean if which == "clean" else self.noisy
        return [
            (s, p)
            for s, p in zip(self.scenarios, preds, strict=True)
            if split == "all" or split_of(s.id) == split
        ]

    def report(self, split: str) -> dict[str, Any]:
        result = metrics(self.pairs("clean", split))
        result["noisy"] = metrics(self.pairs("noisy", split))
        ids = {s.id for s, _ in self.pairs("clean", split)}
        times = [t for cid, t in self.tcpr_seconds.items() if cid in ids and t is not None]
        missed = sum(1 for cid, t in self.tcpr_seconds.items() if cid in ids and t is None)
        result["time_to_tcpr_s"] = {
            "calls": len(times) + missed,
            "median": round(statistics.median(times), 1) if times else None,
            "mean": round(statistics.fmean(times), 1) if times else None,
            "max": max(times) if times else None,
            "never_raised": missed,
            "timing": self.timing,
            "words_per_second": WORDS_PER_SECOND if self.timing == "words" else None,
        }
        return result


def evaluate(
    triage: Triage, scenarios: Sequence[Scenario], seed: int = 7, clock: SpeechClock | None = None
) -> Evaluation:
    clock = clock or SpeechClock()
    clean = [prediction(decide(triage, s, s.caller)) for s in scenarios]
    noisy = [prediction(decide(triage, s, add_asr_noise(s.caller, seed, s.id))) for s in scenarios]
    tcpr_seconds = {s.id: seconds_to_tcpr(triage, s, clock) for s in scenarios if s.expected["tcpr"]}
    return Evaluation(list(scenarios), clean, noisy, tcpr_seconds, clock.mode)


def confusion(
    pairs: Iterable[tuple[Scenario, dict[str, Any]]],
) -> list[tuple[str, int, int, list[tuple[str, int]]]]:
    """Per expected type: calls, correct, and what it was mistaken for."""
    totals: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    wrong: dict[str, Counter[str]] = {}
    for scenario, pred in pairs:
        exp = scenario.expected["incident_type"]
        totals[exp] += 1
        if pred["incident_type"] == exp:
            correct[exp] += 1
        else:
            wrong.setdefault(exp, Counter())[pred["incident_type"]] += 1
    return [(t, totals[t], correct[t], wrong.get(t, Counter()).most_common()) for t in sorted(totals)]


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value * 100:5.1f}%"


def write_text_report(evaluation: Evaluation, out: TextIO) -> None:
    columns = [(split, which) for split in ("tune", "holdout", "all") for which in ("clean", "noisy")]
    reports = {split: evaluation.report(split) for split in ("tune", "holdout", "all")}
    header = "metric".ljust(26) + "".join(f"{split[:7]:>8}/{which[:5]:<6}" for split, which in columns)
    out.write(header + "\n")
    out.write("calls".ljust(26) + "".join(f"{reports[s]['calls']:>14}" for s, _ in columns) + "\n")
    for key in METRIC_KEYS:
        row = key.ljust(26)
        for split, which in columns:
            data = reports[split] if which == "clean" else reports[split]["noisy"]
            row += f"{_fmt(data[key]):>14}"
        out.write(row + "\n")
    ttt = reports["all"]["time_to_tcpr_s"]
    clock = f"{WORDS_PER_SECOND} words/s" if evaluation.timing == "words" else "espeak-ng synthesis durations"
    out.write(
        f"\ntime to T-CPR flag (caller speech timed by {clock}, {ttt['calls']} cardiac-arrest calls): "
        f"median {ttt['median']} s, mean {ttt['mean']} s, max {ttt['max']} s, never raised {ttt['never_raised']}"
        "  (reference: ML median 44 s, dispatchers 54 s)\n"
    )
    out.write("\nincident type confusion (clean text, all calls): expected -> predicted\n")
    for itype, total, good, mistakes in confusion(evaluation.pairs("clean", "all")):
        wrong = ", ".join(f"{t} x{n}" for t, n in mistakes)
        out.write(f"  {itype:<26} {good:>3}/{total:<3} {wrong}\n")


def _eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="izs triage eval", description="Evaluate triage on a scenario file."
    )
    parser.add_argument(
        "file",
        type=Path,
        nargs="?",
        default=None,
        help="one scenario file; without it: the dev, sealed and training (cross-validated) splits",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--candidate",
        type=Path,
        default=None,
        help="a triage data directory (from `izs triage train --out`) to compare with the current one",
    )
    parser.add_argument(
        "--split",
        nargs="?",
        const="all",
        choices=("all", "tune", "holdout"),
        default="all",
        help="calls the top-level numbers cover (both parts are always reported too: text columns, JSON 'splits')",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the injected ASR noise")
    parser.add_argument(
        "--rules-only",
        action="store_true",
        help="without FILE: also report the protocol rules without the model",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="protocol data directory")
    parser.add_argument(
        "--timing",
        choices=("words", "espeak"),
        default="words",
        help=f"how seconds of caller speech are estimated: {WORDS_PER_SECOND} words/s or espeak-ng durations",
    )
    return parser


def main_eval(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = _eval_parser().parse_args(list(argv) if argv is not None else None)
    if args.file is None:
        return _main_splits(args, out, err)
    try:
        scenarios = load_scenarios(args.file)
        triage = Triage.from_data_dir(args.data_dir)
    except ValueError as exc:  # ScenarioError, ProtocolError, GazetteerError
        err.write(f"error: {exc}\n")
        return 2
    try:
        evaluation = evaluate(triage, scenarios, seed=args.seed, clock=SpeechClock(args.timing))
    except RuntimeError as exc:  # espeak-ng missing or failing
        err.write(f"error: {exc}\n")
        return 2
    if args.json:
        result = evaluation.report(args.split)
        result["split"] = args.split
        result["splits"] = {s: evaluation.report(s) for s in ("tune", "holdout")}
        result["rules_version"] = triage.rules_version
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    else:
        write_text_report(evaluation, out)
    return 0


REPO_ROOT = Path(__file__).resolve().parents[1]
DEV_FILE = REPO_ROOT / "tests" / "fixtures" / "calls" / "dev.jsonl"
CORPUS_DIR = Path(__file__).with_name("data") / "corpus"
SEALED_DIR = CORPUS_DIR / "sealed"
RECOGNISED_DIR = CORPUS_DIR / "recognised"


def evaluation_splits(dev_file: Path = DEV_FILE, sealed_dir: Path = SEALED_DIR) -> list[Split]:
    """dev.jsonl (with the real pipeline's recognition from corpus/recognised/) and, when present, the
    sealed split (its records carry their own recognition). Never used for training or tuning."""
    recognised = load_recognised([RECOGNISED_DIR])
    splits = []
    if dev_file.is_file():
        dev = [
            replace(s, recognised=recognised[s.id][0], recognised_by=recognised[s.id][1])
            if s.id in recognised and not s.recognised
            else s
            for s in load_scenarios(dev_file)
        ]
        splits.append(Split("dev", dev))
    sealed_files = sorted(sealed_dir.glob("*.jsonl")) if sealed_dir.is_dir() else []
    if sealed_files:
        splits.append(Split("sealed", [s for f in sealed_files for s in load_scenarios(f)]))
    return splits


def _main_splits(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from routing.asr_noise import NoiseModel

    try:
        current = Triage.from_data_dir(args.data_dir)
        candidate = Triage.from_data_dir(args.candidate) if args.candidate is not None else None
        noise = NoiseModel.load()
        splits = evaluation_splits()
    except (OSError, ValueError) as exc:
        err.write(f"error: {exc}\n")
        return 2
    clock = SpeechClock(args.timing)
    triages = [("current", current)] + ([("candidate", candidate)] if candidate is not None else [])
    if args.rules_only:
        triages.append(("rules alone", Triage.from_data_dir(args.data_dir, with_model=False)))
    result: dict[str, Any] = {}
    for label, triage in triages:
        figures = {split.name: split_figures(triage, split, noise, args.seed, clock) for split in splits}
        cv = triage.model.meta.get("cv") if triage.model is not None else None
        result[label] = {"rules_version": triage.rules_version, "splits": figures, "training_cv": cv}
        if args.json:
            continue
        out.write(f"== {label}: {triage.rules_version}\n")
        if not any(split.name == "sealed" for split in splits):
            out.write("(no sealed split in routing/data/corpus/sealed/)\n")
        for name, fig in figures.items():
            write_split_report(name, fig, out)
        if cv is not None:
            from routing.training import write_cv_report

            write_cv_report(cv, out)
        else:
            out.write("\n(no learned model: rules alone, no cross-validated training figures)\n")
        out.write("\n")
    if args.json:
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 0


def main_run(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = argparse.ArgumentParser(
        prog="izs triage run", description="Print one triage prediction per call."
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--noisy", action="store_true", help="triage the text with injected ASR noise")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        scenarios = load_scenarios(args.file)
        triage = Triage.from_data_dir(args.data_dir)
    except ValueError as exc:
        err.write(f"error: {exc}\n")
        return 2
    for scenario in scenarios:
        text = add_asr_noise(scenario.caller, args.seed, scenario.id) if args.noisy else scenario.caller
        record = {"id": scenario.id, **prediction(decide(triage, scenario, text))}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main_eval())


# ------------------------------------------------------------------------ the split report (no FILE given)

SPLIT_KEYS = (
    "primary_agency_accuracy",
    "agency_set_accuracy",
    "incident_type_accuracy",
    "tcpr_sensitivity",
    "tcpr_specificity",
)
TRACKS = ("clean", "noisy", "recognised")


@dataclass(frozen=True, slots=True)
class Split:
    name: str
    scenarios: list[Scenario]


def track_text(scenario: Scenario, track: str, noise: Any, seed: int) -> str | None:
    """The caller's words on a track: as said, through the fitted noise model, or as really recognised."""
    if track == "clean":
        return scenario.caller
    if track == "noisy":
        return str(noise.apply(scenario.caller, scenario.language, seed, scenario.id))
    if scenario.recognised is not None and (scenario.recognised_by or "").startswith("pipeline"):
        return scenario.recognised
    return None


def split_figures(
    triage: Triage, split: Split, noise: Any, seed: int = 7, clock: SpeechClock | None = None
) -> dict[str, Any]:
    """Per track: the triage's metrics and the dialled-number baseline's, and the time to the T-CPR flag."""
    out: dict[str, Any] = {"calls": len(split.scenarios)}
    for track in TRACKS:
        rows = [(s, track_text(s, track, noise, seed)) for s in split.scenarios]
        present = [(s, t) for s, t in rows if t is not None]
        triaged = [(s, prediction(decide(triage, s, t))) for s, t in present]
        baseline = [(s, dialled_baseline(s)) for s, _ in present]
        out[track] = {"triage": metrics(triaged), "dialled": metrics(baseline)}
    times = [seconds_to_tcpr(triage, s, clock) for s in split.scenarios if s.expected["tcpr"]]
    heard = [t for t in times if t is not None]
    out["time_to_tcpr_s"] = {
        "calls": len(times),
        "median": round(statistics.median(heard), 1) if heard else None,
        "never_raised": len(times) - len(heard),
    }
    return out


def write_split_report(name: str, figures: dict[str, Any], out: TextIO, label: str = "") -> None:
    out.write(f"\n{name}{label}: {figures['calls']} calls\n")
    header = "metric".ljust(24)
    for track in TRACKS:
        calls = figures[track]["triage"]["calls"]
        header += f"{track + f' ({calls})':>22}{'dialled':>9}"
    out.write(header + "\n")
    for key in SPLIT_KEYS:
        row = key.replace("_accuracy", "").ljust(24)
        for track in TRACKS:
            row += f"{_fmt(figures[track]['triage'][key]):>22}{_fmt(figures[track]['dialled'][key]):>9}"
        out.write(row + "\n")
    ttt = figures["time_to_tcpr_s"]
    out.write(
        f"median seconds of caller speech before T-CPR is flagged: {ttt['median']} "
        f"({ttt['calls']} cardiac-arrest calls, never raised {ttt['never_raised']}; {WORDS_PER_SECOND} words/s)\n"
    )
