"""What a call taker's console shows, rebuilt from the shared state: a console that reloads, crashes or
opens on another PC gets the call in hand (transcript so far, triage, incident), the pending offer and the
taker's state back. Nothing here lives only in a browser.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from intake.domain import Call, CallState, Incident, TakerState
from intake.errors import LiveStateError, NotFound, PermissionDenied, StorageError
from intake.live import LiveTaker
from intake.ports import (
    CallsInHand,
    ConsoleRecords,
    ConsoleSessions,
    ConsoleState,
    IncidentLookup,
    JsonObject,
)
from intake.serialize import decision_json

if TYPE_CHECKING:
    from intake.recording import CallRecorder, Playable
    from intake.storage.recordings import RecordingRepository

log = logging.getLogger(__name__)

DRAFT_TTL_MS = 12 * 3600 * 1000  # a shift


@dataclass
class CurrentWork:
    taker_id: str
    state: str
    since: str | None
    call: Call | None = None
    triage: JsonObject | None = None  # the live decision with its evidence, as the console shows it
    partial: str = ""
    offer: Call | None = None
    incident: Incident | None = None
    draft: JsonObject | None = None  # typed into the incident form, not saved yet
    notes: list[str] = field(default_factory=list)  # what could not be restored, for the console to say


class ConsoleService:
    """A call taker's console rebuilt from the shared state, their unsaved form input, and replays of
    recordings put on record."""

    def __init__(
        self,
        live: ConsoleState,
        records: ConsoleRecords,
        calls: CallsInHand,
        incidents: IncidentLookup,
        recordings: RecordingRepository | None = None,
        recorder: CallRecorder | None = None,
    ) -> None:
        self._live = live
        self._records = records
        self._calls = calls
        self._incidents = incidents
        self._recordings = recordings
        self._recorder = recorder

    async def current_work(self, taker_id: str) -> CurrentWork:
        """The call taker's current work on any node: Redis says what they hold; the call and its incident
        come from the node holding the call (if it is this one) or the database."""
        work = CurrentWork(taker_id=taker_id, state=TakerState.OFFLINE.value, since=None)
        mine = LiveTaker.of(None)
        try:
            mine = (await self._live.live_takers()).get(taker_id) or mine
        except LiveStateError as exc:
            work.notes.append(f"live state unavailable: {exc.message}")
        work.state = mine.state.value
        work.since = mine.since_iso
        if mine.call_id and mine.offered:
            offer = await self._call(mine.call_id)
            if offer is not None and offer.state is CallState.QUEUED and offer.taker_id == taker_id:
                work.offer = offer
        elif mine.call_id:
            call = await self._call(mine.call_id)
            if call is not None and call.taker_id == taker_id and call.is_live:
                work.call = call
        if work.call is None and work.offer is None:
            # Redis may have lost the taker's state: the database knows who is talking to whom.
            try:
                connected = await asyncio.to_thread(self._records.calls_in_states, [CallState.CONNECTED])
            except StorageError as exc:
                work.notes.append(f"database unavailable: {exc.message}")
                connected = []
            mine_now = [c for c in connected if c.taker_id == taker_id]
            if mine_now:
                work.call = await self._call(max(mine_now, key=lambda c: c.offered_at).id)
        if work.call is not None:
            session = self._calls.session_by_id(work.call.id)
            decision = self._calls.current_decision(work.call.id)
            work.triage = decision_json(decision) if decision is not None else None
            work.partial = session.partial if session is not None else ""
            try:
                work.draft = await self._live.console_draft(taker_id, work.call.id)
            except LiveStateError as exc:
                work.notes.append(f"unsaved form input unavailable: {exc.message}")
            if work.call.incident_id:
                try:
                    work.incident = await self._incidents.get(work.call.incident_id)
                except (NotFound, StorageError) as exc:
                    work.notes.append(f"incident {work.call.incident_id} unavailable: {exc}")
        return work

    async def _call(self, call_id: str) -> Call | None:
        try:
            return await self._calls.get(call_id)
        except NotFound:
            return None
        except StorageError as exc:
            log.error("call %s not readable for the console: %s", call_id, exc)
            return None

    async def play_recording(
        self, call: Call, actor: str, legs: tuple[str, ...], last_s: float | None
    ) -> Playable:
        """The recording of ``call`` for ``actor``; every fetch is put on the call's incident timeline (and
        in the log when the call has no incident), so who listened to what is on record."""
        from intake.recording import build_playable

        if self._recordings is None:
            raise NotFound("voice logging is switched off on this centre", call_id=call.id)
        playable = await asyncio.to_thread(
            build_playable, self._recordings, self._recorder, call.id, legs, last_s
        )
        what: JsonObject = {
            "call_id": call.id,
            "legs": list(legs),
            "from_s": round(playable.from_s, 2),
            "seconds": round(playable.seconds, 2),
            "live": call.is_live,
        }
        log.warning("recording of call %s fetched by %s: %s", call.id, actor, what)
        if call.incident_id:
            try:
                await asyncio.to_thread(
                    self._records.append_timeline, call.incident_id, actor, "recording_played", what
                )
            except (StorageError, NotFound) as exc:
                # The audit entry is owed: without it the recording is not handed out.
                raise StorageError(f"recording fetch not logged on {call.incident_id}: {exc}") from exc
        return playable

    async def keep_draft(self, taker_id: str, call_id: str, values: dict[str, object]) -> None:
        """Keep what the call taker typed for ``call_id`` (their own call in hand) until saved or the shift
        ends."""
        call = await self._calls.get(call_id)
        if call.taker_id != taker_id:
            raise PermissionDenied("a form draft belongs to the call taker of the call", call_id=call_id)
        if values:
            await self._live.put_console_draft(taker_id, call_id, values, DRAFT_TTL_MS)
        else:
            await self._live.drop_console_draft(taker_id, call_id)


CONSOLE_TTL_MS = 15_000
CONSOLE_REFRESH_S = 5.0


@asynccontextmanager
async def console_presence(live: ConsoleSessions, taker_id: str) -> AsyncIterator[None]:
    """While a call taker's console is connected (live events), Redis says so, visible on every node:
    the demo's autopilot yields to a person at the console. A node that dies stops refreshing, and the
    presence expires within ``CONSOLE_TTL_MS``."""
    session_id = uuid.uuid4().hex

    async def refresh() -> None:
        while True:
            try:
                await live.console_seen(taker_id, session_id, CONSOLE_TTL_MS)
            except LiveStateError as exc:
                log.warning("console presence of %s not recorded: %s", taker_id, exc)
            await asyncio.sleep(CONSOLE_REFRESH_S)

    task = asyncio.create_task(refresh(), name=f"console-presence-{taker_id}")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        try:
            await live.console_gone(taker_id, session_id)
        except LiveStateError as exc:
            log.warning("console presence of %s not removed (expires by itself): %s", taker_id, exc)
