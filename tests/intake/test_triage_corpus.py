"""`izs triage recognise`: scenario calls through the real speech pipeline and the fitted noise model."""

from __future__ import annotations

import io
import json
from pathlib import Path

from intake.triage_corpus import balanced_choice, run
from routing.asr_noise import NoiseModel


def _call(cid: str, language: str, itype: str, caller: str) -> dict:
    return {
        "id": cid,
        "dialed": "155",
        "language": language,
        "caller": caller,
        "expected": {
            "agencies": ["ZZS"],
            "incident_type": itype,
            "priority": 1,
            "tcpr": True,
            "location": None,
        },
    }


def test_balanced_choice_spreads_over_language_and_type() -> None:
    records = [_call(f"a{i}", "cs", "MED_STROKE", "x") for i in range(10)]
    records += [_call(f"b{i}", "en", "MED_STROKE", "x") for i in range(3)]
    records += [_call(f"c{i}", "cs", "FIRE_BUILDING", "x") for i in range(3)]
    chosen = balanced_choice(records, 6)
    assert sorted(r["id"][0] for r in chosen) == ["a", "a", "b", "b", "c", "c"]
    assert [r["id"] for r in balanced_choice(records, 6)] == [r["id"] for r in chosen]


def test_real_pipeline_then_fitted_noise_in_place(tmp_path: Path) -> None:
    corpus = tmp_path / "calls.jsonl"
    calls = [
        _call("t-1", "cs", "MED_CARDIAC_ARREST", "Manžel upadl v kuchyni, nereaguje a nedýchá."),
        _call("t-2", "en", "MED_STROKE", "My husband cannot speak and his face is drooping."),
        _call("t-3", "cs", "MED_STROKE", "Babička nemůže mluvit a má pokleslý koutek."),
    ]
    corpus.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in calls), "utf-8")
    noise_file = tmp_path / "noise.json"
    out = io.StringIO()
    args = [str(corpus), "--in-place", "--real", "2", "--fit", "--noise-file", str(noise_file)]
    assert run([*args, "--cache-dir", str(tmp_path / "cache")], out=out) == 0
    records = [json.loads(line) for line in corpus.read_text("utf-8").splitlines()]
    by = {r["recognised_by"].split(":")[0] for r in records}
    assert by == {"pipeline", "noise"}
    real = [r for r in records if r["recognised_by"].startswith("pipeline")]
    assert len(real) == 2
    for record in real:
        assert record["caller_recognised"].strip()
        assert "/8k/" in record["recognised_by"]
    czech = next(r for r in real if r["language"] == "cs")
    assert czech["recognised_by"].startswith("pipeline:festival:czech_machac/8k/")
    assert NoiseModel.load(noise_file).languages
    # a second run resumes: nothing is recognised again, the fields stay
    out2 = io.StringIO()
    assert run([*args, "--cache-dir", str(tmp_path / "cache")], out=out2) == 0
    assert "[1/" not in out2.getvalue()
    again = [json.loads(line) for line in corpus.read_text("utf-8").splitlines()]
    assert [r["caller_recognised"] for r in again] == [r["caller_recognised"] for r in records]


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\nnot json\n', "utf-8")
    err = io.StringIO()
    assert run([str(bad), "--out", str(tmp_path / "o.jsonl")], err=err) == 2
    assert "bad.jsonl:1" in err.getvalue()
