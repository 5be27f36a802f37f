"""The per-call worker: one ordered stream of events per call, from the offer to the last transcript
segment — offered, queued, connected to a call taker, ended."""

from __future__ import annotations

import asyncio
import functools
import logging
from contextlib import suppress
from datetime import datetime

from intake.calls.controls import CallControls
from intake.calls.offers import Offers
from intake.calls.records import CallRecords
from intake.calls.session import (
    BackgroundTasks,
    CallSession,
    SessionRegistry,
    new_call_id,
    sticky_decision_from_record,
    wait_flushed,
)
from intake.calls.transcript import TranscriptHandler
from intake.calls.triage import CallTriageFlow
from intake.domain import Call, CallState
from intake.errors import IllegalTransition, LiveStateError, NotFound, StorageError
from intake.live import LiveTaker
from intake.location import CallLocations
from intake.logs import call_context
from intake.metrics import Metrics
from intake.numbers import parse_caller_number
from intake.ports import CallReader, Clock, Desks, Recorder, TakerStates
from intake.views import call_json
from routing.acd import TakerState
from routing.vocabulary import DESK_BY_DIALLED, DeskCode
from telephony.errors import AdapterError
from telephony.events import (
    LOCATION_REFUSED_HEADER,
    CallAnswered,
    CallConnected,
    CallEnded,
    CallOffered,
    CallQueued,
    DtmfReceived,
    EndReason,
    LocationReported,
    TelephonyEvent,
)
from transcription.events import (
    LanguageDetected,
    TranscriptEvent,
    TranscriptFinal,
    TranscriptionFailed,
    TranscriptPartial,
)

log = logging.getLogger(__name__)


class CallWorker:
    def __init__(
        self,
        registry: SessionRegistry,
        records: CallRecords,
        controls: CallControls,
        offers: Offers,
        triage: CallTriageFlow,
        transcript: TranscriptHandler,
        locations: CallLocations,
        desks: Desks,
        store: CallReader,
        node: str,
        clock: Clock,
        background: BackgroundTasks,
        takers: TakerStates | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._registry = registry
        self._records = records
        self._controls = controls
        self._offers = offers
        self._triage = triage
        self._transcript = transcript
        self._locations = locations
        self._desks = desks
        self._store = store
        self._node = node
        self._clock = clock
        self._background = background
        self._takers = takers
        self._metrics = metrics or Metrics()
        self.recorder: Recorder | None = None

    # ------------------------------------------------------------------------------ a new call

    def start(self, offered: CallOffered) -> CallSession:
        """The call's session and its worker task (on the running loop)."""
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
        if self.recorder is not None:
            # Registered before any audio of the call can reach feed_audio (same loop, later callbacks).
            self.recorder.begin(call.id)
        self._locations.start(session, offered.location)
        self._registry.add(session)
        session.worker = asyncio.create_task(self.work(session), name=f"call-{call.id}")
        return session

    async def work(self, session: CallSession) -> None:
        while True:
            event = await session.inbox.get()
            try:
                with call_context(session.call.id, session.call.incident_id):
                    await self.handle(session, event)
            except IllegalTransition as exc:
                log.warning("call %s: %s", session.call.id, exc.message)
            except (StorageError, LiveStateError) as exc:
                # The call goes on: its state is still here and is written again at its next change.
                log.error("call %s: %s while handling %s", session.call.id, exc, type(event).__name__)
            if session.call.state in (CallState.ENDED, CallState.ABANDONED) and session.inbox.empty():
                if session.flushing:
                    # The last words are still being decoded: wait for them before letting the call go.
                    pending, session.flushing = session.flushing, []
                    flushed = await asyncio.to_thread(
                        wait_flushed, pending, session.flush_backlog_s, self._clock
                    )
                    if not flushed:
                        log.warning(
                            "call %s: decoder still busy with its last words; they are stored when they come",
                            session.call.id,
                        )
                    if not session.inbox.empty():
                        continue
                self._registry.forget(session)
                return

    async def handle(self, session: CallSession, event: TelephonyEvent | TranscriptEvent) -> None:
        call = session.call
        match event:
            case CallOffered():
                await self._on_offered(session, event)
            case CallAnswered():
                if event.by == "endpoint":
                    call.media_answered_at = event.at
                    await self._records.save(call)
            case CallQueued():
                if call.state is CallState.RINGING:
                    call.transition(CallState.QUEUED, event.at)
                    await self._records.save(call)
                    await self._records.publish(call, "call.queued", {"queue": event.queue})
            case CallConnected():
                await self.connect(session, self._controls.taker_for(event.taker), event.at)
            case CallEnded():
                await self._on_ended(session, event)
            case DtmfReceived():
                await self._records.publish(call, "call.updated", {"dtmf": event.digit})
            case LocationReported():
                await self._locations.on_fix(session, event.fix)
            case TranscriptPartial():
                await self._transcript.on_partial(session, event)
            case TranscriptFinal():
                await self._transcript.on_final(session, event)
            case LanguageDetected():
                if event.leg in ("", "caller"):
                    call.language = event.language
                    call.language_confidence = event.probability
                    await self._records.save(call)
                    await self._records.publish(
                        call,
                        "language.detected",
                        {"language": event.language, "probability": event.probability},
                    )
            case TranscriptionFailed():
                session.no_transcript = not event.recovered
                await self._records.publish(
                    call,
                    "call.updated",
                    {"no_transcript": session.no_transcript, "transcription_error": event.reason},
                )

    async def _on_offered(self, session: CallSession, event: CallOffered) -> None:
        call = session.call
        # The caller hears the greeting at once, before anything that could wait on the database; the
        # endpoint mutes it as soon as a call taker is connected.
        await self._controls.play_prompt(call)
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
        await self._records.save(call)
        await self._records.publish(call, "call.offered", call_json(call))
        if session.end_pending:
            # Refused by the adapter as it was offered (no usable audio, a body it cannot read): the record
            # is kept, and it ends next, abandoned for call-back; it is never queued nor offered to a taker.
            return
        if self._controls.transcriber is None:
            session.no_transcript = True
        elif "caller" not in session.legs_open:
            if self._controls.open_caller_leg(call):
                session.legs_open.add("caller")
            else:
                session.no_transcript = True
        await self._controls.start_media_fork(call)
        await self._records.settle_refused_attempts(call)
        if event.ecall is not None:
            await self._triage.on_ecall(session, event.ecall)
        await self._triage.retriage(session, force=True)
        # Queue first, then dispatch: a free call taker gets it at once, otherwise the caller hears the prompt.
        if call.state is CallState.RINGING:
            call.transition(CallState.QUEUED)
            await self._records.save(call)
            await self._records.publish(call, "call.queued", {"desk": call.desk.value if call.desk else None})
        await self._offers.enqueue(session)

    async def _resume(self, session: CallSession) -> bool:
        """A call offered again that the centre already knows (AMI resync after a reconnect or a restart of
        intake, or a call another node held): carry on with its record instead of opening a second one, and
        with its sticky triage (a raised T-CPR stays raised, the priority is not lowered)."""
        try:
            known = await asyncio.to_thread(self._store.find_call_by_ref, session.call.call_ref)
        except StorageError as exc:
            log.error("call %s: could not look up an earlier record: %s", session.call.call_ref, exc)
            return False
        if known is None or not known.is_live or known.id == session.call.id:
            return False
        old_id = session.call.id
        known.node = self._node
        session.call = known
        session.decision = sticky_decision_from_record(known)
        self._registry.rekey(session, old_id)
        log.warning("call %s resumed (%s) after intake restarted or reconnected", known.id, known.state.value)
        await self._records.save(known)
        await self._triage.retriage(session, force=True)
        if known.state is CallState.QUEUED and known.taker_id is None:
            await self._offers.requeue_missing()
        if "caller" not in session.legs_open and self._controls.open_caller_leg(known):
            session.legs_open.add("caller")
        await self._controls.start_media_fork(known)  # the old fork died with the previous process
        return True

    async def connect(self, session: CallSession, taker_id: str | None, at: datetime) -> None:
        call = session.call
        if call.state is CallState.CONNECTED and call.taker_id == taker_id:
            return
        call.transition(CallState.CONNECTED, at)
        call.taker_id = taker_id or call.taker_id
        session.offered_at = None
        self._controls.tell_recognition(call, waiting=False, priority=call.priority or 2)
        desk_label = call.desk.value if call.desk else "-"
        self._metrics.calls_answered.labels(desk=desk_label).inc()
        self._metrics.answer_wait.labels(desk=desk_label).observe(call.wait_seconds())
        log.info("call connected to %s after %.1f s", call.taker_id, call.wait_seconds())
        if call.desk is not None:
            await self._desks.leave_queue(call.id, call.desk)
        await self._records.save(call)
        if call.taker_id and self._takers is not None:
            with suppress(LiveStateError):
                await self._takers.set_taker_state(
                    call.taker_id, TakerState.BUSY.value, self._clock.now(), {"call_id": call.id}
                )
        await self._records.publish(call, "call.connected", {"taker_id": call.taker_id})
        if call.incident_id is None and session.decision is not None:
            # The call taker needs a form now, whatever triage has heard so far.
            await self._triage.open_incident(call, session.decision)

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
        if self.recorder is not None:
            self.recorder.end(call.id, event.at)
        transcriber = self._controls.transcriber
        for leg in list(session.legs_open):
            if transcriber is not None:
                session.flush_backlog_s += transcriber.backlog_s(call.call_ref, leg)
                done = transcriber.close_leg(call.call_ref, leg)
                session.flushing.append(
                    (done, functools.partial(transcriber.processed_s, call.call_ref, leg))
                )
            session.legs_open.discard(leg)
        with suppress(LiveStateError):
            await self._desks.leave_queue(call.id, call.desk)
        await self._records.save(call)
        kind = "call.abandoned" if target is CallState.ABANDONED else "call.ended"
        await self._records.publish(call, kind, {"reason": event.reason.value, "detail": event.detail})
        if call.taker_id:
            with suppress(LiveStateError):
                await self._desks.start_wrap_up(call.taker_id)
            self._background.start(self._end_wrap_up(call.taker_id, delay=self._desks.wrap_up_seconds))

    async def _end_wrap_up(self, taker_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            states = await self._takers.taker_states() if self._takers is not None else {}
            if LiveTaker.of(states.get(taker_id)).state is TakerState.WRAP_UP:
                await self._desks.set_taker_state(taker_id, TakerState.AVAILABLE, "system", "wrap-up over")
        except (LiveStateError, NotFound, AdapterError) as exc:
            log.error("wrap-up end for %s failed: %s", taker_id, exc)
