"""``izs demo --once``: the whole centre, synthesized callers over real SIP, real transcription."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from intake.settings import Settings
from intake.storage.database import Database
from intake.storage.repository import Repository
from izs.demo import run_demo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in ("baresip", "text2wave", "espeak-ng", "sox")),
        reason="needs baresip, festival (Czech voices), espeak-ng and sox",
    ),
]


def _one_czech_and_one_foreign_caller(path: Path) -> Path:
    lines = (
        (Path(__file__).resolve().parents[2] / "tests/fixtures/calls/dev.jsonl")
        .read_text("utf-8")
        .splitlines()
    )
    # dev-021: Czech cardiac arrest (155); dev-003: German cardiac arrest (112). Short enough for 2 cores.
    picked = [line for line in lines if '"id": "dev-021"' in line or '"id": "dev-003"' in line]
    path.write_text("\n".join(picked) + "\n", encoding="utf-8")
    return path


async def test_demo_places_czech_and_foreign_calls_transcribes_them_and_keeps_every_call_on_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(var_dir=tmp_path / "var", http_port=0, log_json=False, transcription_workers=1)
    code = await run_demo(
        settings,
        scenarios=_one_czech_and_one_foreign_caller(tmp_path / "two.jsonl"),
        calls=2,
        pace_s=2.0,
        keep_running=False,
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "every one of the 2 placed calls is on record" in out
    assert "consoles: http://127.0.0.1:" in out and "/supervisor" in out
    assert "user supervisor" in out and "password" in out
    assert "time to desk" in out and "p95" in out

    database = Database(f"sqlite:///{tmp_path / 'var' / 'izs.db'}")
    try:
        calls, total = Repository(database).list_calls(limit=10, with_transcript=True)
    finally:
        database.dispose()
    assert total == 2
    assert {c.dialled for c in calls} == {"155", "112"}
    assert all(c.answered_at is not None and c.taker_id for c in calls), "autopilot call takers answer"
    assert all(c.incident_id for c in calls)
    heard = " ".join(s.text for c in calls for s in c.transcript)
    assert heard.strip(), "the callers' speech was transcribed"
    assert {c.language for c in calls} & {"de", "cs"}
