"""Fakes at the typed ports of intake.calls' collaborators (intake/ports.py), and an injected clock. Each
records what it was asked in one shared ``log`` so tests can check the order of effects."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from intake.bus import LiveEvent
from intake.desks import Offer
from intake.domain import (
    Call,
    CallerNumber,
    CallState,
    Incident,
    Location,
    TakerState,
    TranscriptSegment,
    settled_by_retry,
)
from intake.errors import NotFound, StorageError
from routing.types import Scored, TriageDecision, TriageInput
from routing.vocabulary import Agency, DeskCode, IncidentType
from telephony.events import EndReason

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds


@dataclass
class Effects:
    log: list[str] = field(default_factory=list)


class FakeStore:
    """Call records in memory; ``down`` makes every write fail as a lost database would."""

    def __init__(self, effects: Effects, calls: Iterable[Call] = ()) -> None:
        self.effects = effects
        self.calls: dict[str, Call] = {c.id: c for c in calls}
        self.segments: dict[str, list[TranscriptSegment]] = {}
        self.down = False

    def get_call(self, call_id: str) -> Call:
        if call_id not in self.calls:
            raise NotFound(f"call {call_id} not found")
        return self.calls[call_id]

    def find_call_by_ref(self, call_ref: str) -> Call | None:
        return next((c for c in self.calls.values() if c.call_ref == call_ref), None)

    def save_call(self, call: Call) -> None:
        if self.down:
            raise StorageError("database unavailable")
        self.calls[call.id] = call
        self.effects.log.append(f"save {call.id} {call.state.value}")

    def append_transcript(self, call_id: str, segment: TranscriptSegment) -> int:
        if self.down:
            raise StorageError("database unavailable")
        self.segments.setdefault(call_id, []).append(segment)
        return len(self.segments[call_id])

    def settle_refused_attempts(self, call_ref: str, taken_as: str, at: datetime) -> list[Call]:
        settled = []
        for call in self.calls.values():
            if (
                call.call_ref == call_ref
                and call.id != taken_as
                and call.end_reason == EndReason.REJECTED.value
                and call.answered_at is None
                and call.callback_done_at is None
            ):
                call.callback_done_at, call.callback_by = at, settled_by_retry(taken_as)
                settled.append(call)
        return settled

    def calls_in_states(self, states: Iterable[CallState]) -> list[Call]:
        wanted = set(states)
        return [c for c in self.calls.values() if c.state in wanted]

    def list_calls(self, *, since: datetime | None = None, limit: int = 50) -> tuple[list[Call], int]:
        found = [c for c in self.calls.values() if since is None or c.offered_at >= since][:limit]
        return found, len(found)


class FakeBus:
    def __init__(self, effects: Effects) -> None:
        self.effects = effects
        self.events: list[LiveEvent] = []

    async def publish(self, event: LiveEvent) -> None:
        self.events.append(event)
        self.effects.log.append(f"publish {event.type}")

    def kinds(self) -> list[str]:
        return [e.type for e in self.events]


class FakeLive:
    """Redis as the call service uses it: leases, active calls, node channel with reply lists."""

    def __init__(self, effects: Effects) -> None:
        self.effects = effects
        self.leases: dict[str, str] = {}
        self.active: dict[str, dict[str, object]] = {}
        self.published: list[tuple[str, dict[str, object]]] = []
        self.replies: dict[str, list[dict[str, object]]] = {}
        self.subscribers: dict[str, int] = {}
        self.queued: dict[str, str] = {}
        self.taker: dict[str, dict[str, object]] = {}
        self.on_publish: Callable[[str, dict[str, object]], Awaitable[None]] | None = None

    async def put_active_call(self, call_id: str, summary: dict[str, object]) -> None:
        self.active[call_id] = summary

    async def remove_active_call(self, call_id: str) -> None:
        self.active.pop(call_id, None)
        self.effects.log.append(f"inactive {call_id}")

    async def acquire_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        if self.leases.get(name, holder) != holder:
            return False
        self.leases[name] = holder
        return True

    async def lease_holder(self, name: str) -> str | None:
        return self.leases.get(name)

    async def subscriber_count(self, topic: str) -> int:
        return self.subscribers.get(topic, 0)

    async def publish(self, topic: str, event: dict[str, object]) -> None:
        self.published.append((topic, event))
        if self.on_publish is not None:
            await self.on_publish(topic, event)

    async def subscribe(self, topic: str) -> AsyncIterator[dict[str, object]]:
        for published_topic, event in list(self.published):
            if published_topic == topic:
                yield event

    async def send_reply(self, reply_to: str, reply: dict[str, object], ttl_ms: int) -> None:
        self.replies.setdefault(reply_to, []).append(reply)

    async def wait_reply(self, reply_to: str, timeout_s: float) -> dict[str, object] | None:
        waiting = self.replies.get(reply_to)
        return waiting.pop(0) if waiting else None

    async def taker_states(self) -> dict[str, dict[str, object]]:
        return self.taker

    async def set_taker_state(
        self, taker_id: str, state: str, since: datetime, data: dict[str, object] | None = None
    ) -> None:
        self.taker[taker_id] = {"state": state, **(data or {})}

    async def queued_desk(self, call_id: str) -> str | None:
        return self.queued.get(call_id)


class FakeDesks:
    def __init__(self, effects: Effects, live: FakeLive | None = None) -> None:
        self.effects = effects
        self.live = live
        self.on_offer: Callable[[Offer], Awaitable[None]] | None = None
        self.on_moved: Callable[[str, DeskCode, DeskCode], Awaitable[None]] | None = None
        self.on_reprioritised: Callable[[str, DeskCode, int, bool], Awaitable[None]] | None = None
        self.taker_state: dict[str, TakerState] = {}
        self.queue: dict[str, tuple[DeskCode, int, bool]] = {}

    @property
    def offer_timeout_seconds(self) -> float:
        return 20.0

    @property
    def wrap_up_seconds(self) -> float:
        return 0.0

    async def enqueue(
        self,
        call_id: str,
        desk: DeskCode,
        priority: int,
        arrival: datetime,
        front: bool,
        data: dict[str, object],
    ) -> None:
        self.queue[call_id] = (desk, priority, front)
        if self.live is not None:
            self.live.queued[call_id] = desk.value
        self.effects.log.append(f"enqueue {call_id} {desk.value} p{priority}{' front' if front else ''}")

    async def leave_queue(self, call_id: str, desk: DeskCode | None) -> None:
        self.queue.pop(call_id, None)
        self.effects.log.append(f"leave {call_id}")

    async def move(
        self, call_id: str, from_desk: DeskCode, to_desk: DeskCode, actor: str, reason: str
    ) -> None:
        self.effects.log.append(f"move {call_id} {from_desk.value}->{to_desk.value}")

    async def reprioritise(
        self, call_id: str, desk: DeskCode, priority: int, front: bool, actor: str
    ) -> None:
        self.queue[call_id] = (desk, priority, front)
        self.effects.log.append(f"reprioritise {call_id} p{priority}{' front' if front else ''}")

    async def set_taker_state(self, taker_id: str, target: TakerState, actor: str, reason: str = "") -> None:
        self.taker_state[taker_id] = target
        self.effects.log.append(f"taker {taker_id} {target.value} ({reason})")

    async def start_wrap_up(self, taker_id: str) -> None:
        self.taker_state[taker_id] = TakerState.WRAP_UP
        self.effects.log.append(f"wrap-up {taker_id}")


class FakeIncidents:
    def __init__(self, effects: Effects) -> None:
        self.effects = effects
        self.on_changed: Callable[[Incident], Awaitable[None]] | None = None
        self.incidents: dict[str, Incident] = {}
        self.locations: list[tuple[str, Location, str]] = []

    async def get(self, incident_id: str) -> Incident:
        return self.incidents[incident_id]

    async def open_for_call(self, call: Call, decision: TriageDecision) -> tuple[Incident, bool]:
        incident = Incident(
            id=f"KVK-{len(self.incidents) + 1}",
            incident_type=decision.incident_type.value,
            priority=decision.priority.value,
            tcpr=decision.tcpr.value,
            call_ids=[call.id],
        )
        self.incidents[incident.id] = incident
        self.effects.log.append(f"incident {incident.id}")
        return incident, False

    async def record_triage_update(self, incident_id: str, decision: TriageDecision) -> None:
        incident = self.incidents[incident_id]
        incident.priority = min(incident.priority, decision.priority.value)
        incident.tcpr = incident.tcpr or decision.tcpr.value

    async def create(
        self,
        actor: str,
        incident_type: IncidentType,
        priority: int,
        agencies: list[Agency],
        location: Location | None = None,
        note: str | None = None,
        call_id: str | None = None,
    ) -> Incident:
        incident = Incident(
            id=f"KVK-{len(self.incidents) + 1}",
            incident_type=incident_type,
            priority=priority,
            location=location,
            notes=[note] if note else [],
            call_ids=[call_id] if call_id else [],
            created_by=actor,
        )
        self.incidents[incident.id] = incident
        return incident

    async def add_location(self, incident_id: str, location: Location, actor: str) -> Incident:
        self.locations.append((incident_id, location, actor))
        return self.incidents.get(incident_id) or Incident(
            id=incident_id, incident_type=IncidentType.UNKNOWN, priority=2
        )


class ScriptedTriage:
    """Triage that answers with the next decision of a script (the last one repeats)."""

    def __init__(self, *decisions: TriageDecision) -> None:
        self._decisions = list(decisions)
        self.inputs: list[TriageInput] = []

    def decide(self, inp: TriageInput) -> TriageDecision:
        self.inputs.append(inp)
        return self._decisions.pop(0) if len(self._decisions) > 1 else self._decisions[0]


def decision(
    incident_type: IncidentType = IncidentType.MED_OTHER,
    priority: int = 2,
    tcpr: bool = False,
    desk: DeskCode = DeskCode.ZZS,
    unsure: bool = False,
) -> TriageDecision:
    return TriageDecision(
        agencies=(Scored(Agency.ZZS, 0.9),),
        incident_type=Scored(incident_type, 0.9),
        priority=Scored(priority, 0.9),
        tcpr=Scored(tcpr, 0.9),
        location=None,
        desk=desk,
        unsure=unsure,
        rules_version="test",
    )


def a_call(
    call_id: str = "c1",
    state: CallState = CallState.QUEUED,
    node: str = "node-a",
    source: str = "sip",
    caller: str = "+420603224590",
    desk: DeskCode = DeskCode.ZZS,
    offered_at: datetime = T0,
) -> Call:
    return Call(
        id=call_id,
        call_ref=f"ref-{call_id}",
        source=source,
        dialled="155",
        caller=CallerNumber(raw=caller, e164=caller, country="CZ", valid=True),
        state=state,
        offered_at=offered_at,
        desk=desk,
        node=node,
    )
