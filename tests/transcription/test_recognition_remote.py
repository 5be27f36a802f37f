"""The pure parts of recognition in worker processes (transcription/remote.py): no Redis, clock injected."""

from __future__ import annotations

import pytest

from transcription.events import (
    LanguageDetected,
    TranscriptFinal,
    TranscriptionFailed,
    TranscriptPartial,
    Word,
)
from transcription.remote import (
    Checkpoint,
    LeaseClock,
    LegCursor,
    alive_workers,
    decode_event,
    encode_event,
    entry_before,
    monotonic_from_wall,
    wall_from_monotonic,
)

RATE = 8000
FRAME = b"\x01\x00" * 160  # 20 ms at 8 kHz


def test_cursor_feeds_contiguous_audio_and_reports_no_gap() -> None:
    cursor = LegCursor(RATE, Checkpoint(0, "0-0"))
    for i in range(3):
        accepted = cursor.accept(f"1-{i}", i * len(FRAME), FRAME)
        assert accepted.gap_bytes == 0 and accepted.pcm == FRAME
    assert cursor.next_offset == 3 * len(FRAME)


def test_cursor_reports_trimmed_audio_as_a_gap() -> None:
    cursor = LegCursor(RATE, Checkpoint(0, "0-0"))
    cursor.accept("1-0", 0, FRAME)
    accepted = cursor.accept("1-5", 5 * len(FRAME), FRAME)  # four frames trimmed before anyone read them
    assert accepted.gap_bytes == 4 * len(FRAME)
    assert cursor.seconds(accepted.gap_bytes) == pytest.approx(0.08)


def test_successor_cuts_the_audio_before_the_checkpoint_in_the_entry_holding_it() -> None:
    start = Checkpoint(offset=len(FRAME) + 100, entry_id="1-1")
    cursor = LegCursor(RATE, start)
    accepted = cursor.accept("1-1", len(FRAME), FRAME)
    assert accepted.gap_bytes == 0 and accepted.pcm == FRAME[100:]
    assert cursor.accept("1-0", 0, FRAME).pcm == b""  # wholly before the checkpoint: already decoded


def test_checkpoint_moves_forward_only_and_points_at_the_entry_holding_it() -> None:
    cursor = LegCursor(RATE, Checkpoint(0, "0-0"))
    for i in range(10):
        cursor.accept(f"5-{i}", i * len(FRAME), FRAME)
    checkpoint = cursor.checkpoint_for(0.05)  # 50 ms: inside the third 20 ms entry
    assert checkpoint == Checkpoint(800, "5-2")
    assert cursor.checkpoint_for(0.03) is None  # backwards: no move
    assert cursor.checkpoint_for(0.05) is None
    assert cursor.checkpoint_for(10.0) == Checkpoint(10 * len(FRAME), "5-9")  # never past the audio read


def test_entry_before_lets_xread_return_the_checkpoint_entry() -> None:
    assert entry_before("17-3") == "17-2"
    assert entry_before("17-0") == "16-18446744073709551615"
    assert entry_before("0-0") == "0-0"


def test_lease_renewal_and_loss_follow_the_injected_clock() -> None:
    lease = LeaseClock(3.0, now=100.0)
    assert lease.claim_due(100.0)  # look for orphans at once
    lease.looked(100.0)
    assert not lease.claim_due(100.5) and lease.claim_due(101.0)
    assert not lease.renewal_due(100.9) and lease.renewal_due(101.0)
    lease.renewed(101.0)
    assert not lease.lost(103.9) and lease.lost(104.1)
    assert lease.claim_idle_ms == 3000
    with pytest.raises(ValueError):
        LeaseClock(0, now=0.0)


def test_alive_workers_are_those_with_a_recent_heartbeat() -> None:
    reports = {"w1": 1000.0, "w2": 994.0, "w3": 1001.5}
    assert alive_workers(reports, now_wall=1000.0, stale_after_s=5.0) == ["w1"]  # w3 from the future
    assert alive_workers(reports, now_wall=1002.0, stale_after_s=10.0) == ["w1", "w2", "w3"]


def test_waiting_since_survives_the_trip_between_process_clocks() -> None:
    wall = wall_from_monotonic(50.0, now_monotonic=60.0, now_wall=1_000_000.0)
    assert wall == 999_990.0
    assert monotonic_from_wall(wall, now_monotonic=5.0, now_wall=1_000_001.0) == pytest.approx(-6.0)


@pytest.mark.parametrize(
    "event",
    [
        TranscriptFinal(
            "c", "caller", "hoří dům", 1.0, 2.5, (Word("hoří", 1.0, 1.4, 0.9),), "cs", 0.8, "whisper"
        ),
        TranscriptFinal("c", "caller", "[2.0 s not transcribed]", 3.0, 5.0, engine="gap"),
        TranscriptPartial("c", "taker", "kde", 0.7),
        LanguageDetected("c", "cs", 0.93, (("cs", 0.93), ("sk", 0.05)), leg="caller"),
        TranscriptionFailed("c", "caller", "worker lost", recovered=True),
    ],
)
def test_events_round_trip(event: object) -> None:
    kind, payload = encode_event(event)  # type: ignore[arg-type]
    assert decode_event(kind, payload) == event


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("final", "not json"),
        ("final", "[]"),
        ("final", '{"call_ref": "c", "leg": "caller", "text": "x", "start_s": "NaN", "end_s": 1}'),
        ("final", '{"call_ref": "c", "leg": "caller", "text": "x", "start_s": 1e999, "end_s": 1}'),
        ("partial", '{"call_ref": "c"}'),
        ("language", '{"call_ref": "c", "leg": "x", "language": "cs", "probability": true}'),
        ("final", '{"call_ref": "c", "leg": "l", "text": "x", "start_s": 0, "end_s": 1, "words": [[1]]}'),
        ("unknown", '{"call_ref": "c", "leg": "l"}'),
    ],
)
def test_malformed_events_are_none_never_an_exception(kind: str, payload: str) -> None:
    assert decode_event(kind, payload) is None
