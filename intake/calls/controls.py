"""Commands to the adapters that hold calls (the SIP endpoint, the PBX over AMI) and to the recognition
scheduler: each failure is logged with the call and the call goes on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from intake.domain import Call
from intake.ports import CallControl, PbxQueueControl, Transcriber
from routing.types import TriageDecision
from routing.vocabulary import DeskCode
from telephony.errors import AdapterError

log = logging.getLogger(__name__)


def triaged_from_words(decision: TriageDecision | None, caller_text: str) -> bool:
    """Triage has judged the caller from their own words: recognition then serves callers not yet heard."""
    return decision is not None and not decision.unsure and bool(caller_text.strip())


class CallControls:
    def __init__(
        self,
        taker_uri: Callable[[str], str | None] | None = None,
        takers_by_interface: dict[str, str] | None = None,
        prompt: tuple[bytes, int] | None = None,
    ) -> None:
        self._controls: dict[str, CallControl] = {}
        self._taker_uri = taker_uri or (lambda _taker_id: None)
        self._takers_by_interface = dict(takers_by_interface or {})
        self.prompt = prompt
        self.transcriber: Transcriber | None = None

    def attach(self, source: str, control: CallControl) -> None:
        """Register the adapter that holds calls from ``source`` ("sip" / "ami")."""
        self._controls[source] = control

    def control_for(self, call: Call) -> CallControl | None:
        return self._controls.get(call.source)

    def _pbx(self, call: Call, command: str) -> PbxQueueControl | None:
        """The call's adapter when it is a PBX that has ``command`` (the SIP endpoint has no queues)."""
        control = self._controls.get(call.source)
        if control is None or not callable(getattr(control, command, None)):
            return None
        return cast(PbxQueueControl, control)

    def taker_uri(self, taker_id: str) -> str | None:
        return self._taker_uri(taker_id)

    def taker_for(self, interface: str) -> str | None:
        """A PBX names the taker by its interface (SIP/taker1); the SIP endpoint by the taker id."""
        return self._takers_by_interface.get(interface, interface) or None

    async def play_prompt(self, call: Call) -> None:
        control = self._controls.get(call.source)
        if control is None or self.prompt is None or call.source != "sip":
            return
        pcm, rate = self.prompt
        try:
            await control.play_prompt(call.call_ref, pcm, rate, loop=True)
        except AdapterError as exc:
            log.warning("call %s: prompt not played: %s", call.id, exc)

    async def start_media_fork(self, call: Call) -> None:
        """A PBX call's audio reaches transcription through a media fork to the SIP endpoint."""
        pbx = self._pbx(call, "start_media_fork")
        if pbx is None or self.transcriber is None:
            return
        try:
            await pbx.start_media_fork(call.call_ref)
        except AdapterError as exc:
            log.error("call %s: no media fork, no transcript (routed by dialled number): %s", call.id, exc)

    async def move_in_pbx(self, call: Call, desk: DeskCode, front: bool) -> None:
        pbx = self._pbx(call, "move_to_desk")
        if pbx is None:
            return
        try:
            await pbx.move_to_desk(call.call_ref, desk, call.priority or 2, front)
        except AdapterError as exc:
            log.error("call %s: PBX did not move the caller to %s: %s", call.id, desk.value, exc)

    async def reprioritise_in_pbx(
        self, call: Call, desk: DeskCode, front: bool, priority: int | None = None
    ) -> None:
        pbx = self._pbx(call, "set_priority")
        if pbx is None:
            return
        try:
            await pbx.set_priority(call.call_ref, desk, priority or call.priority or 2, front)
        except AdapterError as exc:
            log.error("call %s: PBX kept the old queue priority on %s: %s", call.id, desk.value, exc)

    def tell_recognition(self, call: Call, waiting: bool, priority: int, triaged: bool | None = None) -> None:
        """Recognition decodes waiting callers first: those not yet triaged from their own words (``triaged``;
        None: unchanged), then most urgent and longest waiting first."""
        if self.transcriber is None:
            return
        try:
            self.transcriber.set_leg_queue(
                call.call_ref, "caller", waiting, priority, call.offered_at.timestamp(), triaged=triaged
            )
        except RuntimeError as exc:  # scheduling is an optimisation: the call and its audio go on
            log.error("call %s: recognition not told the queue state: %s", call.id, exc)

    def open_caller_leg(self, call: Call) -> bool:
        """Transcription of the caller starts; False (logged) when it cannot."""
        if self.transcriber is None:
            return False
        try:
            self.transcriber.open_leg(
                call.call_ref, "caller", 8000, language_hint=None, country_hint=call.caller.country
            )
        except (RuntimeError, ValueError, OSError) as exc:
            log.error("call %s: transcription unavailable: %s", call.id, exc)
            return False
        return True
