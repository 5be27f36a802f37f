"""The triage protocol: loaded from the TOML files in routing/data/, checked against a schema on load.

A medical or fire officer edits those files; this module refuses a file that would silently change meaning
(an unknown key, a misspelt signal, an agency or type code that does not exist) and names the file, the line
and the key of every problem at once.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing.text import LanguageProfile, fold
from routing.vocabulary import DESK_BY_DIALLED, Agency, IncidentType

DEFAULT_DATA_DIR = Path(__file__).with_name("data")
LANGUAGES = ("cs", "sk", "de", "en", "ru", "uk", "vi")
FAMILIES = ("medical", "traffic", "fire", "police", "technical", "hazmat", "flood", "none")
TCPR_SIGNAL = "tcpr"  # pseudo-signal: the T-CPR rules fired
_FILES = ("languages.toml", "signals.toml", "types.toml", "agencies.toml", "protocol.toml")


class ProtocolError(ValueError):
    """A protocol data file is missing, not valid TOML, or breaks the schema. One line per problem."""

    error_id = "protocol_invalid"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid triage protocol:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Condition:
    """Signals that must all / at least one / none be heard."""

    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()

    def holds(self, present: Mapping[str, object]) -> bool:
        if any(s not in present for s in self.all):
            return False
        if self.any and not any(s in present for s in self.any):
            return False
        return not any(s in present for s in self.none)

    def signals(self) -> tuple[str, ...]:
        return self.all + self.any


@dataclass(frozen=True, slots=True)
class ScoreRule:
    id: str
    condition: Condition
    weight: float


@dataclass(frozen=True, slots=True)
class PriorityRule:
    id: str
    condition: Condition
    priority: int


@dataclass(frozen=True, slots=True)
class TypeSpec:
    type: IncidentType
    family: str
    agencies: tuple[Agency, ...]
    priority: int
    rules: tuple[ScoreRule, ...]
    priority_rules: tuple[PriorityRule, ...] = ()


@dataclass(frozen=True, slots=True)
class AgencyRule:
    id: str
    agency: Agency
    first: bool
    families: frozenset[str]
    types: frozenset[IncidentType]
    condition: Condition

    def applies_to(self, spec: TypeSpec) -> bool:
        if self.types and spec.type not in self.types:
            return False
        return not self.families or spec.family in self.families or spec.type in self.types


@dataclass(frozen=True, slots=True)
class SignalSpec:
    id: str
    description: str
    weight: float
    phrases: Mapping[str, tuple[str, ...]]  # language -> phrases
    critical: bool = False  # listen harder: also match cut-off and misheard short words (T-CPR signals)


@dataclass(frozen=True, slots=True)
class DecisionSettings:
    unsure_below: float = 0.3
    dialled_prior: float = 0.3
    silent_min_words: int = 25
    fuzzy_weight: float = 0.8


@dataclass(frozen=True, slots=True)
class Protocol:
    version: str
    languages: Mapping[str, LanguageProfile]
    signals: Mapping[str, SignalSpec]
    types: Mapping[IncidentType, TypeSpec]
    agency_rules: tuple[AgencyRule, ...]
    tcpr_rules: tuple[ScoreRule, ...]
    settings: DecisionSettings
    dialled_defaults: Mapping[str, IncidentType]
    source: Path | None = None
    digest: str = ""
    families: Mapping[IncidentType, str] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path | str | None = None) -> Protocol:
        return load_protocol(data_dir)


# ---------------------------------------------------------------------------------------------------------


class _Checker:
    """Collects schema problems as 'file:line: key: message'."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._texts: dict[str, list[str]] = {}

    def add_text(self, file: str, text: str) -> None:
        self._texts[file] = text.splitlines()

    def problem(self, file: str, key: str, message: str, needle: str | None = None) -> None:
        line = self._line_of(file, needle if needle is not None else key.rsplit(".", 1)[-1].split("[")[0])
        where = f"{file}:{line}" if line else file
        self.problems.append(f"{where}: {key}: {message}")

    def _line_of(self, file: str, needle: str) -> int | None:
        if not needle:
            return None
        for number, line in enumerate(self._texts.get(file, ()), start=1):
            if needle in line:
                return number
        return None

    def table(self, file: str, key: str, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(file, key, f"must be a table, got {type(value).__name__}")
            return {}
        return value

    def only_keys(self, file: str, key: str, table: Mapping[str, object], allowed: Iterable[str]) -> None:
        allowed_set = set(allowed)
        for name in table:
            if name not in allowed_set:
                self.problem(
                    file, f"{key}.{name}", f"unknown key (allowed: {', '.join(sorted(allowed_set))})"
                )

    def string(self, file: str, key: str, value: object, *, required: bool = True) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            self.problem(file, key, "must be a non-empty string")
            return ""
        return value

    def number(self, file: str, key: str, value: object, low: float, high: float, default: float) -> float:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.problem(file, key, f"must be a number from {low} to {high}, got {value!r}", needle=key)
            return default
        return float(value)

    def strings(self, file: str, key: str, value: object) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(file, key, "must be a list of strings")
            return ()
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.problem(file, f"{key}[{i}]", f"must be a non-empty string, got {item!r}")
            else:
                out.append(item)
        return tuple(out)


def _read(checker: _Checker, directory: Path, name: str) -> dict[str, Any]:
    path = directory / name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        checker.problems.append(f"{name}: cannot read {path}: {exc.strerror or exc}")
        return {}
    checker.add_text(name, text)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        checker.problems.append(f"{name}: not valid TOML: {exc}")
        return {}


def load_protocol(data_dir: Path | str | None = None) -> Protocol:
    """Load and validate every protocol file; raise ProtocolError listing all problems."""
    directory = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    checker = _Checker()
    raw = {name: _read(checker, directory, name) for name in _FILES}
    if checker.problems:
        raise ProtocolError(checker.problems)
    languages = _languages(checker, raw["languages.toml"])
    signals = _signals(checker, raw["signals.toml"])
    known_signals = set(signals) | {TCPR_SIGNAL}
    types = _types(checker, raw["types.toml"], known_signals)
    agency_rules = _agency_rules(checker, raw["agencies.toml"], known_signals)
    version, settings, defaults, tcpr_rules = _protocol(checker, raw["protocol.toml"], set(signals))
    if checker.problems:
        raise ProtocolError(checker.problems)
    digest = hashlib.sha256()
    for name in _FILES:
        digest.update((directory / name).read_bytes())
    return Protocol(
        version=version,
        languages=languages,
        signals=signals,
        types=types,
        agency_rules=agency_rules,
        tcpr_rules=tcpr_rules,
        settings=settings,
        dialled_defaults=defaults,
        source=directory,
        digest=digest.hexdigest()[:12],
        families={t: spec.family for t, spec in types.items()},
    )


_LANGUAGE_KEYS = (
    "stopwords",
    "negators",
    "backward_negators",
    "negation_prefix",
    "not_negation_prefixes",
    "contrast_words",
    "suffixes",
    "min_stem",
    "scope_forward",
    "scope_backward",
    "colloquial_ej",
    "tone_marks",
    "lemmatize",
    "prefix_stems",
    "ordered_phrases",
    "reflexive_endings",
)


def _languages(c: _Checker, data: Mapping[str, object]) -> dict[str, LanguageProfile]:
    f = "languages.toml"
    out: dict[str, LanguageProfile] = {}
    for code, value in data.items():
        key = code
        if code not in LANGUAGES:
            c.problem(f, key, f"unknown language (known: {', '.join(LANGUAGES)})", needle=f"[{code}]")
            continue
        table = c.table(f, key, value)
        c.only_keys(f, key, table, _LANGUAGE_KEYS)

        tone_marks = bool(table.get("tone_marks", False))

        def folded(
            name: str, table: dict[str, Any] = table, key: str = key, tone_marks: bool = tone_marks
        ) -> frozenset[str]:
            words = c.strings(f, f"{key}.{name}", table.get(name))
            if tone_marks:  # marked words stay distinct; "~" + folded form is the word heard without marks
                return frozenset(w.lower() for w in words) | frozenset("~" + fold(w) for w in words)
            return frozenset(fold(w) for w in words)

        suffixes = tuple(
            sorted({fold(s) for s in c.strings(f, f"{key}.suffixes", table.get("suffixes"))}, key=len)[::-1]
        )
        prefix = table.get("negation_prefix", "")
        if not isinstance(prefix, str):
            c.problem(f, f"{key}.negation_prefix", "must be a string")
            prefix = ""
        out[code] = LanguageProfile(
            code=code,
            stopwords=folded("stopwords"),
            negators=frozenset(w.replace("'", "") for w in folded("negators")),
            backward_negators=folded("backward_negators"),
            negation_prefix=fold(prefix),
            not_negation_prefixes=tuple(sorted(folded("not_negation_prefixes"))),
            contrast_words=folded("contrast_words"),
            suffixes=suffixes,
            min_stem=int(c.number(f, f"{key}.min_stem", table.get("min_stem"), 1, 10, 3)),
            scope_forward=int(c.number(f, f"{key}.scope_forward", table.get("scope_forward"), 0, 6, 2)),
            scope_backward=int(c.number(f, f"{key}.scope_backward", table.get("scope_backward"), 0, 6, 0)),
            colloquial_ej=bool(table.get("colloquial_ej", False)),
            tone_marks=tone_marks,
            lemmatize=bool(table.get("lemmatize", False)),
            prefix_stems=bool(table.get("prefix_stems", False)),
            ordered_phrases=bool(table.get("ordered_phrases", False)),
            reflexive_endings=tuple(sorted(folded("reflexive_endings"))),
        )
    for code in ("cs",):
        if code not in out:
            c.problem(f, code, "the Czech profile [cs] is required", needle="")
    return out


def _signals(c: _Checker, data: Mapping[str, object]) -> dict[str, SignalSpec]:
    f = "signals.toml"
    c.only_keys(f, "(top level)", data, ("signals",))
    table = c.table(f, "signals", data.get("signals", {}))
    if not table:
        c.problem(f, "signals", "no signals defined", needle="")
    out: dict[str, SignalSpec] = {}
    for sid, value in table.items():
        key = f"signals.{sid}"
        spec = c.table(f, key, value)
        c.only_keys(f, key, spec, ("description", "weight", "critical", *LANGUAGES))
        critical = spec.get("critical", False)
        if not isinstance(critical, bool):
            c.problem(f, f"{key}.critical", f"must be true or false, got {critical!r}")
            critical = False
        phrases = {lang: c.strings(f, f"{key}.{lang}", spec.get(lang)) for lang in LANGUAGES if lang in spec}
        if not any(phrases.values()):
            c.problem(f, key, "has no phrases in any language", needle=f"[{key}]")
        out[sid] = SignalSpec(
            id=sid,
            description=c.string(f, f"{key}.description", spec.get("description")),
            weight=c.number(f, f"{key}.weight", spec.get("weight"), 0.0, 10.0, 1.0),
            phrases=phrases,
            critical=critical,
        )
    return out


def _condition(c: _Checker, f: str, key: str, table: Mapping[str, object], known: set[str]) -> Condition:
    parts: dict[str, tuple[str, ...]] = {}
    for name in ("all", "any", "none"):
        names = c.strings(f, f"{key}.{name}", table.get(name))
        for s in names:
            if s not in known:
                c.problem(f, f"{key}.{name}", f"unknown signal {s!r}", needle=f'"{s}"')
        parts[name] = names
    if not parts["all"] and not parts["any"]:
        c.problem(f, key, "needs at least one signal in 'all' or 'any'")
    return Condition(all=parts["all"], any=parts["any"], none=parts["none"])


def _rule_list(c: _Checker, f: str, key: str, value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        c.problem(f, key, "must be a list of tables")
        return []
    return [c.table(f, f"{key}[{i}]", v) for i, v in enumerate(value)]


def _priority(c: _Checker, f: str, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 2, 3):
        c.problem(f, key, f"priority must be 1, 2 or 3, got {value!r}")
        return 2
    return value


def _agency(c: _Checker, f: str, key: str, value: object) -> Agency | None:
    try:
        return Agency(str(value))
    except ValueError:
        c.problem(f, key, f"unknown agency {value!r} (known: HZS, ZZS, PCR)", needle=f'"{value}"')
        return None


def _types(c: _Checker, data: Mapping[str, object], known: set[str]) -> dict[IncidentType, TypeSpec]:
    f = "types.toml"
    c.only_keys(f, "(top level)", data, ("types",))
    table = c.table(f, "types", data.get("types", {}))
    out: dict[IncidentType, TypeSpec] = {}
    for name, value in table.items():
        key = f"types.{name}"
        try:
            itype = IncidentType(name)
        except ValueError:
            c.problem(f, key, "unknown incident type (see routing/vocabulary.py)", needle=f"[{key}]")
            continue
        spec = c.table(f, key, value)
        c.only_keys(
            f, key, spec, ("family", "agencies", "priority", "rules", "priority_rules", "description")
        )
        family = c.string(f, f"{key}.family", spec.get("family"))
        if family and family not in FAMILIES:
            c.problem(f, f"{key}.family", f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
        agencies = [
            _agency(c, f, f"{key}.agencies", a) for a in c.strings(f, f"{key}.agencies", spec.get("agencies"))
        ]
        rules: list[ScoreRule] = []
        for i, rule in enumerate(_rule_list(c, f, f"{key}.rules", spec.get("rules"))):
            rkey = f"{key}.rules[{i}]"
            c.only_keys(f, rkey, rule, ("id", "all", "any", "none", "weight"))
            rules.append(
                ScoreRule(
                    id=c.string(f, f"{rkey}.id", rule.get("id")),
                    condition=_condition(c, f, rkey, rule, known),
                    weight=c.number(f, f"{rkey}.weight", rule.get("weight"), 0.0, 20.0, 1.0),
                )
            )
        priority_rules: list[PriorityRule] = []
        for i, rule in enumerate(_rule_list(c, f, f"{key}.priority_rules", spec.get("priority_rules"))):
            rkey = f"{key}.priority_rules[{i}]"
            c.only_keys(f, rkey, rule, ("id", "all", "any", "none", "priority"))
            priority_rules.append(
                PriorityRule(
                    id=c.string(f, f"{rkey}.id", rule.get("id")),
                    condition=_condition(c, f, rkey, rule, known),
                    priority=_priority(c, f, f"{rkey}.priority", rule.get("priority")),
                )
            )
        if not rules:
            c.problem(f, key, "has no rules: the type could never be chosen", needle=f"[{key}]")
        out[itype] = TypeSpec(
            type=itype,
            family=family,
            agencies=tuple(a for a in agencies if a is not None),
            priority=_priority(c, f, f"{key}.priority", spec.get("priority")),
            rules=tuple(rules),
            priority_rules=tuple(priority_rules),
        )
    return out


def _agency_rules(c: _Checker, data: Mapping[str, object], known: set[str]) -> tuple[AgencyRule, ...]:
    f = "agencies.toml"
    c.only_keys(f, "(top level)", data, ("rules",))
    out: list[AgencyRule] = []
    for i, rule in enumerate(_rule_list(c, f, "rules", data.get("rules"))):
        key = f"rules[{i}]"
        c.only_keys(f, key, rule, ("id", "agency", "position", "families", "types", "all", "any", "none"))
        agency = _agency(c, f, f"{key}.agency", rule.get("agency"))
        position = rule.get("position", "last")
        if position not in ("first", "last"):
            c.problem(f, f"{key}.position", f"must be 'first' or 'last', got {position!r}")
        families = c.strings(f, f"{key}.families", rule.get("families"))
        for fam in families:
            if fam not in FAMILIES:
                c.problem(f, f"{key}.families", f"unknown family {fam!r}", needle=f'"{fam}"')
        types: set[IncidentType] = set()
        for t in c.strings(f, f"{key}.types", rule.get("types")):
            try:
                types.add(IncidentType(t))
            except ValueError:
                c.problem(f, f"{key}.types", f"unknown incident type {t!r}", needle=f'"{t}"')
        condition = _condition(c, f, key, rule, known)
        if agency is not None:
            out.append(
                AgencyRule(
                    id=c.string(f, f"{key}.id", rule.get("id")),
                    agency=agency,
                    first=position == "first",
                    families=frozenset(families),
                    types=frozenset(types),
                    condition=condition,
                )
            )
    return tuple(out)


def _protocol(
    c: _Checker, data: Mapping[str, object], known: set[str]
) -> tuple[str, DecisionSettings, dict[str, IncidentType], tuple[ScoreRule, ...]]:
    f = "protocol.toml"
    c.only_keys(f, "(top level)", data, ("version", "decision", "dialled_defaults", "tcpr"))
    version = c.string(f, "version", data.get("version"))
    decision = c.table(f, "decision", data.get("decision", {}))
    c.only_keys(
        f, "decision", decision, ("unsure_below", "dialled_prior", "silent_min_words", "fuzzy_weight")
    )
    settings = DecisionSettings(
        unsure_below=c.number(f, "decision.unsure_below", decision.get("unsure_below"), 0.0, 1.0, 0.3),
        dialled_prior=c.number(f, "decision.dialled_prior", decision.get("dialled_prior"), 0.0, 5.0, 0.3),
        silent_min_words=int(
            c.number(f, "decision.silent_min_words", decision.get("silent_min_words"), 1, 1000, 25)
        ),
        fuzzy_weight=c.number(f, "decision.fuzzy_weight", decision.get("fuzzy_weight"), 0.0, 1.0, 0.8),
    )
    defaults: dict[str, IncidentType] = {}
    for number, value in c.table(f, "dialled_defaults", data.get("dialled_defaults", {})).items():
        if number not in DESK_BY_DIALLED:
            c.problem(
                f, f"dialled_defaults.{number}", "not an emergency number we take", needle=f'"{number}"'
            )
        try:
            defaults[number] = IncidentType(str(value))
        except ValueError:
            c.problem(
                f, f"dialled_defaults.{number}", f"unknown incident type {value!r}", needle=f'"{number}"'
            )
    tcpr = c.table(f, "tcpr", data.get("tcpr", {}))
    c.only_keys(f, "tcpr", tcpr, ("rules",))
    rules: list[ScoreRule] = []
    for i, rule in enumerate(_rule_list(c, f, "tcpr.rules", tcpr.get("rules"))):
        key = f"tcpr.rules[{i}]"
        c.only_keys(f, key, rule, ("id", "all", "any", "none"))
        rules.append(
            ScoreRule(c.string(f, f"{key}.id", rule.get("id")), _condition(c, f, key, rule, known), 1.0)
        )
    if not rules:
        c.problem(f, "tcpr.rules", "the T-CPR rule is required", needle="[tcpr")
    return version, settings, defaults, tuple(rules)
