"""PBX mode against a real Asterisk 20.20.1: one test per numbered item of issue 18, each run on chan_sip and
on chan_pjsip with the configuration shipped in deploy/asterisk.

Real peers only: Asterisk from ``IZS_TEST_ASTERISK``, baresip callers speaking Czech (Festival), two
auto-answering baresip call-taker phones, ``izs serve`` in PBX mode with Whisper transcription, driven over
its REST API as the consoles do. Without ``IZS_TEST_ASTERISK`` every test here skips, saying how to run it.
"""

from __future__ import annotations

import itertools
import re
import time
from datetime import datetime

import pytest
from pbx_rig import OVERFLOW_AFTER_S, Rig
from pbx_support import wait_until

pytestmark = pytest.mark.slow

# A caller on the fire line whose husband collapsed: first "he cannot be woken, does not respond"
# (unconscious: ZZS, queue prio 10; moved off desk-150), then, while waiting on the medical desk, "he is not
# breathing at all" in the colloquial "nedejchá" most Czech callers use (suspected cardiac arrest: the
# front, prio 20). Said more than once with pauses, as callers repeat themselves; the long pause keeps the
# arrest words in utterances of their own after the move. Chosen through the product's recognition
# (Festival -> G.711 -> Whisper base -> triage, measured; issue 18's report): "Nejde probudit, nereaguje."
# is heard "Najdát robotit nereagulě." (unconscious, not the front), "Už vůbec nedejchá." "Už vůbec
# nedejka." and "Manžel nedejchá." "Manžel nedejká." (cardiac arrest, T-CPR). The literary "nedýchá" is
# heard "nedíka" / "ne díká", which triage does not take for an arrest, hence not used here.
UNCONSCIOUS_THEN_ARREST = (
    "Nejde probudit, nereaguje.",
    2.5,
    "Nejde probudit, nereaguje.",
    20.0,
    "Už vůbec nedejchá.",
    3.0,
    "Manžel nedejchá.",
    6.0,
    "Už vůbec nedejchá.",
    6.0,
    "Manžel nedejchá.",
)
CARDIAC = ("Sanitku prosím.", 3.0, "Táta nedýchá.", 1.5, "Táta nedýchá.")
TRAUMA = ("Moje žena upadla a krvácí z hlavy.", 1.5, "Hodně krvácí, potřebujeme sanitku.")
THEFT = "Právě mi ukradli auto před domem, zloděj ujel."
ACCIDENT = "Dobrý den, volám kvůli nehodě na silnici, srazila se dvě auta."


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _transcript(call: dict[str, object]) -> str:
    segments = call.get("transcript") or []
    assert isinstance(segments, list)
    return " ".join(str(s["text"]) for s in segments if s.get("leg") == "caller")


def test_item1_dialplan_answers_so_the_callers_speech_is_forked_and_transcribed(fresh: Rig) -> None:
    """1. The shipped dialplan answers before Queue(): the caller's RTP flows, the media fork hears the
    caller (not the hold music: ChanSpy ``o``), Whisper transcribes the Czech speech."""
    rig, mark = fresh, fresh.proxy.mark()
    caller = rig.dial("item1", "112", "+420601000101", rig.voice("item1", ACCIDENT))
    established = caller.wait_event("CALL_ESTABLISHED", timeout=10)
    assert established, "the PBX did not answer the caller"
    wait_until(rig.forks, 15, "a media fork channel towards intake")
    call = rig.wait_intake_call("+420601000101", 20, state="queued")
    assert call["source"] == "ami" and call["dialled"] == "112"
    text = wait_until(lambda: _transcript(rig.wait_intake_call("+420601000101")), 90, "the caller's words")
    assert re.search(r"dobr|volám|siln|nehod|auta", text, re.IGNORECASE), text
    caller.hangup()
    ended = rig.wait_intake_call("+420601000101", 20, state="abandoned")
    assert ended["end_reason"] == "abandoned"
    rig.record("item1-answer-fork-transcribe", mark)


def test_item2_console_login_pause_logout_become_queue_add_pause_remove_and_survive_a_restart(
    fresh: Rig,
) -> None:
    """2. Log-in / pause / log-out at the console reach Asterisk (member name = taker id), and intake puts
    the membership back after Asterisk restarts (persistentmembers = no)."""
    rig, mark = fresh, fresh.proxy.mark()
    interface = rig.tech("taker2")
    rig.set_state("taker2", "available")
    member = wait_until(lambda: rig.queue("desk-155").members.get("taker2"), 10, "taker2 in desk-155")
    assert member["interface"] == interface and not member["paused"]
    assert "taker2" not in rig.queue("desk-150").members  # only the taker's own desks
    rig.set_state("taker2", "paused", "přestávka")
    member = wait_until(
        lambda: (m := rig.queue("desk-155").members.get("taker2")) and m["paused"] and m, 10, "taker2 paused"
    )
    assert "přestávka" in member["text"] or member["reason"] == "přestávka", member
    rig.set_state("taker2", "available")
    wait_until(lambda: not rig.queue("desk-155").members["taker2"]["paused"], 10, "taker2 unpaused")
    rig.set_state("taker2", "offline")
    wait_until(lambda: "taker2" not in rig.queue("desk-155").members, 10, "taker2 removed")
    rig.record("item2-membership", mark)

    rig.set_state("taker2", "available")
    wait_until(lambda: "taker2" in rig.queue("desk-155").members, 10, "taker2 back in desk-155")
    rig.pbx.restart()  # forgets dynamic members
    member = wait_until(
        lambda: rig.queue("desk-155").members.get("taker2"), 20, "taker2 re-added after restart"
    )
    assert member["interface"] == interface and not member["paused"]
    assert rig.taker_state("taker2") == "available"
    rig.record("item2-resync-after-restart", (mark[0] + 1, 0))


def test_item3_no_offer_to_a_phone_that_is_not_a_queue_member_and_triage_still_redirects(fresh: Rig) -> None:
    """3. taker1 is logged in at the console on the fire desk but its phone is not a member of desk-150 on
    the PBX: intake never offers it the call (never pauses it for "not taking the offer"), and nothing
    blocks triage: the injury call dialled on 150 is redirected to the medical desk, where taker2 answers."""
    rig, mark = fresh, fresh.proxy.mark()
    rig.set_state("taker1", "available")  # HZS: desk-150
    rig.set_state("taker2", "available")  # ZZS: desk-155
    wait_until(lambda: "taker1" in rig.queue("desk-150").members, 10, "taker1 in desk-150")
    rig.pbx.cli(f"queue remove member {rig.tech('taker1')} from desk-150")
    wait_until(lambda: "taker1" not in rig.queue("desk-150").members, 10, "taker1 removed on the PBX")
    caller = rig.dial("item3", "150", "+420601000103", rig.voice("item3", *TRAUMA))
    call = rig.wait_intake_call("+420601000103", 90, state="connected")
    assert call["taker_id"] == "taker2" and call["desk"] == "ZZS", call
    assert rig.phones["taker2"].wait_event("CALL_ESTABLISHED", 5)
    assert not any(e.get("type") == "CALL_INCOMING" for e in rig.phones["taker1"].events)
    assert rig.taker_state("taker1") == "available", "intake paused a taker it should never have offered to"
    log = rig.test_log()
    assert "did not take the offer" not in log and "could not ring" not in log
    caller.hangup()
    ended = rig.wait_intake_call("+420601000103", 20, state="ended")
    assert ended["end_reason"] == "caller_hangup", ended
    rig.record("item3-redirect-not-blocked-no-offer", mark)


def test_item4_a_cardiac_arrest_after_the_first_redirect_jumps_the_pbx_queue(fresh: Rig) -> None:
    """4. A caller on 150 says the patient does not respond: triage moves the call to the medical desk with the
    priority of an unconscious patient (Redirect, QUEUE_PRIO 10). Then the caller says he is not breathing:
    triage upgrades to a suspected cardiac arrest and intake sends QueueChangePriorityCaller; Asterisk's own
    ``queue show desk-155`` shows the caller at the front priority (20), and no supervisor is involved."""
    rig, mark = fresh, fresh.proxy.mark()
    caller = rig.dial("item4", "150", "+420601000104", rig.voice("item4", *UNCONSCIOUS_THEN_ARREST))
    channel = wait_until(lambda: rig.caller_channel("+420601000104"), 10, "the caller's channel")
    wait_until(lambda: channel in rig.queue("desk-150").callers, 10, "caller waiting on desk-150")
    seen: list[int] = []

    def prio_on_155(at_least: int) -> int | None:
        value = rig.queue("desk-155").callers.get(channel)
        if value is not None and (not seen or seen[-1] != value):
            seen.append(value)
        return value if value is not None and value >= at_least else None

    # The unconscious patient's priority is applied first: on desk-155 if that decision was sure enough to
    # move the call, else in place on desk-150 while triage was still unsure (the move then comes with the
    # arrest and carries its priority).
    wait_until(lambda: prio_on_155(10), 60, "the caller on desk-155 (unconscious or arrest)", 0.25)
    assert channel not in rig.queue("desk-150").callers
    moved = rig.wait_intake_call("+420601000104", 10, desk="ZZS")
    assert moved["priority"] == 1 and moved["state"] == "queued", moved
    wait_until(
        lambda: prio_on_155(20), OVERFLOW_AFTER_S - 30, "the caller at prio 20 (the front) on desk-155", 0.25
    )
    assert seen[-1] == 20 and seen == sorted(seen), seen
    if seen[0] != 10:
        assert "queue priority 10 on desk-150: applied" in rig.test_log(), "the first raise was not applied"
    call = rig.wait_intake_call("+420601000104", 10, tcpr=True)
    assert call["desk"] == "ZZS" and call["state"] == "queued", call
    # Raised from the caller's words (triage reads partials too, so the stored finals may still lag; Whisper
    # hears "už vůbec nedejchá" as "nedejka", "zgnadejka", …): no supervisor involved.
    assert _transcript(call).strip(), call
    assert (call.get("decision") or {}).get("tcpr"), call.get("decision")
    entry = next(e for e in rig.intake.queues()["ZZS"] if e["call_id"] == call["id"])
    assert entry["front"] is True, entry

    # Seen on the wire: the move (Redirect to 155, QUEUE_PRIO 10), then the upgrade in place (no second
    # Redirect): QueueChangePriorityCaller 20 on desk-155, answered Success by Asterisk.
    records = rig.proxy.records_since(mark)
    sent = [r["text"] for r in records if r["dir"] == "send"]
    redirects = [t for t in sent if "Action: Redirect" in t]
    assert len(redirects) == 1 and "Exten: 155" in redirects[0], redirects
    upgrade = [t for t in sent if "Action: QueueChangePriorityCaller" in t and "Priority: 20" in t]
    assert upgrade and "Queue: desk-155" in upgrade[0], sent
    assert sent.index(upgrade[0]) > sent.index(redirects[0])
    action_id = re.search(r"ActionID: (\S+)", upgrade[0])
    assert action_id is not None
    answers = [
        r["text"] for r in records if r["dir"] == "recv" and f"ActionID: {action_id.group(1)}" in r["text"]
    ]
    assert answers and "Response: Success" in answers[0], answers
    caller.hangup()
    rig.wait_intake_call("+420601000104", 20, state="abandoned")
    rig.record("item4-cardiac-arrest-jumps-the-queue", mark)


def test_item5_overflow_moves_the_caller_on_the_pbx_and_nothing_stays_waiting(fresh: Rig) -> None:
    """5. A caller waiting longer than the overflow time is redirected to desk-112 on the PBX and shown
    there by intake; once the caller hangs up no queue lists the call."""
    rig, mark = fresh, fresh.proxy.mark()
    caller = rig.dial("item5", "158", "+420601000105", rig.voice("item5", THEFT, tail_s=90.0))
    channel = wait_until(lambda: rig.caller_channel("+420601000105"), 10, "the caller's channel")
    wait_until(lambda: channel in rig.queue("desk-158").callers, 10, "caller waiting on desk-158")
    wait_until(
        lambda: channel in rig.queue("desk-112").callers, OVERFLOW_AFTER_S + 15, "caller moved to desk-112"
    )
    assert channel not in rig.queue("desk-158").callers
    call = rig.wait_intake_call("+420601000105", 10, state="queued")

    def on_112() -> bool:
        queues = rig.intake.queues()
        return any(e["call_id"] == call["id"] for e in queues["112"]) and not any(
            e["call_id"] == call["id"] for e in queues["PCR"]
        )

    wait_until(on_112, 10, "intake's queue shows the call on the 112 desk")
    caller.hangup()
    rig.wait_intake_call("+420601000105", 20, state="abandoned")
    wait_until(
        lambda: not any(e["call_id"] == call["id"] for q in rig.intake.queues().values() for e in q),
        10,
        "the ended call gone from every queue",
    )
    rig.record("item5-overflow-to-112", mark)


def test_item6_a_media_fork_ending_is_re_established_and_never_ends_the_call(fresh: Rig) -> None:
    """6. Hanging up the fork while the caller waits: the call stays queued, a new fork is originated; the
    call then ends as the taker hung up (decided from the caller's channel only)."""
    rig, mark = fresh, fresh.proxy.mark()
    caller = rig.dial("item6", "155", "+420601000106", rig.voice("item6", *TRAUMA, tail_s=90.0))
    first = wait_until(rig.forks, 15, "the first media fork")[0]
    rig.wait_intake_call("+420601000106", 20, state="queued")
    rig.pbx.cli(f"channel request hangup {first}")
    second = wait_until(lambda: [f for f in rig.forks() if f != first], 15, "a new media fork")[0]
    assert second != first
    assert rig.wait_intake_call("+420601000106")["state"] == "queued"
    rig.set_state("taker2", "available")
    rig.wait_intake_call("+420601000106", 30, state="connected", taker_id="taker2")
    rig.phones["taker2"].wait_event("CALL_ESTABLISHED", 10)
    rig.phones["taker2"].hangup()
    ended = rig.wait_intake_call("+420601000106", 20, state="ended")
    assert ended["end_reason"] == "taker_hangup", ended
    log = rig.test_log()
    assert "is not allowed" not in log, "a fork's end was taken for the call's"
    assert "CallEnded for unknown call" not in log, "the caller's real hang-up was dropped"
    assert caller.wait_event("CALL_CLOSED", 10)
    rig.record("item6-fork-reestablished", mark)


def test_item7_no_false_error_when_the_moved_caller_is_answered_at_once(fresh: Rig) -> None:
    """7. A 150 call about an injury goes to the free 155 desk and is answered within milliseconds of
    joining; the priority change that finds no caller is not an error."""
    rig, mark = fresh, fresh.proxy.mark()
    rig.set_state("taker2", "available")
    wait_until(lambda: "taker2" in rig.queue("desk-155").members, 10, "taker2 in desk-155")
    caller = rig.dial("item7", "150", "+420601000107", rig.voice("item7", *TRAUMA))
    call = rig.wait_intake_call("+420601000107", 90, state="connected")
    assert call["taker_id"] == "taker2" and call["desk"] == "ZZS", call
    log = rig.test_log()
    assert "PBX did not move the caller" not in log
    assert "QueueChangePriorityCaller failed" not in log
    caller.hangup()
    rig.wait_intake_call("+420601000107", 20, state="ended")
    rig.record("item7-moved-and-answered", mark)


def test_item8_calls_during_an_ami_outage_keep_their_real_wait_and_get_a_fresh_fork(fresh: Rig) -> None:
    """8. The AMI link is cut while a cardiac-arrest caller dials in: intake reconnects within ~2 s of the
    link coming back, counts the wait from the channel's creation, forks and transcribes the call."""
    rig = fresh
    rig.proxy.cut()
    wait_until(
        lambda: any(h["component"] == "ami" and not h["healthy"] for h in rig.intake.get("/api/health")),
        10,
        "intake sees the AMI link down",
    )
    outage_started = time.monotonic()
    dialled_at = time.time()
    caller = rig.dial("item8", "155", "+420601000108", rig.voice("item8", *CARDIAC, tail_s=90.0))
    wait_until(lambda: rig.caller_channel("+420601000108"), 10, "the caller's channel")
    channel_seen_at = time.time()  # Asterisk created the channel between dialled_at and now
    wait_until(lambda: time.monotonic() - outage_started > 12, 15, "12 s of outage", 0.5)
    attempts = [t for t in rig.proxy.attempts if t >= outage_started]
    rig.proxy.restore()
    restored = time.monotonic()
    call = rig.wait_intake_call("+420601000108", 15, state="queued")
    reconnected = time.monotonic() - restored
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps and max(gaps) <= 2.5, f"reconnect attempts every {gaps} s"
    assert reconnected < 5, reconnected
    # offered_at = resync time - CoreShowChannels' whole-second Duration: from the channel's creation to a
    # second after it (baresip's start and the INVITE take seconds on a loaded machine, so the bound is the
    # channel as the test saw it, not the moment the test started the caller).
    offered = _ts(call["offered_at"])
    assert dialled_at - 0.5 <= offered <= channel_seen_at + 1.5, (
        call["offered_at"],
        dialled_at,
        channel_seen_at,
    )
    assert call["wait_s"] >= 11, call["wait_s"]
    wait_until(rig.forks, 10, "a media fork for the resumed call")
    rig.record("item8-outage-resync", (len(rig.proxy.connections) - 1, 0))
    caller.hangup()
    ended = rig.wait_intake_call("+420601000108", 20, state="abandoned")
    assert ended["end_reason"] == "abandoned"
