"""A real call leaves a trail an operator can follow: log lines tagged with its call and incident ids,
Prometheus counters that count it, and component health."""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import drill_settings, feed_transcript, running_centre, wait_for_ref, wait_offered
from prometheus_client.parser import text_string_to_metric_families

from intake.logs import JsonFormatter
from izs.demo.callers import CallerFleet, PlannedCall
from izs.demo.flow import FlowTracker
from izs.demo.speech import SpeechSynthesizer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("baresip") is None or shutil.which("espeak-ng") is None,
        reason="needs baresip and espeak-ng (Debian packages)",
    ),
]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The centre's log as ``izs serve`` writes it (one JSON object per line), captured."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _samples(metrics: bytes, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.decode()):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def test_a_real_call_is_logged_with_its_call_and_incident_id_and_counted_in_the_metrics(
    tmp_path: Path, json_log: io.StringIO
) -> None:
    voice = SpeechSynthesizer(tmp_path / "voices").synthesize(
        "Dobrý den, manžel upadl a nedýchá.", "cs", voice="espeak", tail_silence_s=3.0
    )
    async with running_centre(drill_settings(tmp_path / "var")) as centre:
        tracker = FlowTracker(centre.bus)
        await tracker.start()
        assert centre.sip is not None
        plan = PlannedCall("obs", voice.path, f"sip:155@127.0.0.1:{centre.sip.address[1]}", "+420603111222")
        async with CallerFleet() as fleet:
            [task] = fleet.start([plan])
            ref = await wait_for_ref(fleet.outcome("obs"))
            call_id = await wait_offered(tracker, ref)
            feed_transcript(
                centre, ref, "Dobrý den, manžel upadl, nereaguje a nedýchá. Karlovy Vary, Sokolovská 12."
            )
            outcome = await task
        assert outcome.answered and outcome.error is None
        ended = await tracker.wait_for(lambda: tracker.flows[call_id].end_kind is not None, 15.0)
        assert ended, tracker.flows[call_id]
        metrics = await centre.render_metrics()
        health = {c.name: c.healthy for c in await centre.health()}
        call = await centre.calls.get(call_id)
        await tracker.stop()

    lines = [json.loads(line) for line in json_log.getvalue().splitlines() if line.startswith("{")]
    tagged = [line for line in lines if line.get("call_id") == call_id]
    assert any("offered" in line["msg"] for line in tagged), [line["msg"] for line in tagged]
    assert any(line["msg"].startswith("call abandoned") or "ended" in line["msg"] for line in tagged)
    assert call.incident_id is not None
    assert any(line.get("incident_id") == call.incident_id for line in lines), (
        "no log line names the incident the call opened"
    )

    offered = _samples(metrics, "izs_calls_offered_total")
    assert offered.get((("desk", "ZZS"), ("dialled", "155"))) == 1.0, offered
    assert sum(_samples(metrics, "izs_triage_latency_seconds_count").values()) >= 1
    up = _samples(metrics, "izs_component_up")
    assert up[(("component", "database"),)] == 1.0 and up[(("component", "redis"),)] == 1.0
    assert up[(("component", "sip"),)] == 1.0
    assert health["database"] and health["redis"] and health["sip"]
