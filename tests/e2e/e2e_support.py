"""Helpers the end-to-end drills share: a whole centre per test, synthetic callers, transcript feeding."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from intake.app import Centre
from intake.domain import TakerState
from intake.settings import Settings, TakerConfig
from izs.demo.callers import CallOutcome
from izs.demo.flow import FlowTracker
from izs.demo.system import start_centre
from transcription.events import LanguageDetected, TranscriptFinal

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "tests" / "fixtures" / "calls" / "dev.jsonl"


def drill_settings(var_dir: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    """Settings of a private centre: its own SQLite (or the given database) and its own Redis, every
    port chosen by the OS, logs as text."""
    values: dict[str, Any] = {
        "var_dir": var_dir,
        "database_url": database_url,
        "redis_url": None,
        "node_id": "drill",
        "http_host": "127.0.0.1",
        "http_port": 0,
        "sip_host": "127.0.0.1",
        "sip_port": 0,
        "transcription_enabled": False,
        "ami_enabled": False,
        "overflow_after_s": 600.0,
        "wrap_up_s": 0.5,
        "log_json": False,
        "takers": [],
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_centre(settings: Settings) -> AsyncIterator[Centre]:
    centre = await start_centre(settings)
    try:
        yield centre
    finally:
        await centre.stop()


def takers(*specs: tuple[str, list[str], list[str]]) -> list[TakerConfig]:
    return [
        TakerConfig(id=taker_id, name=taker_id.upper(), desks=desks, languages=languages)  # type: ignore[arg-type]
        for taker_id, desks, languages in specs
    ]


async def set_available(centre: Centre, taker_ids: Iterable[str]) -> None:
    for taker_id in taker_ids:
        await centre.set_taker_state(taker_id, TakerState.AVAILABLE, "drill", "shift")


def feed_transcript(centre: Centre, call_ref: str, text: str, language: str = "cs") -> None:
    """What the transcription service would deliver for ``text``: language, then one final."""
    centre.calls.submit(
        LanguageDetected(call_ref=call_ref, language=language, probability=0.99, leg="caller")
    )
    words = max(1, len(text.split()))
    centre.calls.submit(
        TranscriptFinal(
            call_ref=call_ref,
            leg="caller",
            text=text,
            start_s=0.5,
            end_s=0.5 + words * 0.4,
            language=language,
            confidence=0.9,
            engine="drill-feed",
        )
    )


async def wait_offered(tracker: FlowTracker, call_ref: str, timeout_s: float = 10.0) -> str:
    """The centre's call id once the call with SIP Call-ID ``call_ref`` was offered."""
    ok = await tracker.wait_for(lambda: tracker.flow_by_ref(call_ref) is not None, timeout_s)
    flow = tracker.flow_by_ref(call_ref)
    if not ok or flow is None:
        raise AssertionError(f"call {call_ref} was never offered to the centre")
    return flow.call_id


async def wait_for_ref(outcome: CallOutcome, timeout_s: float = 10.0) -> str:
    """The SIP Call-ID of a placed call, once baresip has reported it."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while outcome.sip_call_id is None:
        if asyncio.get_running_loop().time() > deadline or outcome.error:
            raise AssertionError(
                f"caller {outcome.label} never got a Call-ID: {outcome.error or outcome.events}"
            )
        await asyncio.sleep(0.05)
    return outcome.sip_call_id


def utc_now() -> datetime:
    return datetime.now(UTC)
