"""The demo for people: a call taker whose console is connected is not on autopilot (presence in Redis,
seen by every node), the demo says so; its terminal carries the narrative, its JSON logs go to var/log/."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets
from e2e_support import drill_settings, running_centre, set_available, takers

from api.app import create_app
from api.auth import Role, TokenSigner
from api.server import RunningServer
from api.users import create_user
from intake.domain import CallState
from izs.demo.system import TakerAutopilot
from telephony.events import CallOffered, CallSource

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]


async def until(check, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s")


async def test_the_autopilot_yields_while_the_call_takers_console_is_connected(tmp_path: Path) -> None:
    settings = drill_settings(
        tmp_path / "var",
        sip_enabled=False,
        secret_key="handover-test-secret-0123456789abcdef-TESTONLY-KvK",
        takers=takers(("zzs1", ["ZZS"], ["cs"])),
    )
    async with running_centre(settings) as centre:
        handovers: list[tuple[str, bool]] = []
        autopilot = TakerAutopilot(
            centre, ["zzs1"], think_s=(0.1, 0.1), on_handover=lambda t, m: handovers.append((t, m))
        )
        await autopilot.start()
        await create_user(centre.repo, "zzs1", "correct horse battery", "call_taker")
        await set_available(centre, ["zzs1"])
        token, _ = TokenSigner(settings.secret_key.encode()).issue("zzs1", Role.CALL_TAKER)  # type: ignore[union-attr]
        try:
            async with RunningServer(create_app(centre)) as server:
                url = server.url.replace("http", "ws") + "/api/live"
                async with websockets.connect(url) as console:
                    await console.send(json.dumps({"type": "auth", "token": token}))  # never in the URL
                    assert json.loads(await console.recv())["type"] == "hello"
                    await until(lambda: asyncio.sleep(0, result=("zzs1", True) in handovers))
                    assert await centre.live.consoles_open("zzs1") == 1

                    centre.calls.submit(CallOffered("person-1", "155", "+420603000001", CallSource.SIP))
                    offered = await until(lambda: _offered_to(centre, "zzs1"))
                    # The autopilot saw the offer and left it to the person (no fixed wait for it not to act).
                    await until(
                        lambda: asyncio.sleep(0, result=(offered, "zzs1") in autopilot.left_to_person)
                    )
                    call = await centre.calls.get(offered)
                    assert call.state is CallState.QUEUED and autopilot.accepted == []
                    # The person takes it from the console.
                    await centre.calls.accept(offered, "zzs1")

                # Console closed: presence gone at once, the autopilot takes over again.
                await until(lambda: asyncio.sleep(0, result=("zzs1", False) in handovers))
                assert await centre.live.consoles_open("zzs1") == 0
                centre.calls.submit(_end("person-1"))
                await until(lambda: _state_is(centre, "zzs1", "available"), timeout_s=15)
                centre.calls.submit(CallOffered("robot-1", "155", "+420603000002", CallSource.SIP))
                await until(lambda: asyncio.sleep(0, result=len(autopilot.accepted) == 1))
        finally:
            await autopilot.stop()
    assert handovers == [("zzs1", True), ("zzs1", False)]


def _end(call_ref: str):  # type: ignore[no-untyped-def]
    from telephony.events import CallEnded, EndReason

    return CallEnded(call_ref, EndReason.CALLER_HANGUP)


async def _offered_to(centre, taker_id: str) -> str | None:  # type: ignore[no-untyped-def]
    state = (await centre.live.taker_states()).get(taker_id, {})
    return state.get("call_id") if state.get("offered") else None


async def _state_is(centre, taker_id: str, wanted: str) -> bool:  # type: ignore[no-untyped-def]
    return (await centre.live.taker_states()).get(taker_id, {}).get("state") == wanted


def test_the_demo_terminal_shows_the_narrative_and_keeps_json_logs_in_var_log(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "IZS_VAR_DIR": str(tmp_path / "var"),
        "IZS_HTTP_PORT": "0",
        "IZS_TRANSCRIPTION_ENABLED": "false",
    }
    result = subprocess.run(
        [sys.executable, "-m", "izs.cli", "demo", "--once", "--calls", "1", "--pace", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.lstrip().startswith("{")], "no JSON on the terminal"
    assert result.stderr.strip() == ""
    logs = next(line for line in lines if line.startswith("logs (JSON lines) in "))
    path = Path(logs.removeprefix("logs (JSON lines) in ").split("   ")[0])
    assert path.parent == tmp_path / "var" / "log"
    records = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert records and all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    assert "autopilot" in result.stdout and "--verbose" in result.stdout
