"""The caller's words: audio frames to transcription (and voice logging), partial and final segments onto
the call, and segments that arrive after their call was let go stored on it all the same."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from intake.bus import LiveEvent
from intake.calls.records import CallRecords
from intake.calls.session import CallSession, SessionRegistry, segment_of
from intake.errors import NotFound, StorageError
from intake.ports import CallReader, CallWriter, Clock, Publisher, Recorder, Transcriber
from telephony.events import AudioFrame
from transcription.events import GAP_ENGINE, TranscriptFinal, TranscriptPartial

log = logging.getLogger(__name__)

PARTIAL_PUBLISH_INTERVAL_S = 0.15  # consoles need no more than ~7 partials a second per call

Retriage = Callable[[CallSession], Awaitable[None]]


class TranscriptHandler:
    def __init__(
        self,
        registry: SessionRegistry,
        records: CallRecords,
        store: CallReader,
        writer: CallWriter,
        bus: Publisher,
        retriage: Retriage,
        clock: Clock,
    ) -> None:
        self._registry = registry
        self._records = records
        self._store = store
        self._writer = writer
        self._bus = bus
        self._retriage = retriage
        self._clock = clock
        self.transcriber: Transcriber | None = None
        self.recorder: Recorder | None = None
        self._late_finals = asyncio.Lock()  # late segments are stored one at a time, in arrival order

    def feed_audio(self, frame: AudioFrame) -> None:
        ref = self._registry.resolve(frame.call_ref)
        session = self._registry.by_ref(ref)
        if session is None:
            return
        session.last_media_at = self._clock.monotonic()
        leg = frame.leg.value
        if self.recorder is not None and frame.sample_rate == 8000:
            self.recorder.feed(session.call.id, leg, frame.pcm, frame.seq)
        if self.transcriber is None:
            return
        if leg not in session.legs_open:
            try:
                self.transcriber.open_leg(
                    ref, leg, frame.sample_rate, country_hint=session.call.caller.country
                )
                session.legs_open.add(leg)
            except (RuntimeError, ValueError, OSError) as exc:
                log.error("call %s: cannot open %s leg for transcription: %s", session.call.id, leg, exc)
                return
        self.transcriber.feed(ref, leg, frame.pcm)

    async def on_partial(self, session: CallSession, event: TranscriptPartial) -> None:
        if event.leg != "caller":
            return
        session.partial = event.text
        session.speech_s = max(session.speech_s, event.audio_s)
        now = self._clock.monotonic()
        if session.last_partial_sent is None or now - session.last_partial_sent >= PARTIAL_PUBLISH_INTERVAL_S:
            session.last_partial_sent = now
            await self._records.publish(
                session.call, "transcript.partial", {"leg": event.leg, "text": event.text}
            )
        await self._retriage(session)

    async def on_final(self, session: CallSession, event: TranscriptFinal) -> None:
        call = session.call
        segment = segment_of(event)
        call.transcript.append(segment)
        try:
            await asyncio.to_thread(self._writer.append_transcript, call.id, segment)
        except StorageError as exc:
            # The segment is part of the call's snapshot, which the journal keeps until the database is back.
            log.error("call %s: transcript segment not stored yet: %s", call.id, exc)
            await self._records.journal(call)
        gap = event.engine == GAP_ENGINE  # "[2.0 s not transcribed: ...]": kept, but nothing triage can read
        if event.leg == "caller" and not gap:
            session.finals.append(event.text)
            session.partial = ""
            session.speech_s = max(session.speech_s, event.end_s)
        await self._records.publish(
            call,
            "transcript.final",
            {"leg": event.leg, "text": event.text, "start_s": event.start_s, "end_s": event.end_s},
        )
        if event.leg == "caller" and not gap:
            await self._retriage(session)

    async def store_late_final(self, event: TranscriptFinal) -> None:
        """A final that arrives after its call was let go (the decoder was behind) is stored on that call,
        found by call_ref, from the database when this node no longer holds the call."""
        async with self._late_finals:
            await self._store_late_final_in_order(event)

    async def _store_late_final_in_order(self, event: TranscriptFinal) -> None:
        call_id = self._registry.recent_refs.get(event.call_ref)
        try:
            if call_id is None:
                found = await asyncio.to_thread(self._store.find_call_by_ref, event.call_ref)
                if found is None:
                    log.error(
                        "transcript of unknown call %s kept in this log only: [%s] %s",
                        event.call_ref,
                        event.leg,
                        event.text,
                    )
                    return
                call_id = found.id
            await asyncio.to_thread(self._writer.append_transcript, call_id, segment_of(event))
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
