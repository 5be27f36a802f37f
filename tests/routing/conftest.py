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
    """The protocol rules alone (the tests of rules, negation and evidence pin their behaviour)."""
    return Triage.from_data_dir(with_model=False)


@pytest.fixture(scope="session")
def learned() -> Triage:
    """Triage as shipped: the rules with the learned model beside them."""
    triage = Triage.from_data_dir()
    assert triage.model is not None, (
        "routing/data/model/triage-model.bin.gz is missing: run `izs triage train`"
    )
    return triage


@pytest.fixture(scope="session")
def gazetteer() -> Gazetteer:
    return Gazetteer.load_default()
