"""Event routing: adapters and transcription workers submit events from their own threads; each reaches
its call's ordered stream on the event loop (audio frames skip it and go straight to transcription)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from intake.bus import LiveEvent
from intake.calls.session import BackgroundTasks, CallSession, SessionRegistry
from intake.calls.transcript import TranscriptHandler
from intake.ports import Publisher
from telephony.events import AdapterStatus, AudioFrame, CallEnded, CallOffered, TelephonyEvent
from transcription.events import TranscriptEvent, TranscriptFinal, TranscriptPartial

log = logging.getLogger(__name__)


class EventRouter:
    def __init__(
        self,
        registry: SessionRegistry,
        transcript: TranscriptHandler,
        start_call: Callable[[CallOffered], CallSession],
        bus: Publisher,
        background: BackgroundTasks,
    ) -> None:
        self._registry = registry
        self._transcript = transcript
        self._start_call = start_call
        self._bus = bus
        self._background = background
        self._loop: asyncio.AbstractEventLoop | None = None
        self.adapter_health: dict[str, AdapterStatus] = {}

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def submit(self, event: TelephonyEvent | TranscriptEvent) -> None:
        """Thread-safe entry for adapters and transcription workers. Never blocks the caller."""
        loop = self._loop
        if loop is None or loop.is_closed():
            log.error("event dropped before start: %r", type(event).__name__)
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.route(event)
        else:
            loop.call_soon_threadsafe(self.route, event)

    def route(self, event: TelephonyEvent | TranscriptEvent) -> None:
        if isinstance(event, AudioFrame):
            self._transcript.feed_audio(event)
            return
        if isinstance(event, AdapterStatus):
            self.adapter_health[event.adapter] = event
            self._background.start(
                self._bus.publish(
                    LiveEvent(
                        "component.health",
                        {"component": event.adapter, "healthy": event.healthy, "detail": event.detail},
                    )
                )
            )
            return
        if isinstance(event, CallOffered) and event.fork_of:
            self._registry.add_fork(event.call_ref, event.fork_of)
            return
        if event.call_ref in self._registry.fork_refs:
            # A media fork's own signalling is not the call's: its end is logged (the PBX adapter forks
            # again while the caller is there); how the call ends is decided from the caller's channel only.
            if isinstance(event, CallEnded):
                call_ref = self._registry.end_fork(event.call_ref)
                log.info("media fork %s of call %s ended (%s)", event.call_ref, call_ref, event.reason.value)
            return
        session = self._registry.by_ref(event.call_ref)
        if session is None:
            if isinstance(event, TranscriptFinal):
                self._background.start(self._transcript.store_late_final(event))
                return
            if isinstance(event, TranscriptPartial):
                return  # a hypothesis for a call already let go: its final, if any, is stored
            if not isinstance(event, CallOffered):
                log.warning("event %s for unknown call %s ignored", type(event).__name__, event.call_ref)
                return
            session = self._start_call(event)
        if isinstance(event, CallEnded):
            session.end_pending = True
        session.deliver(event)
