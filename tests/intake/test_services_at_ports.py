"""Desk routing, reports and the console's restore built directly from their collaborators, with small fakes
at their typed ports (intake/ports.py) and an injected clock: no Redis, no database."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from intake.bus import LiveEvent
from intake.console import ConsoleService
from intake.desks import DeskService, Offer
from intake.domain import (
    Call,
    CallerNumber,
    CallState,
    CallTaker,
    Incident,
    IncidentStatus,
    TakerState,
    TimelineEntry,
)
from intake.errors import LiveStateError, NotFound, PermissionDenied, ValidationFailed
from intake.live import LiveTaker, QueueEntry
from intake.reports import ReportService
from routing.vocabulary import DeskCode, IncidentType

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - T0).total_seconds()

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class FakeBus:
    def __init__(self) -> None:
        self.events: list[LiveEvent] = []

    async def publish(self, event: LiveEvent) -> None:
        self.events.append(event)


def a_call(
    call_id: str,
    state: CallState = CallState.QUEUED,
    desk: DeskCode = DeskCode.ZZS,
    taker_id: str | None = None,
    offered_at: datetime = T0,
    answered_at: datetime | None = None,
) -> Call:
    return Call(
        id=call_id,
        call_ref=f"ref-{call_id}",
        source="sip",
        dialled="155",
        caller=CallerNumber(raw="+420603224590"),
        state=state,
        offered_at=offered_at,
        answered_at=answered_at,
        desk=desk,
        taker_id=taker_id,
    )


# ------------------------------------------------------------------------------------ live taker record


def test_a_live_taker_record_is_read_one_way_and_a_damaged_one_reads_as_offline() -> None:
    busy = LiveTaker.of({"state": "busy", "since": T0.isoformat(), "call_id": "c1", "offered": True})
    assert busy == LiveTaker(TakerState.BUSY, T0, "c1", offered=True)
    assert busy.since_iso == T0.isoformat()
    assert LiveTaker.of(None) == LiveTaker(TakerState.OFFLINE)
    damaged = LiveTaker.of({"state": "on-the-moon", "since": "yesterday"})
    assert damaged.state is TakerState.OFFLINE and damaged.since is None


# ----------------------------------------------------------------------------------------------- desks


class FakeTakers:
    def __init__(self, *takers: CallTaker) -> None:
        self.takers = {t.id: t for t in takers}

    def upsert_taker(self, taker: CallTaker) -> None:
        self.takers[taker.id] = taker

    def get_taker(self, taker_id: str) -> CallTaker:
        if taker_id not in self.takers:
            raise NotFound(f"no call taker {taker_id}")
        return self.takers[taker_id]

    def list_takers(self) -> list[CallTaker]:
        return list(self.takers.values())


class FakeTakerStates:
    """Call takers' records as Redis keeps them; ``down`` makes reading fail as a lost Redis would."""

    def __init__(self, records: dict[str, dict[str, object]] | None = None) -> None:
        self.records: dict[str, dict[str, object]] = records or {}
        self.down = False

    async def taker_states(self) -> dict[str, dict[str, object]]:
        if self.down:
            raise LiveStateError("redis down")
        return self.records

    async def live_takers(self) -> dict[str, LiveTaker]:
        return {t: LiveTaker.of(r) for t, r in (await self.taker_states()).items()}

    async def set_taker_state(
        self, taker_id: str, state: str, since: datetime, data: dict[str, object] | None = None
    ) -> None:
        self.records[taker_id] = {**(data or {}), "state": state, "since": since.isoformat()}


class FakeDeskState(FakeTakerStates):
    """Desk queues and taker states in memory, with the store's claim rule: a call is dequeued once."""

    def __init__(self) -> None:
        super().__init__()
        self.queues: dict[str, list[QueueEntry]] = {d.value: [] for d in DeskCode}

    async def queued_desk(self, call_id: str) -> str | None:
        return next((d for d, q in self.queues.items() if any(e.call_id == call_id for e in q)), None)

    async def enqueue(
        self,
        desk: str,
        call_id: str,
        priority: int,
        arrival: datetime,
        front: bool = False,
        data: dict[str, object] | None = None,
    ) -> QueueEntry:
        entry = QueueEntry(call_id, desk, priority, front, arrival, dict(data or {}))
        self.queues[desk].append(entry)
        return entry

    async def dequeue_specific(self, desk: str, call_id: str) -> QueueEntry | None:
        for entry in self.queues[desk]:
            if entry.call_id == call_id:
                self.queues[desk].remove(entry)
                return entry
        return None

    async def queue(self, desk: str) -> list[QueueEntry]:
        return sorted(self.queues[desk], key=lambda e: e.sort_key)

    async def reprioritise(
        self, desk: str, call_id: str, priority: int, front: bool | None = None
    ) -> QueueEntry | None:
        return None

    async def move(
        self, call_id: str, from_desk: str, to_desk: str, priority: int | None = None
    ) -> QueueEntry | None:
        entry = await self.dequeue_specific(from_desk, call_id)
        if entry is None:
            return None
        moved = QueueEntry(entry.call_id, to_desk, entry.priority, entry.front, entry.arrival, entry.data)
        self.queues[to_desk].append(moved)
        return moved


def desks_with(*takers: CallTaker) -> tuple[DeskService, FakeDeskState, FakeBus, FakeClock]:
    live, bus, clock = FakeDeskState(), FakeBus(), FakeClock()
    service = DeskService(
        FakeTakers(*takers),
        live,
        bus,
        overflow_after=timedelta(seconds=60),
        wrap_up=timedelta(seconds=5),
        clock=clock,
    )
    return service, live, bus, clock


async def test_the_most_urgent_call_goes_to_a_speaker_of_the_callers_language() -> None:
    anna = CallTaker("anna", "Anna", (DeskCode.ZZS,), ("cs",))
    olena = CallTaker("olena", "Olena", (DeskCode.ZZS,), ("cs", "uk"))
    service, live, bus, clock = desks_with(anna, olena)
    offers: list[Offer] = []

    async def offered(offer: Offer) -> None:
        offers.append(offer)

    service.on_offer = offered
    await service.set_taker_state("olena", TakerState.AVAILABLE, "olena")
    clock.advance(5)
    await service.set_taker_state("anna", TakerState.AVAILABLE, "anna")  # idle shorter than Olena
    await live.enqueue("ZZS", "routine", 3, T0)
    await live.enqueue("ZZS", "urgent-uk", 1, T0 + timedelta(seconds=1), data={"language": "uk"})

    assert await service.dispatch() == [
        Offer("urgent-uk", "olena", DeskCode.ZZS, 1),
        Offer("routine", "anna", DeskCode.ZZS, 3),
    ]
    assert offers == [Offer("urgent-uk", "olena", DeskCode.ZZS, 1), Offer("routine", "anna", DeskCode.ZZS, 3)]
    assert (await live.live_takers())["olena"] == LiveTaker(
        TakerState.BUSY, clock.now(), "urgent-uk", offered=True
    )
    assert [e.type for e in bus.events].count("call.offered_to_taker") == 2


async def test_a_taker_state_change_outside_the_transition_table_is_refused() -> None:
    service, _, _, _ = desks_with(CallTaker("anna", "Anna", (DeskCode.ZZS,)))
    with pytest.raises(ValidationFailed):
        await service.set_taker_state("anna", TakerState.WRAP_UP, "anna")  # offline -> wrap-up
    with pytest.raises(NotFound):
        await service.set_taker_state("nobody", TakerState.AVAILABLE, "supervisor")


async def test_the_takers_list_shows_offline_when_redis_cannot_say() -> None:
    service, live, _, _ = desks_with(CallTaker("anna", "Anna", (DeskCode.ZZS,)))
    live.down = True
    [anna] = await service.takers()
    assert anna["state"] == "offline" and anna["since"] is None


async def test_queues_show_each_entrys_wait_on_the_injected_clock() -> None:
    service, live, _, clock = desks_with()
    await live.enqueue("HZS", "c1", 2, T0, data={"caller": "+420603224590"})
    clock.advance(12.34)
    queues = await service.queues()
    assert queues["HZS"] == [
        {
            "call_id": "c1",
            "priority": 2,
            "front": False,
            "arrival": T0.isoformat(),
            "wait_s": 12.3,
            "caller": "+420603224590",
        }
    ]


# --------------------------------------------------------------------------------------------- reports


class FakeRecords:
    """Stored calls, one incident and its timeline, as reports and the console's restore read them."""

    def __init__(self, calls: Iterable[Call], incident: Incident | None = None) -> None:
        self.calls = {c.id: c for c in calls}
        self.incident = incident or an_incident()
        self.timeline: list[tuple[str, str, str, dict[str, object]]] = []

    def list_calls(
        self,
        state: object = None,
        desk: object = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        abandoned_uncalled: bool = False,
        limit: int = 50,
        offset: int = 0,
        with_transcript: bool = False,
        scope_desks: Collection[str] | None = None,
        scope_taker: str | None = None,
    ) -> tuple[list[Call], int]:
        found = [
            c
            for c in self.calls.values()
            if (since is None or c.offered_at >= since) and (until is None or c.offered_at < until)
        ]
        return found[offset : offset + limit], len(found)

    def calls_in_states(self, states: Iterable[CallState]) -> list[Call]:
        wanted = set(states)
        return [c for c in self.calls.values() if c.state in wanted]

    def get_call(self, call_id: str) -> Call:
        return self.calls[call_id]

    def mark_called_back(self, call_id: str, by: str, at: datetime | None = None) -> Call:
        raise AssertionError("not used here")

    def get_incident(self, incident_id: str) -> Incident:
        return self.incident

    def list_incidents(
        self,
        status: object = None,
        agency: object = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
        with_timeline: bool = False,
    ) -> tuple[list[Incident], int]:
        return [], 0

    def append_timeline(
        self,
        incident_id: str,
        actor: str,
        action: str,
        data: Mapping[str, object] | None = None,
        at: datetime | None = None,
    ) -> TimelineEntry:
        self.timeline.append((incident_id, actor, action, dict(data or {})))
        return TimelineEntry(at=at or T0, actor=actor, action=action, data=dict(data or {}), seq=1)


def an_incident() -> Incident:
    return Incident(
        id="KVK-1",
        incident_type=IncidentType.MED_CARDIAC_ARREST,
        priority=1,
        status=IncidentStatus.ACTIVE,
        agencies=[],
        created_at=T0,
        updated_at=T0,
        created_by="triage",
    )


async def test_service_level_counts_on_the_injected_clock_and_leaves_out_short_abandons() -> None:
    calls = [
        a_call("fast", CallState.ENDED, answered_at=T0 + timedelta(seconds=4)),
        a_call("slow", CallState.ENDED, answered_at=T0 + timedelta(seconds=30)),
        a_call("waiting", CallState.QUEUED, offered_at=T0 + timedelta(seconds=10)),
    ]
    clock = FakeClock(T0 + timedelta(seconds=40))  # "waiting" has waited 30 s by now
    reports = ReportService(FakeRecords(calls), FakeBus(), clock)
    overall, per_desk = await reports.service_levels(T0 - timedelta(hours=1))
    assert overall.until == clock.now()
    assert (overall.answered, overall.answered_within_threshold, overall.waiting_over_threshold) == (2, 1, 1)
    assert overall.percent == round(100 / 3, 1)
    assert per_desk["ZZS"].offered == 3 and per_desk["HZS"].offered == 0


async def test_a_tcpr_milestone_is_timed_from_the_answer_and_announced() -> None:
    records = FakeRecords([a_call("c1", CallState.CONNECTED, answered_at=T0 + timedelta(seconds=10))])
    bus = FakeBus()
    reports = ReportService(records, bus, FakeClock(T0 + timedelta(seconds=75)))
    await reports.record_tcpr_milestone("KVK-1", "jana", "first_compression", call_id="c1")
    [(_, actor, action, data)] = records.timeline
    assert (actor, action, data["seconds_since_answer"]) == ("jana", "tcpr_first_compression", 65.0)
    [event] = bus.events
    assert event.type == "incident.updated" and event.data["tcpr_milestone"] == data
    with pytest.raises(ValueError):
        await reports.record_tcpr_milestone("KVK-1", "jana", "first_breath")


# --------------------------------------------------------------------------------------------- console


class FakeConsoleLive(FakeTakerStates):
    def __init__(self, records: dict[str, dict[str, object]]) -> None:
        super().__init__(records)
        self.drafts: dict[tuple[str, str], dict[str, object]] = {}

    async def console_seen(self, taker_id: str, session_id: str, ttl_ms: int) -> None:
        pass

    async def console_gone(self, taker_id: str, session_id: str) -> None:
        pass

    async def put_console_draft(
        self, taker_id: str, call_id: str, values: dict[str, object], ttl_ms: int
    ) -> None:
        self.drafts[(taker_id, call_id)] = values

    async def console_draft(self, taker_id: str, call_id: str) -> dict[str, object] | None:
        return self.drafts.get((taker_id, call_id))

    async def drop_console_draft(self, taker_id: str, call_id: str) -> None:
        self.drafts.pop((taker_id, call_id), None)


class FakeCalls:
    """The call service as a console reads it: calls by id; no session held on this node."""

    def __init__(self, calls: Iterable[Call]) -> None:
        self.calls = {c.id: c for c in calls}

    async def get(self, call_id: str) -> Call:
        if call_id not in self.calls:
            raise NotFound(f"call {call_id} not found")
        return self.calls[call_id]

    def session_by_id(self, call_id: str) -> None:
        return None

    def current_decision(self, call_id: str) -> None:
        return None


class FakeIncidentLookup:
    async def get(self, incident_id: str) -> Incident:
        return an_incident()


def console_of(
    calls: list[Call], records: dict[str, dict[str, object]]
) -> tuple[ConsoleService, FakeConsoleLive]:
    live = FakeConsoleLive(records)
    return ConsoleService(live, FakeRecords(calls), FakeCalls(calls), FakeIncidentLookup()), live


async def test_a_reloaded_console_gets_the_pending_offer_back() -> None:
    offered = a_call("c1", CallState.QUEUED, taker_id="anna")
    console, _ = console_of(
        [offered], {"anna": {"state": "busy", "since": T0.isoformat(), "call_id": "c1", "offered": True}}
    )
    work = await console.current_work("anna")
    assert (work.state, work.since, work.offer, work.call, work.notes) == (
        "busy",
        T0.isoformat(),
        offered,
        None,
        [],
    )


async def test_without_redis_the_database_says_which_call_the_taker_is_on() -> None:
    talking = a_call("c2", CallState.CONNECTED, taker_id="anna", answered_at=T0)
    talking.incident_id = "KVK-1"
    console, live = console_of([talking, a_call("c3", CallState.CONNECTED, taker_id="olga")], {})
    live.down = True
    work = await console.current_work("anna")
    assert work.state == "offline" and work.call is talking
    assert work.incident is not None and work.incident.id == "KVK-1"
    assert work.notes[0].startswith("live state unavailable")


async def test_a_form_draft_belongs_to_the_taker_of_the_call() -> None:
    mine = a_call("c1", CallState.CONNECTED, taker_id="anna")
    console, live = console_of([mine], {})
    await console.keep_draft("anna", "c1", {"street": "Nádražní"})
    assert live.drafts == {("anna", "c1"): {"street": "Nádražní"}}
    with pytest.raises(PermissionDenied):
        await console.keep_draft("olga", "c1", {"street": "jinde"})
    await console.keep_draft("anna", "c1", {})
    assert live.drafts == {}
