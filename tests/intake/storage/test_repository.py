"""Repository round trips: every domain field survives the database, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intake.domain import (
    AgencyStatus,
    Call,
    CallerNumber,
    CallState,
    CallTaker,
    IncidentStatus,
    LineType,
    Location,
    LocationSource,
    TakerState,
    TranscriptSegment,
)
from intake.errors import Conflict, IllegalTransition, NotFound, ValidationFailed
from intake.storage.repository import Repository, incident_version
from routing.vocabulary import Agency, DeskCode, IncidentType

T0 = datetime(2026, 3, 1, 8, 30, 15, 123000, tzinfo=UTC)


def a_location(**overrides: object) -> Location:
    values: dict[str, object] = {
        "source": LocationSource.AML_GNSS,
        "lat": 50.2305,
        "lon": 12.8711,
        "radius_m": 12.5,
        "confidence": 0.9,
        "municipality": "Karlovy Vary",
        "part": "Drahovice",
        "street": "Vítězná",
        "house_number": "12a",
        "landmark": "u mostu",
        "road": "I/6",
        "country": "CZ",
        "at": T0,
    }
    values.update(overrides)
    return Location(**values)  # type: ignore[arg-type]


def a_call(call_id: str = "call-1", **overrides: object) -> Call:
    values: dict[str, object] = {
        "id": call_id,
        "call_ref": f"sip-{call_id}@10.0.0.1",
        "source": "sip",
        "dialled": "155",
        "caller": CallerNumber("604123456", "+420604123456", "CZ", LineType.MOBILE, True),
        "state": CallState.ENDED,
        "offered_at": T0,
        "media_answered_at": T0 + timedelta(seconds=1),
        "answered_at": T0 + timedelta(seconds=9),
        "ended_at": T0 + timedelta(minutes=3),
        "end_reason": "caller hung up",
        "desk": DeskCode.ZZS,
        "taker_id": "taker-7",
        "language": "cs",
        "language_confidence": 0.97,
        "incident_id": None,
        "priority": 1,
        "tcpr": True,
        "location": a_location(),
        "channel": "PJSIP/trunk-00000012",
        "node": "node-a",
        "callback_done_at": None,
        "callback_by": None,
        "transcript": [
            TranscriptSegment(
                "caller", "Manžel nedýchá, je v bezvědomí", 0.5, 3.2, 0.82, "cs", (("manžel", 0.5, 0.9, 0.9),)
            ),
            TranscriptSegment("taker", "Kde jste?", 3.5, 4.0),
        ],
    }
    values.update(overrides)
    return Call(**values)  # type: ignore[arg-type]


def test_call_round_trips_every_field(repository: Repository) -> None:
    call = a_call()
    repository.save_call(call)
    assert repository.get_call(call.id) == call


def test_call_with_withheld_number_and_no_optional_fields_round_trips(repository: Repository) -> None:
    call = Call(
        id="c-min", call_ref="ref", source="ami", dialled="112", caller=CallerNumber(""), offered_at=T0
    )
    repository.save_call(call)
    loaded = repository.get_call("c-min")
    assert loaded == call
    assert loaded.offered_at.tzinfo is not None


def test_saving_a_call_again_updates_it_and_appends_only_new_transcript(repository: Repository) -> None:
    call = a_call(
        state=CallState.CONNECTED, ended_at=None, transcript=[TranscriptSegment("caller", "Hoří", 0, 1)]
    )
    repository.save_call(call)
    call.transcript.append(TranscriptSegment("caller", "v Sokolově", 1, 2))
    call.transition(CallState.ENDED, at=T0 + timedelta(minutes=2))
    repository.save_call(call)
    loaded = repository.get_call(call.id)
    assert loaded.state is CallState.ENDED
    assert [s.text for s in loaded.transcript] == ["Hoří", "v Sokolově"]


def test_transcript_written_both_ways_and_retried_is_stored_once(repository: Repository) -> None:
    call = a_call(transcript=[])
    repository.save_call(call)
    one, two, three = (TranscriptSegment("caller", f"věta {n}", n, n + 1) for n in range(3))
    call.transcript += [one, two]
    assert repository.append_transcript(call.id, one) == 1
    # appending `two` failed (database away); `three` got through; then the whole call is saved again
    call.transcript.append(three)
    assert repository.append_transcript(call.id, three) == 2
    repository.save_call(call)
    repository.save_call(call)
    assert repository.append_transcript(call.id, one) == 1
    assert [s.text for s in repository.get_call(call.id).transcript] == ["věta 0", "věta 2", "věta 1"]


def test_saving_a_stale_copy_of_a_call_keeps_its_incident_link_and_call_back(repository: Repository) -> None:
    stale = a_call(state=CallState.ABANDONED)
    repository.save_call(stale)
    incident = new_incident(repository, call_ids=[stale.id])
    repository.mark_called_back(stale.id, by="anna", at=T0)
    repository.save_call(stale)  # a node still holding the call from before
    stored = repository.get_call(stale.id)
    assert (stored.incident_id, stored.callback_by, stored.callback_done_at) == (incident.id, "anna", T0)


def test_append_transcript_numbers_segments(repository: Repository) -> None:
    repository.save_call(a_call(transcript=[]))
    assert repository.append_transcript("call-1", TranscriptSegment("caller", "jedna", 0, 1)) == 1
    assert repository.append_transcript("call-1", TranscriptSegment("caller", "dvě", 1, 2)) == 2
    assert [s.text for s in repository.get_call("call-1").transcript] == ["jedna", "dvě"]
    with pytest.raises(NotFound):
        repository.append_transcript("nope", TranscriptSegment("caller", "x", 0, 1))


def test_unknown_call_is_not_found(repository: Repository) -> None:
    with pytest.raises(NotFound):
        repository.get_call("missing")
    assert repository.find_call_by_ref("missing") is None


def test_find_call_by_ref(repository: Repository) -> None:
    repository.save_call(a_call())
    found = repository.find_call_by_ref("sip-call-1@10.0.0.1")
    assert found is not None and found.id == "call-1"


def test_list_calls_filters_and_counts(repository: Repository) -> None:
    for i in range(5):
        repository.save_call(
            a_call(
                f"c{i}",
                offered_at=T0 + timedelta(minutes=i),
                desk=DeskCode.HZS if i % 2 else DeskCode.ZZS,
                state=CallState.ABANDONED if i >= 3 else CallState.ENDED,
                transcript=[TranscriptSegment("caller", f"Hoří stodola číslo {i}", 0, 1)],
            )
        )
    calls, total = repository.list_calls()
    assert total == 5 and [c.id for c in calls] == ["c4", "c3", "c2", "c1", "c0"]
    assert calls[0].transcript == []  # lists stay light
    calls, total = repository.list_calls(limit=2, offset=1)
    assert total == 5 and [c.id for c in calls] == ["c3", "c2"]
    assert repository.list_calls(desk=DeskCode.HZS)[1] == 2
    assert repository.list_calls(state=CallState.ABANDONED)[1] == 2
    assert repository.list_calls(state=[CallState.ABANDONED, CallState.ENDED])[1] == 5
    assert repository.list_calls(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))[1] == 2
    # case and diacritics do not matter
    assert [c.id for c in repository.list_calls(text="STODOLA CISLO 2")[0]] == ["c2"]
    assert repository.list_calls(text="604123456")[1] == 5
    assert repository.list_calls(text="100%")[1] == 0
    repository.mark_called_back("c3", by="anna")
    uncalled, total = repository.list_calls(abandoned_uncalled=True)
    assert total == 1 and uncalled[0].id == "c4"


def test_a_refused_attempt_is_settled_when_the_same_invite_is_taken_elsewhere(repository: Repository) -> None:
    """Issue 13: a node refused the INVITE at its call limit (503, filed for call-back); the front tried the
    next node, which took it: the refusal stays on record, but nobody needs to call that caller back."""
    refused = {
        "state": CallState.ABANDONED,
        "answered_at": None,
        "end_reason": "rejected",
        "call_ref": "same-invite",
    }
    repository.save_call(a_call("refused-on-a", **refused))
    repository.save_call(a_call("other-call", **{**refused, "call_ref": "another-invite"}))
    repository.save_call(
        a_call("taken-on-b", state=CallState.QUEUED, answered_at=None, ended_at=None, call_ref="same-invite")
    )
    assert sorted(c.id for c in repository.list_calls(abandoned_uncalled=True)[0]) == [
        "other-call",
        "refused-on-a",
    ]

    assert [c.id for c in repository.settle_refused_attempts("same-invite", "taken-on-b", T0)] == [
        "refused-on-a"
    ]
    assert [c.id for c in repository.list_calls(abandoned_uncalled=True)[0]] == ["other-call"]
    settled = repository.get_call("refused-on-a")
    assert (
        settled.callback_done_at == T0
        and settled.callback_by is not None
        and "taken-on-b" in settled.callback_by
    )
    assert repository.settle_refused_attempts("same-invite", "taken-on-b", T0) == []  # once


def test_mark_called_back_keeps_the_first_call_back(repository: Repository) -> None:
    repository.save_call(a_call(state=CallState.ABANDONED))
    first = repository.mark_called_back("call-1", by="anna", at=T0)
    second = repository.mark_called_back("call-1", by="bob")
    assert first.callback_by == second.callback_by == "anna"
    assert second.callback_done_at == T0
    with pytest.raises(NotFound):
        repository.mark_called_back("nope", by="anna")


def test_calls_in_states_lists_queued_calls_oldest_first(repository: Repository) -> None:
    repository.save_call(a_call("late", state=CallState.QUEUED, offered_at=T0 + timedelta(seconds=5)))
    repository.save_call(a_call("early", state=CallState.QUEUED, offered_at=T0))
    repository.save_call(a_call("done", state=CallState.ENDED))
    assert [c.id for c in repository.calls_in_states([CallState.QUEUED])] == ["early", "late"]


# ------------------------------------------------------------------------------------------ incidents


def new_incident(repository: Repository, **overrides: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "region": "KVK",
        "incident_type": IncidentType.MED_CARDIAC_ARREST,
        "priority": 1,
        "agencies": [Agency.ZZS, Agency.HZS],
        "location": a_location(),
        "tcpr": True,
        "actor": "triage",
        "data": {"call_id": "call-1", "evidence": ["nedýchá"]},
    }
    args.update(overrides)
    return repository.create_incident(**args)  # type: ignore[arg-type]


def test_created_incident_gets_a_readable_id_and_a_created_entry(repository: Repository) -> None:
    incident = new_incident(repository, at=T0)
    assert incident.id == "KVK-2026-000001"
    assert incident.status is IncidentStatus.NEW
    assert incident.agency_codes == [Agency.ZZS, Agency.HZS]
    assert all(a.status is AgencyStatus.ALERTED for a in incident.agencies)
    assert incident.location == a_location()
    assert incident.location_history == [a_location()]
    assert incident.tcpr and incident.created_by == "triage" and incident.created_at == T0
    [created] = incident.timeline
    assert (created.seq, created.action, created.actor) == (1, "created", "triage")
    assert created.data["incident_type"] == "MED_CARDIAC_ARREST"
    assert created.data["evidence"] == ["nedýchá"]
    assert repository.get_incident(incident.id) == incident


def test_incident_numbers_count_per_region_and_year(repository: Repository) -> None:
    assert new_incident(repository, at=T0).id == "KVK-2026-000001"
    assert new_incident(repository, at=T0).id == "KVK-2026-000002"
    assert new_incident(repository, region="plk", at=T0).id == "PLK-2026-000001"
    assert new_incident(repository, at=datetime(2027, 1, 1, tzinfo=UTC)).id == "KVK-2027-000001"


def test_create_incident_rejects_bad_input(repository: Repository) -> None:
    with pytest.raises(ValidationFailed):
        new_incident(repository, priority=7)
    with pytest.raises(ValidationFailed):
        new_incident(repository, region="K-V")
    with pytest.raises(ValidationFailed):
        new_incident(repository, incident_type="EARTHQUAKE")


def test_create_incident_can_link_calls_in_the_same_transaction(repository: Repository) -> None:
    repository.save_call(a_call())
    incident = new_incident(repository, call_ids=["call-1"])
    assert incident.call_ids == ["call-1"]
    assert [e.action for e in incident.timeline] == ["created", "call_linked"]
    assert repository.get_call("call-1").incident_id == incident.id
    with pytest.raises(NotFound):
        new_incident(repository, call_ids=["missing"])
    # the failed creation used no number
    assert new_incident(repository).id.endswith("000002")


def test_update_incident_records_before_and_after(repository: Repository) -> None:
    incident = new_incident(repository)
    moved = a_location(
        source=LocationSource.CALL_TAKER, street="Sokolovská", house_number="5", lat=None, lon=None
    )
    updated = repository.update_incident(
        incident.id,
        "anna",
        "triage_corrected",
        {
            "incident_type": IncidentType.MED_UNCONSCIOUS,
            "priority": 2,
            "status": IncidentStatus.ACTIVE,
            "tcpr": False,
            "agencies_add": [Agency.PCR],
            "agencies_remove": [Agency.HZS],
            "agency_status": {Agency.ZZS: AgencyStatus.DISPATCHED},
            "location": moved,
            "note": "Pacient dýchá, zvrací",
            "confirmed_by": "anna",
        },
        data={"reason": "caller corrected"},
    )
    assert updated.incident_type is IncidentType.MED_UNCONSCIOUS
    assert updated.priority == 2 and updated.status is IncidentStatus.ACTIVE and not updated.tcpr
    assert {a.agency: a.status for a in updated.agencies} == {
        Agency.ZZS: AgencyStatus.DISPATCHED,
        Agency.PCR: AgencyStatus.ALERTED,
    }
    assert updated.location == moved and updated.location_history == [a_location(), moved]
    assert updated.notes == ["Pacient dýchá, zvrací"] and updated.confirmed_by == "anna"
    entry = updated.timeline[-1]
    assert (entry.seq, entry.actor, entry.action) == (2, "anna", "triage_corrected")
    assert entry.data["before"]["incident_type"] == "MED_CARDIAC_ARREST"
    assert entry.data["after"]["incident_type"] == "MED_UNCONSCIOUS"
    assert entry.data["before"]["priority"] == 1 and entry.data["after"]["priority"] == 2
    assert entry.data["before"]["status"] == "new" and entry.data["after"]["status"] == "active"
    assert entry.data["before"]["agencies"] == {"ZZS": "alerted", "HZS": "alerted"}
    assert entry.data["after"]["agencies"] == {"ZZS": "dispatched", "PCR": "alerted"}
    assert entry.data["before"]["location"]["street"] == "Vítězná"
    assert entry.data["after"]["location"]["street"] == "Sokolovská"
    assert entry.data["after"]["note"] == "Pacient dýchá, zvrací"
    assert entry.data["reason"] == "caller corrected"
    assert repository.get_incident(incident.id) == updated


def test_incident_status_transitions_are_checked(repository: Repository) -> None:
    incident = new_incident(repository)
    closed = repository.update_incident(incident.id, "anna", "closed", {"status": "closed"})
    assert closed.status is IncidentStatus.CLOSED and closed.closed_at is not None
    reopened = repository.update_incident(incident.id, "anna", "reopened", {"status": "active"})
    assert reopened.closed_at is None
    with pytest.raises(IllegalTransition):
        repository.update_incident(incident.id, "anna", "x", {"status": "new"})
    # a refused change leaves no trace
    assert len(repository.get_incident(incident.id).timeline) == 3


def test_update_incident_rejects_unknown_changes_and_stale_versions(repository: Repository) -> None:
    incident = new_incident(repository)
    with pytest.raises(ValidationFailed):
        repository.update_incident(incident.id, "anna", "x", {"colour": "red"})
    with pytest.raises(ValidationFailed):
        repository.update_incident(incident.id, "anna", "x", {"priority": 5})
    with pytest.raises(Conflict):
        repository.update_incident(incident.id, "anna", "x", {"agency_status": {"PCR": "acknowledged"}})
    version = incident_version(incident)
    updated = repository.update_incident(incident.id, "anna", "x", {"priority": 2}, expected_version=version)
    with pytest.raises(Conflict) as stale:
        repository.update_incident(incident.id, "bob", "y", {"priority": 3}, expected_version=version)
    assert stale.value.details["current_version"] == incident_version(updated)
    with pytest.raises(NotFound):
        repository.update_incident("KVK-2026-999999", "anna", "x", {"priority": 2})


def test_link_and_unlink_calls_are_on_the_timeline(repository: Repository) -> None:
    repository.save_call(a_call("c1"))
    repository.save_call(a_call("c2"))
    incident = new_incident(repository)
    repository.link_call(incident.id, "c1", "triage", "first call")
    linked = repository.link_call(incident.id, "c2", "anna", "same address")
    assert repository.link_call(incident.id, "c2", "anna", "again") == linked  # idempotent
    assert linked.call_ids == ["c1", "c2"]
    unlinked = repository.unlink_call(incident.id, "c2", "anna", "different event")
    assert unlinked.call_ids == ["c1"]
    assert repository.get_call("c2").incident_id is None
    assert [(e.action, e.data.get("call_id")) for e in unlinked.timeline[1:]] == [
        ("call_linked", "c1"),
        ("call_linked", "c2"),
        ("call_unlinked", "c2"),
    ]
    with pytest.raises(NotFound):
        repository.unlink_call(incident.id, "c2", "anna")
    with pytest.raises(NotFound):
        repository.link_call(incident.id, "missing", "anna")


def test_append_timeline_and_read_it_incrementally(repository: Repository) -> None:
    incident = new_incident(repository)
    entry = repository.append_timeline(
        incident.id, "triage", "triage_proposed", {"type": "MED_STROKE"}, at=T0
    )
    assert (entry.seq, entry.at, entry.data) == (2, T0, {"type": "MED_STROKE"})
    repository.append_timeline(incident.id, "hzs-gateway", "agency_acknowledged")
    assert [e.seq for e in repository.timeline(incident.id, after_seq=1)] == [2, 3]
    with pytest.raises(NotFound):
        repository.append_timeline("KVK-2026-999999", "x", "y")


def test_list_incidents_filters(repository: Repository) -> None:
    fire = new_incident(
        repository,
        incident_type=IncidentType.FIRE_BUILDING,
        agencies=[Agency.HZS],
        location=a_location(municipality="Chodov", street="Nádražní"),
        at=T0,
    )
    medical = new_incident(repository, agencies=[Agency.ZZS], at=T0 + timedelta(hours=1))
    repository.update_incident(medical.id, "anna", "note_added", {"note": "Žlutý dům za kostelem"})
    repository.update_incident(fire.id, "anna", "closed", {"status": "closed"})
    incidents, total = repository.list_incidents()
    assert total == 2 and [i.id for i in incidents] == [medical.id, fire.id]
    assert incidents[0].timeline == []
    assert repository.list_incidents(with_timeline=True)[0][0].timeline
    assert [i.id for i in repository.list_incidents(status="closed")[0]] == [fire.id]
    assert [i.id for i in repository.list_incidents(agency=Agency.HZS)[0]] == [fire.id]
    assert [i.id for i in repository.list_incidents(since=T0 + timedelta(minutes=30))[0]] == [medical.id]
    assert [i.id for i in repository.list_incidents(until=T0 + timedelta(minutes=30))[0]] == [fire.id]
    assert [i.id for i in repository.list_incidents(text="nadrazni")[0]] == [fire.id]
    assert [i.id for i in repository.list_incidents(text="ŽLUTÝ DŮM")[0]] == [medical.id]
    assert [i.id for i in repository.list_incidents(text=medical.id)[0]] == [medical.id]


def test_open_incidents_are_recent_and_not_closed(repository: Repository) -> None:
    old = new_incident(repository, at=T0 - timedelta(hours=5))
    recent = new_incident(repository, at=T0)
    closed = new_incident(repository, at=T0)
    repository.update_incident(closed.id, "anna", "closed", {"status": "closed"})
    found = repository.open_incidents(since=T0 - timedelta(minutes=30))
    assert [i.id for i in found] == [recent.id]
    assert old.id not in [i.id for i in found]


# -------------------------------------------------------------------------------- takers, users, API


def test_call_takers_round_trip(repository: Repository) -> None:
    taker = CallTaker(
        id="t1",
        name="Anna Nováková",
        desks=(DeskCode.ZZS, DeskCode.D112),
        languages=("cs", "de"),
        state=TakerState.AVAILABLE,
        state_since=T0,
        sip_uri="sip:anna@10.0.0.5",
        interface="PJSIP/anna",
        current_call_id="call-1",
    )
    repository.upsert_taker(taker)
    assert repository.get_taker("t1") == taker
    taker.state = TakerState.BUSY
    repository.upsert_taker(taker)
    repository.upsert_taker(CallTaker(id="t0", name="Bob", desks=(DeskCode.HZS,)))
    assert [t.id for t in repository.list_takers()] == ["t0", "t1"]
    assert repository.get_taker("t1").state is TakerState.BUSY
    repository.delete_taker("t0")
    with pytest.raises(NotFound):
        repository.get_taker("t0")


def test_users(repository: Repository) -> None:
    user = repository.create_user("anna", "$argon2id$hash", "call_taker")
    assert repository.get_user("anna") == user and user.active
    with pytest.raises(Conflict):
        repository.create_user("anna", "x", "admin")
    assert repository.get_user("nobody") is None
    updated = repository.update_user("anna", role="supervisor", active=False)
    assert (updated.role, updated.active) == ("supervisor", False)
    assert [u.username for u in repository.list_users()] == ["anna"]


def test_idempotency_keys_keep_the_first_response(repository: Repository) -> None:
    assert repository.get_idempotent("k1") is None
    first = repository.save_idempotent("k1", "POST", "/incidents", "h1", 201, '{"id": "KVK-2026-000001"}')
    second = repository.save_idempotent("k1", "POST", "/incidents", "h2", 201, '{"id": "other"}')
    assert second == first == repository.get_idempotent("k1")
    assert repository.purge_idempotent(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert repository.get_idempotent("k1") is None


def test_webhook_deliveries_are_queued_claimed_and_retried(repository: Repository) -> None:
    all_events = repository.create_webhook("https://a.example/hook", "s3cret", ["*"])
    created_only = repository.create_webhook("https://b.example/hook", "s2", ["incident.created"])
    repository.create_webhook("https://c.example/hook", "s3", ["*"], active=False)
    assert [w.id for w in repository.list_webhooks(active_only=True)] == [all_events.id, created_only.id]
    assert repository.enqueue_deliveries("1-0", "incident.created", {"id": "KVK-2026-000001"}, now=T0) == 2
    assert repository.enqueue_deliveries("1-0", "incident.created", {"id": "KVK-2026-000001"}, now=T0) == 0
    assert repository.enqueue_deliveries("2-0", "incident.updated", {"id": "KVK-2026-000001"}, now=T0) == 1
    due = repository.due_deliveries(T0, lease_s=60)
    assert [(d.url, d.event_id) for d in due] == [
        ("https://a.example/hook", "1-0"),
        ("https://b.example/hook", "1-0"),
        ("https://a.example/hook", "2-0"),
    ]
    assert due[0].secret == "s3cret" and due[0].payload == {"id": "KVK-2026-000001"}
    # claimed: another poller does not get them until the lease ends
    assert repository.due_deliveries(T0 + timedelta(seconds=30)) == []
    done = repository.mark_delivery(due[0].id, delivered=True, now=T0)
    assert (done.status, done.attempts) == ("delivered", 1)
    retry = repository.mark_delivery(
        due[1].id, delivered=False, error="HTTP 503", retry_at=T0 + timedelta(seconds=10)
    )
    assert (retry.status, retry.last_error) == ("pending", "HTTP 503")
    dead = repository.mark_delivery(due[2].id, delivered=False, error="HTTP 410")
    assert dead.status == "failed"
    again = repository.due_deliveries(T0 + timedelta(seconds=61))
    assert [d.id for d in again] == [due[1].id]
    assert {d.status for d in repository.list_deliveries(webhook_id=all_events.id)} == {"delivered", "failed"}
    repository.update_webhook(created_only.id, active=False)
    assert repository.due_deliveries(T0 + timedelta(hours=1)) == []
    repository.delete_webhook(all_events.id)
    with pytest.raises(NotFound):
        repository.get_webhook(all_events.id)


def test_database_answers_ping(repository: Repository) -> None:
    assert repository.ping()


def test_timeline_data_of_any_shape_is_stored_readably(repository: Repository) -> None:
    incident = new_incident(repository)
    entry = repository.append_timeline(
        incident.id,
        "triage",
        "triage_proposed",
        {
            "at": T0,
            "score": float("nan"),
            "agency": Agency.ZZS,
            "where": a_location(),
            "raw": b"x",
            "set": {1},
        },
    )
    stored = repository.timeline(incident.id, after_seq=1)[0]
    assert stored.data == entry.data
    assert (
        stored.data["at"] == T0.isoformat()
        and stored.data["score"] is None
        and stored.data["agency"] == "ZZS"
    )
    assert (
        stored.data["where"]["street"] == "Vítězná"
        and stored.data["raw"] == "x"
        and stored.data["set"] == [1]
    )


def test_database_failures_surface_as_storage_errors(tmp_path: object) -> None:
    from intake.errors import StorageError
    from intake.storage.database import Database

    unreachable = Database("postgresql+psycopg://nobody@/izs?host=/nonexistent-dir&connect_timeout=1")
    unmigrated = Database(f"sqlite:///{tmp_path}/empty.db")
    try:
        for database in (unreachable, unmigrated):
            repository = Repository(database)
            assert repository.ping() is (database is unmigrated)
            with pytest.raises(StorageError) as failure:
                repository.get_call("c1")
            assert failure.value.__cause__ is not None
            with pytest.raises(StorageError):
                repository.save_call(a_call())
            with pytest.raises(StorageError):
                new_incident(repository)
    finally:
        unreachable.dispose()
        unmigrated.dispose()


@given(st.text(max_size=30))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_search_text_is_taken_literally(repository: Repository, text: str) -> None:
    # wildcards, quotes, backslashes and odd Unicode are searched for as they are, never as SQL
    if "\x00" in text:  # PostgreSQL text cannot hold NUL; the API rejects it before it gets here
        return
    calls, total = repository.list_calls(text=text)
    assert total == len(calls)
    incidents, total = repository.list_incidents(text=text)
    assert total == len(incidents)


def test_search_wildcards_match_only_themselves(repository: Repository) -> None:
    repository.save_call(a_call("c1", transcript=[TranscriptSegment("caller", "sleva 100% na_vše", 0, 1)]))
    repository.save_call(a_call("c2", transcript=[TranscriptSegment("caller", "sleva 1000 navše", 0, 1)]))
    assert [c.id for c in repository.list_calls(text="100%")[0]] == ["c1"]
    assert [c.id for c in repository.list_calls(text="na_vse")[0]] == ["c1"]
