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
from typing import Any

from intake.domain import Call, CallState, Incident, TakerState
from intake.errors import LiveStateError, NotFound, StorageError
from intake.serialize import decision_json

log = logging.getLogger(__name__)


@dataclass
class CurrentWork:
    taker_id: str
    state: str
    since: str | None
    call: Call | None = None
    triage: dict[str, Any] | None = None
    partial: str = ""
    offer: Call | None = None
    incident: Incident | None = None
    draft: dict[str, Any] | None = None  # typed into the incident form, not saved yet
    notes: list[str] = field(default_factory=list)  # what could not be restored, for the console to say


async def current_work(centre: Any, taker_id: str) -> CurrentWork:
    """The call taker's current work on any node: Redis says what they hold; the call and its incident
    come from the node holding the call (if it is this one) or the database."""
    work = CurrentWork(taker_id=taker_id, state=TakerState.OFFLINE.value, since=None)
    states: dict[str, dict[str, Any]] = {}
    try:
        states = await centre.live.taker_states()
    except LiveStateError as exc:
        work.notes.append(f"live state unavailable: {exc.message}")
    mine = states.get(taker_id, {})
    work.state = str(mine.get("state", work.state))
    work.since = mine.get("since")
    call_id = mine.get("call_id")
    if call_id and mine.get("offered"):
        offer = await _call(centre, str(call_id))
        if offer is not None and offer.state is CallState.QUEUED and offer.taker_id == taker_id:
            work.offer = offer
    elif call_id:
        call = await _call(centre, str(call_id))
        if call is not None and call.taker_id == taker_id and call.is_live:
            work.call = call
    if work.call is None and work.offer is None:
        # Redis may have lost the taker's state: the database knows who is talking to whom.
        try:
            connected: list[Call] = await asyncio.to_thread(
                centre.repo.calls_in_states, [CallState.CONNECTED]
            )
        except StorageError as exc:
            work.notes.append(f"database unavailable: {exc.message}")
            connected = []
        mine_now = [c for c in connected if c.taker_id == taker_id]
        if mine_now:
            work.call = await _call(centre, max(mine_now, key=lambda c: c.offered_at).id)
    if work.call is not None:
        session = centre.calls.session_by_id(work.call.id)
        decision = centre.calls.current_decision(work.call.id)
        work.triage = decision_json(decision) if decision is not None else None
        work.partial = session.partial if session is not None else ""
        try:
            work.draft = await centre.live.console_draft(taker_id, work.call.id)
        except LiveStateError as exc:
            work.notes.append(f"unsaved form input unavailable: {exc.message}")
        if work.call.incident_id:
            try:
                work.incident = await centre.incidents.get(work.call.incident_id)
            except (NotFound, StorageError) as exc:
                work.notes.append(f"incident {work.call.incident_id} unavailable: {exc}")
    return work


async def _call(centre: Any, call_id: str) -> Call | None:
    try:
        call: Call = await centre.calls.get(call_id)
    except NotFound:
        return None
    except StorageError as exc:
        log.error("call %s not readable for the console: %s", call_id, exc)
        return None
    return call


async def play_recording(
    centre: Any, call: Call, actor: str, legs: tuple[str, ...], last_s: float | None
) -> Any:
    """The recording of ``call`` for ``actor``; every fetch is put on the call's incident timeline (and
    in the log when the call has no incident), so who listened to what is on record."""
    from intake.recording import build_playable

    if centre.recordings is None:
        raise NotFound("voice logging is switched off on this centre", call_id=call.id)
    playable = await asyncio.to_thread(
        build_playable, centre.recordings, centre.recorder, call.id, legs, last_s
    )
    what = {
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
                centre.repo.append_timeline, call.incident_id, actor, "recording_played", what
            )
        except (StorageError, NotFound) as exc:
            # The audit entry is owed: without it the recording is not handed out.
            raise StorageError(f"recording fetch not logged on {call.incident_id}: {exc}") from exc
    return playable


DRAFT_TTL_MS = 12 * 3600 * 1000  # a shift


async def keep_draft(centre: Any, taker_id: str, call_id: str, values: dict[str, Any]) -> None:
    """Keep what the call taker typed for ``call_id`` (their own call in hand) until saved or the shift ends."""
    call = await centre.calls.get(call_id)
    if call.taker_id != taker_id:
        from intake.errors import PermissionDenied

        raise PermissionDenied("a form draft belongs to the call taker of the call", call_id=call_id)
    if values:
        await centre.live.put_console_draft(taker_id, call_id, values, DRAFT_TTL_MS)
    else:
        await centre.live.drop_console_draft(taker_id, call_id)


CONSOLE_TTL_MS = 15_000
CONSOLE_REFRESH_S = 5.0


@asynccontextmanager
async def console_presence(live: Any, taker_id: str) -> AsyncIterator[None]:
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
