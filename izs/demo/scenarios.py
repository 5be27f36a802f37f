"""Labelled emergency-call scenarios (JSON Lines, see tests/fixtures/calls/SCHEMA.md) for demos and drills."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

from intake.errors import ValidationFailed
from routing.eval import Scenario, ScenarioError
from routing.eval import load_scenarios as read_scenarios
from routing.vocabulary import EMERGENCY_NUMBERS

__all__ = ["Scenario", "demo_selection", "load_scenarios", "shipped_scenarios_path"]


def shipped_scenarios_path() -> Path:
    """The dev scenario set shipped with the package (a copy of tests/fixtures/calls/dev.jsonl)."""
    return Path(str(resources.files("izs.demo") / "data" / "dev.jsonl"))


def load_scenarios(path: Path | None = None) -> list[Scenario]:
    """Scenarios from ``path`` (default: the shipped dev set), read by triage's own reader (one format, one
    reader); labels are optional for a demo, and a call must dial one of the emergency numbers the demo's
    SIP calls reach. One clear error naming the file and line."""
    source = path or shipped_scenarios_path()
    try:
        scenarios = read_scenarios(source, labelled=False)
    except ScenarioError as exc:
        raise ValidationFailed(str(exc)) from exc
    for scenario in scenarios:
        if scenario.dialled not in EMERGENCY_NUMBERS:
            raise ValidationFailed(
                f"{source}: {scenario.id}: dialed must be one of {', '.join(EMERGENCY_NUMBERS)}"
            )
    if not scenarios:
        raise ValidationFailed(f"{source}: no scenarios")
    return [replace(s, caller_number=s.caller_number or "anonymous") for s in scenarios]


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
