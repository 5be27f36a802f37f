"""The call taker's console under real use, in real Chromium against a real centre: a baresip caller dials
155 over SIP, the call taker accepts it on the console, the transcript, triage, T-CPR timers and incident
form fill in; then the page is reloaded mid-call, and the tab is closed and the user logs in again: every
time the call in hand comes back from the server. The caller's last 10 s are replayed in the browser while
the call goes on (Alt+Z) and the whole recording afterwards, played to its end; a caller who gives up in
the queue is recorded too, and every fetch is on the incident timeline.

The transcript is fed as the transcription service would deliver it (recognition has its own tests); the
audio, signalling, recording, database, API and browser are the real ones.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import drill_settings, feed_transcript, running_centre, takers, wait_for_ref
from playwright.async_api import Browser, Page, async_playwright, expect

from api.app import create_app
from api.server import RunningServer
from api.users import create_user
from intake.domain import CallState
from intake.recording import RecordingStatus
from izs.demo.callers import CallerFleet, PlannedCall
from izs.demo.speech import SpeechSynthesizer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
PASSWORD = "correct horse battery"
ARREST = "Dobrý den, manžel upadl v kuchyni, nereaguje a nedýchá. Jsme v Chodově, Husova 5."
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
]


async def log_in(browser: Browser, url: str) -> Page:
    page = await (await browser.new_context(viewport={"width": 1600, "height": 1000})).new_page()
    page.on("pageerror", lambda exc: pytest.fail(f"console script error: {exc}"))
    await page.goto(url + "/console")
    await page.fill("#username", "jana")
    await page.fill("#password", PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("#app")).to_be_visible()
    return page


async def expect_call_restored(page: Page, caller: str, incident_id: str, answered_s: float) -> None:
    """Everything the call taker had before: call, transcript, triage, T-CPR with real times, form."""
    await expect(page.locator("#call-head")).to_contain_text(caller, timeout=10_000)
    await expect(page.locator("#transcript")).to_contain_text("nedýchá")
    await expect(page.locator("#my-state")).to_have_attribute("data-state", "busy")
    await expect(page.locator("#incident-id")).to_have_text(incident_id)
    await expect(page.locator("#tcpr")).to_be_visible()
    await expect(page.locator("#t-compression")).to_have_class("timer done")
    await expect(page.locator("#f-type")).to_have_value("MED_CARDIAC_ARREST")
    await expect(page.locator("#f-landmark")).to_have_value("u školy")  # typed, not saved yet
    await expect(page.locator("#triage-type")).to_have_text("Zástava oběhu")
    shown = await page.locator("#t-answer").text_content() or "0:00"
    minutes, seconds = shown.split(":")
    assert int(minutes) * 60 + int(seconds) >= int(answered_s) - 1  # the real time since answer


async def play_to_end(page: Page, trigger: Any) -> float:
    """Start playback with ``trigger`` and wait for the media element's ``ended``; returns its duration."""
    # A promise the page resolves on ``ended`` (Playwright's wait_for_function evaluates a string inside the
    # page, which the console's Content-Security-Policy rightly refuses).
    await page.evaluate(
        """() => { const a = document.getElementById('replay-audio'); a.defaultPlaybackRate = 8;
                   window.__ended = new Promise(resolve =>
                       a.addEventListener('ended', () => resolve(true), { once: true })); }"""
    )
    await trigger()
    async with asyncio.timeout(60):
        assert await page.evaluate("() => window.__ended") is True
    return float(await page.evaluate("document.getElementById('replay-audio').duration"))


async def test_a_reloaded_or_reopened_console_gets_the_call_back_and_replays_what_the_caller_said(
    tmp_path: Path,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    voice = (
        SpeechSynthesizer(tmp_path / "voices")
        .synthesize(
            "Dobrý den, potřebuji záchranku, manžel nedýchá.", "cs", voice="espeak", tail_silence_s=120.0
        )
        .path
    )
    settings = drill_settings(tmp_path / "var", takers=takers(("jana", ["ZZS"], ["cs"])))
    async with running_centre(settings) as centre:
        assert centre.sip is not None and centre.recordings is not None
        await create_user(centre.repo, "jana", PASSWORD, "call_taker")
        await create_user(centre.repo, "vedouci", PASSWORD, "supervisor")
        port = centre.sip.address[1]
        async with RunningServer(create_app(centre)) as server, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            async with CallerFleet() as fleet:
                try:
                    page = await log_in(browser, server.url)
                    await page.click("#btn-ready")
                    await expect(page.locator("#my-state")).to_have_attribute("data-state", "available")

                    caller = "+420603111222"
                    task = fleet.start([PlannedCall("arrest", voice, f"sip:155@127.0.0.1:{port}", caller)])[0]
                    ref = await wait_for_ref(fleet.outcome("arrest"))
                    await expect(page.locator("#offer-body")).to_be_visible(timeout=15_000)
                    await expect(page.locator("#offer-caller")).to_have_text(caller)
                    # A form without a type refuses to save.
                    await page.keyboard.press("Alt+p")
                    await expect(page.locator("#call-head")).to_contain_text(caller)
                    accepted_at = time.monotonic()
                    # (Until routing proposes "not yet heard" for silence, the form shows its proposal;
                    # an empty type is refused either way.)
                    await page.select_option("#f-type", "")
                    await page.keyboard.press("Control+Enter")
                    await expect(page.locator("#save-status")).to_have_text("Vyberte typ události")

                    feed_transcript(centre, ref, ARREST)
                    await expect(page.locator("#transcript")).to_contain_text("nedýchá", timeout=10_000)
                    await expect(page.locator("#tcpr")).to_be_visible(timeout=10_000)
                    await expect(page.locator("#incident-id")).to_contain_text("KVK-", timeout=10_000)
                    incident_id = (await page.locator("#incident-id").text_content() or "").strip()
                    await page.click("#btn-compression")
                    await expect(page.locator("#t-compression")).to_have_class("timer done")
                    # The call taker cleared the type, so triage's proposal does not overwrite it: she chooses.
                    await expect(page.locator("#f-type")).to_have_value("")
                    await page.select_option("#f-type", "MED_CARDIAC_ARREST")
                    await page.fill("#f-note", "Manželka zahájila resuscitaci.")
                    await page.keyboard.press("Control+Enter")
                    await expect(page.locator("#save-status")).to_contain_text(incident_id)
                    await page.fill("#f-landmark", "u školy")

                    call = await centre.calls.get(
                        (await asyncio.to_thread(centre.repo.find_call_by_ref, ref)).id
                    )
                    # Wait (by deadline, not a fixed sleep) until 12 s of the caller are in the database.
                    deadline = time.monotonic() + 40
                    while await asyncio.to_thread(centre.recordings.recording_end_s, call.id, "caller") < 12:
                        assert time.monotonic() < deadline, "the recording does not grow while the call goes"
                        await asyncio.sleep(0.25)

                    # 1. Reload mid-call: everything is back.
                    await page.reload()
                    await expect(page.locator("#app")).to_be_visible()
                    await expect_call_restored(page, caller, incident_id, time.monotonic() - accepted_at)

                    # 2. Instant replay of the caller's last 10 s, by keyboard, while the call goes on.
                    replay = await play_to_end(page, lambda: page.keyboard.press("Alt+z"))
                    assert replay == pytest.approx(10.0, rel=0.10)

                    # 3. Close the tab, log in again (a new browser context: nothing kept): same.
                    await page.context.close()
                    page = await log_in(browser, server.url)
                    await expect_call_restored(page, caller, incident_id, time.monotonic() - accepted_at)
                    await page.screenshot(path=str(ARTIFACTS / "console-restored.png"), full_page=True)

                    # 4. A second caller gives up while waiting in the queue: recorded too.
                    quitter = fleet.start(
                        [
                            PlannedCall(
                                "quitter",
                                voice,
                                f"sip:155@127.0.0.1:{port}",
                                "+420603999888",
                                hangup_after_s=4.0,
                            )
                        ]
                    )[0]
                    quitter_ref = await wait_for_ref(fleet.outcome("quitter"))
                    await asyncio.wait_for(quitter, 30)

                    # 5. The caller hangs up; the whole recording plays to its end.
                    await fleet.hangup("arrest")
                    await asyncio.wait_for(task, 30)
                    await expect(page.locator("#btn-recording")).to_be_visible(timeout=10_000)
                    whole = await play_to_end(page, lambda: page.click("#btn-recording"))
                finally:
                    await browser.close()

        deadline = time.monotonic() + 20
        while True:
            info = await asyncio.to_thread(centre.recordings.get_recording, call.id)
            ended = await asyncio.to_thread(centre.repo.get_call, call.id)
            if info is not None and info.status != RecordingStatus.RECORDING and not ended.is_live:
                break
            assert time.monotonic() < deadline, f"recording not closed: {info}"
            await asyncio.sleep(0.2)
        assert info.status == RecordingStatus.COMPLETE, info
        assert ended.state is CallState.ENDED and ended.media_answered_at and ended.ended_at
        call_s = (ended.ended_at - ended.media_answered_at).total_seconds()
        assert whole == pytest.approx(call_s, rel=0.10)
        assert info.duration_s == pytest.approx(call_s, rel=0.10)
        assert info.stored_bytes > 0 and info.codec == "flac"

        abandoned = await asyncio.to_thread(centre.repo.find_call_by_ref, quitter_ref)
        assert abandoned is not None and abandoned.state is CallState.ABANDONED
        deadline = time.monotonic() + 20
        while (kept := await asyncio.to_thread(centre.recordings.get_recording, abandoned.id)) is None or (
            kept.status == RecordingStatus.RECORDING
        ):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        assert kept.status == RecordingStatus.COMPLETE
        assert kept.legs["caller"]["duration_s"] >= 2.0

        # Linked from the call and the incident; every fetch on the incident's timeline, by whom.
        app = create_app(centre)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://izs.test"
        ) as client:
            token = (
                await client.post("/api/auth/token", json={"username": "vedouci", "password": PASSWORD})
            ).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            incident = (await client.get(f"/api/incidents/{incident_id}", headers=headers)).json()
            detail = (await client.get(f"/api/calls/{call.id}", headers=headers)).json()
        assert detail["recording"]["status"] == "complete"
        assert detail["recording"]["url"] == f"/api/calls/{call.id}/recording"
        assert [r["call_id"] for r in incident["recordings"]] == [call.id]
        played = [e for e in incident["timeline"] if e["action"] == "recording_played"]
        assert [(e["actor"], e["data"]["live"]) for e in played] == [("jana", True), ("jana", False)]
