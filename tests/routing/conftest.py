"""Shared fixtures for the routing tests: one triage instance per session (loading takes ~2 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from routing.gazetteer import Gazetteer
from routing.triage import Triage

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEV_SET = FIXTURES / "calls" / "dev.jsonl"


@pytest.fixture(scope="session")
def triage() -> Triage:
    return Triage.from_data_dir()


@pytest.fixture(scope="session")
def gazetteer() -> Gazetteer:
    return Gazetteer.load_default()
