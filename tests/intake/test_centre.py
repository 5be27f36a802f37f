"""The centre wired end to end in one process, on the real database and a real Redis, without SIP:
adapter events go in through ``CallService.submit`` exactly as the SIP endpoint and AMI bridge send them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.waiting import eventually

from intake.app import Centre
from intake.bus import LiveEvent
from intake.domain import CallState, IncidentStatus, TakerState
from intake.errors import ValidationFailed
from intake.settings import TakerConfig, load_settings
from telephony.events import CallEnded, CallOffered, CallSource, EcallFacts, EndReason, GeoFix
from transcription.events import TranscriptFinal

CARDIAC_ARREST = (
    "Dobrý den, můj manžel se zhroutil v kuchyni, nereaguje a nedýchá, jenom tak divně chrčí. "
    "Jsme v Sokolově, Husitská dvanáct."
)


def settings_for(var_dir: Path, database_url: str, redis_url: str | None, node: str | None = None) -> Any:
    return load_settings(
        **({"node_id": node} if node else {}),
        var_dir=var_dir,
        database_url=database_url,
        redis_url=redis_url,
        sip_enabled=False,
        transcription_enabled=False,
        wrap_up_s=0.2,
        takers=[
            TakerConfig(id="jana", name="Jana", desks=["ZZS", "112"], languages=["cs", "de"]),
            TakerConfig(id="petr", name="Petr", desks=["PCR"], languages=["cs"]),
        ],
    )


@pytest.fixture
async def centre(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[Centre]:
    centre = await Centre.start(settings_for(tmp_path, database_url, redis_url), with_telephony=False)
    await centre.live.clear()  # the session's Redis is shared by the tests: start from empty queues
    try:
        yield centre
    finally:
        await centre.stop()


async def collect(centre: Centre, into: list[LiveEvent], subscribed: asyncio.Event) -> None:
    subscribed.set()  # whoever waits on it resumes only once this task suspends inside the subscription
    async for event in centre.bus.subscribe():
        into.append(event)


def offer(
    ref: str, dialled: str = "150", caller: str = "+420603224590", source: CallSource = CallSource.SIP
) -> CallOffered:
    return CallOffered(call_ref=ref, dialled=dialled, caller=caller, source=source)


async def queued_ids(centre: Centre, desk: str) -> list[str]:
    return [e.call_id for e in await centre.live.queue(desk)]


async def test_offered_call_is_recorded_and_queued_on_the_desk_of_the_dialled_number(centre: Centre):
    centre.calls.submit(offer("ref-1", dialled="158"))
    call = await eventually(lambda: _call_by_ref(centre, "ref-1"))
    assert call.caller.e164 == "+420603224590"
    assert call.caller.country == "CZ"
    await eventually(lambda: _is_state(centre, call.id, CallState.QUEUED))
    assert call.id in await eventually(lambda: queued_ids(centre, "PCR"))


async def test_heart_attack_on_150_goes_to_the_medical_desk_first_with_an_incident_flagged_for_tcpr(
    centre: Centre,
):
    events: list[LiveEvent] = []
    subscribed = asyncio.Event()
    listener = asyncio.create_task(collect(centre, events, subscribed))
    await subscribed.wait()
    centre.calls.submit(offer("ref-early", dialled="155", caller="+420724380915"))
    early = await eventually(lambda: _call_by_ref(centre, "ref-early"))
    centre.calls.submit(offer("ref-ca", dialled="150"))
    call = await eventually(lambda: _call_by_ref(centre, "ref-ca"))
    centre.calls.submit(
        TranscriptFinal(call_ref="ref-ca", leg="caller", text=CARDIAC_ARREST, start_s=0, end_s=9)
    )

    async def flagged() -> Any:
        current = await centre.calls.get(call.id)
        return current if current.tcpr and current.incident_id else None

    current = await eventually(flagged)
    assert current.desk.value == "ZZS"
    queue = await eventually(lambda: queued_ids(centre, "ZZS"))
    assert queue[0] == call.id, "a suspected cardiac arrest waits in front of an earlier call"
    assert early.id in queue
    incident = await centre.incidents.get(current.incident_id)
    assert incident.id.startswith("KVK-")
    assert incident.tcpr
    assert incident.status is IncidentStatus.NEW
    assert call.id in incident.call_ids
    triage_events = [e for e in events if e.type == "triage.updated" and e.call_id == call.id]
    assert triage_events, "consoles are told about triage"
    evidence_words = [w for ev in triage_events[-1].data["tcpr"]["evidence"] for w in ev["words"]]
    assert evidence_words, "the T-CPR flag names the words that raised it"
    listener.cancel()


async def test_available_call_taker_gets_the_call_and_correction_stays_beside_the_proposal(centre: Centre):
    centre.calls.submit(offer("ref-2", dialled="155"))
    call = await eventually(lambda: _call_by_ref(centre, "ref-2"))
    centre.calls.submit(
        TranscriptFinal(call_ref="ref-2", leg="caller", text=CARDIAC_ARREST, start_s=0, end_s=9)
    )
    await eventually(lambda: _has_incident(centre, call.id))
    await centre.desks.set_taker_state("jana", TakerState.AVAILABLE, actor="jana")
    offered = await eventually(lambda: _taker_of(centre, call.id))
    assert offered == "jana"
    connected = await centre.calls.accept(call.id, "jana")
    assert connected.state is CallState.CONNECTED
    assert call.id not in await queued_ids(centre, "ZZS")
    incident = await centre.incidents.confirm(
        connected.incident_id, "jana", {"priority": 1, "note": "CPR started"}
    )
    assert incident.confirmed_by == "jana"
    assert incident.status is IncidentStatus.ACTIVE
    review = [t for t in incident.timeline if t.action == "triage_review"]
    assert review and review[0].actor == "jana"
    assert "proposed" in review[0].data and "corrections" in review[0].data
    centre.calls.submit(CallEnded(call_ref="ref-2", reason=EndReason.CALLER_HANGUP))
    ended = await eventually(lambda: _is_state(centre, call.id, CallState.ENDED))
    assert ended
    states = await eventually(lambda: _taker_state(centre, "jana", TakerState.AVAILABLE.value), timeout=5)
    assert states


async def test_caller_hanging_up_while_queued_is_listed_as_abandoned_for_call_back(centre: Centre):
    centre.calls.submit(offer("ref-3", dialled="158"))
    call = await eventually(lambda: _call_by_ref(centre, "ref-3"))
    await eventually(lambda: queued_ids(centre, "PCR"))
    centre.calls.submit(CallEnded(call_ref="ref-3", reason=EndReason.CALLER_HANGUP))
    await eventually(lambda: _is_state(centre, call.id, CallState.ABANDONED))
    abandoned, _ = await asyncio.to_thread(centre.repo.list_calls, abandoned_uncalled=True)
    assert call.id in [c.id for c in abandoned]
    assert call.id not in await queued_ids(centre, "PCR")


async def test_restart_keeps_queued_calls_and_records(tmp_path: Path, database_url: str):
    """Embedded defaults: the app owns its Redis (persistence on) and a database; a restart loses nothing.
    The calls are held by a PBX (AMI), which keeps them while intake restarts."""
    settings = settings_for(tmp_path, database_url, redis_url=None)
    first = await Centre.start(settings, with_telephony=False)
    try:
        await first.live.clear()
        first.calls.submit(offer("ref-r1", dialled="155", source=CallSource.AMI))
        first.calls.submit(offer("ref-r2", dialled="158", source=CallSource.AMI))
        call1 = await eventually(lambda: _call_by_ref(first, "ref-r1"))
        call2 = await eventually(lambda: _call_by_ref(first, "ref-r2"))
        await eventually(lambda: queued_ids(first, "ZZS"))
        await eventually(lambda: queued_ids(first, "PCR"))
    finally:
        await first.stop()
    second = await Centre.start(settings, with_telephony=False)
    try:
        assert call1.id in await queued_ids(second, "ZZS")
        assert call2.id in await queued_ids(second, "PCR")
        active = {c["id"] for c in await second.live.active_calls()}
        assert {call1.id, call2.id} <= active
        stored = await asyncio.to_thread(second.repo.get_call, call1.id)
        assert stored.state is CallState.QUEUED
    finally:
        await second.stop()


async def test_sip_calls_queued_when_the_node_died_are_listed_for_call_back_after_restart(
    tmp_path: Path, database_url: str, redis_url: str
):
    """The SIP media died with the process: after a restart those callers are not offered to anybody (they
    are gone) but listed as abandoned for call-back, and the queue holds no ghost."""
    settings = settings_for(tmp_path, database_url, redis_url)
    first = await Centre.start(settings, with_telephony=False)
    await first.live.clear()
    first.calls.submit(offer("ref-lost", dialled="158"))
    lost = await eventually(lambda: _call_by_ref(first, "ref-lost"))
    await eventually(lambda: queued_ids(first, "PCR"))
    # No orderly hang-up: the process dies (its workers and tasks are simply gone).
    await first.calls.close()
    await first.stop()
    second = await Centre.start(settings, with_telephony=False)
    try:
        call = await asyncio.to_thread(second.repo.get_call, lost.id)
        assert call.state is CallState.ABANDONED
        assert call.end_reason == "node_lost"
        assert lost.id not in await queued_ids(second, "PCR")
        abandoned, _ = await asyncio.to_thread(second.repo.list_calls, abandoned_uncalled=True)
        assert lost.id in [c.id for c in abandoned]
    finally:
        await second.stop()


# ------------------------------------------------------------------------------------------ helpers


async def _call_by_ref(centre: Centre, ref: str) -> Any:
    return await asyncio.to_thread(centre.repo.find_call_by_ref, ref)


async def _is_state(centre: Centre, call_id: str, state: CallState) -> bool:
    call = await asyncio.to_thread(centre.repo.get_call, call_id)
    return call.state is state


async def _has_incident(centre: Centre, call_id: str) -> bool:
    call = await centre.calls.get(call_id)
    return call.incident_id is not None


async def _taker_of(centre: Centre, call_id: str) -> str | None:
    call = await centre.calls.get(call_id)
    return call.taker_id


async def _taker_state(centre: Centre, taker_id: str, state: str) -> bool:
    states = await centre.live.taker_states()
    return bool(states.get(taker_id, {}).get("state") == state)


async def test_ecall_opens_a_traffic_accident_with_the_vehicle_facts_before_anyone_speaks(centre: Centre):
    facts = EcallFacts(
        msd_hex="00ff",
        automatic_activation=True,
        test_call=False,
        position_trusted=True,
        vehicle_type="passenger car (M1)",
        vin="TMBJJ7NE1L0123456",
        propulsion=("diesel",),
        passengers=3,
    )
    centre.calls.submit(
        CallOffered(
            call_ref="ref-ecall",
            dialled="112",
            caller="+420603111222",
            source=CallSource.SIP,
            location=GeoFix(source="ecall", lat=50.23112, lon=12.87234, radius_m=150, confidence=0.95),
            ecall=facts,
        )
    )
    call = await eventually(lambda: _call_by_ref(centre, "ref-ecall"))
    await eventually(lambda: _has_incident(centre, call.id))
    current = await centre.calls.get(call.id)
    incident = await centre.incidents.get(current.incident_id)
    assert incident.incident_type.value == "TRAFFIC_ACCIDENT"
    assert incident.priority == 1
    assert {a.value for a in incident.agency_codes} >= {"ZZS", "PCR"}
    assert any("TMBJJ7NE1L0123456" in note and "3 occupants" in note for note in incident.notes)
    assert current.location is not None and current.location.source.value == "ecall"


async def test_aml_sms_is_matched_to_the_callers_call_and_outranks_the_spoken_place(centre: Centre):
    centre.calls.submit(offer("ref-aml", dialled="155", caller="+420603224590"))
    call = await eventually(lambda: _call_by_ref(centre, "ref-aml"))
    centre.calls.submit(
        TranscriptFinal(
            call_ref="ref-aml", leg="caller", text="Jsme v Sokolově, manžel nedýchá.", start_s=0, end_s=3
        )
    )
    from datetime import UTC, datetime

    top = datetime.now(UTC).strftime("%Y%m%d%H%M%S")  # a fix taken now: fresh fixes win the fusion
    sms = (
        f'A"ML=1;lt=+50.17390;lg=+12.64030;rd=12;top={top};lc=68;pm=G;'
        "si=230031234567890;ei=356938035643809;mcc=230;mnc=03;ml=124"
    )
    result = await centre.calls.report_aml("+420603224590", sms)
    assert result["matched"] and result["call_id"] == call.id and result["position"]

    async def located() -> Any:
        current = await centre.calls.get(call.id)
        return current.location if current.location and current.location.source.value == "aml-gnss" else None

    location = await eventually(located)
    assert location.radius_m == 12

    unmatched = await centre.calls.report_aml("+420777000111", sms)
    assert unmatched["matched"] is False
    with pytest.raises(ValidationFailed):
        await centre.calls.report_aml("+420603224590", 'A"ML=1;lt=+95.0;lg=+12.6;ml=20')


async def test_a_call_whose_media_still_arrives_is_not_reaped_when_its_node_misses_a_heartbeat(
    tmp_path: Path, database_url: str, redis_url: str
):
    """Issue 13: a missing heartbeat alone is no proof that a node's calls are lost. While the holding node
    still listens on its command channel, or renews the call's media lease (its caller still sends RTP),
    the call stays; once neither is true, it is reaped for call-back."""
    from intake.calls import media_lease

    holder = await Centre.start(
        settings_for(tmp_path / "a", database_url, redis_url, node="node-a"), with_telephony=False
    )
    reaper: Centre | None = None
    try:
        await holder.live.clear()
        holder.calls.submit(offer("ref-alive", dialled="158"))
        call = await eventually(lambda: _call_by_ref(holder, "ref-alive"))
        reaper = await Centre.start(
            settings_for(tmp_path / "b", database_url, redis_url, node="node-b"), with_telephony=False
        )
        tasks = {task.get_name(): task for task in holder._tasks}

        # node-a's heartbeat stops (as when its loop stalled) but it still listens for commands: not dead.
        tasks["liveness"].cancel()
        await asyncio.wait([tasks["liveness"]])
        await holder.live.release_lease("node:node-a", "node-a")
        assert await reaper.calls.reap_lost_calls() == []

        # node-a no longer listens, but the call's media still arrives there (its media lease is held).
        tasks["node-commands"].cancel()
        await asyncio.wait([tasks["node-commands"]])

        async def unsubscribed() -> bool:
            return await holder.live.subscriber_count("node:node-a") == 0

        await eventually(unsubscribed)
        await holder.live.acquire_lease(media_lease(call.id), "node-a", 10_000)
        assert await reaper.calls.reap_lost_calls() == []
        stored = await asyncio.to_thread(reaper.repo.get_call, call.id)
        assert stored.state is CallState.QUEUED and stored.end_reason is None

        # Neither heartbeat, nor media, nor anybody on its channel: the call is lost, listed for call-back.
        await holder.live.release_lease(media_lease(call.id), "node-a")

        async def reaped() -> Any:
            await reaper.calls.reap_lost_calls()
            found = await asyncio.to_thread(reaper.repo.get_call, call.id)
            return found if found.state is CallState.ABANDONED else None

        stored = await eventually(reaped)
        assert stored.end_reason == "node_lost"
    finally:
        if reaper is not None:
            await reaper.stop()
        await holder.stop()
