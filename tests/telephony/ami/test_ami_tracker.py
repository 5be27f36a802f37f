from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ami_sessions import load_session

from telephony.ami.framing import AmiMessage, parse_frames
from telephony.ami.tracker import AmiCallTracker
from telephony.events import (
    CallAnswered,
    CallConnected,
    CallEnded,
    CallOffered,
    CallQueued,
    CallSource,
    EndReason,
    TelephonyEvent,
)

FIXED = datetime(2026, 11, 27, 11, 30, tzinfo=UTC)


def tracker() -> AmiCallTracker:
    return AmiCallTracker(emergency_context="emergency", fork_endpoint="SIP/intake", now=lambda: FIXED)


def replay(name: str, *, see_own_actions: bool = True) -> tuple[AmiCallTracker, list[TelephonyEvent]]:
    t = tracker()
    events: list[TelephonyEvent] = []
    for line in load_session(name):
        if not line.text:
            continue
        msg = line.message
        if line.direction == "send":
            if see_own_actions:
                t.note_action(msg)
            continue
        events.extend(t.feed(msg))
    return t, events


def summary(events: list[TelephonyEvent]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for e in events:
        match e:
            case CallOffered():
                out.append(("offered", e.call_ref, e.dialled, e.caller, e.channel or ""))
            case CallQueued():
                out.append(("queued", e.call_ref, e.queue, str(e.position)))
            case CallConnected():
                out.append(("connected", e.call_ref, e.taker))
            case CallAnswered():
                out.append(("answered", e.call_ref, e.by))
            case CallEnded():
                out.append(("ended", e.call_ref, e.reason.value))
            case _:
                out.append((type(e).__name__,))
    return out


def msg(text: str) -> AmiMessage:
    [m], _ = parse_frames(text.replace("\n", "\r\n").encode() + b"\r\n\r\n")
    return m


def test_answered_155_is_offered_queued_connected_answered_and_ended_by_the_taker() -> None:
    t, events = replay("answered-155")
    assert summary(events) == [
        ("offered", "1795778919.48", "155", "u5200", "SIP/127.0.0.1-00000030"),
        ("queued", "1795778919.48", "desk-155", "1"),
        ("connected", "1795778919.48", "taker1"),
        ("answered", "1795778919.48", "taker1"),
        ("ended", "1795778919.48", "taker_hangup"),
    ]
    offered = events[0]
    assert isinstance(offered, CallOffered) and offered.source is CallSource.AMI
    ended = events[-1]
    assert isinstance(ended, CallEnded)
    # The recording says who hung up: HangupRequest on SIP/taker1-00000031 and AgentComplete Reason=agent.
    assert "AgentComplete Reason=agent" in ended.detail and "Normal Clearing" in ended.detail
    assert t.calls == {}


def test_taker_channel_never_becomes_a_call_of_its_own() -> None:
    _, events = replay("answered-155")
    assert {e.call_ref for e in events if hasattr(e, "call_ref")} == {"1795778919.48"}


def test_abandoned_158_ends_as_abandoned_with_the_queue_and_hold_time_as_evidence() -> None:
    _, events = replay("abandoned-158")
    assert summary(events) == [
        ("offered", "1795778938.50", "158", "u5210", "SIP/127.0.0.1-00000032"),
        ("queued", "1795778938.50", "desk-158", "1"),
        ("ended", "1795778938.50", "abandoned"),
    ]
    ended = events[-1]
    assert isinstance(ended, CallEnded) and "QueueCallerAbandon desk-158 after 6 s" in ended.detail


@pytest.mark.parametrize("see_own_actions", [True, False])
def test_redirect_150_to_155_is_not_abandoned_but_queued_to_155_and_connected(see_own_actions: bool) -> None:
    # Asterisk reports QueueCallerAbandon for desk-150 when the caller is redirected out of it; the call
    # must come out as requeued and connected whether or not the tracker saw the Redirect being sent.
    _, events = replay("redirect-150-to-155", see_own_actions=see_own_actions)
    assert summary(events) == [
        ("offered", "1795778950.51", "150", "u5220", "SIP/127.0.0.1-00000033"),
        ("queued", "1795778950.51", "desk-150", "1"),
        ("queued", "1795778950.51", "desk-155", "1"),
        ("connected", "1795778950.51", "taker1"),
        ("answered", "1795778950.51", "taker1"),
        ("ended", "1795778950.51", "taker_hangup"),
    ]
    assert all(not (isinstance(e, CallEnded) and e.reason is EndReason.ABANDONED) for e in events)


def test_after_a_redirect_a_real_abandon_in_the_new_queue_still_counts() -> None:
    t = tracker()
    for line in load_session("redirect-150-to-155"):
        if line.direction == "recv" and line.text:
            t.feed(line.message)
            if "QueueCallerJoin" in line.text and "desk-155" in line.text:
                break
    [call] = t.calls.values()
    assert call.abandoned_from is None and call.queue == "desk-155"
    assert any("voided by QueueCallerJoin desk-155" in h for h in call.history)
    base = (
        "Channel: SIP/127.0.0.1-00000033\nContext: emergency\nExten: 155\nPriority: 4\n"
        "Uniqueid: 1795778950.51\nLinkedid: 1795778950.51"
    )
    t.feed(msg(f"Event: QueueCallerAbandon\n{base}\nQueue: desk-155\nPosition: 1\nHoldTime: 40"))
    t.feed(msg(f"Event: QueueCallerLeave\n{base}\nQueue: desk-155\nPosition: 1\nCount: 0"))
    [ended] = t.feed(msg(f"Event: Hangup\n{base}\nCause: 0\nCause-txt: Unknown"))
    assert isinstance(ended, CallEnded) and ended.reason is EndReason.ABANDONED
    assert "desk-155 after 40 s" in ended.detail


def test_media_fork_channel_is_recognised_and_is_not_a_new_call() -> None:
    t, events = replay("media-fork-112")
    assert summary(events) == [
        ("offered", "1795778971.53", "112", "u5230", "SIP/127.0.0.1-00000035"),
        ("queued", "1795778971.53", "desk-112", "1"),
        ("connected", "1795778971.53", "taker1"),
        ("answered", "1795778971.53", "taker1"),
        ("ended", "1795778971.53", "taker_hangup"),
    ]
    assert t.forks == {}  # the fork hung up with its spied call


def test_media_fork_is_mapped_to_the_spied_channel_while_it_runs() -> None:
    t = tracker()
    for line in load_session("media-fork-112"):
        if line.direction == "recv" and line.text:
            t.feed(line.message)
            if "ChanSpyStart" in line.text:
                break
    assert t.forks == {"SIP/intake-00000037": "SIP/127.0.0.1-00000035"}


def test_fork_into_the_emergency_context_still_is_not_a_call() -> None:
    # Should the intake peer be put into the emergency context, its Newchannel must still not be a call.
    t = tracker()
    events = t.feed(
        msg(
            "Event: Newchannel\nChannel: SIP/intake-00000040\nChannelState: 0\nCallerIDNum: fork\n"
            "Context: emergency\nExten: s\nUniqueid: 1795779000.60\nLinkedid: 1795779000.60"
        )
    )
    assert events == [] and "SIP/intake-00000040" in t.forks


def test_fork_announced_by_its_sip_header_variable_is_recognised() -> None:
    t = tracker()
    t.feed(
        msg(
            "Event: VarSet\nChannel: PJSIP/intake-00000001\nContext: takers\nUniqueid: 1.70\n"
            "Variable: SIPADDHEADER01\nValue: X-IZS-Fork-Of: SIP/127.0.0.1-00000035"
        )
    )
    assert t.forks == {"PJSIP/intake-00000001": "SIP/127.0.0.1-00000035"}


def test_admin_actions_session_produces_no_call_events() -> None:
    _, events = replay("admin-actions")
    assert events == []


def test_bad_login_session_produces_no_call_events() -> None:
    _, events = replay("bad-login")
    assert events == []


def test_a_call_first_seen_mid_way_is_offered_rather_than_lost() -> None:
    # Connecting while a call is already queued: the first event carrying it offers it.
    lines = [w for w in load_session("answered-155") if w.direction == "recv" and w.text]
    start = next(i for i, w in enumerate(lines) if "QueueCallerJoin" in w.text)
    t = tracker()
    events: list[TelephonyEvent] = []
    for w in lines[start:]:
        events.extend(t.feed(w.message))
    assert [s[0] for s in summary(events)] == ["offered", "queued", "connected", "answered", "ended"]


def test_caller_hanging_up_before_any_queue_is_abandoned() -> None:
    t = tracker()
    base = "Channel: SIP/x-1\nContext: emergency\nExten: 155\nCallerIDNum: 777123456\nUniqueid: 5.1\nLinkedid: 5.1"
    t.feed(msg(f"Event: Newchannel\n{base}"))
    t.feed(msg(f"Event: HangupRequest\n{base}"))
    [ended] = t.feed(msg(f"Event: Hangup\n{base}\nCause: 16\nCause-txt: Normal Clearing"))
    assert isinstance(ended, CallEnded) and ended.reason is EndReason.ABANDONED


def test_queue_timeout_without_abandon_is_a_timeout() -> None:
    t = tracker()
    base = "Channel: SIP/x-2\nContext: emergency\nExten: 150\nCallerIDNum: 777\nUniqueid: 5.2\nLinkedid: 5.2"
    t.feed(msg(f"Event: Newchannel\n{base}"))
    t.feed(msg(f"Event: QueueCallerJoin\n{base}\nQueue: desk-150\nPosition: 1"))
    t.feed(msg(f"Event: QueueCallerLeave\n{base}\nQueue: desk-150\nPosition: 1"))
    [ended] = t.feed(msg(f"Event: Hangup\n{base}\nCause: 16"))
    assert isinstance(ended, CallEnded) and ended.reason is EndReason.TIMEOUT


def test_connected_call_ended_by_the_caller_is_caller_hangup() -> None:
    t = tracker()
    base = "Channel: SIP/x-3\nContext: emergency\nExten: 155\nCallerIDNum: 777\nUniqueid: 5.3\nLinkedid: 5.3"
    t.feed(msg(f"Event: Newchannel\n{base}"))
    t.feed(
        msg(f"Event: AgentConnect\n{base}\nQueue: desk-155\nMemberName: taker2\nDestChannel: SIP/taker2-9")
    )
    t.feed(msg(f"Event: AgentComplete\n{base}\nQueue: desk-155\nMemberName: taker2\nReason: caller"))
    [ended] = t.feed(msg(f"Event: Hangup\n{base}\nCause: 16"))
    assert isinstance(ended, CallEnded) and ended.reason is EndReason.CALLER_HANGUP


def test_resync_offers_calls_that_started_while_disconnected_with_queue_and_taker() -> None:
    t = tracker()
    t.feed(msg("Event: QueueMemberAdded\nQueue: desk-155\nMemberName: taker1\nInterface: SIP/taker1"))
    queued = msg(
        "Event: CoreShowChannel\nChannel: SIP/127.0.0.1-00000050\nChannelState: 4\nChannelStateDesc: Ring\n"
        "CallerIDNum: 777111222\nCallerIDName: <unknown>\nContext: emergency\nExten: 158\nPriority: 4\n"
        "Uniqueid: 7.1\nLinkedid: 7.1\nBridgeId: \nApplication: Queue\nApplicationData: desk-158,t,,,300"
    )
    talking = msg(
        "Event: CoreShowChannel\nChannel: SIP/127.0.0.1-00000051\nChannelState: 6\nChannelStateDesc: Up\n"
        "CallerIDNum: 777333444\nContext: emergency\nExten: 155\nPriority: 4\nUniqueid: 7.2\nLinkedid: 7.2\n"
        "BridgeId: b-1\nApplication: Queue\nApplicationData: desk-155,t,,,300"
    )
    taker = msg(
        "Event: CoreShowChannel\nChannel: SIP/taker1-00000052\nChannelState: 6\nContext: takers\nExten: 155\n"
        "Uniqueid: 7.3\nLinkedid: 7.2\nBridgeId: b-1\nApplication: AppQueue"
    )
    entry = msg(
        "Event: QueueEntry\nQueue: desk-158\nPosition: 1\nChannel: SIP/127.0.0.1-00000050\nUniqueid: 7.1\n"
        "CallerIDNum: 777111222\nWait: 12"
    )
    events = t.resync([queued, talking, taker], [entry])
    assert summary(events) == [
        ("offered", "7.1", "158", "777111222", "SIP/127.0.0.1-00000050"),
        ("queued", "7.1", "desk-158", "1"),
        ("offered", "7.2", "155", "777333444", "SIP/127.0.0.1-00000051"),
        ("connected", "7.2", "taker1"),
        ("answered", "7.2", "taker1"),
    ]
    assert t.resync([queued, talking, taker], [entry]) == []  # idempotent


def test_resync_ends_calls_that_vanished_while_disconnected_and_calls_back_unanswered_ones() -> None:
    lines = [w.message for w in load_session("abandoned-158") if w.direction == "recv" and w.text]
    join = next(i for i, m in enumerate(lines) if m.event == "QueueCallerJoin")
    t = tracker()
    for m in lines[: join + 1]:
        t.feed(m)
    [ended] = t.resync([], [])
    assert isinstance(ended, CallEnded) and ended.reason is EndReason.ABANDONED
    assert "AMI link was down" in ended.detail
    hangup = next(m for m in lines if m.event == "Hangup")
    assert t.feed(hangup) == []  # a late Hangup does not resurrect it


def test_events_after_hangup_never_resurrect_an_ended_call() -> None:
    t, _ = replay("answered-155")
    late = msg(
        "Event: VarSet\nChannel: SIP/127.0.0.1-00000030\nContext: emergency\nExten: 155\n"
        "Uniqueid: 1795778919.48\nVariable: RTPAUDIOQOS\nValue: x"
    )
    assert t.feed(late) == []


def test_a_renamed_caller_channel_is_still_the_same_call() -> None:
    t = tracker()
    base = "Context: emergency\nExten: 112\nCallerIDNum: 777\nUniqueid: 5.4\nLinkedid: 5.4"
    t.feed(msg(f"Event: Newchannel\nChannel: SIP/x-4\n{base}"))
    t.feed(msg("Event: Rename\nChannel: SIP/x-4\nNewname: SIP/x-4<MASQ>\nUniqueid: 5.4"))
    call = t.call_for_channel("SIP/x-4<MASQ>")
    assert call is not None and call.call_ref == "5.4" and t.call_for_channel("SIP/x-4") is None
    [ended] = t.feed(msg(f"Event: Hangup\nChannel: SIP/x-4<MASQ>\n{base}\nCause: 16"))
    assert isinstance(ended, CallEnded) and ended.call_ref == "5.4"


def test_mutated_recorded_sessions_never_make_the_tracker_raise() -> None:
    """Issue 13: AMI input is fuzzed on the path it takes - recorded Asterisk sessions, field values
    replaced, dropped or added (seeded) - and every message is mapped or ignored, never raised."""
    import random

    from ami_sessions import SESSION_NAMES, recv_wire

    messages = [m for name in SESSION_NAMES for m in parse_frames(recv_wire(name))[0]]
    values = ["", "0", "-1", "x" * 300, "\x00", "Up", "6", "SIP/intake-0001", "1.5", "nan", ";;", "é"]
    rng = random.Random(13)
    for _ in range(150):
        tracker = AmiCallTracker()
        for message in messages:
            fields = list(message.fields)
            if fields and rng.random() < 0.3:
                i = rng.randrange(len(fields))
                key, value = fields[i]
                choice = rng.random()
                if choice < 0.6:
                    fields[i] = (key, rng.choice([*values, value[: len(value) // 2]]))
                elif choice < 0.8:
                    del fields[i]
                else:
                    fields.insert(i, (key, rng.choice(values)))
            tracker.feed(AmiMessage(tuple(fields)))
