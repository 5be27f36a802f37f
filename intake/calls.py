"""The life of one call in the centre: telephony events in, the call record, transcript, triage, queue and
incident kept current, and every change announced.

Adapters call :meth:`CallService.submit` from their own threads; everything else runs on the event loop,
one ordered stream of events per call. Audio frames skip that stream and go straight to transcription,
which never blocks.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from intake.bus import EventBus, LiveEvent
from intake.desks import DeskService, Offer
from intake.domain import (
    Call,
    CallState,
    CallTriage,
    Incident,
    Location,
    LocationSource,
    TakerState,
    TranscriptSegment,
    utc_now,
)
from intake.errors import (
    Conflict,
    IllegalTransition,
    LiveStateError,
    NotFound,
    StorageError,
    ValidationFailed,
)
from intake.incidents import IncidentService
from intake.journal import CallJournal
from intake.location import (
    PlaceGazetteer,
    fuse,
    location_from_caller_country,
    location_from_geofix,
    location_from_spoken,
    match_call_for_sms,
)
from intake.logs import call_context
from intake.metrics import Metrics
from intake.numbers import parse_caller_number
from intake.ports import CallControl, Recorder, Transcriber
from intake.serialize import call_json, decision_json, decision_summary, location_json
from routing.acd import is_front
from routing.safety import carry_forward
from routing.types import TriageDecision, TriageInput
from routing.vocabulary import DESK_BY_DIALLED, Agency, DeskCode, IncidentType
from telephony.errors import AdapterError
from telephony.events import (
    LOCATION_REFUSED_HEADER,
    AdapterStatus,
    AudioFrame,
    CallAnswered,
    CallConnected,
    CallEnded,
    CallOffered,
    CallQueued,
    DtmfReceived,
    EndReason,
    GeoFix,
    LocationReported,
    TelephonyEvent,
)
from telephony.location import AmlError, decode_aml
from transcription.events import (
    GAP_ENGINE,
    LanguageDetected,
    TranscriptEvent,
    TranscriptFinal,
    TranscriptionFailed,
    TranscriptPartial,
)

log = logging.getLogger(__name__)

PARTIAL_PUBLISH_INTERVAL_S = 0.15  # consoles need no more than ~7 partials a second per call
# How long an ended call waits for its last transcript segments: as long as the decoder makes progress (no
# progress for FLUSH_STALL_S gives up), at most FLUSH_BASE_S plus FLUSH_PER_BACKLOG_S per second of audio the
# decoder still held when the call ended. A final that comes even later is still stored (_store_late_final).
FLUSH_STALL_S = 10.0
FLUSH_BASE_S = 20.0
FLUSH_PER_BACKLOG_S = 3.0
RECENT_REFS = 2000  # ended calls remembered by call_ref, for transcript segments that arrive after them
MEDIA_RECENT_S = 3.0  # a caller leg with audio this recent is alive
MEDIA_LEASE_MS = 6_000  # a call's media lease outlives its last renewal (every second) by a few missed beats


def wait_flushed(
    pending: list[tuple[Any, Callable[[], float]]],
    backlog_s: float,
    stall_s: float = FLUSH_STALL_S,
    base_s: float = FLUSH_BASE_S,
    per_backlog_s: float = FLUSH_PER_BACKLOG_S,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Wait for every (flush event, progress reading) pair: as long as some progress reading grows within
    ``stall_s``, bounded by ``base_s + per_backlog_s * backlog_s`` in all. True when all flushed."""
    start = clock()
    limit = start + base_s + per_backlog_s * max(0.0, backlog_s)
    last_progress = [progress() for _, progress in pending]
    last_change = start
    while True:
        waiting = [i for i, (event, _) in enumerate(pending) if not event.is_set()]
        if not waiting:
            return True
        now = clock()
        if now >= limit or now - last_change >= stall_s:
            return False
        pending[waiting[0]][0].wait(min(0.5, max(0.0, limit - now)))
        for i, (_, progress) in enumerate(pending):
            reading = progress()
            if reading != last_progress[i]:
                last_progress[i], last_change = reading, clock()


def new_call_id() -> str:
    return uuid.uuid4().hex


def urgent_front(decision: TriageDecision | None) -> bool:
    """Suspected cardiac arrest or people trapped: the front of the queue (routing's ACD rule)."""
    return decision is not None and is_front(decision)


@dataclass
class CallSession:
    """Per-call working state on the node that holds the call's media. A cache of the database record,
    never the only copy of anything that matters."""

    call: Call
    inbox: asyncio.Queue[TelephonyEvent | TranscriptEvent] = field(default_factory=asyncio.Queue)
    finals: list[str] = field(default_factory=list)
    partial: str = ""
    decision: TriageDecision | None = None
    last_partial_sent: float = 0.0
    speech_s: float = 0.0
    worker: asyncio.Task[None] | None = None
    legs_open: set[str] = field(default_factory=set)
    flushing: list[tuple[Any, Callable[[], float]]] = field(default_factory=list)
    flush_backlog_s: float = 0.0
    offered_at: float | None = (
        None  # monotonic time the call was offered to call.taker_id  # close_leg() completions: finals still to come
    )
    no_transcript: bool = False
    last_media_at: float | None = None  # monotonic time of the caller's last audio frame
    end_pending: bool = False  # the adapter has already ended the call (its CallEnded waits in the inbox)
    locations: list[Location] = field(default_factory=list)  # every position reported, in arrival order

    @property
    def caller_text(self) -> str:
        return " ".join([*self.finals, self.partial]).strip()


class CallService:
    def __init__(
        self,
        repo: Any,
        live: Any | None,
        bus: EventBus,
        desks: DeskService,
        incidents: IncidentService,
        triage: Any,
        node: str,
        transcriber: Transcriber | None = None,
        prompt: tuple[bytes, int] | None = None,
        taker_uri: Callable[[str], str | None] | None = None,
        metrics: Metrics | None = None,
        places: PlaceGazetteer | None = None,
        journal: CallJournal | None = None,
        takers_by_interface: dict[str, str] | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self._recorder = recorder
        self._takers_by_interface = dict(takers_by_interface or {})
        self._journal = journal
        self._journaled: set[str] = set()
        self._metrics = metrics or Metrics()
        self._places = places
        self._repo = repo
        self._live = live
        self._bus = bus
        self._desks = desks
        self._incidents = incidents
        self._triage = triage
        self._node = node
        self._transcriber = transcriber
        self._prompt = prompt
        self._taker_uri = taker_uri or (lambda _taker_id: None)
        self._controls: dict[str, CallControl] = {}
        self._sessions: dict[str, CallSession] = {}  # by call_ref
        self._refs_by_id: dict[str, str] = {}
        self._aliases: dict[str, str] = {}  # media-fork call_ref / channel -> the call's call_ref
        self._fork_refs: set[str] = set()  # call_refs of media-fork legs (PBX mode)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._incident_retry: dict[str, tuple[Call, TriageDecision]] = {}
        self._incident_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        # call_ref (and media-fork aliases) -> call id of calls already let go: a transcript segment that
        # arrives after its call is stored on that call, never dropped as "unknown".
        self._recent_refs: dict[str, str] = {}
        self._late_finals = asyncio.Lock()  # late segments are stored one at a time, in arrival order
        self.adapter_health: dict[str, AdapterStatus] = {}
        desks.on_offer = self._on_offer
        incidents.on_changed = self._follow_incident_change
        desks.on_moved = self._on_desk_moved
        desks.on_reprioritised = self._on_reprioritised

    # --------------------------------------------------------------------------- wiring

    def attach(self, source: str, control: CallControl) -> None:
        """Register the adapter that holds calls from ``source`` ("sip" / "ami")."""
        self._controls[source] = control

    def use_transcriber(self, transcriber: Transcriber) -> None:
        self._transcriber = transcriber

    def use_recorder(self, recorder: Recorder) -> None:
        self._recorder = recorder

    def use_prompt(self, prompt: tuple[bytes, int]) -> None:
        """The greeting a queued caller hears (PCM, sample rate)."""
        self._prompt = prompt

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def submit(self, event: TelephonyEvent | TranscriptEvent) -> None:
        """Thread-safe entry for adapters and transcription workers. Never blocks the caller."""
        loop = self._loop
        if loop is None or loop.is_closed():
            log.error("event dropped before start: %r", type(event).__name__)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._route(event)
        else:
            loop.call_soon_threadsafe(self._route, event)

    def _route(self, event: TelephonyEvent | TranscriptEvent) -> None:
        if isinstance(event, AudioFrame):
            self._feed_audio(event)
            return
        if isinstance(event, AdapterStatus):
            self.adapter_health[event.adapter] = event
            self._background(
                self._bus.publish(
                    LiveEvent(
                        "component.health",
                        {"component": event.adapter, "healthy": event.healthy, "detail": event.detail},
                    )
                )
            )
            return
        if isinstance(event, CallOffered) and event.fork_of:
            self._aliases[event.call_ref] = self._aliases.get(event.fork_of, event.fork_of)
            self._fork_refs.add(event.call_ref)
            return
        if event.call_ref in self._fork_refs:
            # A media fork's own signalling is not the call's: its end is logged (the PBX adapter forks
            # again while the caller is there); how the call ends is decided from the caller's channel only.
            if isinstance(event, CallEnded):
                self._fork_refs.discard(event.call_ref)
                call_ref = self._aliases.pop(event.call_ref, None)
                log.info("media fork %s of call %s ended (%s)", event.call_ref, call_ref, event.reason.value)
            return
        ref = self._aliases.get(event.call_ref, event.call_ref)
        session = self._sessions.get(ref)
        if session is None:
            if isinstance(event, TranscriptFinal):
                self._background(self._store_late_final(event))
                return
            if isinstance(event, TranscriptPartial):
                return  # a hypothesis for a call already let go: its final, if any, is stored
            if not isinstance(event, CallOffered):
                log.warning("event %s for unknown call %s ignored", type(event).__name__, event.call_ref)
                return
            session = self._new_session(event)
        if isinstance(event, CallEnded):
            session.end_pending = True
        session.inbox.put_nowait(event)

    # ---------------------------------------------------------------------------- reads

    def session_by_id(self, call_id: str) -> CallSession | None:
        ref = self._refs_by_id.get(call_id)
        return self._sessions.get(ref) if ref else None

    async def get(self, call_id: str) -> Call:
        session = self.session_by_id(call_id)
        if session is not None:
            return session.call
        call: Call = await asyncio.to_thread(self._repo.get_call, call_id)
        return call

    def current_decision(self, call_id: str) -> TriageDecision | None:
        session = self.session_by_id(call_id)
        return session.decision if session else None

    def live_calls(self) -> list[Call]:
        return [s.call for s in self._sessions.values()]

    # ------------------------------------------------------------------------ the per-call worker

    def _new_session(self, offered: CallOffered) -> CallSession:
        caller = parse_caller_number(offered.caller)
        call = Call(
            id=new_call_id(),
            call_ref=offered.call_ref,
            source=offered.source.value,
            dialled=offered.dialled,
            caller=caller,
            offered_at=offered.at,
            desk=DESK_BY_DIALLED.get(offered.dialled, DeskCode.D112),
            channel=offered.channel,
            node=self._node,
        )
        session = CallSession(call=call)
        if self._recorder is not None:
            # Registered before any audio of the call can reach _feed_audio (same loop, later callbacks).
            self._recorder.begin(call.id)
        country = location_from_caller_country(caller.country, offered.at)
        if country is not None:
            session.locations.append(country)
        if offered.location is not None:
            self._add_fix(session, offered.location)
        call.location = fuse(session.locations, utc_now()).best
        self._sessions[call.call_ref] = session
        self._refs_by_id[call.id] = call.call_ref
        if offered.channel:
            self._aliases[offered.channel] = call.call_ref
        session.worker = asyncio.create_task(self._work(session), name=f"call-{call.id}")
        return session

    async def _work(self, session: CallSession) -> None:
        while True:
            event = await session.inbox.get()
            try:
                with call_context(session.call.id, session.call.incident_id):
                    await self._handle(session, event)
            except IllegalTransition as exc:
                log.warning("call %s: %s", session.call.id, exc.message)
            except (StorageError, LiveStateError) as exc:
                # The call goes on: its state is still here and is written again at its next change.
                log.error("call %s: %s while handling %s", session.call.id, exc, type(event).__name__)
            if session.call.state in (CallState.ENDED, CallState.ABANDONED) and session.inbox.empty():
                if session.flushing:
                    # The last words are still being decoded: wait for them before letting the call go.
                    pending, session.flushing = session.flushing, []
                    flushed = await asyncio.to_thread(wait_flushed, pending, session.flush_backlog_s)
                    if not flushed:
                        log.warning(
                            "call %s: decoder still busy with its last words; they are stored when they come",
                            session.call.id,
                        )
                    if not session.inbox.empty():
                        continue
                self._forget(session)
                return

    async def _handle(self, session: CallSession, event: TelephonyEvent | TranscriptEvent) -> None:
        call = session.call
        match event:
            case CallOffered():
                await self._on_offered(session, event)
            case CallAnswered():
                if event.by == "endpoint":
                    call.media_answered_at = event.at
                    await self._save(call)
            case CallQueued():
                if call.state is CallState.RINGING:
                    call.transition(CallState.QUEUED, event.at)
                    await self._save(call)
                    await self._publish(session, "call.queued", {"queue": event.queue})
            case CallConnected():
                await self._connect(session, taker_id=self._taker_for(event.taker), at=event.at)
            case CallEnded():
                await self._on_ended(session, event)
            case DtmfReceived():
                await self._publish(session, "call.updated", {"dtmf": event.digit})
            case LocationReported():
                if self._add_fix(session, event.fix):
                    await self._location_changed(session)
            case TranscriptPartial():
                await self._on_partial(session, event)
            case TranscriptFinal():
                await self._on_final(session, event)
            case LanguageDetected():
                if event.leg in ("", "caller"):
                    call.language = event.language
                    call.language_confidence = event.probability
                    await self._save(call)
                    await self._publish(
                        session,
                        "language.detected",
                        {"language": event.language, "probability": event.probability},
                    )
            case TranscriptionFailed():
                session.no_transcript = not event.recovered
                await self._publish(
                    session,
                    "call.updated",
                    {"no_transcript": session.no_transcript, "transcription_error": event.reason},
                )

    async def _on_offered(self, session: CallSession, event: CallOffered) -> None:
        call = session.call
        # The caller hears the greeting at once, before anything that could wait on the database; the
        # endpoint mutes it as soon as a call taker is connected.
        await self._play_prompt(call)
        if call.source == "ami" and await self._resume(session):
            return
        self._metrics.calls_offered.labels(
            desk=call.desk.value if call.desk else "-", dialled=call.dialled
        ).inc()
        log.info("call offered: %s from %s via %s", call.dialled, call.caller.display, call.source)
        refused = event.headers.get(LOCATION_REFUSED_HEADER)
        if refused:
            # The location body came with the call but could not be used: the call goes on, and the record
            # says so (the raw body stays in the adapter's log and headers).
            call.notes.append(f"location body refused: {refused}")
            log.warning("call %s: location body refused: %s", call.id, refused)
        await self._save(call)
        await self._publish(session, "call.offered", call_json(call))
        if session.end_pending:
            # Refused by the adapter as it was offered (no usable audio, a body it cannot read): the record
            # is kept, and it ends next, abandoned for call-back; it is never queued nor offered to a taker.
            return
        if self._transcriber is not None and "caller" not in session.legs_open:
            try:
                self._transcriber.open_leg(
                    call.call_ref, "caller", 8000, language_hint=None, country_hint=call.caller.country
                )
                session.legs_open.add("caller")
            except (RuntimeError, ValueError, OSError) as exc:
                session.no_transcript = True
                log.error("call %s: transcription unavailable, routing by dialled number: %s", call.id, exc)
        elif self._transcriber is None:
            session.no_transcript = True
        await self._start_media_fork(call)
        if "eCall-Facts" in event.headers or "eCall-MSD" in event.headers:
            await self._on_ecall(session, event.headers)
        await self._retriage(session, force=True)
        # Queue first, then dispatch: a free call taker gets it at once, otherwise the caller hears the prompt.
        if call.state is CallState.RINGING:
            call.transition(CallState.QUEUED)
            await self._save(call)
            await self._publish(session, "call.queued", {"desk": call.desk.value if call.desk else None})
        await self._enqueue(session)

    async def _resume(self, session: CallSession) -> bool:
        """A call offered again that the centre already knows (AMI resync after a reconnect or a restart of
        intake): carry on with its record instead of opening a second one."""
        try:
            known: Call | None = await asyncio.to_thread(self._repo.find_call_by_ref, session.call.call_ref)
        except StorageError as exc:
            log.error("call %s: could not look up an earlier record: %s", session.call.call_ref, exc)
            return False
        if known is None or not known.is_live or known.id == session.call.id:
            return False
        self._refs_by_id.pop(session.call.id, None)
        known.node = self._node
        session.call = known
        self._refs_by_id[known.id] = known.call_ref
        log.warning("call %s resumed (%s) after intake restarted or reconnected", known.id, known.state.value)
        await self._save(known)
        await self._retriage(session, force=True)
        if known.state is CallState.QUEUED and known.taker_id is None:
            await self._requeue_missing()
        if self._transcriber is not None and "caller" not in session.legs_open:
            try:
                self._transcriber.open_leg(
                    known.call_ref, "caller", 8000, language_hint=None, country_hint=known.caller.country
                )
                session.legs_open.add("caller")
            except (RuntimeError, ValueError, OSError) as exc:
                log.error("call %s: transcription unavailable after resume: %s", known.id, exc)
        await self._start_media_fork(known)  # the old fork died with the previous process
        return True

    async def _on_ecall(self, session: CallSession, headers: dict[str, str]) -> None:
        """An eCall (RFC 8147 MSD in the INVITE) is a traffic accident from its first second: the incident
        is opened at once with the vehicle's facts, before anybody has said a word."""
        call = session.call
        try:
            facts: dict[str, Any] = json.loads(headers["eCall-Facts"]) if "eCall-Facts" in headers else {}
        except ValueError:
            facts = {}
        if "eCall-Error" in headers:
            facts["error"] = headers["eCall-Error"]
        facts["msd_hex"] = headers.get("eCall-MSD", "")
        await self._publish(session, "call.updated", {"ecall": facts})
        automatic = bool(facts.get("automatic_activation"))
        note = "eCall {kind}{test}: {vehicle}, VIN {vin}, {passengers} occupants, {propulsion}".format(
            kind="automatic" if automatic else "manual",
            test=" (TEST CALL)" if facts.get("test_call") else "",
            vehicle=facts.get("vehicle_type", "vehicle"),
            vin=facts.get("vin", "?"),
            passengers=facts.get("passengers", "?"),
            propulsion=", ".join(facts.get("propulsion", [])) or "propulsion unknown",
        )
        try:
            incident = await self._incidents.create(
                actor="ecall",
                incident_type=IncidentType.TRAFFIC_ACCIDENT,
                priority=1 if automatic else 2,
                agencies=[Agency.ZZS, Agency.PCR],
                location=call.location,
                note=note,
                call_id=call.id,
            )
        except StorageError as exc:
            log.error("call %s: eCall incident not opened yet (triage will open one): %s", call.id, exc)
            return
        call.incident_id = incident.id
        await self._save(call)
        await self._publish(session, "call.updated", {"incident_id": incident.id, "linked": False})

    async def _start_media_fork(self, call: Call) -> None:
        """A PBX call's audio reaches transcription through a media fork to the SIP endpoint."""
        control = self._controls.get(call.source)
        fork = getattr(control, "start_media_fork", None)
        if fork is None or self._transcriber is None:
            return
        try:
            await fork(call.call_ref)
        except AdapterError as exc:
            log.error("call %s: no media fork, no transcript (routed by dialled number): %s", call.id, exc)

    async def _move_in_pbx(self, call: Call, desk: DeskCode, front: bool) -> None:
        control = self._controls.get(call.source)
        move = getattr(control, "move_to_desk", None)
        if move is None:
            return
        try:
            await move(call.call_ref, desk, call.priority or 2, front)
        except AdapterError as exc:
            log.error("call %s: PBX did not move the caller to %s: %s", call.id, desk.value, exc)

    async def _reprioritise_in_pbx(
        self, call: Call, desk: DeskCode, front: bool, priority: int | None = None
    ) -> None:
        control = self._controls.get(call.source)
        change = getattr(control, "set_priority", None)
        if change is None:
            return
        try:
            await change(call.call_ref, desk, priority or call.priority or 2, front)
        except AdapterError as exc:
            log.error("call %s: PBX kept the old queue priority on %s: %s", call.id, desk.value, exc)

    async def _on_desk_moved(self, call_id: str, from_desk: DeskCode, to_desk: DeskCode) -> None:
        """A waiting call moved by the leader (overflow to the 112 desk) or a supervisor: a PBX caller is
        moved there too (in the background: a Redirect waits for the caller to join)."""
        session = self.session_by_id(call_id)
        if session is None or session.call.source == "sip":
            return  # intake's own queue is the one that rings for SIP calls
        call = session.call
        log.warning("call %s moves from %s to %s on the PBX", call_id, from_desk.value, to_desk.value)
        self._background(self._move_in_pbx(call, to_desk, urgent_front(session.decision)))

    async def _on_reprioritised(self, call_id: str, desk: DeskCode, priority: int, front: bool) -> None:
        """A supervisor's new priority for a waiting PBX caller: its place in the PBX queue too."""
        session = self.session_by_id(call_id)
        if session is None or session.call.source == "sip":
            return
        self._background(self._reprioritise_in_pbx(session.call, desk, front, priority))

    async def _enqueue(self, session: CallSession) -> None:
        call = session.call
        decision = session.decision
        desk = call.desk or DeskCode.D112
        front = urgent_front(decision)
        self._tell_recognition(call, waiting=True, priority=1 if front else (call.priority or 2))
        try:
            await self._desks.enqueue(
                call.id,
                desk,
                1 if front else (call.priority or 2),
                call.offered_at,
                front=front,
                data={
                    "language": call.language,
                    "caller": call.caller.display,
                    "dialled": call.dialled,
                    "incident_type": decision.incident_type.value.value if decision else None,
                    "first_words": session.caller_text[:120],
                    "source": call.source,
                },
            )
        except LiveStateError as exc:
            log.error(
                "call %s: queue unavailable (%s); call stays answered and listed as queued", call.id, exc
            )

    def _tell_recognition(self, call: Call, waiting: bool, priority: int) -> None:
        """Recognition decodes waiting callers first, most urgent and longest waiting first."""
        if self._transcriber is None:
            return
        try:
            self._transcriber.set_leg_queue(
                call.call_ref, "caller", waiting, priority, call.offered_at.timestamp()
            )
        except RuntimeError as exc:  # scheduling is an optimisation: the call and its audio go on
            log.error("call %s: recognition not told the queue state: %s", call.id, exc)

    async def _play_prompt(self, call: Call) -> None:
        control = self._controls.get(call.source)
        if control is None or self._prompt is None or call.source != "sip":
            return
        pcm, rate = self._prompt
        try:
            await control.play_prompt(call.call_ref, pcm, rate, loop=True)
        except AdapterError as exc:
            log.warning("call %s: prompt not played: %s", call.id, exc)

    async def _on_offer(self, offer: Offer) -> None:
        session = self.session_by_id(offer.call_id)
        if session is None:
            await self._forward_offer(offer)
            return
        call = session.call
        call.taker_id = offer.taker_id
        session.offered_at = time.monotonic()
        await self._save(call)
        uri = self._taker_uri(offer.taker_id)
        if uri and self._controls.get(call.source) is not None:
            # Ringing the phone takes as long as the taker needs to pick up: never inside dispatch.
            self._background(self._ring_taker(session, offer, uri))

    async def _ring_taker(self, session: CallSession, offer: Offer, uri: str) -> None:
        call = session.call
        control = self._controls[call.source]
        try:
            await control.connect_to_taker(call.call_ref, uri, offer.priority)
        except AdapterError as exc:
            if call.state is not CallState.QUEUED or call.taker_id != offer.taker_id:
                return
            log.error("call %s: could not ring %s (%s): back to the queue", call.id, offer.taker_id, exc)
            await self._withdraw_offer(session, offer.taker_id, f"phone failed: {exc}")

    async def _withdraw_offer(self, session: CallSession, taker_id: str, reason: str) -> None:
        """The offered call taker did not take the call: it goes back to the queue at its old place and the
        taker is paused (a supervisor sees why)."""
        call = session.call
        call.taker_id = None
        await self._save(call)
        await self._desks.set_taker_state(taker_id, TakerState.PAUSED, "system", reason)
        await self._enqueue(session)

    async def _forward_offer(self, offer: Offer) -> None:
        """The call's media is on another node: that node rings the taker's phone."""
        try:
            call: Call = await asyncio.to_thread(self._repo.get_call, offer.call_id)
        except (StorageError, NotFound) as exc:
            log.error("offer of %s to %s not forwarded: %s", offer.call_id, offer.taker_id, exc)
            return
        if self._live is not None and call.node and call.node != self._node:
            await self._live.publish(
                f"node:{call.node}",
                {
                    "command": "offer",
                    "call_id": offer.call_id,
                    "taker_id": offer.taker_id,
                    "desk": offer.desk.value,
                    "priority": offer.priority,
                },
            )

    async def expire_offers(self, timeout_s: float = 20.0) -> None:
        """Offers this node made that nobody took within ``timeout_s`` go back to the queue."""
        now = time.monotonic()
        for session in list(self._sessions.values()):
            call = session.call
            if (
                call.state is CallState.QUEUED
                and call.taker_id is not None
                and session.offered_at is not None
                and now - session.offered_at > timeout_s
            ):
                taker_id = call.taker_id
                session.offered_at = None
                log.warning("call %s: %s did not take the offer in %.0f s", call.id, taker_id, timeout_s)
                await self._withdraw_offer(session, taker_id, "offer not answered")

    async def accept(self, call_id: str, taker_id: str) -> Call:
        """A call taker takes the call from the console (console-only desks, or a PBX desk phone).

        The node holding the call's media does it; a console connected to another node has its command
        forwarded there over Redis and waits for the recorded result.
        """
        session = self.session_by_id(call_id)
        if session is None:
            call = await self.get(call_id)
            if call.is_live and call.node and call.node != self._node and self._live is not None:
                return await self._forward_accept(call, taker_id)
            raise IllegalTransition(f"call {call_id} is {call.state.value}, not waiting", call_id=call_id)
        # The state machine decides: a hang-up that won the race turns this into IllegalTransition.
        await self._connect(session, taker_id=taker_id, at=utc_now())
        return session.call

    async def _forward_accept(self, call: Call, taker_id: str, timeout_s: float = 5.0) -> Call:
        assert self._live is not None
        await self._live.publish(
            f"node:{call.node}", {"command": "accept", "call_id": call.id, "taker_id": taker_id}
        )
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            current: Call = await asyncio.to_thread(self._repo.get_call, call.id)
            if current.state is CallState.CONNECTED and current.taker_id == taker_id:
                return current
            if not current.is_live:
                raise IllegalTransition(f"call {call.id} has {current.state.value}", call_id=call.id)
        raise Conflict(f"node {call.node} holding call {call.id} did not take the command", call_id=call.id)

    async def serve_commands(self, stopping: asyncio.Event) -> None:
        """Commands other nodes forward for calls this node holds (a console on node B accepts a call
        whose media node A holds)."""
        assert self._live is not None
        backoff = 0.5
        while not stopping.is_set():
            try:
                async for command in self._live.subscribe(f"node:{self._node}"):
                    backoff = 0.5
                    await self._run_command(command)
                    if stopping.is_set():
                        return
            except LiveStateError as exc:
                log.error("node command channel unavailable: %s", exc)
            await asyncio.sleep(backoff)
            backoff = min(5.0, backoff * 2)

    async def _run_command(self, command: dict[str, Any]) -> None:
        try:
            match command.get("command"):
                case "accept":
                    await self.accept(str(command["call_id"]), str(command["taker_id"]))
                case "offer":
                    await self._on_offer(
                        Offer(
                            call_id=str(command["call_id"]),
                            taker_id=str(command["taker_id"]),
                            desk=DeskCode(command["desk"]),
                            priority=int(command["priority"]),
                        )
                    )
                case "follow_incident":
                    session = self.session_by_id(str(command["call_id"]))
                    if session is not None:
                        await self._follow_incident(session.call)
                        await self._save(session.call)
                case _:
                    log.warning("unknown node command ignored: %r", command)
        except (IllegalTransition, NotFound, KeyError, ValueError) as exc:
            log.warning("forwarded command %r refused: %s", command.get("command"), exc)

    # ------------------------------------------------------------------- node failure

    async def heartbeat(self, ttl_ms: int = 5000) -> None:
        """This node is alive (its lease), and so is each call whose media still arrives (a lease per call,
        written in Redis): evidence another node's reaper weighs before it calls a call lost."""
        if self._live is None:
            return
        await self._live.acquire_lease(f"node:{self._node}", self._node, ttl_ms)
        now = time.monotonic()
        for session in list(self._sessions.values()):
            if session.last_media_at is not None and now - session.last_media_at <= MEDIA_RECENT_S:
                await self._live.acquire_lease(media_lease(session.call.id), self._node, MEDIA_LEASE_MS)

    async def _call_still_served(self, call: Call, node: str) -> str | None:
        """Why ``call`` must not be reaped although its node's heartbeat is gone, or None: its media still
        arrives (the holding node renews the call's media lease), or the node still listens on its command
        channel (its process and Redis connection are alive: it is slow, not dead)."""
        assert self._live is not None
        holder = await self._live.lease_holder(media_lease(call.id))
        if holder is not None:
            return f"media still arriving at {holder}"
        if node and await self._live.subscriber_count(f"node:{node}") > 0:
            return f"node {node} still answers on its command channel"
        return None

    async def reap_lost_calls(self) -> list[str]:
        """Calls whose media died with their node (its heartbeat is gone, or it is this node restarted) end
        as abandoned, if no call taker had them, and go on the call-back list; never left 'queued'."""
        if self._live is None:
            return []
        live_calls: list[Call] = await asyncio.to_thread(
            self._repo.calls_in_states, [CallState.RINGING, CallState.QUEUED, CallState.CONNECTED]
        )
        alive: dict[str, bool] = {self._node: True}
        lost: list[str] = []
        for call in live_calls:
            if call.id in self._refs_by_id or call.source != "sip":
                # A PBX keeps its calls when intake restarts: the AMI bridge re-offers them on resync.
                continue
            node = call.node or ""
            if node == self._node:
                dead = True  # this process holds no such call: it died with our previous process
            else:
                if node not in alive:
                    alive[node] = await self._live.lease_holder(f"node:{node}") is not None
                dead = not alive[node]
            if not dead:
                continue
            if node != self._node:
                evidence = await self._call_still_served(call, node)
                if evidence is not None:
                    log.warning(
                        "call %s: node %s misses its heartbeat but is not reaped: %s", call.id, node, evidence
                    )
                    continue
            target = CallState.ENDED if call.state is CallState.CONNECTED else CallState.ABANDONED
            call.transition(target)
            call.end_reason = "node_lost"
            with suppress(LiveStateError):
                await self._desks.leave_queue(call.id, call.desk)
            await asyncio.to_thread(self._repo.save_call, call)
            with suppress(LiveStateError):
                await self._live.remove_active_call(call.id)
            kind = "call.abandoned" if target is CallState.ABANDONED else "call.ended"
            log.error("call %s lost with node %s: %s for call-back", call.id, node or "?", target.value)
            await self._bus.publish(
                LiveEvent(
                    kind,
                    {"reason": "node_lost", "node": node},
                    call_id=call.id,
                    incident_id=call.incident_id,
                    desk=call.desk.value if call.desk else None,
                    taker_id=call.taker_id,
                )
            )
            if call.taker_id:
                with suppress(LiveStateError):
                    await self._desks.start_wrap_up(call.taker_id)
            lost.append(call.id)
        return lost

    async def _connect(self, session: CallSession, taker_id: str | None, at: datetime) -> None:
        call = session.call
        if call.state is CallState.CONNECTED and call.taker_id == taker_id:
            return
        call.transition(CallState.CONNECTED, at)
        call.taker_id = taker_id or call.taker_id
        session.offered_at = None
        self._tell_recognition(call, waiting=False, priority=call.priority or 2)
        desk_label = call.desk.value if call.desk else "-"
        self._metrics.calls_answered.labels(desk=desk_label).inc()
        self._metrics.answer_wait.labels(desk=desk_label).observe(call.wait_seconds())
        log.info("call connected to %s after %.1f s", call.taker_id, call.wait_seconds())
        if call.desk is not None:
            await self._desks.leave_queue(call.id, call.desk)
        await self._save(call)
        if call.taker_id:
            with suppress(LiveStateError):
                await self._live_set_busy(call.taker_id, call.id)
        await self._publish(session, "call.connected", {"taker_id": call.taker_id})
        if call.incident_id is None and session.decision is not None:
            # The call taker needs a form now, whatever triage has heard so far.
            await self._open_incident(session, session.decision)

    async def _live_set_busy(self, taker_id: str, call_id: str) -> None:
        if self._live is not None:
            await self._live.set_taker_state(taker_id, TakerState.BUSY.value, utc_now(), {"call_id": call_id})

    async def _on_ended(self, session: CallSession, event: CallEnded) -> None:
        call = session.call
        target = CallState.ENDED if call.state is CallState.CONNECTED else CallState.ABANDONED
        if event.reason is EndReason.ABANDONED:
            target = CallState.ABANDONED if call.state is not CallState.CONNECTED else CallState.ENDED
        call.transition(target, event.at)
        call.end_reason = event.reason.value
        if target is CallState.ABANDONED:
            self._metrics.calls_abandoned.labels(desk=call.desk.value if call.desk else "-").inc()
        log.info("call %s: %s", target.value, event.reason.value)
        if self._recorder is not None:
            self._recorder.end(call.id, event.at)
        for leg in list(session.legs_open):
            if self._transcriber is not None:
                transcriber = self._transcriber
                session.flush_backlog_s += transcriber.backlog_s(call.call_ref, leg)
                done = transcriber.close_leg(call.call_ref, leg)
                session.flushing.append(
                    (done, functools.partial(transcriber.processed_s, call.call_ref, leg))
                )
            session.legs_open.discard(leg)
        with suppress(LiveStateError):
            await self._desks.leave_queue(call.id, call.desk)
        await self._save(call)
        kind = "call.abandoned" if target is CallState.ABANDONED else "call.ended"
        await self._publish(session, kind, {"reason": event.reason.value, "detail": event.detail})
        if call.taker_id:
            with suppress(LiveStateError):
                await self._desks.start_wrap_up(call.taker_id)
            self._background(self._end_wrap_up(call.taker_id, delay=self._desks.wrap_up_seconds))

    async def _end_wrap_up(self, taker_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            states = await self._live.taker_states() if self._live is not None else {}
            if states.get(taker_id, {}).get("state") == TakerState.WRAP_UP.value:
                await self._desks.set_taker_state(taker_id, TakerState.AVAILABLE, "system", "wrap-up over")
        except (LiveStateError, NotFound, AdapterError) as exc:
            log.error("wrap-up end for %s failed: %s", taker_id, exc)

    # --------------------------------------------------------------------------- transcript

    def _feed_audio(self, frame: AudioFrame) -> None:
        ref = self._aliases.get(frame.call_ref, frame.call_ref)
        session = self._sessions.get(ref)
        if session is None:
            return
        session.last_media_at = time.monotonic()
        leg = frame.leg.value
        if self._recorder is not None and frame.sample_rate == 8000:
            self._recorder.feed(session.call.id, leg, frame.pcm, frame.seq)
        if self._transcriber is None:
            return
        if leg not in session.legs_open:
            try:
                self._transcriber.open_leg(
                    ref, leg, frame.sample_rate, country_hint=session.call.caller.country
                )
                session.legs_open.add(leg)
            except (RuntimeError, ValueError, OSError) as exc:
                log.error("call %s: cannot open %s leg for transcription: %s", session.call.id, leg, exc)
                return
        self._transcriber.feed(ref, leg, frame.pcm)

    async def _on_partial(self, session: CallSession, event: TranscriptPartial) -> None:
        if event.leg != "caller":
            return
        session.partial = event.text
        session.speech_s = max(session.speech_s, event.audio_s)
        now = asyncio.get_running_loop().time()
        if now - session.last_partial_sent >= PARTIAL_PUBLISH_INTERVAL_S:
            session.last_partial_sent = now
            await self._publish(session, "transcript.partial", {"leg": event.leg, "text": event.text})
        await self._retriage(session)

    async def _on_final(self, session: CallSession, event: TranscriptFinal) -> None:
        call = session.call
        segment = _segment(event)
        call.transcript.append(segment)
        try:
            await asyncio.to_thread(self._repo.append_transcript, call.id, segment)
        except StorageError as exc:
            # The segment is part of the call's snapshot, which the journal keeps until the database is back.
            log.error("call %s: transcript segment not stored yet: %s", call.id, exc)
            if self._journal is not None:
                await asyncio.to_thread(self._journal.record, call)
                self._journaled.add(call.id)
        gap = event.engine == GAP_ENGINE  # "[2.0 s not transcribed: ...]": kept, but nothing triage can read
        if event.leg == "caller" and not gap:
            session.finals.append(event.text)
            session.partial = ""
            session.speech_s = max(session.speech_s, event.end_s)
        await self._publish(
            session,
            "transcript.final",
            {"leg": event.leg, "text": event.text, "start_s": event.start_s, "end_s": event.end_s},
        )
        if event.leg == "caller" and not gap:
            await self._retriage(session)

    async def _store_late_final(self, event: TranscriptFinal) -> None:
        """A final that arrives after its call was let go (the decoder was behind) is stored on that call,
        found by call_ref, from the database when this node no longer holds the call."""
        async with self._late_finals:
            await self._store_late_final_in_order(event)

    async def _store_late_final_in_order(self, event: TranscriptFinal) -> None:
        call_id = self._recent_refs.get(event.call_ref)
        try:
            if call_id is None:
                found: Call | None = await asyncio.to_thread(self._repo.find_call_by_ref, event.call_ref)
                if found is None:
                    log.error(
                        "transcript of unknown call %s kept in this log only: [%s] %s",
                        event.call_ref,
                        event.leg,
                        event.text,
                    )
                    return
                call_id = found.id
            segment = _segment(event)
            await asyncio.to_thread(self._repo.append_transcript, call_id, segment)
        except (StorageError, NotFound) as exc:
            log.error(
                "call %s: late transcript not stored (%s), kept in this log: [%s] %s",
                call_id or event.call_ref,
                exc,
                event.leg,
                event.text,
            )
            return
        log.info("call %s: transcript segment stored after the call ended", call_id)
        await self._bus.publish(
            LiveEvent(
                "transcript.final",
                {"leg": event.leg, "text": event.text, "start_s": event.start_s, "end_s": event.end_s},
                call_id=call_id,
            )
        )

    # ------------------------------------------------------------------------------- triage

    async def _retriage(self, session: CallSession, force: bool = False) -> None:
        call = session.call
        started = time.perf_counter()
        # carry_forward: suspected cardiac arrest stays raised, priority never drops during the call
        decision: TriageDecision = carry_forward(
            session.decision,
            self._triage.decide(
                TriageInput(
                    dialled=call.dialled,
                    caller_number=call.caller.e164,
                    caller_country=call.caller.country,
                    language=call.language or "cs",
                    transcript=session.caller_text,
                    speech_seconds=session.speech_s,
                )
            ),
        )
        self._metrics.triage_latency.observe(time.perf_counter() - started)
        previous = session.decision
        session.decision = decision
        if not force and previous is not None and decision_summary(previous) == decision_summary(decision):
            return
        old_priority, old_front, old_desk = call.priority, urgent_front(previous), call.desk
        call.priority = decision.priority.value
        call.tcpr = decision.tcpr.value
        call.triage = call_triage_from_decision(decision)
        if (
            not decision.unsure
            and call.state in (CallState.RINGING, CallState.QUEUED)
            and call.taker_id is None
        ):
            call.desk = decision.desk
        # Intake's queue first: a waiting caller's new place is what matters most, and a console that sees
        # the decision on the live bus then sees a queue that already follows it. The PBX follows after the
        # publish (a Redirect waits for the caller to join the new queue).
        moved_in_queue = reprioritised = False
        front = urgent_front(decision)
        if call.state is CallState.QUEUED and call.taker_id is None:
            try:
                if old_desk is not None and call.desk is not None and old_desk != call.desk:
                    await self._desks.move(call.id, old_desk, call.desk, "triage", "triage changed desk")
                    moved_in_queue = True
                if (old_priority, old_front) != (call.priority, front) and call.desk is not None:
                    self._tell_recognition(call, waiting=True, priority=1 if front else call.priority)
                    await self._desks.reprioritise(
                        call.id, call.desk, 1 if front else call.priority, front, "triage"
                    )
                    reprioritised = True
            except LiveStateError as exc:
                log.error("call %s: queue update failed: %s", call.id, exc)
        await self._publish(session, "triage.updated", decision_json(decision))
        if moved_in_queue and call.desk is not None:
            await self._move_in_pbx(call, call.desk, front)
        elif reprioritised and call.desk is not None:  # a move already carries the new priority
            await self._reprioritise_in_pbx(call, call.desk, front)
        if decision.location is not None:
            spoken = location_from_spoken(decision.location, utc_now(), self._places)
            if spoken is not None:
                session.locations = [
                    loc for loc in session.locations if loc.source is not LocationSource.SPOKEN
                ]
                session.locations.append(spoken)
                await self._location_changed(session)
        if not decision.unsure:
            if call.incident_id is None:
                await self._open_incident(session, decision)
            elif previous is not None:
                await self._incidents.record_triage_update(call.incident_id, decision)
        await self._follow_incident(call)
        await self._save(call)

    async def _follow_incident(self, call: Call, incident: Incident | None = None) -> None:
        """The call record shows its incident's current decision (after the incident's own rules and the
        call takers' corrections), so the call and incident views never tell two different emergencies."""
        if call.incident_id is None:
            return
        if incident is None:
            try:
                incident = await self._incidents.get(call.incident_id)
            except (StorageError, NotFound) as exc:
                log.error(
                    "call %s: incident %s not read, call keeps triage's decision: %s",
                    call.id,
                    call.incident_id,
                    exc,
                )
                return
        call.priority = incident.priority
        call.tcpr = incident.tcpr
        call.triage = CallTriage(
            incident_type=incident.incident_type.value,
            priority=incident.priority,
            tcpr=incident.tcpr,
            agencies=tuple(a.agency.value for a in incident.agencies),
            rules_version=call.triage.rules_version if call.triage is not None else "",
            source="incident",
        )

    async def _follow_incident_change(self, incident: Incident) -> None:
        """An incident changed (triage, a call taker, a supervisor): its calls follow. Calls this node holds
        are updated here; a live call held by another node is updated there (node command); a call that has
        ended is updated in the database."""
        for call_id in incident.call_ids:
            session = self.session_by_id(call_id)
            if session is not None:
                if session.call.incident_id is None:
                    session.call.incident_id = incident.id  # linked just now (by triage or a person)
                if session.call.incident_id == incident.id:
                    await self._follow_incident(session.call, incident)
                    await self._save(session.call)
                continue
            try:
                call: Call = await asyncio.to_thread(self._repo.get_call, call_id)
            except (StorageError, NotFound) as exc:
                log.error("call %s not updated from incident %s: %s", call_id, incident.id, exc)
                continue
            if call.is_live and call.node and call.node != self._node and self._live is not None:
                with suppress(LiveStateError):
                    await self._live.publish(
                        f"node:{call.node}", {"command": "follow_incident", "call_id": call_id}
                    )
                continue
            if call.incident_id is None:
                call.incident_id = incident.id
            await self._follow_incident(call, incident)
            try:
                await asyncio.to_thread(self._repo.save_call, call)
            except StorageError as exc:
                log.error("call %s not updated from incident %s: %s", call_id, incident.id, exc)

    async def _open_incident(self, session: CallSession, decision: TriageDecision) -> None:
        await self._open_incident_for(session.call, decision)

    async def _open_incident_for(self, call: Call, decision: TriageDecision) -> None:
        """Give the call its incident once; while the database is away the attempt is kept and retried
        (:meth:`upkeep`), also after the call itself has ended."""
        lock = self._incident_locks.setdefault(call.id, asyncio.Lock())
        async with lock:
            if call.incident_id is not None:
                return
            try:
                incident, linked = await self._incidents.open_for_call(call, decision)
            except StorageError as exc:
                self._incident_retry[call.id] = (call, decision)
                log.error("call %s: incident not opened yet, will retry: %s", call.id, exc)
                return
            self._incident_retry.pop(call.id, None)
            call.incident_id = incident.id
        self._incident_locks.pop(call.id, None)
        await self._save(call)
        await self._bus.publish(
            LiveEvent(
                "call.updated",
                {"incident_id": incident.id, "linked": linked},
                call_id=call.id,
                incident_id=incident.id,
                desk=call.desk.value if call.desk else None,
                taker_id=call.taker_id,
            )
        )

    # ----------------------------------------------------------------------------- location

    def _add_fix(self, session: CallSession, fix: GeoFix) -> bool:
        try:
            session.locations.append(location_from_geofix(fix, self._places))
        except ValidationFailed as exc:
            log.warning("call %s: location from %s ignored: %s", session.call.id, fix.source, exc.message)
            return False
        return True

    async def report_aml(self, sender: str, text: str, received_at: datetime | None = None) -> dict[str, Any]:
        """An AML SMS (ETSI TS 103 625) forwarded by an operator's gateway: decoded, matched to the live or
        recent call from the same number, and fused into that call's location. A malformed message is
        rejected with its reason; one that matches no call is logged and answered as unmatched."""
        received_at = received_at or utc_now()
        try:
            message = decode_aml(text, received_at)
        except AmlError as exc:
            log.warning("AML SMS from %s rejected: %s", sender, exc)
            raise ValidationFailed(f"AML message rejected: {exc}", reason=str(exc)) from exc
        recent, _ = await asyncio.to_thread(
            self._repo.list_calls, since=received_at - timedelta(hours=1), limit=500
        )
        calls = {c.id: c for c in recent}
        calls.update({s.call.id: s.call for s in self._sessions.values()})
        call = match_call_for_sms(sender, received_at, calls.values())
        fix = message.to_geofix()
        result: dict[str, Any] = {
            "matched": call is not None,
            "call_id": call.id if call else None,
            "position": fix is not None,
            "method": message.method.value if hasattr(message.method, "value") else str(message.method),
            "warnings": list(message.warnings),
        }
        if call is None:
            log.error(
                "AML SMS from %s matches no call in the last hour (position kept in this log: %s)",
                sender,
                text,
            )
            return result
        if fix is None:
            log.info("call %s: AML from %s without a position fix", call.id, sender)
            return result
        await self.report_location(call.id, fix)
        return result

    async def report_location(self, call_id: str, fix: GeoFix) -> Call:
        """A position that arrived outside the call's signalling (AML SMS, eCall data) for a known call."""
        session = self.session_by_id(call_id)
        if session is None:
            # The call has ended (or lives on another node): keep the fix on its incident's history.
            call = await self.get(call_id)
            location = location_from_geofix(fix, self._places)
            if call.incident_id:
                await self._incidents.add_location(call.incident_id, location, actor=f"location:{fix.source}")
            return call
        session.inbox.put_nowait(LocationReported(call_ref=session.call.call_ref, fix=fix))
        return session.call

    async def upkeep(self) -> None:
        """Every second on every node: finish what an outage interrupted.

        - call records journaled while the database was away are written;
        - incidents that could not be opened are opened (also for calls that have ended meanwhile);
        - queued calls missing from the Redis queue (Redis was down or lost its data) are queued again.
        """
        await self.drain_journal()
        await self.expire_offers(self._desks.offer_timeout_seconds)
        for call, decision in list(self._incident_retry.values()):
            await self._open_incident_for(call, decision)
        await self._requeue_missing()

    async def _requeue_missing(self) -> None:
        if self._live is None:
            return
        for session in list(self._sessions.values()):
            call = session.call
            if call.state is not CallState.QUEUED or call.taker_id is not None:
                continue
            try:
                if await self._live.queued_desk(call.id) is None:
                    log.warning("call %s was missing from the %s queue: queued again", call.id, call.desk)
                    await self._enqueue(session)
            except LiveStateError as exc:
                log.debug("requeue check skipped, Redis still unavailable: %s", exc)
                return

    async def drain_journal(self) -> tuple[int, int]:
        """Retry journaled call records (leader tick and start-up). Returns (written, still pending)."""
        if self._journal is None:
            return 0, 0
        written, pending = await asyncio.to_thread(self._journal.drain, self._repo)
        if written:
            log.warning("journal: %d call records written to the database after an outage", written)
            self._journaled = {c.id for c in await asyncio.to_thread(self._journal.pending)}
        return written, pending

    async def _location_changed(self, session: CallSession) -> None:
        call = session.call
        fused = fuse(session.locations, utc_now())
        best = fused.best
        if best is None or best == call.location:
            return
        call.location = best
        await self._save(call)
        await self._publish(
            session,
            "location.updated",
            {
                "location": call_json(call)["location"],
                "explanation": fused.explanation,
                "history": [location_json(loc) for loc in fused.history],
            },
        )
        if call.incident_id and best.source is not LocationSource.SPOKEN:
            await self._incidents.add_location(call.incident_id, best, actor=f"location:{best.source.value}")

    # ------------------------------------------------------------------------------ helpers

    def _taker_for(self, interface: str) -> str | None:
        """A PBX names the taker by its interface (SIP/taker1); the SIP endpoint by the taker id."""
        return self._takers_by_interface.get(interface, interface) or None

    async def _save(self, call: Call) -> None:
        try:
            await asyncio.to_thread(self._repo.save_call, call)
            if self._journal is not None and call.id in self._journaled:
                self._journaled.discard(call.id)
                self._journal.forget(call.id)
        except StorageError as exc:
            if self._journal is None:
                raise
            # The call goes on; its latest state waits in the local journal until the database is back.
            await asyncio.to_thread(self._journal.record, call)
            self._journaled.add(call.id)
            log.error("call %s: database unavailable, state journaled locally: %s", call.id, exc)
        if self._live is not None:
            try:
                if call.is_live:
                    await self._live.put_active_call(call.id, call_json(call))
                else:
                    await self._live.remove_active_call(call.id)
            except LiveStateError as exc:
                log.error("call %s: live state not updated: %s", call.id, exc)

    async def _publish(self, session: CallSession, kind: str, data: dict[str, Any]) -> None:
        call = session.call
        await self._bus.publish(
            LiveEvent(
                kind,
                data,
                call_id=call.id,
                incident_id=call.incident_id,
                desk=call.desk.value if call.desk else None,
                taker_id=call.taker_id,
            )
        )

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, session: CallSession) -> None:
        call = session.call
        self._sessions.pop(call.call_ref, None)
        self._refs_by_id.pop(call.id, None)
        self._remember_ended(call.call_ref, call.id)
        for alias, ref in list(self._aliases.items()):
            if ref == call.call_ref:
                del self._aliases[alias]
                self._remember_ended(alias, call.id)

    def _remember_ended(self, call_ref: str, call_id: str) -> None:
        self._recent_refs[call_ref] = call_id
        while len(self._recent_refs) > RECENT_REFS:
            del self._recent_refs[next(iter(self._recent_refs))]

    async def close(self) -> None:
        pending: list[asyncio.Future[None]] = list(self._tasks)
        pending += [s.worker for s in self._sessions.values() if s.worker is not None]
        for task in pending:
            task.cancel()
        if pending:
            # A cancellation swallowed inside a client library must not hang shutdown.
            _, stuck = await asyncio.wait(pending, timeout=5.0)
            for task in stuck:
                log.error("call task did not stop in time: %r", task)


def media_lease(call_id: str) -> str:
    """The Redis lease a node renews while a call's media still arrives."""
    return f"media:{call_id}"


def _segment(event: TranscriptFinal) -> TranscriptSegment:
    return TranscriptSegment(
        leg=event.leg,
        text=event.text,
        start_s=event.start_s,
        end_s=event.end_s,
        confidence=event.confidence,
        language=event.language,
        words=tuple((w.text, w.start_s, w.end_s, w.confidence) for w in event.words),
    )


def call_triage_from_decision(decision: TriageDecision) -> CallTriage:
    """What triage decided, in the form the call record keeps."""
    return CallTriage(
        incident_type=decision.incident_type.value.value,
        priority=decision.priority.value,
        tcpr=decision.tcpr.value,
        agencies=tuple(a.value.value for a in decision.agencies),
        rules_version=decision.rules_version,
        source="triage",
        unsure=decision.unsure,
    )
