"""Replays of the AMI sessions recorded by tests/pbx against a real Asterisk 20.20.1 (chan_sip and chan_pjsip),
so CI checks every new PBX-mode behaviour of issue 18 without an Asterisk.

Each ``pbx-<driver>-<item>.jsonl`` is what crossed the wire between ``izs serve``'s bridge and Asterisk
during one test (the AMI proxy in tests/pbx recorded it). The tracker is fed the ``recv`` messages (and sees
the bridge's own ``send`` actions, as on the wire); the ``send`` lines show what intake asked the PBX to do.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ami_sessions import SESSIONS_DIR, load_session

from telephony.ami.framing import AmiMessage
from telephony.ami.tracker import AmiCallTracker, parse_duration
from telephony.events import CallConnected, CallEnded, CallOffered, CallQueued, EndReason, TelephonyEvent

FIXED = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
DRIVERS = {"sip": "SIP", "pjsip": "PJSIP"}


def _session(driver: str, item: str) -> str:
    name = f"pbx-{driver}-{item}"
    if not (SESSIONS_DIR / f"{name}.jsonl").exists():
        pytest.fail(f"recording {name}.jsonl missing: record it with tests/pbx (IZS_RECORD_AMI_SESSIONS=1)")
    return name


def replay(driver: str, item: str) -> tuple[AmiCallTracker, list[TelephonyEvent], list[AmiMessage]]:
    tracker = AmiCallTracker(fork_endpoint=f"{DRIVERS[driver]}/intake", now=lambda: FIXED)
    events: list[TelephonyEvent] = []
    sent: list[AmiMessage] = []
    for line in load_session(_session(driver, item)):
        msg = line.message
        if line.direction == "send":
            tracker.note_action(msg)
            sent.append(msg)
        else:
            events.extend(tracker.feed(msg))
    return tracker, events, sent


def actions(sent: list[AmiMessage], name: str) -> list[AmiMessage]:
    return [m for m in sent if m.value("Action") == name]


def caller_events(events: list[TelephonyEvent], caller: str) -> list[TelephonyEvent]:
    refs = {e.call_ref for e in events if isinstance(e, CallOffered) and e.caller == caller}
    return [e for e in events if getattr(e, "call_ref", None) in refs]


@pytest.mark.parametrize("driver", DRIVERS)
def test_item1_answered_caller_is_forked_and_the_fork_is_no_call(driver: str) -> None:
    tracker, events, sent = replay(driver, "item1-answer-fork-transcribe")
    [offered] = [e for e in events if isinstance(e, CallOffered)]
    assert offered.dialled == "112" and offered.caller == "+420601000101"
    [originate] = actions(sent, "Originate")
    assert originate.value("Channel") == f"{DRIVERS[driver]}/intake"
    assert originate.value("Data").endswith(",qEo")  # only the caller's own audio
    header = [v for v in originate.get_all("Variable") if "X-IZS-Fork-Of" in v]
    assert header and offered.channel is not None and offered.channel in header[0]
    ended = [e for e in events if isinstance(e, CallEnded)]
    assert [e.reason for e in ended] == [EndReason.ABANDONED]
    assert tracker.forks == {}  # the fork ended with the call and was never a call


@pytest.mark.parametrize("driver", DRIVERS)
def test_item2_console_states_became_queue_add_pause_remove_with_the_taker_id(driver: str) -> None:
    tracker, _, sent = replay(driver, "item2-membership")
    interface = f"{DRIVERS[driver]}/taker2"
    [add] = actions(sent, "QueueAdd")[:1]
    assert (add.value("Queue"), add.value("Interface"), add.value("MemberName")) == (
        "desk-155",
        interface,
        "taker2",
    )
    pauses = [(m.value("Paused"), m.value("Reason")) for m in actions(sent, "QueuePause")]
    assert pauses[0] == ("true", "přestávka") and pauses[1][0] == "false"
    [remove] = actions(sent, "QueueRemove")
    assert remove.value("Interface") == interface
    assert tracker.member("desk-155", interface) is None  # QueueMemberRemoved seen


@pytest.mark.parametrize("driver", DRIVERS)
def test_item2_membership_is_put_back_after_asterisk_restarted(driver: str) -> None:
    tracker, _, sent = replay(driver, "item2-resync-after-restart")
    names = [m.value("Action") for m in sent]
    assert names[:3] == ["Login", "CoreShowChannels", "QueueStatus"]
    add = next(m for m in actions(sent, "QueueAdd") if m.value("MemberName") == "taker2")
    assert add.value("Queue") == "desk-155" and add.value("Interface") == f"{DRIVERS[driver]}/taker2"
    member = tracker.member("desk-155", f"{DRIVERS[driver]}/taker2")
    assert member is not None and member.ready and member.name == "taker2"


@pytest.mark.parametrize("driver", DRIVERS)
def test_item3_redirected_to_the_medical_desk_and_answered_there(driver: str) -> None:
    _, events, sent = replay(driver, "item3-redirect-not-blocked-no-offer")
    mine = caller_events(events, "+420601000103")
    queues = [e.queue for e in mine if isinstance(e, CallQueued)]
    assert queues[0] == "desk-150" and queues[-1] == "desk-155"
    assert [e.taker for e in mine if isinstance(e, CallConnected)] == ["taker2"]
    assert [e.reason for e in mine if isinstance(e, CallEnded)] == [EndReason.CALLER_HANGUP]
    redirect = actions(sent, "Redirect")
    assert redirect and redirect[0].value("Exten") == "155"
    assert not any(m.value("Action") == "QueuePause" for m in sent)  # nobody paused for a missed offer


@pytest.mark.parametrize("driver", DRIVERS)
def test_item4_a_priority_change_on_the_same_desk_is_queue_change_priority_caller(driver: str) -> None:
    """Recorded in the item-5 run (a raise after a move is the item-4 recording below): triage gave the
    158 caller priority 3 -> QUEUE_PRIO 5 on the desk it waits in, without a Redirect, answered "Success" by Asterisk; the overflow
    Redirect then carried the priority to desk-112."""
    lines = load_session(_session(driver, "item5-overflow-to-112"))
    sent = [w.message for w in lines if w.direction == "send"]
    names = [m.value("Action") for m in sent]
    first = names.index("QueueChangePriorityCaller")
    assert "Redirect" not in names[:first]  # a change in place, not a move
    change = sent[first]
    assert (change.value("Queue"), change.value("Priority"), change.value("Immediate")) == (
        "desk-158",
        "5",
        "yes",
    )
    answer = next(
        w.message
        for w in lines
        if w.direction == "recv" and w.message.value("ActionID") == change.value("ActionID")
    )
    assert answer.value("Response") == "Success"


@pytest.mark.parametrize("driver", DRIVERS)
def test_item4_a_cardiac_arrest_after_the_first_redirect_is_raised_in_place(driver: str) -> None:
    """The real run of item 4: a 150 caller said the patient does not respond (unconscious: moved to 155 with
    QUEUE_PRIO 10), then that he is not breathing (suspected cardiac arrest): the upgrade went to Asterisk as
    QueueChangePriorityCaller 20 on desk-155, after the move and without a second Redirect, and Asterisk
    answered Success."""
    lines = load_session(_session(driver, "item4-cardiac-arrest-jumps-the-queue"))
    _, events, sent = replay(driver, "item4-cardiac-arrest-jumps-the-queue")
    mine = caller_events(events, "+420601000104")
    queues = [e.queue for e in mine if isinstance(e, CallQueued)]
    assert queues[0] == "desk-150" and queues[-1] == "desk-155"
    assert [e.reason for e in mine if isinstance(e, CallEnded)] == [EndReason.ABANDONED]
    [redirect] = actions(sent, "Redirect")
    assert redirect.value("Exten") == "155"
    names = [m.value("Action") for m in sent]
    moved_at = sent.index(redirect)
    setvar = sent[moved_at - 1]
    assert (setvar.value("Action"), setvar.value("Variable"), setvar.value("Value")) == (
        "Setvar",
        "QUEUE_PRIO",
        "10",
    )
    after = [
        (m.value("Queue"), m.value("Priority"))
        for m in sent[moved_at:]
        if m.value("Action") == "QueueChangePriorityCaller"
    ]
    assert after[0] == ("desk-155", "10") and after[-1] == ("desk-155", "20"), after
    assert "Redirect" not in names[moved_at + 1 :]
    upgrade = next(
        m
        for m in sent[moved_at:]
        if m.value("Action") == "QueueChangePriorityCaller" and m.value("Priority") == "20"
    )
    answer = next(
        w.message
        for w in lines
        if w.direction == "recv" and w.message.value("ActionID") == upgrade.value("ActionID")
    )
    assert answer.value("Response") == "Success"


@pytest.mark.parametrize("driver", DRIVERS)
def test_item5_overflow_redirects_to_the_112_desk(driver: str) -> None:
    _, events, sent = replay(driver, "item5-overflow-to-112")
    assert any(m.value("Exten") == "112" for m in actions(sent, "Redirect"))
    mine = caller_events(events, "+420601000105")
    assert [e.queue for e in mine if isinstance(e, CallQueued)][-1] == "desk-112"
    assert [e.reason for e in mine if isinstance(e, CallEnded)] == [EndReason.ABANDONED]


@pytest.mark.parametrize("driver", DRIVERS)
def test_item6_fork_hung_up_is_forked_again_and_the_call_ends_by_the_taker(driver: str) -> None:
    _, events, sent = replay(driver, "item6-fork-reestablished")
    assert len(actions(sent, "Originate")) >= 2  # the first fork, and again after it was hung up
    mine = caller_events(events, "+420601000106")
    assert [e.reason for e in mine if isinstance(e, CallEnded)] == [EndReason.TAKER_HANGUP]
    assert [e.taker for e in mine if isinstance(e, CallConnected)] == ["taker2"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_item7_moved_caller_answered_at_once(driver: str) -> None:
    _, events, sent = replay(driver, "item7-moved-and-answered")
    assert any(m.value("Exten") == "155" for m in actions(sent, "Redirect"))
    mine = caller_events(events, "+420601000107")
    assert [e.taker for e in mine if isinstance(e, CallConnected)] == ["taker2"]
    assert [e.reason for e in mine if isinstance(e, CallEnded)] == [EndReason.CALLER_HANGUP]


@pytest.mark.parametrize("driver", DRIVERS)
def test_item8_resync_after_outage_counts_the_wait_from_the_channels_creation(driver: str) -> None:
    lines = load_session(_session(driver, "item8-outage-resync"))
    channels = [w.message for w in lines if w.direction == "recv" and w.message.event == "CoreShowChannel"]
    queue_items = [
        w.message
        for w in lines
        if w.direction == "recv" and w.message.event in ("QueueParams", "QueueMember", "QueueEntry")
    ]
    caller = next(m for m in channels if m.value("CallerIDNum") == "+420601000108")
    duration = parse_duration(caller.value("Duration"))
    assert duration is not None and duration >= 11
    tracker = AmiCallTracker(fork_endpoint=f"{DRIVERS[driver]}/intake", now=lambda: FIXED)
    events = tracker.resync(channels, queue_items)
    [offered] = [e for e in events if isinstance(e, CallOffered) and e.caller == "+420601000108"]
    assert offered.at == FIXED - timedelta(seconds=duration)
    sent = [w.message for w in lines if w.direction == "send"]
    assert any(m.value("Action") == "Originate" for m in sent)  # a fresh fork for the resumed call


def test_parse_duration_reads_core_show_channel_durations() -> None:
    assert parse_duration("00:00:12") == 12.0
    assert parse_duration("27:01:02") == 27 * 3600 + 62.0
    assert parse_duration("") is None and parse_duration("1:2") is None and parse_duration("a:b:c") is None
