"""Voice logging, "my current work" and recognition health through the API, on a real centre (database,
Redis, the transcription service) fed through the same path the SIP endpoint uses (``CallService.submit``)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile
from api_support import USERS, centre_settings

from api.app import create_app
from intake.app import Centre
from intake.domain import TakerState
from telephony.events import AudioFrame, CallEnded, CallOffered, CallSource, EndReason, Leg
from transcription.events import TranscriptFinal

ARREST = "Manžel upadl, nereaguje a nedýchá. Jsme v Sokolově, Husitská dvanáct."


@pytest.fixture
async def live_centre(
    tmp_path: Path, database: Any, database_url: str, shared_redis: str, password_hash: str
) -> AsyncIterator[Centre]:
    """A centre with the transcription service running (models load on first use, none here)."""
    settings = centre_settings(tmp_path / "node-a", database_url, shared_redis, "node-a").model_copy(
        update={"transcription_enabled": True}
    )
    centre = await Centre.start(settings, with_telephony=True)
    try:
        for username, role in USERS.items():
            await asyncio.to_thread(centre.repo.create_user, username, password_hash, role)
        yield centre
    finally:
        await centre.stop()


@pytest.fixture
async def api(live_centre: Centre) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(live_centre)), base_url="http://izs.test"
    ) as client:
        yield client


@pytest.fixture
def as_user(live_centre: Centre) -> Callable[[str], dict[str, str]]:
    from api_support import SECRET

    from api.auth import Role, TokenSigner

    signer = TokenSigner(SECRET.encode())
    return lambda u: {"Authorization": f"Bearer {signer.issue(u, Role(USERS[u]))[0]}"}


async def until(check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met")


async def a_call_jana_took(centre: Centre, ref: str, seconds: float = 3.0) -> str:
    """A 155 call with ``seconds`` of caller audio (20 ms frames as the endpoint emits them), taken by jana."""
    centre.calls.submit(CallOffered(ref, "155", "+420603224590", CallSource.SIP))
    call_id: str = await until(lambda: _call_id(centre, ref))
    await centre.calls.accept(call_id, "jana")
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * 8000)) / 8000)).astype("<i2")
    for seq, start in enumerate(range(0, len(tone), 160)):
        centre.calls.submit(AudioFrame(ref, tone[start : start + 160].tobytes(), 8000, Leg.CALLER, seq))
    centre.calls.submit(TranscriptFinal(call_ref=ref, leg="caller", text=ARREST, start_s=0.0, end_s=3.0))
    await until(lambda: _has_incident(centre, call_id))
    return call_id


async def _call_id(centre: Centre, ref: str) -> str | None:
    call = await asyncio.to_thread(centre.repo.find_call_by_ref, ref)
    return call.id if call else None


async def _has_incident(centre: Centre, call_id: str) -> bool:
    return (await centre.calls.get(call_id)).incident_id is not None


async def test_my_work_gives_the_call_in_hand_with_transcript_triage_incident_and_unsaved_input(
    live_centre: Centre, api: httpx.AsyncClient, as_user: Callable[[str], dict[str, str]]
) -> None:
    await live_centre.set_taker_state("jana", TakerState.AVAILABLE, "jana")
    call_id = await a_call_jana_took(live_centre, "work-1")
    draft = {"call_id": call_id, "values": {"landmark": "u školy", "agencies": ["ZZS"]}}
    assert (await api.put("/api/me/draft", json=draft, headers=as_user("jana"))).status_code == 204
    refused = await api.put("/api/me/draft", json=draft, headers=as_user("petr"))
    assert refused.status_code == 403

    work = (await api.get("/api/me/work", headers=as_user("jana"))).json()
    assert work["state"] == "busy" and work["call"]["id"] == call_id
    assert "nedýchá" in work["call"]["transcript"][0]["text"]
    assert work["call"]["triage"]["tcpr"]["value"] is True
    assert work["incident"]["id"] == work["call"]["incident_id"] and work["incident"]["timeline"]
    assert work["draft"] == draft["values"]
    assert work["call"]["recording"]["status"] == "recording"
    other = (await api.get("/api/me/work", headers=as_user("petr"))).json()
    assert other["call"] is None and other["offer"] is None


async def test_recordings_are_fetched_by_the_calls_taker_or_a_supervisor_and_every_fetch_is_on_the_timeline(
    live_centre: Centre, api: httpx.AsyncClient, as_user: Callable[[str], dict[str, str]]
) -> None:
    from intake.domain import TakerState

    await live_centre.set_taker_state("jana", TakerState.AVAILABLE, "jana")
    call_id = await a_call_jana_took(live_centre, "rec-1", seconds=4.0)
    url = f"/api/calls/{call_id}/recording"
    assert (await api.get(url, headers=as_user("petr"))).status_code == 403  # not his call
    assert (await api.get(url, headers=as_user("zzs-dispatch"))).status_code == 403  # integration
    live = await api.get(url + "?legs=caller&last_s=2", headers=as_user("jana"))
    assert live.status_code == 200 and live.headers["content-type"] == "audio/flac"
    samples, rate = soundfile.read(io.BytesIO(live.content), dtype="int16")
    assert rate == 8000 and len(samples) == pytest.approx(2 * 8000, abs=2)
    assert live.headers["X-Recording-Status"] == "recording"

    live_centre.calls.submit(CallEnded("rec-1", EndReason.CALLER_HANGUP))
    await until(lambda: _recording_closed(live_centre, call_id))
    whole = await api.get(url, headers=as_user("vedouci"))
    assert whole.status_code == 200
    stereo, _ = soundfile.read(io.BytesIO(whole.content), dtype="int16", always_2d=True)
    assert stereo.shape == (4 * 8000, 2)
    detail = (await api.get(f"/api/calls/{call_id}", headers=as_user("vedouci"))).json()
    assert detail["recording"]["status"] == "complete" and detail["recording"]["duration_s"] == 4.0
    incident = (await api.get(f"/api/incidents/{detail['incident_id']}", headers=as_user("vedouci"))).json()
    assert incident["recordings"][0]["url"] == url
    played = [
        (e["actor"], e["data"]["legs"]) for e in incident["timeline"] if e["action"] == "recording_played"
    ]
    assert played == [("jana", ["caller"]), ("vedouci", ["caller", "taker"])]


async def _recording_closed(centre: Centre, call_id: str) -> bool:
    info = await asyncio.to_thread(centre.recordings.get_recording, call_id)  # type: ignore[union-attr]
    return info is not None and info.status == "complete"


async def test_an_incident_is_never_saved_without_a_type_a_person_chose(
    live_centre: Centre, api: httpx.AsyncClient, as_user: Callable[[str], dict[str, str]]
) -> None:
    base = {"priority": 2, "agencies": ["ZZS"]}
    for body in (base, {**base, "incident_type": ""}, {**base, "incident_type": "UNKNOWN"}):
        answer = await api.post("/api/incidents", json=body, headers=as_user("jana"))
        assert answer.status_code == 422, body


async def test_health_lists_recognition_per_node_with_its_figures_and_voice_logging(
    live_centre: Centre, api: httpx.AsyncClient, as_user: Callable[[str], dict[str, str]]
) -> None:
    # Another node of the centre reports that its recognition is dropping audio.
    await live_centre.live.put_node_health(
        "transcription",
        "node-b",
        {
            "status": "behind",
            "legs": 7,
            "backlog_s": 9.8,
            "dropped_s": 12.4,
            "window_s": 600.0,
            "failures": 0,
            "last_failure": "",
            "models": ["whisper"],
        },
        10_000,
    )
    rows = {r["component"]: r for r in (await api.get("/api/health", headers=as_user("vedouci"))).json()}
    mine = rows["transcription"]
    assert mine["healthy"] is True and mine["data"]["status"] == "ok" and mine["data"]["node"] == "node-a"
    assert mine["data"]["legs"] == 0 and "model" in mine["detail"]
    other = rows["transcription@node-b"]
    assert other["healthy"] is False and other["data"]["dropped_s"] == 12.4
    assert "behind" in other["detail"] and "dropped 12.4 s" in other["detail"]
    assert rows["recording"]["healthy"] is True


async def test_a_recording_is_served_by_another_node_during_the_call_and_after_its_node_stopped(
    start_centre: Callable[[str], Any], password_hash: str
) -> None:
    node_a: Centre = await start_centre("node-a")
    node_b: Centre = await start_centre("node-b")
    for username, role in USERS.items():
        await asyncio.to_thread(node_a.repo.create_user, username, password_hash, role)
    from api_support import SECRET

    from api.auth import Role, TokenSigner

    jana = {"Authorization": f"Bearer {TokenSigner(SECRET.encode()).issue('jana', Role.CALL_TAKER)[0]}"}
    await node_a.set_taker_state("jana", TakerState.AVAILABLE, "jana")
    call_id = await a_call_jana_took(node_a, "cross-1", seconds=5.0)
    assert node_a.recordings is not None
    await until(lambda: asyncio.to_thread(node_a.recordings.recording_end_s, call_id, "caller"))

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(node_b)), base_url="http://izs.test"
    ) as on_b:
        during = await on_b.get(f"/api/calls/{call_id}/recording?legs=caller", headers=jana)
        assert during.status_code == 200  # node B serves node A's call from the shared database
        so_far, _ = soundfile.read(io.BytesIO(during.content), dtype="int16")
        assert len(so_far) >= 4 * 8000

        await node_a.stop()  # node A goes away with the call going on: its recording is closed as such
        info = await until(lambda: _closed_as(node_b, call_id, "interrupted"))
        assert info.legs["caller"]["duration_s"] == 5.0
        after = await on_b.get(f"/api/calls/{call_id}/recording?legs=caller", headers=jana)
        kept, _ = soundfile.read(io.BytesIO(after.content), dtype="int16")
        assert len(kept) == 5 * 8000


async def _closed_as(centre: Centre, call_id: str, status: str) -> Any:
    info = await asyncio.to_thread(centre.recordings.get_recording, call_id)  # type: ignore[union-attr]
    return info if info is not None and info.status == status else None
