from datetime import UTC, datetime, timedelta

import pytest

from intake.domain import CALL_TRANSITIONS, Call, CallerNumber, CallState
from intake.errors import IllegalTransition


def make_call() -> Call:
    return Call(
        id="c1", call_ref="ref-1", source="sip", dialled="155", caller=CallerNumber(raw="+420603123456")
    )


def test_call_goes_ringing_queued_connected_ended():
    call = make_call()
    t0 = call.offered_at
    call.transition(CallState.QUEUED, t0 + timedelta(seconds=1))
    call.transition(CallState.CONNECTED, t0 + timedelta(seconds=7))
    call.transition(CallState.ENDED, t0 + timedelta(seconds=90))
    assert call.state is CallState.ENDED
    assert call.answered_at == t0 + timedelta(seconds=7)
    assert call.ended_at == t0 + timedelta(seconds=90)
    assert call.wait_seconds() == pytest.approx(7)


def test_caller_hanging_up_in_the_queue_is_an_abandoned_call_with_no_answer_time():
    call = make_call()
    call.transition(CallState.QUEUED)
    call.transition(CallState.ABANDONED)
    assert call.state is CallState.ABANDONED
    assert call.answered_at is None
    assert call.ended_at is not None
    assert not call.is_live


def test_queued_call_cannot_end_as_answered_without_a_call_taker():
    call = make_call()
    call.transition(CallState.QUEUED)
    with pytest.raises(IllegalTransition) as info:
        call.transition(CallState.ENDED)
    assert info.value.error_id == "illegal_transition"
    assert call.state is CallState.QUEUED


@pytest.mark.parametrize("terminal", [CallState.ENDED, CallState.ABANDONED])
@pytest.mark.parametrize("target", list(CallState))
def test_ended_and_abandoned_calls_never_change_again(terminal, target):
    call = make_call()
    call.transition(terminal)
    with pytest.raises(IllegalTransition):
        call.transition(target)


def test_every_illegal_transition_is_rejected_and_leaves_state_unchanged():
    for source, allowed in CALL_TRANSITIONS.items():
        for target in CallState:
            if target in allowed:
                continue
            call = make_call()
            call.state = source
            with pytest.raises(IllegalTransition):
                call.transition(target)
            assert call.state is source


def test_connected_call_can_be_transferred_back_to_a_queue():
    call = make_call()
    call.transition(CallState.CONNECTED, datetime(2026, 11, 27, 10, 0, tzinfo=UTC))
    call.transition(CallState.QUEUED)
    assert call.state is CallState.QUEUED
    assert call.answered_at == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
