"""Labelled emergency-call scenarios (JSON Lines, see tests/fixtures/calls/SCHEMA.md) for demos and drills."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from intake.errors import ValidationFailed
from routing.vocabulary import EMERGENCY_NUMBERS


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    dialled: str
    caller_number: str
    language: str
    caller_text: str
    taker_text: str = ""
    expected: dict[str, Any] = field(default_factory=dict)

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


def shipped_scenarios_path() -> Path:
    """The dev scenario set shipped with the package (a copy of tests/fixtures/calls/dev.jsonl)."""
    return Path(str(resources.files("izs.demo") / "data" / "dev.jsonl"))


def parse_scenario(raw: Any, where: str) -> Scenario:
    if not isinstance(raw, dict):
        raise ValidationFailed(f"{where}: a scenario is a JSON object")
    problems = []
    for key in ("id", "dialed", "language", "caller"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            problems.append(f"{key} missing or not a string")
    if isinstance(raw.get("dialed"), str) and raw["dialed"] not in EMERGENCY_NUMBERS:
        problems.append(f"dialed must be one of {', '.join(EMERGENCY_NUMBERS)}")
    expected = raw.get("expected", {})
    if not isinstance(expected, dict):
        problems.append("expected must be an object")
    if problems:
        raise ValidationFailed(f"{where}: " + "; ".join(problems), problems=problems)
    return Scenario(
        id=raw["id"],
        dialled=raw["dialed"],
        caller_number=str(raw.get("caller_number") or "anonymous"),
        language=raw["language"],
        caller_text=raw["caller"],
        taker_text=str(raw.get("taker") or ""),
        expected=expected,
    )


def load_scenarios(path: Path | None = None) -> list[Scenario]:
    """Scenarios from ``path`` (default: the shipped dev set); one clear error per bad line."""
    source = path or shipped_scenarios_path()
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"cannot read scenarios from {source}: {exc}") from exc
    out: list[Scenario] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationFailed(f"{source}:{number}: not JSON: {exc.msg}") from exc
        out.append(parse_scenario(raw, f"{source}:{number}"))
    if not out:
        raise ValidationFailed(f"{source}: no scenarios")
    return out


def demo_selection(scenarios: list[Scenario], count: int) -> list[Scenario]:
    """A varied demo set: foreign-language callers and cardiac arrests mixed in early, the rest in order."""
    foreign = [s for s in scenarios if s.language != "cs"]
    arrests = [s for s in scenarios if s.expected_tcpr and s.language == "cs"]
    picked: list[Scenario] = []
    pools = [arrests[:2], foreign[:3], scenarios]
    for pool in pools:
        for scenario in pool:
            if len(picked) >= count:
                break
            if scenario not in picked:
                picked.append(scenario)
    # Interleave so the first few calls already show a foreign caller and a cardiac arrest.
    head = picked[:5]
    order = [head[i] for i in (2, 0, 3, 1, 4) if i < len(head)]
    return order + picked[5:]
