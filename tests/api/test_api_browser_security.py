"""The consoles in real headless Chromium under their Content-Security-Policy (issue 16): nothing the pages
need is blocked, the live socket opens without the token in its URL and receives events, and the logout
button revokes the token on the server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from api.server import RunningServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
PASSWORD = "correct horse battery"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
]


async def test_consoles_work_under_csp_with_the_token_out_of_the_socket_url(app: Any, centre: Any):
    async with RunningServer(app) as server, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for path, username in (("/console", "jana"), ("/supervisor", "vedouci")):
                page = await (await browser.new_context()).new_page()
                problems: list[str] = []
                page.on("pageerror", lambda exc, p=problems: p.append(f"page error: {exc}"))
                page.on(
                    "console",
                    lambda msg, p=problems: (
                        p.append(msg.text)
                        if "Content Security Policy" in msg.text or "Refused to" in msg.text
                        else None
                    ),
                )
                sockets: list[Any] = []
                frames: list[str] = []

                def on_socket(ws: Any, s: list[Any] = sockets, f: list[str] = frames) -> None:
                    s.append(ws)
                    ws.on("framereceived", lambda payload: f.append(str(payload)))

                page.on("websocket", on_socket)
                await page.goto(server.url + path)
                await page.fill("#username", username)
                await page.fill("#password", PASSWORD)
                await page.click("#login-submit")
                await expect(page.locator("#app")).to_be_visible()
                for _ in range(100):
                    if any('"hello"' in f for f in frames):
                        break
                    await asyncio.sleep(0.1)
                assert any('"hello"' in f for f in frames), frames
                assert sockets and all("token" not in ws.url for ws in sockets), [ws.url for ws in sockets]
                token = await page.evaluate("sessionStorage.getItem('izs.token')")
                assert token
                await page.click("#logout")
                await expect(page.locator("#login")).to_be_visible()
                async with httpx.AsyncClient(base_url=server.url) as client:
                    me = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
                assert me.status_code == 401, f"{path}: the token still works after logout"
                assert not problems, f"{path}: {problems}"
        finally:
            await browser.close()
