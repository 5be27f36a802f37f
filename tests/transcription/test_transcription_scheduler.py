"""The recognition scheduler: waiting callers first (most urgent, longest waiting), then calls in progress;
legs that cannot be decoded are counted as not transcribed; status for supervisors and metrics."""

from __future__ import annotations

import threading

import pytest

from transcription.health import BEHIND_AFTER_S, LegQueueState, RecognitionHealth, RecognitionStatus
from transcription.scheduler import RecognitionScheduler, SlotGate


def open_and_set(
    s: RecognitionScheduler,
    ref: str,
    state: LegQueueState,
    priority: int = 3,
    waiting_since: float | None = None,
) -> None:
    s.open(caller(ref))
    s.set_queue_state(caller(ref), state, priority, waiting_since)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def caller(ref: str) -> tuple[str, str]:
    return (ref, "caller")


def test_waiting_callers_go_first_by_priority_then_longest_wait_then_calls_in_progress() -> None:
    clock = FakeClock()
    s = RecognitionScheduler(1, clock)
    open_and_set(s, "talking", LegQueueState.IN_PROGRESS, priority=1)
    open_and_set(s, "p2-early", LegQueueState.WAITING, priority=2, waiting_since=10.0)
    open_and_set(s, "p2-late", LegQueueState.WAITING, priority=2, waiting_since=20.0)
    open_and_set(s, "arrest", LegQueueState.WAITING, priority=1, waiting_since=30.0)
    s.open(caller("unknown"))
    for ref in ("unknown", "talking", "p2-late", "p2-early", "arrest"):
        s.request(caller(ref))
    assert [k[0] for k in s.order()] == ["arrest", "p2-early", "p2-late", "talking", "unknown"]
    assert s.may_run(caller("arrest"))
    assert not s.may_run(caller("p2-early"))


def test_a_slot_is_granted_in_order_and_the_backlog_catches_up_in_that_order() -> None:
    clock = FakeClock()
    s = RecognitionScheduler(2, clock)
    for ref, prio in (("a", 3), ("b", 2), ("c", 1)):
        open_and_set(s, ref, LegQueueState.WAITING, priority=prio, waiting_since=clock())
        s.request(caller(ref))
    granted = [k for k in s.order() if s.may_run(k)]
    assert granted == [caller("c"), caller("b")]
    for key in granted:
        s.start(key)
    assert not s.may_run(caller("a"))  # both slots busy
    clock.now += BEHIND_AFTER_S + 1
    status = RecognitionStatus.combine(s.status())
    assert status.health is RecognitionHealth.BEHIND
    assert status.behind_s == pytest.approx(BEHIND_AFTER_S + 1)
    assert status.busy_slots == 2 and status.legs_waiting_for_slot == 1
    s.finish(caller("b"))
    assert s.may_run(caller("a"))


def test_a_caller_answered_by_a_taker_yields_to_waiting_callers() -> None:
    s = RecognitionScheduler(1, FakeClock())
    open_and_set(s, "x", LegQueueState.WAITING, priority=1, waiting_since=1.0)
    open_and_set(s, "y", LegQueueState.WAITING, priority=3, waiting_since=2.0)
    open_and_set(s, "x", LegQueueState.IN_PROGRESS, priority=1)
    s.request(caller("x"))
    s.request(caller("y"))
    assert s.order()[0] == caller("y")


def test_status_reports_untranscribed_audio_per_leg_and_down() -> None:
    s = RecognitionScheduler(1, FakeClock())
    s.open(caller("a"))
    s.mark_not_transcribed(caller("a"), 2.5)
    status = RecognitionStatus.combine(s.status())
    assert status.health is RecognitionHealth.OK
    assert status.not_transcribed_s == 2.5
    assert status.legs[0].not_transcribed_s == 2.5 and status.legs[0].call_ref == "a"
    s.set_down("no Whisper model")
    assert RecognitionStatus.combine(s.status()).health is RecognitionHealth.DOWN
    assert RecognitionStatus.combine(s.status()).reason == "no Whisper model"
    s.close(caller("a"))
    assert s.status().legs == ()


def test_a_leg_is_contended_while_another_waits_for_a_slot() -> None:
    s = RecognitionScheduler(1, FakeClock())
    s.open(caller("a"))
    s.open(caller("b"))
    s.request(caller("a"))
    s.start(caller("a"))
    assert not s.contended(caller("a"))
    s.request(caller("b"))
    assert s.contended(caller("a")) and not s.contended(caller("b"))


def test_queue_state_of_a_leg_that_is_not_open_is_ignored() -> None:
    s = RecognitionScheduler(1, FakeClock())
    s.set_queue_state(caller("gone"), LegQueueState.WAITING, priority=1)
    assert s.status().legs == ()


def test_zero_slots_is_refused() -> None:
    with pytest.raises(ValueError):
        RecognitionScheduler(0, FakeClock())


def test_gate_lets_the_most_urgent_waiting_thread_in_first() -> None:
    gate = SlotGate(RecognitionScheduler(1, FakeClock()))
    order: list[str] = []
    gate.acquire(caller("holder"))
    ready = threading.Barrier(3)

    def worker(ref: str, prio: int) -> None:
        gate.call(lambda s: open_and_set(s, ref, LegQueueState.WAITING, prio, waiting_since=0.0))
        ready.wait()
        with gate.turn(caller(ref)):
            order.append(ref)

    threads = [threading.Thread(target=worker, args=(r, p)) for r, p in (("low", 3), ("high", 1))]
    for t in threads:
        t.start()
    ready.wait()
    # Both workers are registered; wait until both have asked for the slot before releasing it.
    deadline = 100
    while gate.status().legs_waiting_for_slot < 2 and deadline:
        threading.Event().wait(0.01)
        deadline -= 1
    gate.release(caller("holder"))
    for t in threads:
        t.join(5)
    assert order == ["high", "low"]


def test_waiting_callers_not_yet_triaged_from_their_own_words_go_before_triaged_ones() -> None:
    s = RecognitionScheduler(1, FakeClock())
    open_and_set(s, "arrest-heard", LegQueueState.WAITING, priority=1, waiting_since=1.0)
    s.set_queue_state(caller("arrest-heard"), LegQueueState.WAITING, 1, 1.0, triaged=True)
    open_and_set(s, "unheard", LegQueueState.WAITING, priority=3, waiting_since=50.0)
    open_and_set(s, "talking", LegQueueState.IN_PROGRESS, priority=1)
    for ref in ("arrest-heard", "unheard", "talking"):
        s.request(caller(ref))
    assert [k[0] for k in s.order()] == ["unheard", "arrest-heard", "talking"]
    # Re-stating the queue place without saying anything about triage keeps what intake said before.
    s.set_queue_state(caller("arrest-heard"), LegQueueState.WAITING, 1, 1.0)
    assert s.status().legs[0].triaged


def test_turns_go_round_the_waiting_callers_one_utterance_at_a_time() -> None:
    s = RecognitionScheduler(1, FakeClock())
    for ref, since in (("first", 1.0), ("second", 2.0), ("third", 3.0)):
        open_and_set(s, ref, LegQueueState.WAITING, priority=2, waiting_since=since)
    served: list[str] = []
    for _ in range(6):
        for ref in ("first", "second", "third"):
            s.request(caller(ref))
        key = s.order()[0]
        assert s.may_run(key)
        s.start(key)
        served.append(key[0])
        s.finish(key, spoke=True)
    assert served == ["first", "second", "third"] * 2
    # A turn that only ran the voice-activity detector over silence is no round heard.
    s.request(caller("first"))
    s.start(caller("first"))
    s.finish(caller("first"), spoke=False)
    assert {leg.call_ref: leg.rounds for leg in s.status().legs} == {"first": 2, "second": 2, "third": 2}


def test_rounds_do_not_reorder_calls_in_progress() -> None:
    s = RecognitionScheduler(1, FakeClock())
    open_and_set(s, "p1", LegQueueState.IN_PROGRESS, priority=1, waiting_since=1.0)
    open_and_set(s, "p3", LegQueueState.IN_PROGRESS, priority=3, waiting_since=2.0)
    s.request(caller("p1"))
    s.start(caller("p1"))
    s.finish(caller("p1"), spoke=True)
    s.request(caller("p1"))
    s.request(caller("p3"))
    assert s.order()[0] == caller("p1")


def test_slot_time_is_reported_by_what_it_was_spent_on() -> None:
    clock = FakeClock()
    s = RecognitionScheduler(2, clock)
    open_and_set(s, "w", LegQueueState.WAITING, priority=2, waiting_since=1.0)
    open_and_set(s, "t", LegQueueState.IN_PROGRESS, priority=2)
    s.request(caller("w"))
    s.request(caller("t"))
    s.start(caller("w"))
    s.start(caller("t"))
    clock.now += 1.5
    s.finish(caller("w"), spoke=True)
    s.finish(caller("t"), spoke=False)
    s.set_queue_state(caller("w"), LegQueueState.WAITING, 2, 1.0, triaged=True)
    s.request(caller("w"))
    s.start(caller("w"))
    clock.now += 0.5
    s.finish(caller("w"), spoke=True)
    s.finish(caller("w"), spoke=True)  # a second finish of the same turn counts nothing
    s.mark_not_transcribed(caller("w"), 3.0)
    s.close(caller("w"))
    status = RecognitionStatus.combine(s.status())
    assert dict(status.slot_s) == {
        "in progress: silence": 1.5,
        "waiting, not triaged from own words: speech": 1.5,
        "waiting, triaged from own words: speech": 0.5,
    }
    # Closed legs no longer count in the open legs' figure; the total since start keeps them.
    assert status.not_transcribed_s == 0.0 and status.not_transcribed_total_s == 3.0
