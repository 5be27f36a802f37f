"""Recognition in a separate worker process, driven as an integrator deploys it: a centre with
``recognition="redis"`` (no decoder in the intake process), a real ``izs-recognition-worker`` on the centre's
Redis, and a real SIP caller (baresip) speaking Czech (Festival) to 112. The caller's words reach the call's
record, and triage hears them: 112 names no agency, so the fire type comes from the caller's own words."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from e2e_support import drill_settings, running_centre, takers, wait_for_ref

from intake.domain import Call
from intake.storage.repository import Repository
from izs.demo.callers import CallerFleet, PlannedCall
from izs.demo.speech import SpeechSynthesizer
from transcription.evaluation import normalize
from transcription.streams import RemoteRecognizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transcription"))
from transcription_support import start_recognition_worker, stop_recognition_worker, wait_worker_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CALLER_TEXT = "Dobrý den, hoří nám garáž v Karlových Varech, z okna jde hustý černý dým."


async def _wait_words(repo: Repository, ref: str, words: set[str], deadline_s: float) -> Call:
    deadline = time.monotonic() + deadline_s
    while True:
        call = await asyncio.to_thread(repo.find_call_by_ref, ref)
        if call is not None:
            full = await asyncio.to_thread(repo.get_call, call.id)
            heard = set(normalize(" ".join(s.text for s in full.transcript if s.leg == "caller")))
            if len(heard & words) >= 3 and not full.is_live:
                return full
        assert time.monotonic() < deadline, f"caller's words not on the record: {call}"
        await asyncio.sleep(0.3)


async def test_a_real_sip_call_is_transcribed_by_a_recognition_worker_process(tmp_path: Path) -> None:
    spoken = SpeechSynthesizer(tmp_path / "voices").synthesize(CALLER_TEXT, "cs", tail_silence_s=3.0)
    settings = drill_settings(
        tmp_path / "var",
        takers=takers(("hzs1", ["HZS"], ["cs"])),
        transcription_enabled=True,
        recognition="redis",
    )
    async with running_centre(settings) as centre:
        recognizer = centre.transcriber
        assert isinstance(recognizer, RemoteRecognizer), "redis mode must not decode in the intake process"
        assert centre.embedded_redis is not None and centre.sip is not None
        worker = start_recognition_worker(centre.embedded_redis.url, "w1", tmp_path / "models")
        try:
            await asyncio.to_thread(wait_worker_ready, worker, 120)
            deadline = time.monotonic() + 15
            while recognizer.recognition_status().workers != 1:
                assert time.monotonic() < deadline, recognizer.recognition_status()
                await asyncio.sleep(0.2)
            port = centre.sip.address[1]
            async with CallerFleet() as fleet:
                task = fleet.start(
                    [
                        PlannedCall(
                            "fire",
                            spoken.path,
                            f"sip:112@127.0.0.1:{port}",
                            "+420603555111",
                            hangup_after_s=spoken.duration_s + 1.0,
                        )
                    ]
                )[0]
                ref = await wait_for_ref(fleet.outcome("fire"))
                await asyncio.wait_for(task, 60)
            call = await _wait_words(centre.repo, ref, set(normalize(CALLER_TEXT)), 90)
        finally:
            await asyncio.to_thread(stop_recognition_worker, worker)
    assert call.triage is not None and call.triage.incident_type.startswith("FIRE"), call.triage
