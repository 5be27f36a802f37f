"""`izs triage train --from-database`: the centre's confirmed incidents teach a candidate model, on a real
database (SQLite or PostgreSQL, as IZS_TEST_DB chooses); nothing switches until the operator points
IZS_TRIAGE_DATA_DIR at the new directory."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from intake.domain import Call, CallerNumber, CallState, LineType, Location, LocationSource, TranscriptSegment
from intake.storage.repository import Repository
from intake.triage_corpus import confirmed_scenarios
from izs.cli import main
from routing.eval import main_eval
from routing.triage import Triage
from routing.vocabulary import Agency, IncidentType

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "calls"


def _call(call_id: str, dialled: str, words: str) -> Call:
    return Call(
        id=call_id,
        call_ref=f"sip-{call_id}",
        source="sip",
        dialled=dialled,
        caller=CallerNumber("604123456", "+420604123456", "CZ", LineType.MOBILE, True),
        state=CallState.ENDED,
        offered_at=T0,
        ended_at=T0 + timedelta(minutes=2),
        language="cs",
        transcript=[
            TranscriptSegment("caller", words, 0.5, 4.0, 0.8, "cs"),
            TranscriptSegment("taker", "Kde jste?", 4.5, 5.0),
        ],
    )


def _seed(repository: Repository) -> None:
    calls = {
        "c-fire": ("150", "hori nam stodola za vesnici, je tam hodne koure"),
        "c-arrest": ("155", "manzel spadl a nedycha, nereaguje vubec"),
        "c-unconfirmed": ("158", "nekdo mi ukradl kolo pred obchodem"),
    }
    for call_id, (dialled, words) in calls.items():
        repository.save_call(_call(call_id, dialled, words))
    fire = repository.create_incident(
        "KVK", IncidentType.FIRE_OTHER, 2, [Agency.HZS], None, False, "triage", call_ids=["c-fire"]
    )
    # the call taker corrected triage: a barn is a building fire
    repository.update_incident(
        fire.id,
        "taker-7",
        "corrected",
        {"incident_type": IncidentType.FIRE_BUILDING, "confirmed_by": "taker-7"},
    )
    arrest = repository.create_incident(
        "KVK",
        IncidentType.MED_CARDIAC_ARREST,
        1,
        [Agency.ZZS],
        Location(LocationSource.SPOKEN, municipality="Sokolov"),
        True,
        "triage",
        call_ids=["c-arrest"],
    )
    repository.update_incident(arrest.id, "taker-2", "confirmed", {"confirmed_by": "taker-2"})
    repository.create_incident(
        "KVK", IncidentType.POLICE_THEFT, 3, [Agency.PCR], None, False, "triage", call_ids=["c-unconfirmed"]
    )


def test_only_confirmed_incidents_become_training_calls(repository: Repository) -> None:
    _seed(repository)
    records = confirmed_scenarios(repository)
    assert len(records) == 2
    by_type = {r["expected"]["incident_type"]: r for r in records}
    assert set(by_type) == {"FIRE_BUILDING", "MED_CARDIAC_ARREST"}  # the correction, not triage's guess
    arrest = by_type["MED_CARDIAC_ARREST"]
    assert arrest["caller"] == "manzel spadl a nedycha, nereaguje vubec"  # the caller's words only
    assert arrest["caller_recognised"] == arrest["caller"]
    assert arrest["expected"]["tcpr"] is True
    assert arrest["expected"]["agencies"] == ["ZZS"]
    assert arrest["expected"]["location"]["municipality"] == "Sokolov"
    assert arrest["dialed"] == "155"


@pytest.mark.timeout(1800)  # trains twice and evaluates two triages on the dev split: minutes on a shared CPU
def test_train_from_database_writes_a_candidate_and_eval_compares(
    repository: Repository, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(repository)
    monkeypatch.setenv("IZS_DATABASE_URL", database_url)
    monkeypatch.setenv("IZS_VAR_DIR", str(tmp_path / "var"))
    candidate = tmp_path / "candidate"
    sources = [str(FIXTURES / "challenge.jsonl"), str(FIXTURES / "challenge2.jsonl")]
    args = ["triage", "train", "--from-database", *sources, "--out", str(candidate), "--folds", "2"]
    assert main([*args, "--keep-features", "4000", "--quiet"]) == 0
    assert (candidate / "centre" / "confirmed.jsonl").read_text("utf-8").count("\n") == 2
    model_file = candidate / "model" / "triage-model.bin.gz"
    first = model_file.read_bytes()
    assert len(first) < 8_000_000
    # deterministic: the same input gives the same bytes (and so the same version)
    assert main([*args, "--keep-features", "4000", "--quiet"]) == 0
    assert model_file.read_bytes() == first
    shipped = Triage.from_data_dir(with_model=False)
    new = Triage.from_data_dir(candidate)
    assert new.model is not None and new.model.meta["trained_on"]["calls"] == 85 + 2
    assert new.rules_version.startswith(shipped.rules_version) and "+model:" in new.rules_version
    out = io.StringIO()
    assert main_eval(["--candidate", str(candidate), "--json"], out=out) == 0
    assert '"candidate"' in out.getvalue() and '"current"' in out.getvalue()
