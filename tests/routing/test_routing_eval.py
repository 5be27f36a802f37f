"""The evaluation the CLI runs (`izs triage eval/run`), and the accuracy levels triage must hold on the dev set."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from routing.eval import (
    METRIC_KEYS,
    Evaluation,
    SpeechClock,
    add_asr_noise,
    evaluate,
    load_scenarios,
    main_eval,
    main_run,
    split_of,
)
from routing.triage import Triage

DEV_SET = Path(__file__).resolve().parents[1] / "fixtures" / "calls" / "dev.jsonl"


@pytest.fixture(scope="module")
def evaluation(triage: Triage) -> Evaluation:
    return evaluate(triage, load_scenarios(DEV_SET))


def test_dev_set_levels_on_clean_text(evaluation: Evaluation) -> None:
    clean = evaluation.report("all")
    assert clean["calls"] == 90
    assert clean["primary_agency_accuracy"] >= 0.95
    assert clean["agency_set_accuracy"] >= 0.85
    assert clean["incident_type_accuracy"] >= 0.85
    assert clean["tcpr_sensitivity"] >= 0.95
    assert clean["tcpr_specificity"] >= 0.95
    assert clean["municipality_accuracy"] >= 0.90


def test_held_out_part_is_reported_separately(evaluation: Evaluation) -> None:
    tune, holdout = evaluation.report("tune"), evaluation.report("holdout")
    assert tune["calls"] + holdout["calls"] == 90
    assert 20 <= holdout["calls"] <= 35
    # the held-out calls were not tuned on; they still have to be usable
    assert holdout["primary_agency_accuracy"] >= 0.85
    assert holdout["tcpr_sensitivity"] >= 0.95


def test_noisy_transcripts_degrade_gracefully(evaluation: Evaluation) -> None:
    noisy = evaluation.report("all")["noisy"]
    assert noisy["primary_agency_accuracy"] >= 0.85
    assert noisy["tcpr_sensitivity"] >= 0.9


def test_time_to_tcpr_is_far_below_the_reference(evaluation: Evaluation) -> None:
    ttt = evaluation.report("all")["time_to_tcpr_s"]
    assert ttt["never_raised"] == 0
    assert ttt["median"] is not None and ttt["median"] < 44


def test_split_is_fixed_by_id_hash() -> None:
    ids = [f"dev-{i:03d}" for i in range(1, 91)]
    first = [split_of(i) for i in ids]
    assert first == [split_of(i) for i in ids]
    assert 0.2 <= first.count("holdout") / len(ids) <= 0.4


def test_asr_noise_is_deterministic_and_drops_diacritics() -> None:
    text = "Manžel nedýchá, hrudník se nehýbe, Sokolov, Husitská dvanáct."
    noisy = add_asr_noise(text, seed=3, key="x")
    assert noisy == add_asr_noise(text, seed=3, key="x")
    assert noisy.isascii()
    assert add_asr_noise(text, seed=4, key="x", rate=0.9) != add_asr_noise(text, seed=5, key="x", rate=0.9)


def test_eval_json_has_the_keys_the_cli_promises() -> None:
    out = io.StringIO()
    assert main_eval([str(DEV_SET), "--json"], out=out) == 0
    result = json.loads(out.getvalue())
    for key in ("calls", *METRIC_KEYS):
        assert key in result and key in result["noisy"]
    assert set(result["splits"]) == {"tune", "holdout"}
    assert all(0.0 <= result[k] <= 1.0 for k in METRIC_KEYS)


def test_run_prints_one_prediction_per_call_in_the_expected_shape(tmp_path: Path) -> None:
    sample = tmp_path / "three.jsonl"
    sample.write_text(
        "\n".join(DEV_SET.read_text(encoding="utf-8").splitlines()[:3]) + "\n", encoding="utf-8"
    )
    out = io.StringIO()
    assert main_run([str(sample)], out=out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["id"] for r in lines] == ["dev-001", "dev-002", "dev-003"]
    for record in lines:
        assert {"agencies", "incident_type", "priority", "tcpr", "location"} <= set(record)


def test_text_report_shows_both_parts_and_the_confusion_table(tmp_path: Path) -> None:
    sample = tmp_path / "few.jsonl"
    sample.write_text(
        "\n".join(DEV_SET.read_text(encoding="utf-8").splitlines()[:12]) + "\n", encoding="utf-8"
    )
    out = io.StringIO()
    assert main_eval([str(sample)], out=out) == 0
    report = out.getvalue()
    assert "holdout" in report and "tune" in report and "noisy" in report
    assert "incident type confusion" in report
    assert "time to T-CPR flag" in report


def test_bad_scenario_file_is_a_clear_error_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "dialed": "112"}\nnot json\n', encoding="utf-8")
    err = io.StringIO()
    assert main_eval([str(bad)], out=io.StringIO(), err=err) == 2
    assert "bad.jsonl:1: missing" in err.getvalue()
    assert main_run([str(tmp_path / "missing.jsonl")], out=io.StringIO(), err=err) == 2


def test_espeak_timing_gives_plausible_speech_durations() -> None:
    text = "Prosím vás rychle, manžel mi spadl v kuchyni, nereaguje a nedýchá"
    times = SpeechClock("espeak").word_end_times(text, "cs")
    assert len(times) == len(text.split())
    assert times == sorted(times)
    assert 2.0 < times[-1] < 10.0  # a dozen words take a few seconds to say


@pytest.mark.parametrize(
    "name", [f"challenge{n}.jsonl" for n in ("", "2", "3", "4", "5", "6", "7", "8", "9", "10")]
)
def test_self_written_challenge_sets_hold_their_levels(triage: Triage, name: str) -> None:
    """375 calls written for this project (not from the dev set), in all seven languages."""
    report = evaluate(triage, load_scenarios(DEV_SET.with_name(name))).report("all")
    assert report["primary_agency_accuracy"] >= 0.85
    assert report["incident_type_accuracy"] >= 0.85
    assert report["tcpr_sensitivity"] >= 0.95
    assert report["tcpr_specificity"] >= 0.95


def test_bare_split_flag_is_accepted(tmp_path: Path) -> None:
    """`--split` without a value keeps all calls at the top level; both parts are always reported."""
    sample = tmp_path / "few.jsonl"
    sample.write_text(
        "\n".join(DEV_SET.read_text(encoding="utf-8").splitlines()[:6]) + "\n", encoding="utf-8"
    )
    out = io.StringIO()
    assert main_eval([str(sample), "--json", "--split"], out=out) == 0
    result = json.loads(out.getvalue())
    assert result["split"] == "all" and result["calls"] == 6
    out = io.StringIO()
    assert main_eval([str(sample), "--json", "--split", "holdout"], out=out) == 0
    assert json.loads(out.getvalue())["calls"] == result["splits"]["holdout"]["calls"]
