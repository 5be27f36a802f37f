"""Voice logging of a real SIP call with both legs: a baresip caller speaks Czech, the centre rings the call
taker's desk phone (baresip, auto-answer, speaking its own words), they talk, the caller hangs up. The
recording in the database has the caller's leg from the first RTP packet and the call taker's leg from
the moment their phone answered, each the audio that came off the wire (checked by correlation with what
each phone sent), in one stereo FLAC the API hands out."""

from __future__ import annotations

import asyncio
import io
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from e2e_support import drill_settings, running_centre, set_available, wait_for_ref

from intake.domain import CallState
from intake.recording import RecordingStatus, build_playable
from intake.settings import TakerConfig
from izs.demo.callers import CallerFleet, PlannedCall

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "telephony" / "sip"))
from sip_peers import Baresip, peak_normalised_correlation, read_wav, synthesize_czech

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CALLER_TEXT = "Dobrý den, hoří nám garáž v Karlových Varech, ulice Sokolovská dvacet."
TAKER_TEXT = "Hasiči, dobrý den. Jsou v garáži lidé? Vyjděte ven a počkejte na nás u silnice."


async def test_both_legs_of_a_real_sip_call_are_recorded_as_they_came_off_the_wire(tmp_path: Path) -> None:
    caller_wav = synthesize_czech(CALLER_TEXT, tmp_path / "caller.wav")
    taker_wav = synthesize_czech(TAKER_TEXT + " " + TAKER_TEXT, tmp_path / "taker.wav")
    phone = await asyncio.to_thread(Baresip(tmp_path, "hzs1", audio_source=taker_wav, auto_answer=True).start)
    try:
        settings = drill_settings(
            tmp_path / "var",
            takers=[TakerConfig(id="hzs1", name="HZS1", desks=["HZS"], languages=["cs"], sip_uri=phone.uri)],
        )
        async with running_centre(settings) as centre:
            assert centre.sip is not None and centre.recordings is not None
            await set_available(centre, ["hzs1"])
            port = centre.sip.address[1]
            async with CallerFleet() as fleet:
                task = fleet.start(
                    [
                        PlannedCall(
                            "fire",
                            caller_wav,
                            f"sip:150@127.0.0.1:{port}",
                            "+420603555111",
                            hangup_after_s=14.0,
                        )
                    ]
                )[0]
                ref = await wait_for_ref(fleet.outcome("fire"))
                await asyncio.wait_for(task, 60)
            deadline = time.monotonic() + 30
            while True:
                call = await asyncio.to_thread(centre.repo.find_call_by_ref, ref)
                info = await asyncio.to_thread(centre.recordings.get_recording, call.id) if call else None
                if (
                    call is not None
                    and not call.is_live
                    and info is not None
                    and info.status != RecordingStatus.RECORDING
                ):
                    break
                assert time.monotonic() < deadline, f"call or recording not closed: {call} {info}"
                await asyncio.sleep(0.2)
            assert call.state is CallState.ENDED and call.taker_id == "hzs1"
            assert info.status == RecordingStatus.COMPLETE, info
            assert set(info.legs) == {"caller", "taker"}
            assert info.legs["caller"]["offset_s"] == 0.0
            assert 0.0 < info.legs["taker"]["offset_s"] < info.legs["caller"]["duration_s"]
            call_s = (call.ended_at - call.media_answered_at).total_seconds()
            assert info.duration_s == pytest.approx(call_s, rel=0.10)

            playable = await asyncio.to_thread(
                build_playable, centre.recordings, None, call.id, ("caller", "taker"), None
            )
            stereo, rate = soundfile.read(io.BytesIO(playable.audio), dtype="int16", always_2d=True)
            assert rate == 8000 and stereo.shape[1] == 2
            sent_by_caller = read_wav(caller_wav)
            sent_by_taker = read_wav(taker_wav)
            # Speech through G.711 and back: what each phone sent is in its own channel.
            assert peak_normalised_correlation(sent_by_caller[8000:24000], stereo[:, 0]) > 0.9
            assert peak_normalised_correlation(sent_by_taker[8000:24000], stereo[:, 1]) > 0.9
            taker_from = int(info.legs["taker"]["offset_s"] * 8000)
            assert not np.any(stereo[: max(0, taker_from - 800), 1]), (
                "the taker's channel before answer is silence"
            )
    finally:
        await asyncio.to_thread(phone.stop)
