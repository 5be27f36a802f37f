"""The consoles in real headless Chromium: a call is offered → it appears on the right call taker's
console → accepted → the cardiac-arrest banner and timers show → first compression recorded → incident
saved → visible on the supervisor dashboard and in the API. Screenshots of both pages are kept in
``test-artifacts/``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect

from api.server import RunningServer
from telephony.events import CallOffered, CallSource
from transcription.events import TranscriptFinal

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
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
]
PASSWORD = "correct horse battery"
CARDIAC_ARREST = (
    "Dobrý den, můj manžel se zhroutil v kuchyni, nereaguje a nedýchá, jenom tak divně chrčí. "
    "Jsme v Sokolově, Husitská dvanáct."
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
]


async def log_in(page: Page, url: str, username: str) -> None:
    await page.goto(url)
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("#app")).to_be_visible()


async def test_offered_call_goes_from_console_to_saved_incident_on_the_dashboard(
    centre: Any, app: Any, as_user: Callable[[str], dict[str, str]]
):
    ARTIFACTS.mkdir(exist_ok=True)
    async with RunningServer(app) as server, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            taker_page = await (
                await browser.new_context(viewport={"width": 1600, "height": 1000})
            ).new_page()
            supervisor_page = await (
                await browser.new_context(viewport={"width": 1600, "height": 1000})
            ).new_page()
            errors: list[str] = []
            for page in (taker_page, supervisor_page):
                page.on("pageerror", lambda exc: errors.append(str(exc)))

            await log_in(taker_page, server.url + "/console", "jana")
            await expect(taker_page.locator("header.top h1")).to_contain_text("pult operátora")
            await taker_page.click("#btn-ready")
            await expect(taker_page.locator("#my-state")).to_have_attribute("data-state", "available")
            await expect(taker_page.locator("#my-state")).to_have_text("Připraven")
            await log_in(supervisor_page, server.url + "/supervisor", "vedouci")
            await expect(supervisor_page.locator("#takers")).to_contain_text("Připraven")

            centre.calls.submit(
                CallOffered(
                    call_ref="sip-browser-1", dialled="155", caller="+420603224590", source=CallSource.SIP
                )
            )
            await expect(taker_page.locator("#offer-body")).to_be_visible(timeout=10_000)
            await expect(taker_page.locator("#offer-caller")).to_have_text("+420603224590")
            await expect(taker_page.locator("#offer-desk")).to_have_text("Záchranka")
            await taker_page.keyboard.press("Alt+p")  # accept by keyboard
            await expect(taker_page.locator("#offer-body")).to_be_hidden()
            await expect(taker_page.locator("#call-head")).to_contain_text("+420603224590")
            await expect(taker_page.locator("#my-state")).to_have_attribute("data-state", "busy")

            centre.calls.submit(
                TranscriptFinal(
                    call_ref="sip-browser-1", leg="caller", text=CARDIAC_ARREST, start_s=0.0, end_s=7.5
                )
            )
            await expect(taker_page.locator("#transcript")).to_contain_text("nedýchá", timeout=10_000)
            await expect(taker_page.locator("#transcript mark").first).to_be_visible()
            await expect(taker_page.locator("#tcpr")).to_be_visible(timeout=10_000)
            await expect(taker_page.locator("#tcpr-steps li")).to_have_count(6)
            await expect(taker_page.locator("#triage-type")).to_have_text("Zástava oběhu")
            # The spoken place (Sokolov) is drawn on the offline map of the region with its source.
            await expect(taker_page.locator("#map-position")).to_be_attached(timeout=10_000)
            await expect(taker_page.locator("#map-text")).to_contain_text("Sokolov")
            await expect(taker_page.locator("#incident-id")).to_contain_text("KVK-", timeout=10_000)
            incident_id = (await taker_page.locator("#incident-id").text_content() or "").strip()
            await taker_page.click("#btn-compression")
            await expect(taker_page.locator("#t-compression")).to_have_class("timer done")
            await taker_page.fill("#f-note", "Manželka zahájila resuscitaci podle pokynů.")
            await taker_page.keyboard.press("Control+Enter")
            await expect(taker_page.locator("#save-status")).to_contain_text(incident_id)

            row = supervisor_page.locator(f'tr[data-incident="{incident_id}"]')
            await expect(row).to_be_visible(timeout=10_000)
            await expect(row).to_contain_text("jana")
            await expect(supervisor_page.locator("#takers")).to_contain_text("Hovor")

            await taker_page.click("#lang")
            await expect(taker_page.locator("#tcpr h2")).to_contain_text("CARDIAC ARREST")
            await taker_page.click("#lang")
            await taker_page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
            await supervisor_page.screenshot(path=str(ARTIFACTS / "supervisor.png"), full_page=True)
            assert errors == []
        finally:
            await browser.close()

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://izs.test"
    ) as client:
        incident = (await client.get(f"/api/incidents/{incident_id}", headers=as_user("zzs-dispatch"))).json()
    assert incident["confirmed_by"] == "jana"
    assert incident["status"] == "active"
    assert incident["tcpr"] is True
    assert "Manželka zahájila resuscitaci podle pokynů." in incident["notes"]
    actions = [(e["actor"], e["action"]) for e in incident["timeline"]]
    assert ("jana", "tcpr_first_compression") in actions
    compression = next(e for e in incident["timeline"] if e["action"] == "tcpr_first_compression")
    assert compression["data"]["seconds_since_answer"] < 90
    await asyncio.sleep(0)
