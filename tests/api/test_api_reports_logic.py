"""Service level arithmetic (intake/reports.py) on hand-made calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from intake.domain import Call, CallerNumber, CallState
from intake.reports import ServiceLevel

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def call(state: CallState, wait_s: float, answered: bool) -> Call:
    c = Call(id=f"c{wait_s}{state}", call_ref="r", source="sip", dialled="155", caller=CallerNumber("1"))
    c.offered_at = T0
    c.state = state
    if answered:
        c.answered_at = T0 + timedelta(seconds=wait_s)
    elif state in (CallState.ABANDONED, CallState.ENDED):
        c.ended_at = T0 + timedelta(seconds=wait_s)
    return c


def test_service_level_counts_answers_within_threshold_and_ignores_short_abandons():
    now = T0 + timedelta(minutes=5)
    level = ServiceLevel(T0, now, threshold_s=10)
    for c in (
        call(CallState.ENDED, 4, answered=True),  # in time
        call(CallState.ENDED, 9.5, answered=True),  # in time
        call(CallState.ENDED, 25, answered=True),  # late
        call(CallState.ABANDONED, 3, answered=False),  # hung up fast: not counted
        call(CallState.ABANDONED, 40, answered=False),  # waited and gave up: a miss
        call(CallState.QUEUED, 0, answered=False),  # still waiting after 5 min: a miss
    ):
        level.add(c, now)
    assert (level.offered, level.answered, level.answered_within_threshold, level.abandoned) == (6, 3, 2, 2)
    assert level.percent == 40.0  # 2 of (3 answered + 1 long abandon + 1 waiting)
    assert level.average_wait_s == 12.8
    assert level.longest_wait_s == 25.0


def test_no_calls_means_no_service_level_rather_than_zero():
    assert ServiceLevel(T0, T0, 10).percent is None
